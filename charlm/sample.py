"""Sampling: one token at a time, each fed back as the next input, with temperature and top-k.

The model is first conditioned on EOS (every training line follows one) and on the prime
text. UNK is never emitted: its probability is set to zero and the rest renormalized. The
token loop runs compiled (charlm.kernels.sampling) in chunks; text is yielded token by token.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .kernels.sampling import CELL_CODES, _sample_tokens
from .kernels.threads import sequential_blas
from .model import Model
from .tokenizer import Tokenizer

CHUNK = 64  # tokens generated per compiled call: output stays responsive, Python cost vanishes


def next_token_distribution(logits: np.ndarray, temp: float, top_k: int, banned: int) -> np.ndarray:
    """Probabilities (V,) float64 from logits (V,): the plain-numpy statement of what the
    compiled sampler draws from (temperature, top-k, `banned` id removed)."""
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
    return probs / probs.sum()


class _SamplerWeights:
    """The model's weights arranged once for the compiled loop: per-layer arrays stacked."""

    def __init__(self, model: Model):
        cfg, p = model.config, model.params
        L, H = cfg.layers, cfg.hidden
        layer = lambda name, l: p[f"rnn.{name}_l{l}"]  # noqa: E731
        self.cell = CELL_CODES[cfg.cell]
        self.emb = p["embedding.weight"] if cfg.embed > 0 else np.zeros((0, 0), np.float32)
        self.w_ih0 = layer("weight_ih", 0)
        upper = [layer("weight_ih", l) for l in range(1, L)]
        self.w_ih = np.stack(upper) if upper else np.zeros((1, cfg.gates * H, H), np.float32)
        self.b_ih = np.stack([layer("bias_ih", l) for l in range(L)])
        # (L, H, G*H), C order: a slice of an F-ordered stack would send np.dot down a slow path
        self.w_hh_t = np.ascontiguousarray(np.stack([layer("weight_hh", l).T for l in range(L)]))
        self.b_hh = np.stack([layer("bias_hh", l) for l in range(L)])
        self.dec_w, self.dec_b = p["decoder.weight"], p["decoder.bias"]

    def args(self) -> tuple:
        return (self.cell, self.emb, self.w_ih0, self.w_ih, self.b_ih, self.w_hh_t, self.b_hh,
                self.dec_w, self.dec_b)


def generate(model: Model, tokenizer: Tokenizer, *, length: int, temp: float = 1.0,
             top_k: int = 0, prime: str = "", until_eos: bool = False,
             rng: np.random.Generator | None = None) -> Iterator[str]:
    """Yield the text of each generated token as soon as it is drawn (the prime not included)."""
    rng = rng or np.random.default_rng()
    w = _SamplerWeights(model)
    context = np.concatenate([[tokenizer.eos_id], tokenizer.encode(prime)]).astype(np.int32)
    state = model.zero_state(1)
    if len(context) > 1:  # condition on everything but the last token, which the loop feeds
        _, state, _ = model.forward(context[:-1].reshape(-1, 1), state)
    token = int(context[-1])
    prev = token if prime else None
    out = np.empty(CHUNK, np.int64)
    remaining = length
    while remaining > 0:
        n = min(CHUNK, remaining)
        uniforms = rng.random(n)
        with sequential_blas():  # batch 1: matrix-vector products, one thread is fastest
            count = _sample_tokens(*w.args(), state, token, uniforms, float(temp), int(top_k), tokenizer.unk_id,
                               tokenizer.eos_id, until_eos, out[:n])
        for token in out[:count].tolist():
            yield tokenizer.decode_token(token, prev)
            prev = token
        remaining -= count
        if until_eos and count and out[count - 1] == tokenizer.eos_id:
            return
