"""Scoring: log-probabilities and perplexity of text, per line or as one document.

A line is scored from a zero state with EOS as its first input (every training line follows
an EOS), so every token of the line is predicted, and so is the EOS that ends it (KenLM's
`</s>`). Log-probabilities are natural logs. Unseen tokens are UNK: scored and counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .evaluate import exp_or_inf
from .model import Model
from .quick import QUICK_MAX_TOKENS, quick_logprobs
from .tokenizer import Tokenizer, normalize

DOCUMENT_CHUNK = 1024  # tokens per forward call when scoring a document as one stream


@dataclass(frozen=True)
class Score:
    text: str
    logprob: float  # natural log, summed over the tokens including the final EOS
    tokens: int
    unk: int
    unk_logprob: float  # the part of logprob spent on UNK targets
    chars: int  # characters scored, a newline per EOS included

    @property
    def ppl(self) -> float:
        return exp_or_inf(-self.logprob / self.tokens) if self.tokens else float("nan")

    def as_dict(self) -> dict:
        return {"text": self.text, "logprob": self.logprob, "tokens": self.tokens,
                "unk": self.unk, "ppl": self.ppl}


def _score_ids(model: Model, ids: np.ndarray, state):
    """Log-probabilities of ids[1:] given ids[:-1], in chunks: (logp (n,), state)."""
    if len(ids) - 1 <= QUICK_MAX_TOKENS:  # short: numpy alone, no Numba start-up
        logp, state = quick_logprobs(model, ids[:-1, None], ids[1:, None], state)
        return logp[:, 0], state
    parts = []
    for start in range(0, len(ids) - 1, DOCUMENT_CHUNK):
        window = ids[start : start + DOCUMENT_CHUNK + 1]
        logp, state = model.target_logprobs(window[:-1, None], window[1:, None], state)
        parts.append(logp[:, 0])
    return (np.concatenate(parts) if parts else np.zeros(0)), state


def score_text(model: Model, tokenizer: Tokenizer, text: str, *, as_line: bool = True) -> Score:
    """Score one line (as_line) or a whole document carried as one stream."""
    eos = tokenizer.eos_id
    body = tokenizer.encode_line(text) if as_line else tokenizer.encode(text)
    tail = [eos] if as_line or not text.endswith(("\n", "\r")) else []
    ids = np.concatenate([[eos], body, tail]).astype(np.int32)
    logp, _ = _score_ids(model, ids, model.zero_state(1))
    is_unk = ids[1:] == tokenizer.unk_id
    chars = _chars(tokenizer, text, ids, as_line)
    return Score(text, float(logp.sum()), len(logp), int(is_unk.sum()), float(logp[is_unk].sum()), chars)


def _chars(tokenizer: Tokenizer, text: str, ids: np.ndarray, as_line: bool) -> int:
    """Characters scored (for bits per character): each token's text, a line break per EOS,
    and at word level one space between two words of a line, each UNK counted as the word
    of the text it stands for (not as the 5 characters of "<unk>")."""
    if tokenizer.level == "char":
        return len(tokenizer.decode(ids[1:]))
    text = normalize(text)
    if as_line and text.endswith("\n"):
        text = text[:-1]  # encode_line drops one line break: the final EOS stands for it
    lines = [" ".join(line.split()) for line in text.split("\n")]
    final_eos = as_line or not text.endswith("\n")  # the EOS that score_text adds
    return len("\n".join(lines)) + int(final_eos)


def score_lines(model: Model, tokenizer: Tokenizer, lines: Iterable[str]) -> Iterator[Score]:
    """Score each line as soon as it arrives (constant memory on an endless stream)."""
    for line in lines:
        yield score_text(model, tokenizer, line.rstrip("\r\n"))


@dataclass
class Totals:
    """Corpus-level figures over many scores, for the summary on stderr."""

    lines: int = 0
    tokens: int = 0
    logprob: float = 0.0
    unk: int = 0
    unk_logprob: float = 0.0
    chars: int = 0

    def add(self, s: Score) -> None:
        self.lines += 1
        self.tokens += s.tokens
        self.logprob += s.logprob
        self.unk += s.unk
        self.unk_logprob += s.unk_logprob
        self.chars += s.chars

    @property
    def ppl(self) -> float:
        return exp_or_inf(-self.logprob / self.tokens) if self.tokens else float("nan")

    @property
    def ppl_without_unk(self) -> float:
        n = self.tokens - self.unk
        return exp_or_inf(-(self.logprob - self.unk_logprob) / n) if n else float("nan")

    @property
    def bits_per_char(self) -> float:
        return -self.logprob / math.log(2.0) / self.chars if self.chars else float("nan")
