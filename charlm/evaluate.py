"""Validation loss: forward only over a whole token array, the state carried across windows."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from .data import eval_windows
from .model import Model


def evaluate_loss(model: Model, ids: np.ndarray, batch: int, seq_len: int) -> float:
    """Mean negative log-likelihood, nats/token, of every predicted token of `ids`."""
    loss = 0.0
    for _, loss in evaluate_in_windows(model, ids, batch, seq_len):
        pass
    return loss


def evaluate_in_windows(model: Model, ids: np.ndarray, batch: int,
                        seq_len: int) -> Iterator[tuple[int, float]]:
    """evaluate_loss window by window: after each window, (tokens predicted so far, their mean
    negative log-likelihood in nats/token); the last pair holds the result."""
    state = None  # sized by the first window: eval_windows may lower the batch for short text
    total, count = 0.0, 0
    for x, y in eval_windows(ids, batch, seq_len):
        if state is None:
            state = model.zero_state(x.shape[0])
        logp, state = model.target_logprobs(x.T, y.T, state)
        total -= float(logp.sum())
        count += logp.size
        yield count, total / count


def perplexity(loss: float) -> float:
    return exp_or_inf(loss)


def exp_or_inf(x: float) -> float:
    """e**x, or inf where that exceeds a double (the perplexity of a diverged model)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def bits_per_char(loss: float) -> float:
    return loss / math.log(2.0)
