"""What the model predicts at every position of a sequence, and its hidden states there.

Positions follow charlm.score: a sequence (score.sequence_ids) starts with EOS; position t
reads ids[t] and predicts ids[t + 1]. Only the model's public forward pass and decoder are
used, or the plain-numpy loop of charlm.nn.quick when the states of every layer are wanted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlm.nn.losses import log_softmax_
from charlm.nn.model import Model
from charlm.nn.quick import QUICK_MAX_TOKENS, quick_logits, quick_states
from charlm.score import DOCUMENT_CHUNK

TOP_K = 5  # predictions kept per position unless asked for more


@dataclass(frozen=True)
class Predictions:
    """The model's prediction at each of n positions of a sequence ids (n + 1,)."""

    ids: np.ndarray  # (n + 1,) int32: ids[t] is read at position t, ids[t + 1] is its target
    logprob: np.ndarray  # (n,) float64: natural-log probability of each target
    rank: np.ndarray  # (n,) int64: 1 + the number of tokens more likely than the target
    top_ids: np.ndarray  # (n, k) int32: the k most likely tokens, most likely first
    top_logprob: np.ndarray  # (n, k) float64: their log-probabilities

    @property
    def targets(self) -> np.ndarray:
        return self.ids[1:]


@dataclass(frozen=True)
class States:
    """Each layer's state after reading ids[t], for t = 0 .. n (the last target included)."""

    hidden: np.ndarray  # (L, n + 1, H): the layer's output h
    cells: np.ndarray | None  # (L, n + 1, H): the LSTM cell state c; None for GRU and RNN


def predict(model: Model, ids: np.ndarray, k: int = TOP_K) -> Predictions:
    """Predictions along ids from a zero state, on the path charlm.score takes for the same
    length (numpy when short, the compiled forward pass otherwise), so that the per-target
    log-probabilities add up to score's total."""
    ids = np.asarray(ids, dtype=np.int32)
    n = len(ids) - 1
    if n <= QUICK_MAX_TOKENS:
        hidden, _, _ = quick_states(model, ids[:-1, None], model.zero_state(1))
        return _predictions(ids, [quick_logits(model, hidden[-1][:, 0])], k)
    state, chunks = model.zero_state(1), []
    for start in range(0, n, DOCUMENT_CHUNK):
        window = ids[start : start + DOCUMENT_CHUNK + 1]
        top, state, _ = model.forward(window[:-1, None], state)
        chunks.append(model.logits(top).astype(np.float64))  # as score's kernel: float64 sums
    return _predictions(ids, chunks, k)


def probe(model: Model, ids: np.ndarray, k: int = TOP_K) -> tuple[Predictions, States]:
    """Predictions and every layer's states along ids from a zero state (numpy loop)."""
    ids = np.asarray(ids, dtype=np.int32)
    n = len(ids) - 1
    hidden, cells, _ = quick_states(model, ids[:, None], model.zero_state(1), keep_cells=True)
    top = hidden[-1][:n, 0]
    # the precision of score's log-softmax for this length: float32 in numpy, float64 in its kernel
    dtype = top.dtype if n <= QUICK_MAX_TOKENS else np.float64
    chunks = (quick_logits(model, top[s : s + DOCUMENT_CHUNK]).astype(dtype, copy=False)
              for s in range(0, n, DOCUMENT_CHUNK))
    states = States(np.stack([h[:, 0] for h in hidden]),
                    None if cells is None else np.stack([c[:, 0] for c in cells]))
    return _predictions(ids, chunks, k), states


def _predictions(ids: np.ndarray, logit_chunks, k: int) -> Predictions:
    """Predictions from the logits of consecutive positions, chunk by chunk (bounded memory
    for a large vocabulary): each chunk (m, V) is consumed."""
    targets = ids[1:]
    logprob, rank, top_ids, top_logprob = [], [], [], []
    start = 0
    for logits in logit_chunks:
        logp = log_softmax_(logits)
        rows = np.arange(len(logp))
        target = targets[start : start + len(logp)]
        mine = logp[rows, target]
        logprob.append(mine.astype(np.float64))
        rank.append(1 + np.count_nonzero(logp > mine[:, None], axis=1))
        kk = min(k, logp.shape[1])
        best = np.argpartition(-logp, kk - 1, axis=1)[:, :kk]
        order = np.argsort(-np.take_along_axis(logp, best, axis=1), axis=1, kind="stable")
        best = np.take_along_axis(best, order, axis=1)
        top_ids.append(best.astype(np.int32))
        top_logprob.append(np.take_along_axis(logp, best, axis=1).astype(np.float64))
        start += len(logp)
    if start != len(targets):
        raise ValueError(f"logits for {start} positions, {len(targets)} targets")
    if not logprob:  # an empty sequence: no positions
        return Predictions(ids, np.zeros(0), np.zeros(0, np.int64), np.zeros((0, k), np.int32),
                           np.zeros((0, k)))
    return Predictions(ids, np.concatenate(logprob), np.concatenate(rank).astype(np.int64),
                       np.concatenate(top_ids), np.concatenate(top_logprob))
