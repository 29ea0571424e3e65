"""Sampling: one token at a time, each fed back as the next input, with temperature, top-k
and top-p.

The distribution of the next token is shaped in this order: the banned token (UNK) removed,
top-k (the k highest logits), temperature (softmax(logits / temp)), then top-p (the nucleus:
the fewest most likely tokens whose probability reaches p, renormalized). Top-k does not
depend on the temperature; top-p does, as in Hugging Face transformers' order.

The model is first conditioned on EOS (every training line follows one, so a sample starts at
the beginning of a line) and on the prime text. UNK is never emitted: its probability is set to zero and the rest renormalized. The
token loop runs compiled (charlm.nn.kernels.sampling) in chunks; text is yielded token by token.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from charlm.nn.kernels.sampling import sample_tokens
from charlm.nn.kernels.threads import sequential_blas
from charlm.nn.model import Model
from charlm.data.tokenizer import Tokenizer

# A step's products run on one BLAS thread (a second one costs more than it saves on products
# this small), unless the decoder has this many weights at least (4 MB in float32): reading a
# 10,000-word decoder once per token bounds the step, and two cores read it faster than one.
THREADED_DECODER = 1 << 20
CHUNK = 64  # tokens generated per compiled call: output stays responsive, Python cost vanishes


class _SamplerWeights:
    """The model's weights arranged once for the compiled loop (charlm.nn.kernels.sampling): per-layer
    arrays stacked; for several streams, the input and decoder weights transposed, so that each
    step's products are (K, I) x (I, G*H) with C-contiguous operands; for one, as they are
    (matrix-vector products read the weights fastest that way)."""

    def __init__(self, model: Model, streams: int = 1):
        cfg, p = model.config, model.params
        L, H = cfg.layers, cfg.hidden
        layer = lambda name, l: p[f"rnn.{name}_l{l}"]  # noqa: E731
        t = lambda a: np.ascontiguousarray(a.T)  # noqa: E731
        arrange = (lambda a: a) if streams == 1 else t
        self.cell = cfg.cell
        self.emb = p["embedding.weight"] if cfg.embed > 0 else np.zeros((0, 0), np.float32)
        self.w_ih0 = arrange(layer("weight_ih", 0))
        upper = [arrange(layer("weight_ih", l)) for l in range(1, L)]
        self.w_ih = np.stack(upper) if upper else np.zeros((1, H, cfg.gates * H), np.float32)
        self.b_ih = np.stack([layer("bias_ih", l) for l in range(L)])
        self.w_hh_t = np.stack([t(layer("weight_hh", l)) for l in range(L)])
        self.b_hh = np.stack([layer("bias_hh", l) for l in range(L)])
        rates = [model.leak_rates(l) for l in range(L)]
        self.leak = np.stack([np.ones(H, np.float32) if a is None else a for a in rates])
        self.retain = (1 - self.leak).astype(self.leak.dtype)
        self.dec_w, self.dec_b = arrange(p["decoder.weight"]), p["decoder.bias"]

    def args(self) -> tuple:
        """The arguments of sample_tokens before the state: the cell, then the weights."""
        return (self.cell, self.emb, self.w_ih0, self.w_ih, self.b_ih, self.w_hh_t, self.b_hh,
                self.leak, self.retain, self.dec_w, self.dec_b)


def generate(model: Model, tokenizer: Tokenizer, *, length: int, temp: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, prime: str = "", until_eos: bool = False,
             rng: np.random.Generator | None = None) -> Iterator[str]:
    """Yield the text of each generated token as soon as it is drawn (the prime not included)."""
    for _, piece, _ in generate_samples(model, tokenizer, num=1, length=length, temp=temp,
                                        top_k=top_k, top_p=top_p, prime=prime, until_eos=until_eos,
                                        rng=rng):
        yield piece


def generate_samples(model: Model, tokenizer: Tokenizer, *, num: int, length: int, temp: float = 1.0,
                     top_k: int = 0, top_p: float = 1.0, prime: str = "", until_eos: bool = False,
                     rng: np.random.Generator | None = None) -> Iterator[tuple[int, str, float]]:
    """`num` samples drawn together, one stream each: yields (sample, text of a token, its
    probability in the distribution it was drawn from) in reading order, sample 0 token by
    token as it is drawn, each later one from where the one before it ended (the tokens it drew
    meanwhile at once). The prime is not included; a sample's first input is EOS, then the
    prime.

    The uniform numbers come from rng as (step, sample) in C order: with num = 1, the same
    draws as a single sample."""
    rng = rng or np.random.default_rng()
    w = _SamplerWeights(model, num)
    context = np.concatenate([[tokenizer.eos_id], tokenizer.encode(prime)]).astype(np.int32)
    state = model.zero_state(1)
    if len(context) > 1:  # condition on everything but the last token, which the loop feeds
        _, state, _ = model.forward(context[:-1].reshape(-1, 1), state)
    state = np.ascontiguousarray(np.repeat(state, num, axis=2))
    tokens = np.full(num, context[-1], np.int64)
    active = np.ones(num, np.bool_)
    first = int(context[-1]) if prime else None
    texts = _SampleTexts(tokenizer, num, first)
    remaining = length
    decoder_weights = model.config.vocab_size * model.config.hidden
    blas_threads = contextlib.nullcontext if decoder_weights >= THREADED_DECODER else sequential_blas
    while remaining > 0 and active.any():
        n = min(CHUNK, remaining)
        out = np.empty((n, num), np.int64)
        probs = np.empty((n, num), np.float64)
        with blas_threads():
            steps = sample_tokens(*w.args(), state, tokens, rng.random((n, num)), float(temp), int(top_k),
                                   float(top_p), tokenizer.unk_id, tokenizer.eos_id, until_eos, out,
                                   probs, active)
        yield from texts.add(out[:steps], probs[:steps])
        remaining -= steps
    yield from texts.finish()


class _SampleTexts:
    """Turns the tokens drawn by all streams into text in reading order: the sample being
    read is yielded token by token, the later ones are kept until their turn."""

    def __init__(self, tokenizer: Tokenizer, num: int, first: int | None):
        self.tokenizer = tokenizer
        self.prev = [first] * num
        self.kept: list[list[tuple[str, float]]] = [[] for _ in range(num)]
        self.reading = 0
        self.ended = [False] * num

    def add(self, out: np.ndarray, probs: np.ndarray) -> Iterator[tuple[int, str, float]]:
        """out (steps, num): tokens, -1 where a stream had stopped; probs (steps, num) theirs."""
        for column in range(out.shape[1]):
            for token, prob in zip(out[:, column].tolist(), probs[:, column].tolist()):
                if token < 0:
                    self.ended[column] = True
                    break
                piece = self.tokenizer.decode_token(token, self.prev[column])
                self.prev[column] = token
                if column == self.reading:
                    yield column, piece, prob
                else:
                    self.kept[column].append((piece, prob))
        while self.ended[self.reading] and self.reading + 1 < len(self.kept):
            yield from self._next_sample()

    def finish(self) -> Iterator[tuple[int, str, float]]:
        while self.reading + 1 < len(self.kept):
            yield from self._next_sample()

    def _next_sample(self) -> Iterator[tuple[int, str, float]]:
        self.reading += 1
        yield self.reading, "", 1.0  # the sample starts, even if it drew nothing
        for piece, prob in self.kept[self.reading]:
            yield self.reading, piece, prob
        self.kept[self.reading] = []
