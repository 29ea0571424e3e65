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


LANES = 16  # running maxima side by side: one vector register of float32 with AVX-512


@njit(**JIT_OPTIONS)
def _row_max(row):
    """max(row) for row (V,): LANES running maxima, each over every LANES-th element, then the
    largest of them. A single running maximum is a chain of dependent comparisons that LLVM does
    not vectorize (without 'nnan'); the lanes are independent, and the maximum is the same
    whatever the order (a NaN is skipped either way, unless row[0] is NaN)."""
    V = row.shape[0]
    lanes = np.full(LANES, row[0])
    whole = V - V % LANES
    for j0 in range(0, whole, LANES):
        for lane in range(LANES):
            x = row[j0 + lane]
            lanes[lane] = x if x > lanes[lane] else lanes[lane]
    top = row[0]
    for lane in range(LANES):
        top = lanes[lane] if lanes[lane] > top else top
    for j in range(whole, V):
        top = row[j] if row[j] > top else top
    return top


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
        top = _row_max(row)
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
        top = _row_max(row)
        total = 0.0
        for j in range(V):
            total += exp(row[j] - top)
        out[i] = (row[targets[i]] - top) - np.log(total)
