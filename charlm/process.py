"""Process-wide settings that `import charlm` makes once, before any array is computed.

- OpenBLAS's idle threads (read once, when SciPy's OpenBLAS loads; every product of charlm goes
  through it, see charlm.nn.kernels.linalg): after a product on several threads, OpenBLAS's
  helper threads spin for 2^28 cycles before they sleep, on the cores that charlm's own
  threads (charlm.nn.stack) need next. OPENBLAS_THREAD_TIMEOUT=4, the least OpenBLAS accepts,
  makes them sleep at once. The results are the same bits.
- glibc's malloc thresholds: a training step allocates and frees arrays of megabytes (the
  input projections, the logits, the gradients). By default glibc returns freed memory at the
  top of the heap to the system once more than twice its (adaptive) mmap threshold is free, so
  every step faults the same pages in again, one page at a time, on one core at a time: for a
  small model a large share of its step. Keeping up to TRIM_MB of freed memory lets the next
  step reuse it. The peak resident memory is unchanged; between steps the process keeps what
  the step used.

A value the user set stays: OPENBLAS_THREAD_TIMEOUT, and glibc's MALLOC_*_ variables or
GLIBC_TUNABLES for malloc. A program that loaded SciPy before charlm keeps OpenBLAS's spinning.
Child processes inherit OPENBLAS_THREAD_TIMEOUT.
"""

from __future__ import annotations

import ctypes
import os

MMAP_MB = 32  # arrays below this come from the heap (glibc's largest adaptive threshold)
TRIM_MB = 256  # freed memory kept at the top of the heap before it is returned
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)


def configure() -> None:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    _keep_freed_memory()


def _keep_freed_memory() -> None:
    """mallopt the thresholds above, on glibc, unless the user tuned malloc."""
    tuned = any(name in os.environ for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"))
    if tuned or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return
    if not _on_glibc():
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_MB << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_MB << 20)
    except (OSError, AttributeError):
        pass


def _on_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # no confstr, or not this name: not glibc
        return False
