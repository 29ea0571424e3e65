"""Lines scored together as streams of a batch give each line's own score, in input order."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest

import charlm.score as score
from charlm.config import CELLS, ModelConfig
from charlm.nn.model import Model
from charlm.score import score_batch, score_lines, score_text
from charlm.data.tokenizer import Tokenizer


def _model(cell: str) -> tuple[Model, Tokenizer]:
    tokenizer = Tokenizer("char", ["<unk>", "<eos>"] + list("abcdefgh .,"))
    cfg = ModelConfig(cell=cell, vocab_size=tokenizer.vocab_size, embed=6, hidden=12, layers=2, dropout=0.0)
    return Model.create(cfg, seed=3), tokenizer


def _lines(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    alphabet = list("abcdefgh .,xyz")  # x, y, z are UNK
    lengths = rng.choice([0, 1, 3, 10, 40, 300], size=n)
    return ["".join(rng.choice(alphabet, size=k)) for k in lengths]


@pytest.mark.parametrize("cell", CELLS)
def test_batched_lines_equal_lines_scored_one_by_one(monkeypatch, cell):
    model, tokenizer = _model(cell)
    lines = _lines(40)
    alone = [score_text(model, tokenizer, t) for t in lines]
    monkeypatch.setattr(score, "BATCH_TOKENS", 2000)  # several batches, long lines alone
    together = list(score_lines(model, tokenizer, lines))
    assert [s.text for s in together] == lines
    for a, b in zip(alone, together):
        assert (a.tokens, a.unk, a.chars) == (b.tokens, b.unk, b.chars)
        assert b.logprob == pytest.approx(a.logprob, rel=1e-5, abs=1e-5)
        assert b.unk_logprob == pytest.approx(a.unk_logprob, rel=1e-5, abs=1e-5)


def test_batches_hold_similar_lengths_within_their_budget(monkeypatch):
    monkeypatch.setattr(score, "BATCH_TOKENS", 100)
    monkeypatch.setattr(score, "BATCH_STREAMS", 4)
    lengths = [50, 3, 3, 3, 3, 3, 40, 200, 3]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches = list(score._length_batches(order, lengths))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 4
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 100


def test_a_ready_line_is_scored_before_more_input_arrives():
    """Lines from a stream that has not ended yet come out as soon as they are read."""
    model, tokenizer = _model("gru")
    more = threading.Event()

    def typed():
        yield "abc\n"
        more.wait(timeout=30)  # the second line is typed only after the first was answered
        yield "def\n"

    results = score_lines(model, tokenizer, typed())
    first = next(results)
    assert first.text == "abc"
    more.set()
    assert [s.text for s in results] == ["def"]


def test_an_error_while_reading_comes_out_after_the_lines_before_it():
    model, tokenizer = _model("lstm")

    def broken():
        yield "abc\n"
        raise OSError("read failed")

    results = score_lines(model, tokenizer, broken())
    assert next(results).text == "abc"
    with pytest.raises(OSError, match="read failed"):
        next(results)


def test_an_empty_batch_and_empty_lines():
    model, tokenizer = _model("rnn")
    assert score_batch(model, tokenizer, []) == []
    (s,) = score_batch(model, tokenizer, [""])
    assert s.tokens == 1 and s.logprob == pytest.approx(score_text(model, tokenizer, "").logprob, rel=1e-5)
    assert list(score_lines(model, tokenizer, io.StringIO(""))) == []
