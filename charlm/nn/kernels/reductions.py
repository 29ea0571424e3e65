"""Reductions the optimizer needs, without numpy's BLAS (see charlm.nn.kernels.linalg)."""

import numpy as np
from numba import njit

from charlm.nn.kernels._numba import JIT_OPTIONS


@njit(**JIT_OPTIONS)
def _sum_squares(a):
    """sum(a**2) of a 1-D array, accumulated in float64."""
    total = 0.0
    for i in range(a.shape[0]):
        v = np.float64(a[i])
        total += v * v
    return total
