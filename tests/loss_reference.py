"""The plain-numpy statement of the fused softmax cross-entropy (charlm.nn.losses)."""

from __future__ import annotations

import numpy as np

from charlm.nn.losses import log_softmax_


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
