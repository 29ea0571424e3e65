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


@njit(**JIT_OPTIONS)
def rows_times_transposed(a, w, out, out_t):
    """out (B, N) = a (B, K) @ w^T, for w (N, K) C-contiguous and a (B, K) C-contiguous; out_t
    (N, B) is scratch. The one product of each recurrent step (h_{t-1} W_hh^T forward, and
    dgates W_hh backward with w = W_hh^T).

    Computed as out_t = w @ a^T, then transposed into out: with few rows B and many columns N,
    OpenBLAS runs the product written (N, B) faster than written (B, N), by more than the
    transpose costs (benchmarks/kernel_steps.py times the kernels)."""
    if a.shape[0] == 1:  # one row (scoring one line at batch 1): nothing to transpose
        np.dot(a, w.T, out)
        return
    np.dot(w, a.T, out_t)
    _transpose_into(out_t, out)


@njit(**JIT_OPTIONS)
def _transpose_into(src, dst):
    """dst (C, R) = src (R, C)^T, in 16 x 16 tiles: a plain double loop strides through dst by
    rows of a power-of-two length and thrashes the cache."""
    R, C = src.shape
    for i0 in range(0, R, 16):
        i1 = min(i0 + 16, R)
        for j0 in range(0, C, 16):
            j1 = min(j0 + 16, C)
            for j in range(j0, j1):
                for i in range(i0, i1):
                    dst[j, i] = src[i, j]


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
