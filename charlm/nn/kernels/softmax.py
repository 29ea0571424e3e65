"""Softmax with cross-entropy over a large vocabulary, fused: one exp per logit, no temporaries.

numpy's version (charlm.nn.losses, the reference) makes seven passes over the (N, V) logits and
allocates two more arrays of that size, which a 10,000-word vocabulary makes a large part of a
training step. Here each row is read three times (max, exp and sum, scale) with the
vectorized float32 exp of charlm.nn.kernels.activations, and the caller splits the rows between
cores (charlm.nn.losses).

Kernels take a row range [lo, hi) so that threads can share one output array.
"""

import numpy as np
from numba import njit

from charlm.nn.kernels._numba import JIT_OPTIONS
from charlm.nn.kernels.activations import exp


@njit(**JIT_OPTIONS)
def _xent_rows(logits, targets, scale, lo, hi, losses, dbias):
    """For rows [lo, hi): losses[i] = -log softmax(logits[i])[targets[i]], and logits[i] becomes
    (softmax - onehot) * scale in place; dbias (V,) += the new rows (the decoder bias gradient).

    logits (N, V) float, targets (N,) int, losses (N,) float64, dbias (V,) of logits' dtype.
    """
    V = logits.shape[1]
    inv = np.empty(1, logits.dtype)  # a scalar of the logits' dtype: float32 stays float32
    for i in range(lo, hi):
        row = logits[i]
        t = targets[i]
        top = row[0]
        for j in range(1, V):
            top = row[j] if row[j] > top else top
        target_shifted = row[t] - top
        total = 0.0  # float64
        for j in range(V):
            e = exp(row[j] - top)
            row[j] = e
            total += e
        losses[i] = np.log(total) - target_shifted
        inv[0] = scale / total
        for j in range(V):
            row[j] *= inv[0]
        row[t] -= scale
        for j in range(V):
            dbias[j] += row[j]


@njit(**JIT_OPTIONS)
def _logprob_rows(logits, targets, lo, hi, out):
    """out[i] = log softmax(logits[i])[targets[i]] for rows [lo, hi); logits are only read."""
    V = logits.shape[1]
    for i in range(lo, hi):
        row = logits[i]
        top = row[0]
        for j in range(1, V):
            top = row[j] if row[j] > top else top
        total = 0.0
        for j in range(V):
            total += exp(row[j] - top)
        out[i] = (row[targets[i]] - top) - np.log(total)
