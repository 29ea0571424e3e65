"""What `import charlm` does to the process before any BLAS library loads."""

from __future__ import annotations

import os
import subprocess
import sys

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
