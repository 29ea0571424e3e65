"""Sampling: one token at a time, each fed back as the next input, with temperature and top-k.

The model is first conditioned on EOS (every training line follows one) and on the prime
text. UNK is never emitted: its probability is set to zero and the rest renormalized.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .model import Model
from .tokenizer import Tokenizer


def next_token_distribution(logits: np.ndarray, temp: float, top_k: int, banned: int) -> np.ndarray:
    """Probabilities (V,) float64 from logits (V,): temperature, top-k, `banned` id removed."""
    z = logits.astype(np.float64)
    z[banned] = -np.inf
    if top_k and top_k < len(z):
        kth = np.partition(z, -top_k)[-top_k]
        z[z < kth] = -np.inf
    if temp == 0:  # greedy: all the mass on the argmax
        probs = np.zeros_like(z)
        probs[int(np.argmax(z))] = 1.0
        return probs
    z = (z - z.max()) / temp
    probs = np.exp(z)
    return probs / probs.sum()


def draw(probs: np.ndarray, u: float) -> int:
    """Inverse-CDF draw with a uniform u in [0, 1)."""
    cdf = np.cumsum(probs)
    return int(min(np.searchsorted(cdf, u * cdf[-1], side="right"), len(probs) - 1))


def generate(model: Model, tokenizer: Tokenizer, *, length: int, temp: float = 1.0,
             top_k: int = 0, prime: str = "", until_eos: bool = False,
             rng: np.random.Generator | None = None) -> Iterator[str]:
    """Yield the text of each generated token as soon as it is drawn (the prime not included)."""
    rng = rng or np.random.default_rng()
    context = np.concatenate([[tokenizer.eos_id], tokenizer.encode(prime)]).astype(np.int32)
    top, state, _ = model.forward(context.reshape(-1, 1), model.zero_state(1))
    logits = model.logits(top[-1:])[0]
    prev = int(context[-1]) if prime else None
    for _ in range(length):
        probs = next_token_distribution(logits, temp, top_k, tokenizer.unk_id)
        token = draw(probs, rng.random())
        yield tokenizer.decode_token(token, prev)
        if until_eos and token == tokenizer.eos_id:
            return
        prev = token
        top, state, _ = model.forward(np.array([[token]], np.int32), state)
        logits = model.logits(top)[0]
