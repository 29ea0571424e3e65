"""`charlm train --resume` continues exactly: a run of N steps interrupted at k and resumed ends
with the same weights, optimizer moments and carried state, bit for bit, as an uninterrupted
run with the same seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from charlm import api
from charlm.train import events
from charlm.cli.app import app
from charlm.config import ModelConfig, TrainConfig
from charlm.io.tensorfile import load_tensors

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


def small_trainer(corpus, out: Path, steps: int, **cfg):
    """A Trainer of a 1x16 LSTM, batch 4 x 16, validating every 5 steps; cfg: more TrainConfig."""
    return api.prepare_training(
        str(corpus), output=str(out),
        model_cfg=ModelConfig(embed=8, hidden=16, layers=1),
        cfg=TrainConfig(batch=4, seq_len=16, steps=steps, seed=9, log_every=1, valid_every=5, **cfg),
    )


def test_request_stop_mid_run_resumes_exactly(corpus_file, dirs):
    a, b = dirs
    for event in small_trainer(corpus_file, a / "m.safetensors", 12).run():
        pass

    trainer = small_trainer(corpus_file, b / "m.safetensors", 12)
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


def test_resume_refuses_run_settings_other_than_the_saved_runs(corpus_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = CliRunner().invoke(app, ["train", str(corpus_file), *TINY, "--steps", "3"])
    assert first.exit_code == 0, first.output
    refused = CliRunner().invoke(app, ["train", str(corpus_file), "--resume", "--steps", "5",
                                       "--hidden", "99", "--lr", "0.5", "--batch", "4"])
    assert refused.exit_code == 1, refused.output
    [line] = refused.stderr.strip().splitlines()
    assert "--hidden 16 (given: 99)" in line and "--lr 0.003 (given: 0.5)" in line
    assert "--batch" not in line  # the same value as the saved run's: accepted
    # The whole command line of the run again, with --resume: the same settings, accepted.
    again = CliRunner().invoke(app, ["train", str(corpus_file), *TINY, "--resume", "--steps", "5"])
    assert again.exit_code == 0, again.output
    assert "resumed at step 3" in again.stderr


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_ends_bit_identical(corpus_file, dirs):
    """SIGKILL a two-layer run (the wavefront's worker threads) at random moments, several
    times, each time continuing with the same command line plus --resume (a fresh start when
    nothing was saved yet): the final model and state match an uninterrupted run's, bit for bit."""
    import signal
    import subprocess
    import sys
    import time

    a, b = dirs
    opts = [*TINY, "--layers", "2", "--seed", "7", "--steps", "1000", "--valid-every", "20",
            "--schedule", "plateau"]

    def command(*extra):
        return [sys.executable, "-m", "charlm", "train", str(corpus_file), *opts, *extra]

    def start(cwd: Path, *extra) -> tuple[subprocess.Popen, float]:
        proc = subprocess.Popen(command(*extra), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert proc.stderr.readline().startswith(b"training "), "the run did not start"
        return proc, time.monotonic()

    whole, started = start(a)
    assert whole.wait(timeout=600) == 0
    whole.stderr.close()
    # Kill moments spread over the first fifth of the training time each, so that five of them
    # fall before the end however fast the steps run.
    duration = time.monotonic() - started
    rng = np.random.default_rng(1)
    kills = 0
    for _ in range(5):
        proc, _ = start(b, *(["--resume"] if (b / "charlm.state.safetensors").exists() else []))
        time.sleep(rng.uniform(0.0, duration / 5))
        proc.send_signal(signal.SIGKILL)
        kills += proc.wait(timeout=120) == -signal.SIGKILL
        proc.stderr.close()
    assert kills >= 3  # most kills landed while the run was going
    resume = ["--resume"] if (b / "charlm.state.safetensors").exists() else []
    last = subprocess.run(command(*resume), cwd=b, capture_output=True, text=True)
    assert last.returncode == 0, last.stderr
    assert state(b / "charlm.state.safetensors")[1]["progress"]["step"] == 1000
    assert_same_state(a / "charlm.state.safetensors", b / "charlm.state.safetensors")
    ma, mb = load_tensors(str(a / "charlm.safetensors"))[0], load_tensors(str(b / "charlm.safetensors"))[0]
    assert sorted(ma) == sorted(mb) and all(np.array_equal(ma[k], mb[k]) for k in ma)
    rows = [json.loads(x) for x in (b / "charlm.metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r["event"] == "step"]
    assert steps == sorted(set(steps))  # each logged step once, in order


def test_a_refused_resume_names_the_options_as_typed():
    from charlm.errors import CharlmError
    from charlm.train.run_identity import check_settings

    saved = {"settings": {"learn_leak": True, "seq_len": 100}}
    with pytest.raises(CharlmError) as refused:
        check_settings("m.state.safetensors", saved, {"learn_leak": False, "seq_len": 50})
    message = str(refused.value)
    assert "--leak learn True (given: False)" in message and "--seq-len 100 (given: 50)" in message
    assert "--learn-leak" not in message
