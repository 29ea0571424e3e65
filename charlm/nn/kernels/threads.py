"""How many threads the kernels' BLAS may use, per phase of the work.

The recurrent loops make one small GEMM per time step ((B, H) x (H, G*H)); a second BLAS thread
speeds each up by only ~20% and must meet the first at a barrier every step. When another
process takes a core, that barrier waits for a descheduled thread and a training step becomes
several times slower. So the sequential loops run their GEMMs on one thread, and the large GEMMs over all B*T rows keep every thread.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading


@functools.cache
def kernel_blas():
    """The threadpoolctl controller of the BLAS that Numba's np.dot calls (SciPy's), or None."""
    try:
        import scipy
        import scipy.linalg.cython_blas  # noqa: F401  (loads the library)
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    libs = ThreadpoolController().lib_controllers
    scipy_home = os.path.dirname(os.path.realpath(scipy.__file__))
    for lib in libs:
        path = os.path.realpath(lib.filepath or "")
        if path.startswith(scipy_home) or f"{os.sep}scipy.libs{os.sep}" in path:
            return lib
    return libs[0] if len(libs) == 1 else None


_held = 0  # how many sequential_blas blocks are open (in any thread)
_lock = threading.Lock()


@contextlib.contextmanager
def sequential_blas():
    """BLAS on one thread inside the block (the per-step GEMMs of the recurrent loops).

    Blocks nest, also across threads (charlm.nn.stack's workers run inside the caller's block):
    only the outermost one sets and restores the library's thread count. Querying it through
    threadpoolctl costs more than a time chunk's work."""
    global _held
    lib = kernel_blas()
    with _lock:
        outermost = _held == 0
        _held += 1
    previous = lib.num_threads if lib is not None and outermost else 1
    try:
        if previous != 1:
            lib.set_num_threads(1)
        yield
    finally:
        if previous != 1:
            lib.set_num_threads(previous)
        with _lock:
            _held -= 1
