"""The plain-numpy statement of the distribution the compiled sampler draws from."""

from __future__ import annotations

import numpy as np


def next_token_distribution(logits: np.ndarray, temp: float, top_k: int, banned: int,
                            top_p: float = 1.0) -> np.ndarray:
    """Probabilities (V,) float64 from logits (V,): the `banned` id removed, top-k,
    temperature, then top-p (the order of charlm.sample)."""
    z = logits.astype(np.float64)
    z[banned] = -np.inf
    if top_k and top_k < len(z):
        kth = np.partition(z, -top_k)[-top_k]
        z[z < kth] = -np.inf
    if temp == 0:
        probs = np.zeros_like(z)
        probs[int(np.argmax(z))] = 1.0
        return probs
    probs = np.exp((z - z.max()) / temp)
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(-probs, kind="stable")  # most likely first, ties in id order
        n = int(np.searchsorted(np.cumsum(probs[order]), top_p, side="left")) + 1
        probs[order[n:]] = 0.0
        probs /= probs.sum()
    return probs
