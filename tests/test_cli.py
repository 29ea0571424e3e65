"""The command line, end to end, through Typer's CliRunner (and a few real subprocesses for
pipes and signals). Tiny models only: every command here runs in well under a second."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from charlm.cli.app import app
from charlm.cli.common import parse_duration
from charlm.errors import OptionError
from charlm.io.tensorfile import load_tensors, save_tensors

from conftest import TINY
from leftovers import temp_files

UNK_TEXT = "\ufffd"  # what a char-level UNK would print as


def run(args, input=None, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input, env=env)


def assert_ok(result):
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


def assert_user_error(result, code: int, *words: str):
    """One line on stderr naming the problem, the given exit status, no traceback, no stdout."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])


def model_tensors(path) -> dict[str, np.ndarray]:
    return load_tensors(str(path))[0]


def card(path) -> dict:
    result = run(["info", path, "--json"])
    assert_ok(result)
    return json.loads(result.stdout)


@pytest.fixture
def model(cwd, tiny_model):
    """The shared tiny model copied to ./charlm.safetensors (the default path)."""
    dest = cwd / "charlm.safetensors"
    shutil.copy(tiny_model, dest)
    return dest


# ---- train ----------------------------------------------------------------------------------
def test_train_writes_model_state_and_metrics_at_default_paths(corpus):
    result = run(["train", "corpus.txt", *TINY, "--steps", "20", "--valid-every", "10"])
    assert_ok(result)
    assert result.stdout == ""  # everything for people goes to stderr
    assert "model saved to charlm.safetensors" in result.stderr
    for name in ("charlm.safetensors", "charlm.state.safetensors", "charlm.metrics.jsonl"):
        assert (corpus.parent / name).exists(), name
    rows = [json.loads(line) for line in (corpus.parent / "charlm.metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["event"] == "step"]
    valids = [r for r in rows if r["event"] == "validated"]
    assert [r["step"] for r in steps] == [10, 20]  # one line per log interval (10 steps)
    assert [r["step"] for r in valids] == [10, 20]
    assert all(math.isfinite(r["loss"]) for r in rows)
    # tokens read so far: steps x batch (4) x seq-len (16), for plots against tokens
    assert [r["tokens"] for r in steps] == [10 * 4 * 16, 20 * 4 * 16]
    assert [r["tokens"] for r in valids] == [10 * 4 * 16, 20 * 4 * 16]
    c = card("charlm.safetensors")
    assert (c["cell"], c["hidden"], c["embed"], c["layers"]) == ("lstm", 16, 8, 1)
    assert c["training_steps"] in (10, 20)  # the best by validation loss
    assert c["corpus"] == "corpus.txt"


def test_train_output_option_puts_sidecars_beside_it(corpus):
    (corpus.parent / "out").mkdir()
    result = run(["train", "corpus.txt", *TINY, "--steps", "3", "-o", "out/m.safetensors"])
    assert_ok(result)
    assert sorted(os.listdir(corpus.parent / "out")) == [
        "m.metrics.jsonl", "m.safetensors", "m.state.safetensors"]
    assert not (corpus.parent / "charlm.safetensors").exists()


def test_train_from_stdin(cwd, corpus_text):
    result = run(["train", "-", *TINY, "--steps", "3"], input=corpus_text.encode())
    assert_ok(result)
    assert (cwd / "charlm.safetensors").exists()
    assert card("charlm.safetensors")["corpus"] == "-"


def test_same_seed_same_model(corpus):
    for out in ("a.safetensors", "b.safetensors", "c.safetensors"):
        seed = "5" if out != "c.safetensors" else "6"
        assert_ok(run(["train", "corpus.txt", *TINY, "--steps", "4", "--seed", seed, "-o", out]))
    a, b, c = (model_tensors(corpus.parent / f) for f in ("a.safetensors", "b.safetensors", "c.safetensors"))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_train_other_cells_and_one_hot(corpus, cell):
    result = run(["train", "corpus.txt", *TINY, "--embed", "0", "--cell", cell, "--steps", "3"])
    assert_ok(result)
    c = card("charlm.safetensors")
    assert (c["cell"], c["embed"]) == (cell, "one-hot")


@pytest.mark.parametrize("cell_options,settings", [
    (["--cell", "leaky"], {"leak": 0.5}),
    (["--cell", "leaky", "--leak", "0.2"], {"leak": 0.2}),
    (["--cell", "leaky", "--leak", "learn"], {"leak": "learned"}),
    (["--cell", "esn"], {"leak": 1.0, "spectral_radius": 0.9}),
    (["--cell", "esn", "--leak", "0.4", "--spectral-radius", "1.1", "--embed", "0"],
     {"leak": 0.4, "spectral_radius": 1.1}),
    (["--cell", "esn", "--learn-embedding"], {"leak": 1.0, "learned_embedding": True}),
])
def test_leaky_and_echo_state_cells_train_sample_score_and_show_in_info(corpus, cell_options, settings):
    assert_ok(run(["train", "corpus.txt", *TINY, *cell_options, "--steps", "6", "--seed", "2"]))
    c = card("charlm.safetensors")
    assert c["cell"] == cell_options[1]
    assert {k: c[k] for k in settings} == settings
    if settings["leak"] == "learned":
        assert 0 < c["leak_min"] <= c["leak_mean"] <= c["leak_max"] < 1
        assert c["leak_min"] < c["leak_max"]  # the rates moved apart in training
    if c["cell"] == "esn":  # only the decoder is trained: 16 units x vocabulary, and a bias
        vocab = c["vocabulary"]
        embedding = vocab * 8 if c["learned_embedding"] else 0  # TINY: --embed 8
        assert c["parameters"] == vocab * 16 + vocab + embedding and c["frozen_parameters"] > 16 * 16
    # the stored config holds the rates written out, not the cell's defaults as None
    header = json.loads(load_tensors("charlm.safetensors")[1]["charlm"])["model"]
    assert header["leak"] is not None and (header["spectral_radius"] is not None) == (c["cell"] == "esn")
    sample = run(["sample", "--length", "30", "--seed", "1"])
    assert_ok(sample)
    assert len(sample.stdout) >= 30 - 1
    scored = run(["score", "--json", "-q", "the quick brown fox"])
    assert_ok(scored)
    assert 1 < json.loads(scored.stdout)["ppl"] < 1000


def test_train_help_names_the_new_cells_and_what_charlm_leaves_out():
    result = run(["train", "--help"], env={"COLUMNS": "2000"})  # no wrapped lines
    assert_ok(result)
    text = " ".join(result.stdout.split())
    for words in ("leaky", "esn", "--leak", "--spectral-radius", "bidirectional",
                  "sequence-to-sequence"):
        assert words in text, words


def test_train_word_level(corpus):
    result = run(["train", "corpus.txt", *TINY, "--level", "word", "--steps", "3"])
    assert_ok(result)
    assert card("charlm.safetensors")["level"] == "word"
    sample = run(["sample", "--length", "12", "--seed", "0"])
    assert_ok(sample)
    assert "<unk>" not in sample.stdout


def test_train_stops_at_epochs(cwd, corpus_text):
    (cwd / "small.txt").write_text(corpus_text[:1500])
    result = run(["train", "small.txt", *TINY, "--epochs", "1"])
    assert_ok(result)
    assert "reached --epochs 1" in result.stderr
    state = json.loads(load_tensors("charlm.state.safetensors")[1]["charlm"])["train_state"]
    assert state["stream"]["epoch"] == 1 and state["stream"]["position"] == 0


def test_train_stops_at_time(corpus):
    t0 = time.perf_counter()
    result = run(["train", "corpus.txt", *TINY, "--time", "0.3s"])
    assert_ok(result)
    assert "reached --time 0.3s" in result.stderr
    assert time.perf_counter() - t0 < 30


def test_small_corpus_shrinks_the_batch_with_a_note(cwd):
    (cwd / "tiny.txt").write_text("hello world, hello there\nsmall text here\n" * 3)
    result = run(["train", "tiny.txt", "--hidden", "16", "--embed", "8", "--layers", "1", "--steps", "2"])
    assert_ok(result)
    assert "note:" in result.stderr and "--batch" in result.stderr
    assert (cwd / "charlm.safetensors").exists()


def test_three_token_corpus_still_trains(cwd):
    """Three words, twelve characters: far less than one batch window. The model it writes
    knows exactly those characters and can sample and score."""
    text = "hello world\n"
    (cwd / "t.txt").write_text(text)
    result = run(["train", "t.txt", *TINY, "--steps", "2", "--valid-frac", "0.5"])
    assert_ok(result)
    c = card("charlm.safetensors")
    assert (c["level"], c["vocabulary"]) == ("char", len(set(text)) + 1)  # the characters, EOS for "\n", UNK
    sample = run(["sample", "--length", "40", "--seed", "1"])
    assert_ok(sample)
    assert len(sample.stdout) >= 40 and set(sample.stdout) <= set(text)
    score = run(["score", "hello world"])
    assert_ok(score)
    logprob, tokens, unk, ppl = score.stdout.strip().split("\t")
    assert (int(tokens), int(unk)) == (len(text), 0)  # the final EOS predicted too
    assert float(logprob) < 0 and 1 < float(ppl) < c["vocabulary"] * 2


def test_training_to_early_stop_without_limits_is_bounded(cwd, corpus_text):
    """No --steps/--epochs/--time: with a learning rate too small to improve anything, the run
    ends after the first validation and EARLY_STOP_DECAYS plateaus of --patience validations."""
    from charlm.train.trainer import EARLY_STOP_DECAYS

    patience = 2
    (cwd / "small.txt").write_text(corpus_text[:1500])
    result = run(["train", "small.txt", *TINY, "--lr", "1e-9", "--patience", patience, "--valid-every", "1"])
    assert_ok(result)
    assert "early stopping" in result.stderr
    assert result.stderr.count("validation plateau") == EARLY_STOP_DECAYS
    rows = [json.loads(line) for line in (cwd / "charlm.metrics.jsonl").read_text().splitlines()]
    validated = [row["step"] for row in rows if row["event"] == "validated"]
    assert validated == list(range(1, 2 + EARLY_STOP_DECAYS * patience))


# ---- train: user errors ---------------------------------------------------------------------
CORPUS_ERRORS = {
    "missing": (None, "no such file"),
    "directory": ("DIR", "directory"),
    "empty": (b"", "empty"),
    "whitespace": (b"  \n\t\n \n", "whitespace"),
    "invalid-utf8": (b"caf\xe9 au lait\n" * 50, "utf-8"),
    "binary": (b"ab\x00cd\n" * 50, "binary"),
    "utf16": ("hello world\n".encode("utf-16"), "binary"),
}


@pytest.mark.parametrize("case", sorted(CORPUS_ERRORS))
def test_bad_corpus_is_one_line_error_and_writes_no_model(cwd, case):
    data, words = CORPUS_ERRORS[case]
    path = cwd / "in.txt"
    if data == "DIR":
        path.mkdir()
    elif data is not None:
        path.write_bytes(data)
    result = run(["train", "in.txt", *TINY, "--steps", "2"])
    assert_user_error(result, 1, words)
    assert not (cwd / "charlm.safetensors").exists()
    assert not (cwd / "charlm.state.safetensors").exists()


def test_bad_stdin_corpus(cwd):
    result = run(["train", "-", *TINY, "--steps", "2"], input=b"")
    assert_user_error(result, 1, "standard input", "empty")
    assert not (cwd / "charlm.safetensors").exists()


def test_corpus_too_small_says_what_is_needed(cwd):
    (cwd / "t.txt").write_text("hi\n")
    result = run(["train", "t.txt", *TINY, "--steps", "2"])
    assert_user_error(result, 1)
    assert "--valid" in result.stderr or "at least" in result.stderr
    assert not (cwd / "charlm.safetensors").exists()


BAD_TRAIN_OPTIONS = [
    (["--hidden", "0"], "--hidden"),
    (["--layers", "0"], "--layers"),
    (["--seq-len", "0"], "--seq-len"),
    (["--batch", "0"], "--batch"),
    (["--valid-frac", "1"], "--valid-frac"),
    (["--valid-frac", "-0.1"], "--valid-frac"),
    (["--cell", "transformer"], "--cell"),
    (["--level", "byte"], "--level"),
    (["--optimizer", "rmsprop"], "--optimizer"),
    (["--clip-mode", "max"], "--clip-mode"),
    (["--time", "abc"], "--time"),
    (["--time", "0"], "--time"),
    (["--steps", "0"], "--steps"),
    (["--epochs", "0"], "--epochs"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "-1"], "--lr"),
    (["--dropout", "1"], "--dropout"),
    (["--tie"], "--tie"),
    (["--encoding-errors", "loose"], "--encoding-errors"),
    (["--max-vocab", "2", "--level", "word"], "--max-vocab"),
    (["--min-count", "0"], "--min-count"),
    (["--decay", "0"], "--decay"),
    (["--decay", "1.5"], "--decay"),
    (["--warmup", "0.5", "--decay", "0.6"], "--warmup and --decay"),
    (["--beta2", "1"], "--beta2"),
    (["--beta2", "0"], "--beta2"),
    (["--weight-decay", "-0.1"], "--weight-decay"),
    (["--weight-decay", "nan"], "--weight-decay"),
    (["--weight-decay", "inf"], "--weight-decay"),
    (["--optimizer", "adamw", "--lr", "0.01", "--weight-decay", "100"], "below 1 / --lr"),
    (["--leak", "0.5"], "--leak is for --cell leaky or esn"),
    (["--cell", "leaky", "--leak", "0"], "--leak must be in (0, 1]"),
    (["--cell", "leaky", "--leak", "1.5"], "--leak must be in (0, 1]"),
    (["--cell", "esn", "--leak", "nan"], "--leak must be in (0, 1]"),
    (["--cell", "leaky", "--leak", "fast"], "--leak takes a rate"),
    (["--cell", "esn", "--leak", "learn"], "--leak learn is for --cell leaky"),
    (["--cell", "gru", "--spectral-radius", "0.5"], "--spectral-radius is for --cell esn"),
    (["--cell", "esn", "--spectral-radius", "0"], "--spectral-radius must be positive"),
    (["--cell", "esn", "--tie", "--embed", "16"], "--tie cannot be used with --cell esn"),
    (["--learn-embedding"], "--learn-embedding is for --cell esn"),
    (["--cell", "esn", "--embed", "0", "--learn-embedding"], "--learn-embedding is for --cell esn"),
]


@pytest.mark.parametrize("extra,words", BAD_TRAIN_OPTIONS, ids=[" ".join(a) for a, _ in BAD_TRAIN_OPTIONS])
def test_bad_train_option_is_usage_error(corpus, extra, words):
    result = run(["train", "corpus.txt", *TINY, "--steps", "2", *extra])
    assert_user_error(result, 2, words)
    assert not (corpus.parent / "charlm.safetensors").exists()


def weights_and_train_config(corpus, *extra):
    """Train 4 steps at lr 0.01 with `extra` options; the model's tensors and its stored train config."""
    result = run(["train", "corpus.txt", *TINY, "--steps", "4", "--lr", "0.01", *extra])
    assert result.exit_code == 0, result.output
    tensors, meta = load_tensors(str(corpus.parent / "charlm.safetensors"))
    return tensors, json.loads(meta["charlm"])["train"]


def test_beta2_reaches_adam_and_the_model_file(corpus):
    """--beta2 is Adam's betas[1] (tests/test_optim.py checks Adam's betas against PyTorch)."""
    default, default_cfg = weights_and_train_config(corpus, "--beta2", "0.999")
    short_memory, short_cfg = weights_and_train_config(corpus, "--beta2", "0.9")
    b_default, b_short = default_cfg["beta2"], short_cfg["beta2"]
    assert (b_default, b_short) == (0.999, 0.9)
    assert not np.array_equal(default["rnn.weight_hh_l0"], short_memory["rnn.weight_hh_l0"])


def test_weight_decay_reaches_adamw_and_the_model_file(corpus):
    """--optimizer adamw --weight-decay shrinks the weights (tests/test_optim.py checks AdamW
    against PyTorch); the setting is stored with the run."""
    plain, plain_cfg = weights_and_train_config(corpus, "--optimizer", "adamw", "--weight-decay", "0")
    decayed, decayed_cfg = weights_and_train_config(corpus, "--optimizer", "adamw", "--weight-decay", "5")
    assert (plain_cfg["optimizer"], plain_cfg["weight_decay"]) == ("adamw", 0.0)
    assert (decayed_cfg["optimizer"], decayed_cfg["weight_decay"]) == ("adamw", 5.0)
    name = "rnn.weight_hh_l0"
    assert np.abs(decayed[name]).sum() < np.abs(plain[name]).sum()


def test_locked_dropout_reaches_the_model_file_and_info(corpus):
    def weights(*extra):
        result = run(["train", "corpus.txt", *TINY, "--steps", "4", "--dropout", "0.5", *extra])
        assert result.exit_code == 0, result.output
        return model_tensors(corpus.parent / "charlm.safetensors"), result.stderr

    per_step, _ = weights()
    assert card(str(corpus.parent / "charlm.safetensors"))["locked_dropout"] is False
    locked, stderr = weights("--locked-dropout")
    assert card(str(corpus.parent / "charlm.safetensors"))["locked_dropout"] is True
    assert "--locked-dropout has no effect" not in stderr  # the note is for --dropout 0 only
    # the same seed draws other masks, so training takes another path
    assert not np.array_equal(per_step["rnn.weight_hh_l0"], locked["rnn.weight_hh_l0"])


def test_adamw_without_weight_decay_says_it_is_adam(corpus):
    result = run(["train", "corpus.txt", *TINY, "--steps", "1", "--optimizer", "adamw"])
    assert_ok(result)
    assert "note:" in result.stderr and "without --weight-decay is Adam" in result.stderr
    decayed = run(["train", "corpus.txt", *TINY, "--steps", "1", "--optimizer", "adamw", "--weight-decay", "0.1"])
    assert_ok(decayed)
    assert "without --weight-decay" not in decayed.stderr


def test_locked_dropout_without_dropout_says_it_has_no_effect(corpus):
    result = run(["train", "corpus.txt", *TINY, "--steps", "1", "--dropout", "0", "--locked-dropout"])
    assert_ok(result)
    assert "note:" in result.stderr and "--locked-dropout has no effect" in result.stderr


@given(data=st.one_of(st.binary(max_size=400), st.text(max_size=300).map(str.encode),
                      st.lists(st.sampled_from(["ab", " ", "\n", "\r\n", "\t", "\u00e9", "\U0001f600", "\ufeff"]),
                               max_size=80).map(lambda xs: "".join(xs).encode())),
       level=st.sampled_from(["char", "word"]))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_corpus_trains_or_is_one_line_error(tmp_path, data, level):
    """Random bytes as a corpus: either a model, or exit status 1/2 with one line, no traceback."""
    d = tempfile.mkdtemp(dir=tmp_path)
    corpus = os.path.join(d, "c.txt")
    with open(corpus, "wb") as f:
        f.write(data)
    out = os.path.join(d, "m.safetensors")
    result = run(["train", corpus, *TINY, "--level", level, "--steps", "2", "-o", out])
    assert "Traceback" not in result.output
    assert isinstance(result.exception, (SystemExit, type(None))), repr(result.exception)
    if result.exit_code == 0:
        from charlm.io.checkpoint import load_model
        load_model(out)
    else:
        assert_user_error(result, result.exit_code)
        assert result.exit_code in (1, 2)
        assert not os.path.exists(out)


def test_unparsable_option_value_is_usage_error(corpus):
    result = run(["train", "corpus.txt", "--batch", "abc"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert not (corpus.parent / "charlm.safetensors").exists()


def test_resume_without_state_is_an_error(corpus):
    result = run(["train", "corpus.txt", "--resume", "--steps", "3"])
    assert_user_error(result, 1, "--resume")


def test_resume_from_a_damaged_state_is_an_error(corpus):
    assert_ok(run(["train", "corpus.txt", *TINY, "--steps", "2"]))
    path = corpus.parent / "charlm.state.safetensors"
    tensors, meta = load_tensors(str(path))
    header = json.loads(meta["charlm"])
    header["train_state"]["train"]["batch"] = 10**9
    save_tensors(str(path), tensors, {"charlm": json.dumps(header)})
    result = run(["train", "corpus.txt", "--resume", "--steps", "3"])
    assert_user_error(result, 1, "damaged training state", "without --resume")


def test_output_in_missing_directory_is_an_error(corpus):
    result = run(["train", "corpus.txt", *TINY, "--steps", "2", "-o", "nodir/m.safetensors"])
    assert result.exit_code in (1, 2)
    assert_user_error(result, result.exit_code, "nodir")


def test_paths_with_brackets_are_printed_literally(cwd):
    # Rich markup must not eat (or choke on) user text such as file names.
    for name in ("data[/]x.txt", "[bold]x.txt", "[link=y]z.txt"):
        result = run(["train", name, *TINY])
        assert_user_error(result, 1, name)
    result = run(["sample", "-m", "[red]m.safetensors"])
    assert_user_error(result, 1, "[red]m.safetensors")


def test_corpus_with_brackets_in_name_trains_and_info_shows_it(cwd, corpus_text):
    (cwd / "[b]c.txt").write_text(corpus_text[:3000])
    result = run(["train", "[b]c.txt", *TINY, "--steps", "2", "-o", "[i]m.safetensors"])
    assert_ok(result)
    assert "[i]m.safetensors" in result.stderr
    table = run(["info", "[i]m.safetensors"])
    assert_ok(table)
    assert "[b]c.txt" in table.stdout and "[i]m.safetensors" in table.stdout


@pytest.mark.parametrize("text,seconds", [
    ("90s", 90), ("10m", 600), ("1.5h", 5400), ("45", 45), (".5s", 0.5), (" 2M ", 120)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["abc", "10x", "-5s", "", "1e3", "s"])
def test_parse_duration_rejects(text):
    with pytest.raises(OptionError):
        parse_duration(text)


# ---- sample ---------------------------------------------------------------------------------
def test_sample_length_prime_and_seed(model):
    a = run(["sample", "--length", "200", "--seed", "7", "--prime", "The "])
    b = run(["sample", "--length", "200", "--seed", "7", "--prime", "The "])
    c = run(["sample", "--length", "200", "--seed", "8", "--prime", "The "])
    for r in (a, b, c):
        assert_ok(r)
        assert r.stderr == ""
    assert a.stdout == b.stdout
    assert a.stdout != c.stdout
    assert a.stdout.startswith("The ")
    body = a.stdout[len("The "):]
    # Char level: one character per token, a newline added at the end if missing.
    assert len(body) in (200, 201) and body.endswith("\n")
    assert UNK_TEXT not in a.stdout


def test_sample_greedy_ignores_seed_and_equals_top_k_1(model):
    outs = [run(["sample", "--length", "50", "--temp", "0", "--seed", str(s)]) for s in (1, 2)]
    top1 = run(["sample", "--length", "50", "--top-k", "1", "--seed", "3"])
    for r in (*outs, top1):
        assert_ok(r)
    assert outs[0].stdout == outs[1].stdout == top1.stdout


def test_sample_num_until_eos(model):
    r = run(["sample", "--num", "3", "--until-eos", "--length", "300", "--seed", "1", "--prime", "Yes"])
    assert_ok(r)
    lines = r.stdout.split("\n")
    assert lines[-1] == "" and len(lines) == 4
    assert all(line.startswith("Yes") for line in lines[:3])


def test_sample_num_without_until_eos(model):
    r = run(["sample", "--num", "2", "--length", "40", "--seed", "1", "--prime", "Q"])
    assert_ok(r)
    assert r.stdout.count("Q") >= 2 and r.stdout.endswith("\n")
    assert len(r.stdout) <= 2 * (1 + 40 + 1)


def test_sample_never_emits_unk(cwd, corpus_text):
    # With --min-count high most characters are UNK, so UNK is the likeliest token by far.
    (cwd / "c.txt").write_text(corpus_text[:6000])
    assert_ok(run(["train", "c.txt", *TINY, "--min-count", "300", "--steps", "30", "--lr", "0.02"]))
    for args in (["--temp", "0"], ["--temp", "1"], ["--temp", "3"], ["--top-k", "2"]):
        r = run(["sample", "--length", "300", "--seed", "0", *args])
        assert_ok(r)
        assert UNK_TEXT not in r.stdout, args
    # And the model does put mass on UNK: scoring unseen characters counts them.
    s = run(["score", "zzzz"])
    assert_ok(s)
    assert s.stdout.split("\t")[2] == "4"


def test_sample_model_from_env_and_option(cwd, tiny_model):
    a = run(["sample", "-m", tiny_model, "--length", "30", "--seed", "1"])
    b = run(["sample", "--length", "30", "--seed", "1"], env={"CHARLM_MODEL": str(tiny_model)})
    assert_ok(a)
    assert_ok(b)
    assert a.stdout == b.stdout
    missing = run(["sample", "--length", "30"])  # no ./charlm.safetensors here
    assert_user_error(missing, 1, "charlm.safetensors", "charlm train")


@pytest.mark.parametrize("extra,words", [
    (["--temp", "-1"], "--temp"),
    (["--temp", "nan"], "--temp"),
    (["--temp", "inf"], "--temp"),
    (["--length", "0"], "--length"),
    (["--length", "-3"], "--length"),
    (["--top-k", "-1"], "--top-k"),
    (["--top-k", "0"], "--top-k"),
    (["--num", "0"], "--num"),
    (["--top-p", "0"], "--top-p"),
    (["--top-p", "1.5"], "--top-p"),
    (["--top-p", "nan"], "--top-p"),
])
def test_bad_sample_option(model, extra, words):
    assert_user_error(run(["sample", *extra]), 2, words)


def test_sample_top_p_narrows_the_sample_and_one_keeps_all(model):
    base = run(["sample", "--length", "300", "--seed", "2"])
    all_p = run(["sample", "--length", "300", "--seed", "2", "--top-p", "1"])
    narrow = run(["sample", "--length", "300", "--seed", "2", "--top-p", "0.3", "--top-k", "5"])
    for r in (base, all_p, narrow):
        assert_ok(r)
    assert base.stdout == all_p.stdout
    assert narrow.stdout != base.stdout
    assert len(set(narrow.stdout)) < len(set(base.stdout))  # fewer distinct characters drawn


def test_show_prob_is_plain_text_off_a_terminal_and_shaded_on_one(model, monkeypatch):
    import charlm.cli.app as cli

    args = ["sample", "--length", "60", "--seed", "5", "--show-prob"]
    plain = run(["sample", "--length", "60", "--seed", "5"])
    piped = run(args)
    assert_ok(piped)
    assert piped.stdout == plain.stdout and "\x1b[" not in piped.stdout
    monkeypatch.setattr(cli, "_stdout_is_terminal", lambda: True)
    shaded = run(args)
    assert_ok(shaded)
    assert "\x1b[48;2;" in shaded.stdout  # truecolor backgrounds
    import re
    assert re.sub(r"\x1b\[[0-9;]*m", "", shaded.stdout) == plain.stdout


def test_prob_style_is_red_for_unlikely_tokens_and_black_for_certain_ones():
    from charlm.views.shading import prob_style

    assert prob_style(0.0) == "on rgb(200,0,0)"
    assert prob_style(1.0) == "on rgb(0,0,0)"
    assert prob_style(0.5) == "on rgb(100,0,0)"


def test_top_k_message_says_how_to_turn_it_off(model):
    result = run(["sample", "--top-k", "0"])
    assert_user_error(result, 2, "at least 1", "omit it")
    # Omitted, every token can be drawn: the same as a k of the whole vocabulary.
    vocab = card("charlm.safetensors")["vocabulary"]
    a = run(["sample", "--length", "80", "--seed", "4"])
    b = run(["sample", "--length", "80", "--seed", "4", "--top-k", str(vocab)])
    assert_ok(a)
    assert a.stdout == b.stdout


# ---- model file errors (sample, score, info) --------------------------------------------------
def _bad_model(cwd, tiny_model, kind) -> Path:
    path = cwd / "bad.safetensors"
    good = Path(tiny_model).read_bytes()
    if kind == "text":
        path.write_text("this is not a model\n" * 10)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "truncated-header":
        path.write_bytes(good[:40])
    elif kind == "foreign-safetensors":
        save_tensors(str(path), {"w": np.zeros((2, 2), np.float32)}, {"format": "pt"})
    elif kind == "directory":
        path.mkdir()
    elif kind == "missing":
        pass
    return path


MODEL_ERRORS = {
    "missing": "no model",
    "text": "not a valid",
    "empty": "not a valid",
    "truncated": "truncated",
    "truncated-header": "not a valid",
    "foreign-safetensors": "not a charlm model",
    "directory": "directory",
}


@pytest.mark.parametrize("kind", sorted(MODEL_ERRORS))
@pytest.mark.parametrize("command", [["sample", "--length", "5"], ["score", "abc"], ["info"]])
def test_bad_model_file(cwd, tiny_model, kind, command):
    path = _bad_model(cwd, tiny_model, kind)
    args = [*command, str(path)] if command == ["info"] else [*command, "-m", str(path)]
    assert_user_error(run(args), 1, MODEL_ERRORS[kind], "bad.safetensors")


# ---- score ----------------------------------------------------------------------------------
def _tsv(line: str):
    logprob, tokens, unk, ppl = line.split("\t")
    return float(logprob), int(tokens), int(unk), float(ppl)


def test_score_args_tsv(model):
    r = run(["score", "the quick fox", "", "zz€€ unseen ü"])
    assert_ok(r)
    rows = [_tsv(line) for line in r.stdout.splitlines()]
    assert len(rows) == 3
    assert rows[0][1:3] == (14, 0)  # 13 chars + EOS
    assert rows[1][1:3] == (1, 0)  # empty line: just EOS
    assert rows[2][2] == 3  # €, € and ü were never seen: UNK, counted
    for logprob, tokens, unk, ppl in rows:
        assert logprob < 0
        assert ppl == pytest.approx(math.exp(-logprob / tokens), rel=1e-3)
    # the summary goes to stderr, on one line
    summary = r.stderr.strip().splitlines()
    assert len(summary) == 1 and "3 lines" in summary[0] and "ppl" in summary[0]


def test_score_stdin_lines_and_dash(model):
    text = "the quick fox\n\nrain falls\r\nzz€\n"
    a = run(["score"], input=text)
    b = run(["score", "-"], input=text)
    c = run(["score", "the quick fox", "", "rain falls", "zz€"])
    for r in (a, b, c):
        assert_ok(r)
    assert a.stdout == b.stdout == c.stdout
    assert len(a.stdout.splitlines()) == 4


def test_score_stdin_empty_input(model):
    r = run(["score"], input="")
    assert_ok(r)
    assert r.stdout == ""


def test_score_json(model):
    r = run(["score", "--json", "hello there", "a\tb \"quoted\" ü"])
    assert_ok(r)
    tsv = run(["score", "hello there", "a\tb \"quoted\" ü"]).stdout.splitlines()
    for line, t, text in zip(r.stdout.splitlines(), tsv, ["hello there", "a\tb \"quoted\" ü"]):
        d = json.loads(line)
        assert set(d) == {"text", "logprob", "tokens", "unk", "ppl"}
        assert d["text"] == text
        assert (round(d["logprob"], 6), d["tokens"], d["unk"]) == _tsv(t)[:3]
        assert d["ppl"] == pytest.approx(math.exp(-d["logprob"] / d["tokens"]))


def test_score_quiet(model):
    r = run(["score", "-q", "abc"])
    assert_ok(r)
    assert r.stderr == "" and len(r.stdout.splitlines()) == 1


def test_score_file_is_one_stream(model, cwd):
    (cwd / "doc.txt").write_text("the quick fox\nrain falls\n")
    doc = run(["score", "--file", "doc.txt"])
    assert_ok(doc)
    [line] = doc.stdout.splitlines()
    logprob, tokens, unk, _ = _tsv(line)
    assert tokens == len("the quick fox\nrain falls\n") and unk == 0
    # A one-line document scores like that line.
    (cwd / "one.txt").write_text("the quick fox\n")
    one = _tsv(run(["score", "--file", "one.txt"]).stdout.strip())
    assert one[:3] == _tsv(run(["score", "the quick fox"]).stdout.strip())[:3]
    # --json works with --file too
    j = json.loads(run(["score", "--file", "doc.txt", "--json"]).stdout)
    assert {"logprob", "tokens", "unk", "ppl"} <= set(j) and j["tokens"] == tokens


def test_score_file_errors(model, cwd):
    assert_user_error(run(["score", "--file", "nope.txt"]), 1, "nope.txt")
    (cwd / "d").mkdir()
    assert_user_error(run(["score", "--file", "d"]), 1, "directory")


def test_score_invalid_utf8_is_unk_not_an_error(model, cwd):
    r = run(["score"], input=b"ab\xffc\n")
    assert_ok(r)
    assert _tsv(r.stdout.strip())[1:3] == (5, 1)
    (cwd / "bad.txt").write_bytes(b"ab\xffc\n")
    f = run(["score", "--file", "bad.txt"])
    assert_ok(f)
    assert _tsv(f.stdout.strip())[1:3] == (5, 1)


def test_score_and_sample_undecodable_arguments(model):
    # Invalid UTF-8 in argv arrives as surrogate escapes: UNK, and the JSON stays valid UTF-8.
    r = run(["score", "--json", "a\udcffb"])
    assert_ok(r)
    d = json.loads(r.stdout)
    assert (d["text"], d["tokens"], d["unk"]) == ("a\ufffdb", 4, 1)
    s = run(["sample", "--prime", "x\udcff", "--length", "5", "--seed", "0"])
    assert_ok(s)
    assert s.stdout.startswith("x\ufffd")


def test_train_with_a_validation_file(cwd, corpus_text):
    (cwd / "t.txt").write_text(corpus_text[:4000])
    (cwd / "v.txt").write_text(corpus_text[4000:5000])
    r = run(["train", "t.txt", "--valid", "v.txt", "--valid-frac", "0", *TINY, "--steps", "2"])
    assert_ok(r)
    assert "validating on 1,00" in r.stderr
    assert_user_error(run(["train", "t.txt", "--valid", "nope.txt", *TINY]), 1, "nope.txt")


# ---- info -----------------------------------------------------------------------------------
def test_info_default_path_option_env_and_json(model, tiny_model):
    a = run(["info", "--json"])
    b = run(["info", str(tiny_model), "--json"])
    c = run(["info", "-m", str(tiny_model), "--json"])
    d = run(["info", "--json"], env={"CHARLM_MODEL": str(tiny_model)})
    for r in (a, b, c, d):
        assert_ok(r)
    cards = [json.loads(r.stdout) for r in (a, b, c, d)]
    assert cards[0]["file"] == "charlm.safetensors"
    assert cards[1]["file"] == str(tiny_model)
    for key in ("cell", "layers", "hidden", "parameters", "vocabulary", "best_valid_loss"):
        assert all(cd[key] == cards[0][key] for cd in cards), key
    c0 = cards[0]
    assert (c0["cell"], c0["layers"], c0["hidden"], c0["embed"], c0["level"]) == ("lstm", 1, 16, 8, "char")
    assert c0["parameters"] > 0 and c0["vocabulary"] > 2
    assert c0["best_valid_ppl"] == pytest.approx(math.exp(c0["best_valid_loss"]), rel=1e-3)


def _table_rows(text: str) -> dict[str, str]:
    """{label: value} of a two-column rich table."""
    cells = [line.split("\u2502")[1:3] for line in text.splitlines() if line.count("\u2502") == 3]
    return {label.strip(): value.strip() for label, value in cells}


def test_info_table(model):
    """Every row of the table states what the model file holds (TINY: 1 x 16 LSTM, embed 8)."""
    from charlm.io.checkpoint import load_model

    r = run(["info"])
    assert_ok(r)
    rows = _table_rows(r.stdout)
    net, tokenizer, header = load_model("charlm.safetensors")
    parameters = sum(a.size for a in model_tensors(model).values())
    best = header["summary"]["best_valid_loss"]
    assert parameters >= 1000 and net.num_parameters() == parameters
    assert {k: rows[k] for k in ("file", "cell", "layers", "hidden", "embed", "tied", "level", "corpus")} == {
        "file": "charlm.safetensors", "cell": "lstm", "layers": "1", "hidden": "16", "embed": "8",
        "tied": "no", "level": "char", "corpus": "corpus.txt"}
    assert rows["parameters"] == f"{parameters:,}" and "," in rows["parameters"]  # 1,234
    assert rows["vocabulary"] == str(tokenizer.vocab_size) and tokenizer.vocab_size > 2
    assert rows["training steps"] == str(header["summary"]["steps"])
    assert rows["best valid loss"] == f"{best:.4f}" and rows["best valid ppl"] == f"{math.exp(best):.4f}"
    assert rows["best valid bpc"] == f"{best / math.log(2):.4f}"


def test_version_and_help():
    r = run(["--version"])
    assert_ok(r)
    assert r.stdout.startswith("charlm ")
    for cmd in ("train", "sample", "score", "info"):
        assert_ok(run([cmd, "--help"]))


# ---- real processes: pipes closed early, signals -------------------------------------------
def _cli(*args):
    return [sys.executable, "-m", "charlm", *map(str, args)]


def test_sample_into_a_pipe_closed_early(tiny_model, tmp_path):
    proc = subprocess.Popen(_cli("sample", "-m", tiny_model, "--length", "100000", "--seed", "1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    head = proc.stdout.read(100)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, stderr
    assert len(head) == 100
    assert "Traceback" not in stderr and "Exception" not in stderr, stderr


def test_score_reader_closing_early(tiny_model, tmp_path):
    proc = subprocess.Popen(_cli("score", "-m", tiny_model), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    line = b"the quick brown fox jumps over the lazy dog\n"
    proc.stdin.write(line * 20)
    proc.stdin.flush()
    first = proc.stdout.readline()
    proc.stdout.close()
    try:  # keep feeding: the scorer must notice the closed stdout and end quietly
        for _ in range(2000):
            proc.stdin.write(line * 50)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, stderr
    assert first.count(b"\t") == 3
    assert "Traceback" not in stderr and "Exception" not in stderr, stderr


def test_score_writes_each_result_as_soon_as_its_line_is_read(tiny_model, tmp_path):
    # One line at a time through a pipe: its result must come back before the next line is
    # sent (a scorer that read ahead, or buffered its output, would block here).
    import queue
    import threading

    proc = subprocess.Popen(_cli("score", "-m", tiny_model), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, bufsize=0)
    results: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [results.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    try:
        lines = [b"the quick brown fox\n", b"\n", b"rain falls\r\n", b"caf\xc3\xa9 \xff bad\n"] * 3
        for i, line in enumerate(lines):
            proc.stdin.write(line)  # unbuffered: the line is in the pipe now; stdin stays open
            result = results.get(timeout=120 if i == 0 else 30)  # the first includes start-up
            assert result.count(b"\t") == 3, result
            assert results.empty()
        proc.stdin.close()
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0, stderr
        assert f"{len(lines)} lines" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_train_with_stderr_closed_early_still_saves(corpus_file, tmp_path):
    # `charlm train ... 2>&1 | head -1`: losing stderr must not lose the run.
    proc = subprocess.Popen(_cli("train", corpus_file, *TINY, "--steps", "30", "--valid-every", "5"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    proc.stderr.readline()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0
    state = json.loads(load_tensors(str(tmp_path / "charlm.state.safetensors"))[1]["charlm"])
    assert state["train_state"]["progress"]["step"] == 30


def test_sigterm_saves_a_resumable_state_and_exits_143(corpus_file, tmp_path):
    proc = subprocess.Popen(_cli("train", corpus_file, *TINY, "--steps", "1000000", "-o", "m.safetensors"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path, text=True)
    assert proc.stderr.readline().startswith("training ")
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 143, stderr
    assert "Traceback" not in stderr
    assert "resumable state in m.state.safetensors" in stderr  # says where
    assert "--resume -o m.safetensors" in stderr  # and how to continue
    state = load_tensors(str(tmp_path / "m.state.safetensors"))[1]
    assert json.loads(state["charlm"])["train_state"]["progress"]["step"] >= 1
    resumed = subprocess.run(_cli("train", corpus_file, "--resume", "-o", "m.safetensors", "--steps", "3"),
                             cwd=tmp_path, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr


def test_kill_9_at_any_moment_leaves_a_complete_model(corpus_file, tmp_path):
    """SIGKILL at random moments of a run that saves at every step: the model file, when there
    is one, is always complete. A kill during a save can leave that save's temporary file
    (.charlm.safetensors.XXXXXXXX.tmp) behind; the next save removes stale ones. The killed
    run's lock file stays too, and the next run takes it over."""
    from charlm.io.checkpoint import load_model, load_training_state

    rng = np.random.default_rng(0)
    model, state = tmp_path / "charlm.safetensors", tmp_path / "charlm.state.safetensors"
    for attempt in range(8):
        proc = subprocess.Popen(_cli("train", corpus_file, *TINY, "--steps", "1000000", "--valid-every", "1"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
        line = b"-"
        while line and not line.startswith(b"validation"):  # the first save is done
            line = proc.stderr.readline()
        time.sleep(rng.uniform(0.0, 0.3))
        proc.kill()
        proc.wait(timeout=60)
        proc.stderr.close()
        if model.exists():
            load_model(model)
        if state.exists():
            load_training_state(state)
        stray = set(os.listdir(tmp_path)) - {"charlm.safetensors", "charlm.state.safetensors",
                                             "charlm.metrics.jsonl", "charlm.lock"}
        temps = set(map(os.path.basename, temp_files(str(model)) + temp_files(str(state))))
        assert stray == temps, stray
    assert model.exists()
    # Leftover temporary files go away at the next save of the same file once they are stale
    # (a minute old: a live writer keeps touching its own).
    for path in (model, state):
        open(os.path.join(tmp_path, "." + path.name + ".abcd1234.tmp"), "wb").close()
    for leftover in temp_files(str(model)) + temp_files(str(state)):
        os.utime(leftover, (time.time() - 3600,) * 2)
    assert_ok(run(["train", str(corpus_file), *TINY, "--steps", "1", "-o", str(model)]))
    assert temp_files(str(model)) == temp_files(str(state)) == []
    assert not (tmp_path / "charlm.lock").exists()


def test_sigint_saves_a_resumable_state(corpus_file, tmp_path):
    # plateau: the resume below changes --steps, which would reshape a wsd schedule
    proc = subprocess.Popen(_cli("train", corpus_file, *TINY, "--steps", "1000000", "--seed", "2",
                                 "--schedule", "plateau"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path, text=True)
    assert proc.stderr.readline().startswith("training ")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, stderr
    assert "Traceback" not in stderr
    assert "--resume" in stderr
    state = tmp_path / "charlm.state.safetensors"
    step = json.loads(load_tensors(str(state))[1]["charlm"])["train_state"]["progress"]["step"]
    assert 1 <= step < 1_000_000
    assert (tmp_path / "charlm.safetensors").exists()
    # Resumed to a few steps later, it matches an uninterrupted run of that length exactly.
    end = str(step + 3)
    resumed = subprocess.run(_cli("train", corpus_file, "--resume", "--steps", end),
                             cwd=tmp_path, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    (tmp_path / "b").mkdir()
    whole = subprocess.run(_cli("train", corpus_file, *TINY, "--steps", end, "--seed", "2",
                                "--schedule", "plateau"),
                           cwd=tmp_path / "b", capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    a, b = model_tensors(state), model_tensors(tmp_path / "b" / "charlm.state.safetensors")
    assert [k for k in a if not np.array_equal(a[k], b[k])] == []
