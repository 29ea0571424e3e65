"""Softmax output with cross-entropy, computed in place on the logits to save memory.

Two implementations with one meaning: numpy's (log_softmax_, target_logprobs),
what charlm.nn.quick and charlm.views.probe use without Numba; and the fused Numba kernels of
charlm.nn.kernels.softmax, split by rows between cores (fused_softmax_xent_, fused_target_logprobs),
what training and scoring use.
"""

from __future__ import annotations

from functools import partial

import numpy as np


def log_softmax_(logits: np.ndarray) -> np.ndarray:
    """Turn logits (N, V) into log-probabilities, in place, and return them."""
    logits -= logits.max(axis=1, keepdims=True)
    logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return logits


def target_logprobs(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Natural-log probability of each target: logits (N, V) consumed, targets (N,) -> (N,) float64."""
    logp = log_softmax_(logits)
    return logp[np.arange(len(targets)), targets].astype(np.float64)


# Rows go to a fixed number of parts whatever the core count, so that the decoder-bias gradient
# (a sum over the parts) has the same bits on one core or several. A part is at least MIN_PART_ROWS.
ROW_PARTS = 4
MIN_PART_ROWS = 32


def _row_parts(n: int) -> list[tuple[int, int]]:
    parts = max(1, min(ROW_PARTS, n // MIN_PART_ROWS))
    return [(n * k // parts, n * (k + 1) // parts) for k in range(parts)]


def _check(logits: np.ndarray, targets: np.ndarray) -> None:
    if logits.ndim != 2 or not logits.flags.c_contiguous or logits.dtype not in (np.float32, np.float64):
        raise TypeError(f"logits must be a C-contiguous (N, V) float32/64 array, got {logits.dtype} {logits.shape}")
    if targets.shape != (logits.shape[0],):
        raise ValueError(f"targets {targets.shape} do not match logits {logits.shape}")
    # The kernels index rows by target without bounds checks: an id outside [0, V) would read
    # (and write) outside the row.
    if len(targets) and (targets.min() < 0 or targets.max() >= logits.shape[1]):
        raise ValueError(f"targets must lie in [0, {logits.shape[1]}), got [{targets.min()}, {targets.max()}]")


def fused_softmax_xent_(logits: np.ndarray, targets: np.ndarray,
                        rows: int | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean cross-entropy of the softmax of the logits at the targets, its gradient w.r.t. the
    logits and the decoder-bias gradient, with the fused kernel.

    logits (N, V) float32/64, C-contiguous, overwritten by dlogits = (softmax - onehot) / rows;
    targets (N,) int. Returns (summed loss / rows, dlogits, dbias (V,) = dlogits.sum(axis=0)).
    rows: the rows the mean is over, N by default (more when these are a share of a batch).
    """
    from charlm.nn.kernels.softmax import _xent_rows
    from charlm.nn.stack import run_parts

    _check(logits, targets)
    n, V = logits.shape
    rows = rows or n
    parts = _row_parts(n)
    losses = np.empty(n, np.float64)
    dbias_parts = np.zeros((len(parts), V), logits.dtype)
    run_parts([partial(_xent_rows, logits, targets, 1.0 / rows, lo, hi, losses, dbias_parts[k])
               for k, (lo, hi) in enumerate(parts)])
    dbias = dbias_parts[0]
    for extra in dbias_parts[1:]:
        dbias += extra
    return float(losses.sum()) / rows, logits, dbias


def fused_target_logprobs(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """target_logprobs with the fused kernel: logits (N, V) (left as they are), targets (N,)
    -> (N,) float64."""
    from charlm.nn.kernels.softmax import _logprob_rows
    from charlm.nn.stack import run_parts

    _check(logits, targets)
    out = np.empty(logits.shape[0], np.float64)
    run_parts([partial(_logprob_rows, logits, targets, lo, hi, out) for lo, hi in _row_parts(len(out))])
    return out
