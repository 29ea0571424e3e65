"""Scoring: log-probabilities and perplexity of text, per line or as one document.

A line is scored from a zero state with EOS as its first input (every training line follows
an EOS), so every token of the line is predicted, and so is the EOS that ends it (KenLM's
`</s>`). Log-probabilities are natural logs. Unseen tokens are UNK: scored and counted.

Many lines are scored together: the lines at hand (up to LINE_WINDOW, without waiting for
more input than is ready) are sorted by length and cut into batches of similar lengths, each
line one stream of a batch, padded at its end (a stream's padding never reaches the positions
before it). Results come out in input order.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from charlm.metrics import perplexity
from charlm.nn.model import Model
from charlm.nn.quick import QUICK_MAX_TOKENS, quick_logprobs
from charlm.data.tokenizer import Tokenizer, normalize

DOCUMENT_CHUNK = 1024  # tokens per forward call when scoring a document as one stream
LINE_WINDOW = 1024  # lines read ahead and sorted by length before scoring
BATCH_TOKENS = 16384  # padded tokens (streams x steps) per batch of lines
BATCH_STREAMS = 64  # lines per batch at most: fewer lines of closer lengths pad less


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
        return perplexity(-self.logprob / self.tokens) if self.tokens else float("nan")

    def as_dict(self) -> dict:
        return {"text": self.text, "logprob": self.logprob, "tokens": self.tokens,
                "unk": self.unk, "ppl": self.ppl}


def _score_ids(model: Model, ids: np.ndarray, state):
    """Log-probabilities of ids[1:] given ids[:-1], in chunks: (logp (n,), state)."""
    logp, state = _score_streams(model, ids[:, None], state)
    return logp[:, 0], state


def _score_streams(model: Model, ids: np.ndarray, state, valid=None):
    """Log-probabilities of ids[1:] given ids[:-1] for ids (T+1, B), B streams side by side,
    in chunks of DOCUMENT_CHUNK steps: (logp (T, B), state). valid (T, B) bool, optional: the
    targets wanted; the others may be skipped (logp 0). Short work runs in numpy alone, without
    Numba's start-up (which scores every position)."""
    steps = ids.shape[0] - 1
    if steps * ids.shape[1] <= QUICK_MAX_TOKENS:
        return quick_logprobs(model, ids[:-1], ids[1:], state)
    parts = []
    for start in range(0, steps, DOCUMENT_CHUNK):
        window = ids[start : start + DOCUMENT_CHUNK + 1]
        wanted = None if valid is None else valid[start : start + DOCUMENT_CHUNK]
        logp, state = model.target_logprobs(window[:-1], window[1:], state, wanted)
        parts.append(logp)
    return np.concatenate(parts), state


def sequence_ids(tokenizer: Tokenizer, text: str, *, as_line: bool = True) -> np.ndarray:
    """(n + 1,) int32: EOS, then the tokens of one line (as_line) or of a whole document, then
    a closing EOS (a document ending in a line break already has it). Reading ids[t] predicts
    ids[t + 1]: the n targets are ids[1:]."""
    eos = tokenizer.eos_id
    body = tokenizer.encode_line(text) if as_line else tokenizer.encode(text)
    tail = [eos] if as_line or not text.endswith(("\n", "\r")) else []
    return np.concatenate([[eos], body, tail]).astype(np.int32)


def score_text(model: Model, tokenizer: Tokenizer, text: str, *, as_line: bool = True) -> Score:
    """Score one line (as_line) or a whole document carried as one stream."""
    ids = sequence_ids(tokenizer, text, as_line=as_line)
    logp, _ = _score_ids(model, ids, model.zero_state(1))
    return score_of(tokenizer, text, ids, logp, as_line=as_line)


def score_of(tokenizer: Tokenizer, text: str, ids: np.ndarray, logp: np.ndarray, *,
             as_line: bool = True) -> Score:
    """The Score of a line (as_line) or a document from sequence_ids and the log-probabilities
    (n,) of its targets."""
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
    """Score each line (trailing line break dropped), in input order. Lines are scored in
    batches of the lines at hand: a line is scored as soon as no more input is ready, and
    memory stays bounded on an endless stream."""
    for group in _ready_groups(lines, LINE_WINDOW):
        texts = [line.rstrip("\r\n") for line in group]
        yield from score_batch(model, tokenizer, texts)


def score_lines_across(ranks, model: Model, tokenizer: Tokenizer, lines: Iterable[str] | None) -> Iterator[Score]:
    """score_lines with the lines shared out between MPI ranks (charlm.train.distributed): the root
    reads `lines` in groups, gives each rank a contiguous share of a group, gathers the scores
    and yields them in input order; the other ranks (lines None) score what they are given
    and yield nothing."""
    groups = _ready_groups(lines, LINE_WINDOW * ranks.size) if ranks.is_root else None
    while True:
        group = next(groups, None) if ranks.is_root else None
        shares = None
        if ranks.is_root:
            shares = [None] * ranks.size if group is None else [
                group[len(group) * r // ranks.size: len(group) * (r + 1) // ranks.size] for r in range(ranks.size)]
        share = ranks.scatter(shares)
        if share is None:
            return
        scores = ranks.gather(score_batch(model, tokenizer, [line.rstrip("\r\n") for line in share]))
        if ranks.is_root:
            for part in scores:
                yield from part


def score_batch(model: Model, tokenizer: Tokenizer, texts: list[str]) -> list[Score]:
    """Scores of lines, in their order, computed as streams of batches of similar lengths."""
    ids = [sequence_ids(tokenizer, t) for t in texts]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    scores: list[Score | None] = [None] * len(ids)
    for batch in _length_batches(order, [len(a) for a in ids]):
        longest = len(ids[batch[-1]])
        padded = np.full((longest, len(batch)), tokenizer.eos_id, np.int32)
        for column, i in enumerate(batch):
            padded[: len(ids[i]), column] = ids[i]
        targets = np.array([len(ids[i]) - 1 for i in batch])
        valid = np.arange(longest - 1)[:, None] < targets[None, :]  # (T, B): not padding
        logp, _ = _score_streams(model, padded, model.zero_state(len(batch)), valid)
        for column, i in enumerate(batch):
            scores[i] = score_of(tokenizer, texts[i], ids[i], logp[: len(ids[i]) - 1, column])
    return scores


def _length_batches(order: list[int], lengths: list[int]) -> Iterator[list[int]]:
    """Cut indices sorted by length into batches of at most BATCH_STREAMS lines and about
    BATCH_TOKENS padded tokens (one line alone may be longer)."""
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) >= BATCH_STREAMS or lengths[i] * (len(batch) + 1) > BATCH_TOKENS):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _ready_groups(lines: Iterable[str], window: int) -> Iterator[list[str]]:
    """Lists of lines in input order: a list or tuple in groups of `window`; any other iterable
    (stdin) is read by a thread, and each group is the first line not yet taken plus every line
    already read, `window` at most: a line typed at a terminal is answered at once."""
    if isinstance(lines, (list, tuple)):
        for start in range(0, len(lines), window):
            yield list(lines[start : start + window])
        return
    ready: queue.Queue = queue.Queue(maxsize=4 * window)
    end = object()

    def read() -> None:
        try:
            for line in lines:
                ready.put(line)
        except BaseException as exc:  # handed to the consumer, raised there
            ready.put(_ReadError(exc))
        ready.put(end)

    threading.Thread(target=read, daemon=True, name="charlm-read").start()
    while True:
        item = ready.get()
        group: list[str] = []
        while item is not end:
            if isinstance(item, _ReadError):
                if group:
                    yield group
                raise item.exc
            group.append(item)
            if len(group) >= window:
                break
            try:
                item = ready.get_nowait()
            except queue.Empty:
                break
        if group:
            yield group
        if item is end:
            return


@dataclass(frozen=True)
class _ReadError:
    exc: BaseException


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
        return perplexity(-self.logprob / self.tokens) if self.tokens else float("nan")

    @property
    def ppl_without_unk(self) -> float:
        n = self.tokens - self.unk
        return perplexity(-(self.logprob - self.unk_logprob) / n) if n else float("nan")

    @property
    def bits_per_char(self) -> float:
        return -self.logprob / math.log(2.0) / self.chars if self.chars else float("nan")
