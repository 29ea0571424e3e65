"""`charlm train --resume` continues exactly: a run of N steps interrupted at k and resumed ends
with the same weights, optimizer moments and carried state, bit for bit, as an uninterrupted
run with the same seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from charlm import api, events
from charlm.cli import app
from charlm.config import ModelConfig, TrainConfig
from charlm.tensorfile import load_tensors

from conftest import TINY


def train(cwd: Path, monkeypatch, *args):
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(app, ["train", *map(str, args)])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def state(path: Path):
    tensors, meta = load_tensors(str(path))
    return tensors, json.loads(meta["charlm"])["train_state"]


def assert_same_state(a: Path, b: Path):
    ta, ia = state(a)
    tb, ib = state(b)
    assert sorted(ta) == sorted(tb)
    assert any(k.startswith("train.opt.m.") for k in ta)  # the Adam moments are compared too
    different = [k for k in ta if not np.array_equal(ta[k], tb[k])]
    assert different == [], f"differ after resume: {different}"
    for key in ("progress", "stream", "rng", "optimizer"):
        x, y = dict(ia[key]), dict(ib[key])
        x.pop("elapsed", None), y.pop("elapsed", None)
        assert x == y, key


@pytest.fixture
def dirs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    return a, b


@pytest.mark.parametrize("cell,optimizer", [("lstm", []), ("gru", []), ("rnn", []),
                                            ("gru", ["--optimizer", "adamw", "--weight-decay", "0.1"]),
                                            ("leaky", ["--leak", "learn"]), ("esn", ["--leak", "0.6"]),
                                            ("esn", ["--learn-embedding"])])
def test_resume_is_bit_exact(corpus_file, dirs, monkeypatch, cell, optimizer):
    a, b = dirs
    # dropout 0.2: the resumed RNG matters. plateau: a wsd run stopped by --steps 6 has annealed
    # to 0 by then and is by design not the first half of a 12-step run.
    opts = [*TINY, "--cell", cell, "--seed", "3", "--schedule", "plateau", *optimizer]
    train(a, monkeypatch, corpus_file, *opts, "--steps", "12")
    train(b, monkeypatch, corpus_file, *opts, "--steps", "6")
    out = train(b, monkeypatch, corpus_file, "--resume", "--steps", "12")
    assert "resumed at step 6" in out.stderr
    assert_same_state(a / "charlm.state.safetensors", b / "charlm.state.safetensors")
    # The best model here is the last one (the loss still falls fast): same file contents.
    ma, mb = load_tensors(str(a / "charlm.safetensors"))[0], load_tensors(str(b / "charlm.safetensors"))[0]
    assert all(np.array_equal(ma[k], mb[k]) for k in ma)


def test_resume_across_epochs_and_twice(corpus_text, dirs, monkeypatch):
    """Small corpus: several epochs (the stream wraps, the carried state resets); two resumes."""
    a, b = dirs
    for d in dirs:
        (d / "small.txt").write_text(corpus_text[:1500])
    opts = [*TINY, "--seed", "4", "--valid-every", "4", "--schedule", "plateau"]
    train(a, monkeypatch, "small.txt", *opts, "--steps", "50")
    train(b, monkeypatch, "small.txt", *opts, "--steps", "7")
    train(b, monkeypatch, "small.txt", "--resume", "--steps", "30")
    train(b, monkeypatch, "small.txt", "--resume", "--steps", "50")
    _, info = state(a / "charlm.state.safetensors")
    assert info["stream"]["epoch"] >= 2
    assert_same_state(a / "charlm.state.safetensors", b / "charlm.state.safetensors")


def test_resume_is_exact_through_learning_rate_plateaus(corpus_file, dirs, monkeypatch):
    """The validation run when training stops (step 6, off the every-5-steps schedule) must
    not change the plateau schedule: with a tiny --lr nothing improves and --patience 1
    halves the learning rate at every scheduled validation."""
    a, b = dirs
    opts = [*TINY, "--seed", "3", "--lr", "1e-6", "--patience", "1", "--valid-every", "5",
            "--schedule", "plateau"]
    train(a, monkeypatch, corpus_file, *opts, "--steps", "12")
    train(b, monkeypatch, corpus_file, *opts, "--steps", "6")
    train(b, monkeypatch, corpus_file, "--resume", "--steps", "12")
    _, info = state(a / "charlm.state.safetensors")
    assert info["optimizer"]["lr"] < 1e-6  # a plateau did happen
    assert_same_state(a / "charlm.state.safetensors", b / "charlm.state.safetensors")


def test_resume_of_a_finished_run_trains_no_further(corpus_file, dirs, monkeypatch):
    a, _ = dirs
    train(a, monkeypatch, corpus_file, *TINY, "--steps", "5")
    before, info = state(a / "charlm.state.safetensors")
    out = train(a, monkeypatch, corpus_file, "--resume")  # the saved limit: --steps 5
    after, info2 = state(a / "charlm.state.safetensors")
    assert info2["progress"]["step"] == 5, out.stderr
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_resume_appends_metrics(corpus_file, dirs, monkeypatch):
    a, _ = dirs
    train(a, monkeypatch, corpus_file, *TINY, "--steps", "10")
    n = len((a / "charlm.metrics.jsonl").read_text().splitlines())
    train(a, monkeypatch, corpus_file, "--resume", "--steps", "20")
    rows = [json.loads(x) for x in (a / "charlm.metrics.jsonl").read_text().splitlines()]
    assert len(rows) > n
    assert [r["step"] for r in rows if r["event"] == "step"] == [10, 20]


def _trainer(corpus, out: Path, steps: int):
    return api.prepare_training(
        str(corpus), output=str(out),
        model_cfg=ModelConfig(embed=8, hidden=16, layers=1),
        cfg=TrainConfig(batch=4, seq_len=16, steps=steps, seed=9, log_every=1, valid_every=5),
    )


def test_request_stop_mid_run_resumes_exactly(corpus_file, dirs):
    a, b = dirs
    for event in _trainer(corpus_file, a / "m.safetensors", 12).run():
        pass

    trainer = _trainer(corpus_file, b / "m.safetensors", 12)
    seen = []
    for event in trainer.run():
        seen.append(event)
        if isinstance(event, events.Step) and event.step == 4:
            trainer.request_stop("test")
    finished = seen[-1]
    assert isinstance(finished, events.Finished)
    assert (finished.reason, finished.steps) == ("test", 4)
    assert state(b / "m.state.safetensors")[1]["progress"]["step"] == 4

    resumed = api.resume_training(str(corpus_file), output=str(b / "m.safetensors"))
    for event in resumed.run():
        pass
    assert resumed.progress.step == 12
    assert_same_state(a / "m.state.safetensors", b / "m.state.safetensors")


def test_resume_says_which_run_settings_it_ignores(corpus_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = CliRunner().invoke(app, ["train", str(corpus_file), *TINY, "--steps", "3"])
    assert first.exit_code == 0, first.output
    resumed = CliRunner().invoke(app, ["train", str(corpus_file), "--resume", "--steps", "5",
                                       "--hidden", "99", "--lr", "0.5"])
    assert resumed.exit_code == 0, resumed.output
    assert "ignored: --hidden 99, --lr 0.5" in resumed.stderr
    quiet = CliRunner().invoke(app, ["train", str(corpus_file), "--resume", "--steps", "6"])
    assert quiet.exit_code == 0 and "ignored" not in quiet.stderr
