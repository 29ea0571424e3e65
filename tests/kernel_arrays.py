"""The kernels' scalar activations applied to whole arrays, to measure them against numpy."""

from __future__ import annotations

import numpy as np
from numba import njit

from charlm.nn.kernels._numba import JIT_OPTIONS
from charlm.nn.kernels.activations import exp, sigmoid, tanh


@njit(**JIT_OPTIONS)
def _tanh_into(x, out):
    for i in range(x.size):
        out[i] = tanh(x[i])


@njit(**JIT_OPTIONS)
def _sigmoid_into(x, out):
    for i in range(x.size):
        out[i] = sigmoid(x[i])


@njit(**JIT_OPTIONS)
def _exp_into(x, out):
    for i in range(x.size):
        out[i] = exp(x[i])


def _elementwise(into, x: np.ndarray) -> np.ndarray:
    """Run an `_*_into(x, out)` kernel on x flattened to a contiguous 1-D array."""
    x = np.ascontiguousarray(x).ravel()
    out = np.empty_like(x)
    into(x, out)
    return out


def tanh_array(x: np.ndarray) -> np.ndarray:
    """tanh of a float32/float64 array, exactly as the kernels compute it for that dtype."""
    return _elementwise(_tanh_into, x)


def sigmoid_array(x: np.ndarray) -> np.ndarray:
    """sigmoid of a float32/float64 array, exactly as the kernels compute it for that dtype."""
    return _elementwise(_sigmoid_into, x)


def exp_array(x: np.ndarray) -> np.ndarray:
    """exp of a float32/float64 array, exactly as the kernels compute it for that dtype."""
    return _elementwise(_exp_into, x)
