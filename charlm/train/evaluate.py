"""Validation loss: forward only over a whole token array, the state carried across windows."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from charlm.data.batches import eval_windows
from charlm.nn.model import Model


def evaluate_in_windows(model: Model, ids: np.ndarray, batch: int, seq_len: int,
                        world=None) -> Iterator[tuple[int, float]]:
    """Mean negative log-likelihood, nats/token, of every predicted token of `ids`, window by
    window: after each window, (tokens predicted so far, their mean so far); the last pair holds
    the result.

    world (charlm.train.distributed): each rank scores its share of the streams; the pairs are its
    own until the last, the sums of every rank's added in rank order."""
    state = None  # sized by the first window: eval_windows may lower the batch for short text
    total, count = 0.0, 0
    for x, y in eval_windows(ids, batch, seq_len):
        s0, s1 = world.streams(x.shape[0]) if world is not None else (0, x.shape[0])
        if s0 == s1:
            continue  # fewer streams than ranks: this one has none
        if state is None:
            state = model.zero_state(s1 - s0)
        logp, state = model.target_logprobs(x[s0:s1].T, y[s0:s1].T, state)
        total -= float(logp.sum())
        count += logp.size
        yield count, total / count
    if world is not None and world.size > 1:
        total, count = world.sum_in_order(np.array([total, count], np.float64)).tolist()
        yield int(count), total / max(count, 1)
