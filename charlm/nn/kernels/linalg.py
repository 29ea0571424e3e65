"""Matrix products through the one BLAS that the kernels use.

numpy and SciPy each ship their own OpenBLAS, each with its own thread pool. Numba's np.dot
calls SciPy's. When numpy's GEMMs and the kernels' np.dot calls alternate, the two pools'
threads spin against each other and take the cores from each other's products. So every
product of the training and scoring paths goes through here, into SciPy's OpenBLAS, and
numpy's pool stays asleep.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from charlm.nn.kernels._numba import JIT_OPTIONS


@njit(**JIT_OPTIONS)
def _dot_into(a, b, out):
    np.dot(a, b, out)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """a (M, K) @ b (K, N) -> (M, N). a and b may be C- or F-contiguous (e.g. a transposed view)."""
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    _dot_into(_contiguous(a), _contiguous(b), out)
    return out


def _contiguous(a: np.ndarray) -> np.ndarray:
    if a.flags.c_contiguous or a.flags.f_contiguous:
        return a
    return np.ascontiguousarray(a)
