"""Fine-tuning (--init-from): the vocabulary grows after the parent's ids, old tokens keep their
weights, the parent file is untouched, the card records the lineage."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from charlm.io.checkpoint import load_model
from charlm.cli.app import app
from charlm.config import ModelConfig, TokenizerConfig
from charlm.train.finetune import grown_model, grown_tokenizer
from charlm.nn.model import Model
from charlm.data.tokenizer import Tokenizer, TokenCounts, normalize

from conftest import TINY, make_corpus
from vocabulary import build_tokenizer

OLD = make_corpus(6000, seed=1)
NEW = make_corpus(6000, seed=2).replace("q", "ø") + "Ωmega ζeta Ωmega\n"


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def counts(text: str, level: str) -> TokenCounts:
    c = TokenCounts(level)
    c.update(normalize(text))
    return c


def old_logits(model: Model, ids: np.ndarray) -> np.ndarray:
    top, _, _ = model.forward(ids.reshape(-1, 1), model.zero_state(1))
    return model.logits(top)


@pytest.mark.parametrize("embed,tie,cell", [(6, False, "lstm"), (0, False, "gru"), (12, True, "rnn")])
def test_grown_model_keeps_old_ids_and_gives_old_tokens_the_parent_logits(embed, tie, cell):
    parent_tok = build_tokenizer(OLD, TokenizerConfig())
    cfg = ModelConfig(cell=cell, vocab_size=parent_tok.vocab_size, embed=embed, hidden=12, layers=2, tie=tie)
    parent = Model.create(cfg, seed=3)
    before = {name: p.copy() for name, p in parent.params.items()}
    tok = grown_tokenizer(parent_tok, counts(NEW, "char"), TokenizerConfig())
    assert tok.tokens[: parent_tok.vocab_size] == parent_tok.tokens
    assert set(tok.tokens[parent_tok.vocab_size:]) == {"ø", "Ω", "ζ"}
    np.testing.assert_array_equal(tok.encode(OLD), parent_tok.encode(OLD))
    grown = grown_model(parent, tok.vocab_size, np.random.default_rng(0))
    V = parent_tok.vocab_size
    ids = parent_tok.encode(OLD[:300])
    np.testing.assert_allclose(old_logits(grown, ids)[:, :V], old_logits(parent, ids), atol=1e-6, rtol=0)
    assert grown.config.vocab_size == V + 3 and grown.params["decoder.bias"].shape == (V + 3,)
    for name, p in parent.params.items():  # the parent itself is unchanged
        np.testing.assert_array_equal(p, before[name])
    if tie:
        assert grown.params["decoder.weight"] is grown.params["embedding.weight"]
    assert tok.encode("øΩζ").tolist() == [V, V + 1, V + 2]  # new characters by code point


def test_new_token_weights_are_drawn_as_at_creation():
    parent_tok = Tokenizer("char", ["<unk>", "<eos>", "a"])
    many = "".join(chr(0x4E00 + i) for i in range(800))  # 800 new characters
    tok = grown_tokenizer(parent_tok, counts(many, "char"), TokenizerConfig())
    H = 16
    bound = 1 / np.sqrt(H)
    for embed, tie in ((8, False), (0, False), (16, True)):
        cfg = ModelConfig(cell="gru", vocab_size=3, embed=embed, hidden=H, layers=1, tie=tie)
        new = grown_model(Model.create(cfg, seed=0), tok.vocab_size, np.random.default_rng(1)).params
        assert (new["decoder.bias"][3:] == 0).all()
        if embed == 0:  # one-hot: W_ih's columns are the input weights, uniform(-bound, bound)
            cols = new["rnn.weight_ih_l0"][:, 3:]
            assert cols.shape == (3 * H, 800) and np.abs(cols).max() <= bound
            assert np.abs(cols).max() > 0.9 * bound
        elif tie:  # tied: uniform(-0.1, 0.1)
            rows = new["embedding.weight"][3:]
            assert np.abs(rows).max() <= 0.1 and np.abs(rows).max() > 0.09
        else:  # embedding N(0, 1), decoder uniform(-bound, bound)
            assert 0.93 < new["embedding.weight"][3:].std() < 1.07
            dec = new["decoder.weight"][3:]
            assert np.abs(dec).max() <= bound and np.abs(dec).max() > 0.9 * bound


def test_word_level_growth_takes_the_new_words_by_frequency_up_to_max_vocab():
    parent = Tokenizer("word", ["<unk>", "<eos>", "the", "cat"])
    text = "dog dog dog the cat emu emu bee\nyak <unk> dog emu"
    cfg = TokenizerConfig(level="word", max_vocab=6)
    tok = grown_tokenizer(parent, counts(text, "word"), cfg)
    assert tok.tokens == ["<unk>", "<eos>", "the", "cat", "dog", "emu"]  # 2 slots: the most frequent
    roomy = grown_tokenizer(parent, counts(text, "word"), TokenizerConfig(level="word", max_vocab=100, min_count=2))
    assert roomy.tokens == ["<unk>", "<eos>", "the", "cat", "dog", "emu"]  # bee, yak seen once
    full = grown_tokenizer(parent, counts(text, "word"), TokenizerConfig(level="word", max_vocab=3))
    assert full.tokens == parent.tokens  # old words are never dropped


def test_min_count_applies_to_new_characters():
    parent = build_tokenizer("abc", TokenizerConfig())
    tok = grown_tokenizer(parent, counts("abcxxxy", "char"), TokenizerConfig(min_count=2))
    assert tok.tokens == parent.tokens + ["x"]


def score_lines(model: str, text: str) -> list[float]:
    out = CliRunner().invoke(app, ["score", "-m", model, "--json"], input=text)
    assert out.exit_code == 0, out.output
    return [json.loads(line)["logprob"] for line in out.stdout.splitlines()]


def test_fine_tune_through_the_cli_keeps_the_parent_and_records_the_lineage(tmp_path):
    (tmp_path / "old.txt").write_text(OLD)
    (tmp_path / "new.txt").write_text(NEW)
    old, new = tmp_path / "old.safetensors", tmp_path / "new.safetensors"
    run("train", tmp_path / "old.txt", "-o", old, *TINY, "--steps", "6")
    old_bytes = old.read_bytes()
    probe = OLD[:400]
    before = score_lines(str(old), probe)
    result = run("train", tmp_path / "new.txt", "--init-from", old, "-o", new, "--steps", "4",
                 "--batch", "4", "--seq-len", "16", "--hidden", "99")
    assert "3 new tokens get ids" in result.stderr and "ignored: --hidden" in result.stderr
    assert old.read_bytes() == old_bytes
    np.testing.assert_allclose(score_lines(str(old), probe), before, atol=1e-6, rtol=0)
    parent_model, parent_tok, _ = load_model(old)
    model, tok, header = load_model(new)
    assert model.config.hidden == parent_model.config.hidden == 16  # the parent's architecture
    assert tok.tokens[: parent_tok.vocab_size] == parent_tok.tokens
    assert tok.vocab_size == parent_tok.vocab_size + 3
    assert not np.array_equal(model.params["rnn.weight_hh_l0"], parent_model.params["rnn.weight_hh_l0"])
    card = json.loads(run("info", new, "--json").stdout)
    assert card["fine_tuned_from"] == {"file": "old.safetensors", "corpus": "old.txt",
                                       "sha256": hashlib.sha256(old_bytes).hexdigest()}
    assert card["corpora"] == ["old.txt", "new.txt"] and card["corpus"] == "new.txt"
    assert card["training_steps"] == 4  # a run of its own: steps and optimizer start afresh
    table = run("info", new).stdout
    assert "fine-tuned from" in table and "old.safetensors" in table


def test_fine_tuning_a_tied_word_model_stays_tied_and_chains_the_lineage(tmp_path):
    (tmp_path / "a.txt").write_text(OLD)
    (tmp_path / "b.txt").write_text(NEW)
    a, b, c = (tmp_path / f"{n}.safetensors" for n in "abc")
    tied = ["--level", "word", "--hidden", "12", "--embed", "12", "--tie", "--layers", "1",
            "--batch", "4", "--seq-len", "8", "--steps", "3"]
    run("train", tmp_path / "a.txt", "-o", a, *tied)
    run("train", tmp_path / "b.txt", "--init-from", a, "-o", b, "--steps", "3", "--batch", "4", "--seq-len", "8")
    model, tok, header = load_model(b)
    assert tok.level == "word" and model.config.tie
    assert model.params["decoder.weight"] is model.params["embedding.weight"]
    assert {"Ωmega", "ζeta"} <= set(tok.tokens)
    run("train", tmp_path / "a.txt", "--init-from", b, "-o", c, "--steps", "2", "--batch", "4", "--seq-len", "8")
    card = json.loads(run("info", c, "--json").stdout)
    assert card["corpora"] == ["a.txt", "b.txt", "a.txt"]
    assert card["fine_tuned_from"]["file"] == "b.safetensors"
    assert card["fine_tuned_from"]["parent"]["file"] == "a.safetensors"


def test_fine_tuning_at_another_level_is_a_user_error(tmp_path, tiny_model):
    (tmp_path / "new.txt").write_text(NEW)
    result = CliRunner().invoke(app, ["train", str(tmp_path / "new.txt"), "--init-from", str(tiny_model),
                                      "--level", "word", "-o", str(tmp_path / "x.safetensors")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "omit --level" in result.stderr


def test_a_resumed_fine_tuning_run_keeps_its_lineage(tmp_path):
    (tmp_path / "old.txt").write_text(OLD)
    (tmp_path / "new.txt").write_text(NEW)
    old, new = tmp_path / "old.safetensors", tmp_path / "new.safetensors"
    run("train", tmp_path / "old.txt", "-o", old, *TINY, "--steps", "3")
    small = ["--batch", "4", "--seq-len", "16"]
    run("train", tmp_path / "new.txt", "--init-from", old, "-o", new, "--steps", "2", *small)
    run("train", tmp_path / "new.txt", "-o", new, "--resume", "--steps", "4")
    card = json.loads(run("info", new, "--json").stdout)
    assert card["training_steps"] == 4
    assert card["fine_tuned_from"]["file"] == "old.safetensors"
    assert card["corpora"] == ["old.txt", "new.txt"]
