"""What `import charlm` does to the process before any BLAS library loads."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = ("import sys, os, charlm; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'), "
         "'numpy' in sys.modules, 'scipy' in sys.modules)")


def _import_charlm_in_a_fresh_process(thread_timeout: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if thread_timeout is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = thread_timeout
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         check=True)
    return out.stdout.split()


def test_importing_charlm_lets_openblas_threads_sleep_before_any_blas_loads():
    # OpenBLAS reads the variable when its library loads: charlm must set it before that
    value, numpy_loaded, scipy_loaded = _import_charlm_in_a_fresh_process(None)
    assert value == "4"
    assert numpy_loaded == "False" and scipy_loaded == "False"


def test_a_user_set_openblas_thread_timeout_is_kept():
    assert _import_charlm_in_a_fresh_process("20")[0] == "20"


# Allocates and frees two 12 MB arrays ten times; prints the page faults that took.
REUSE_PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] == "charlm":
    import charlm
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for round in range(2):
    start = faults()
    for _ in range(10):
        a = np.ones((3, 1 << 20), np.float32); b = np.ones((3, 1 << 20), np.float32); del a, b
print(faults() - start)
"""


def _page_faults_of_reused_arrays(importing: str, **env: str) -> int:
    out = subprocess.run([sys.executable, "-c", REUSE_PROBE, importing], env={**os.environ, **env},
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="glibc's malloc")
def test_freed_memory_is_reused_without_page_faults():
    # 10 x 2 x 12 MB = 61,440 pages if every allocation faulted its pages in again
    assert _page_faults_of_reused_arrays("numpy") > 10_000  # glibc's default returns them
    assert _page_faults_of_reused_arrays("charlm") < 1_000
    # a malloc setting of the user's stays
    assert _page_faults_of_reused_arrays("charlm", MALLOC_TRIM_THRESHOLD_="131072") > 10_000
