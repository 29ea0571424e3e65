"""Softmax output with cross-entropy, computed in place on the logits to save memory."""

from __future__ import annotations

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


def softmax_xent_(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy over N rows and its gradient w.r.t. the logits, written in place.

    logits (N, V) float, targets (N,) int. Returns (loss, dlogits) where dlogits is the same
    buffer: (softmax - onehot) / N.
    """
    n = len(targets)
    rows = np.arange(n)
    logp = log_softmax_(logits)
    loss = -float(logp[rows, targets].sum(dtype=np.float64)) / n
    probs = np.exp(logp, out=logp)
    probs[rows, targets] -= 1.0
    probs *= 1.0 / n
    return loss, probs
