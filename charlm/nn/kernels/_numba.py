"""The one place that sets Numba policy for charlm's kernels.

- Serial kernels use `cache=True` (compiled once per machine, stored in __pycache__).
- Parallel kernels (prange) are not cached: cached parallel functions have crashed when the
  thread count changed (pynndescent's experience).
- One fastmath flag set for all kernels. It leaves out 'nnan' and 'ninf' so that NaN and inf
  still propagate and `np.isfinite` checks stay reliable.
- error_model="numpy": a division by zero gives inf/NaN as in numpy instead of a Python
  exception, so no zero check sits inside the loops and blocks their vectorization.
"""

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

JIT_OPTIONS = dict(nogil=True, cache=True, fastmath=set(FASTMATH), error_model="numpy")
