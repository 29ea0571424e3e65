"""Divergence: a NaN or infinite loss, gradient or validation loss rolls training back to the
last good state (the last finite validation, or the start), halves the learning rate and goes
on, with a Notice; after a few failures training stops with a DivergenceError that names the
fix. No NaN ever reaches a model or state file, and --resume stays exact."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from charlm import api
from charlm.train import events, trainer as train
from charlm.io.checkpoint import load_model, load_training_state
from charlm.cli.app import app
from charlm.config import ModelConfig, TrainConfig
from charlm.errors import DivergenceError
from charlm.io.tensorfile import load_tensors

from conftest import TINY


def make_trainer(corpus, out: Path, steps=20, valid_every=5, tie=False, **cfg):
    return api.prepare_training(
        str(corpus), output=str(out),
        model_cfg=ModelConfig(embed=16 if tie else 8, hidden=16, layers=1, tie=tie),
        cfg=TrainConfig(batch=4, seq_len=16, steps=steps, seed=5, log_every=1,
                        valid_every=valid_every, **cfg),
    )


def poison_steps(trainer, bad_steps, what="loss"):
    """Make the model's loss NaN (or a gradient inf) at the given attempts: attempt n is the
    n-th training window of the run, failed steps included (a failed step does not count in
    progress.step, so after one failure attempt n is step n - 1)."""
    real = trainer.model.loss_and_grads

    def loss_and_grads(*args, **kwargs):
        loss, grads, hidden = real(*args, **kwargs)
        pr = trainer.progress
        if pr.step + pr.total_divergences + 1 in bad_steps:
            if what == "loss":
                loss = float("nan")
            else:
                next(iter(grads.values()))[0] = np.inf
        return loss, grads, hidden

    trainer.model.loss_and_grads = loss_and_grads


def params_copy(trainer):
    return {k: v.copy() for k, v in trainer.model.params.items()}


def all_finite(path) -> bool:
    tensors, _ = load_tensors(str(path))
    return all(np.isfinite(t).all() for t in tensors.values() if t.dtype.kind == "f")


@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_nan_rolls_back_to_the_last_validation_and_continues(corpus_file, tmp_path, what):
    trainer = make_trainer(corpus_file, tmp_path / "m.safetensors", tie=True)
    poison_steps(trainer, {8}, what)
    at_validation, notices, after_notice = {}, [], None
    for event in trainer.run():
        if isinstance(event, events.Validated) and event.step == 5:
            at_validation = dict(params=params_copy(trainer), t=trainer.optimizer.t,
                                 moments={k: v.copy() for k, v in trainer.optimizer.state.items()})
        if isinstance(event, events.Notice):
            notices.append(event.message)
            after_notice = dict(params=params_copy(trainer), t=trainer.optimizer.t,
                                moments={k: v.copy() for k, v in trainer.optimizer.state.items()},
                                lr=trainer.optimizer.lr,
                                hidden=trainer.hidden.copy())
        last = event
    assert len(notices) == 1
    assert "step 8" in notices[0] and what in notices[0] and "step 5" in notices[0]
    assert "learning rate lowered to 0.001" in notices[0]
    # Rolled back: the weights, Adam's moments and step count of step 5; a fresh carried state.
    assert after_notice["lr"] == pytest.approx(1e-3)
    assert after_notice["t"] == at_validation["t"] == 5
    for k, v in at_validation["params"].items():
        assert np.array_equal(after_notice["params"][k], v), k
    for k, v in at_validation["moments"].items():
        assert np.array_equal(after_notice["moments"][k], v), k
    assert not after_notice["hidden"].any()
    # ... and went on to the end, the tie intact, the files finite.
    assert isinstance(last, events.Finished) and last.steps == 20
    assert trainer.model.params["decoder.weight"] is trainer.model.params["embedding.weight"]
    assert trainer.optimizer.t == 5 + (20 - 7)
    load_model(tmp_path / "m.safetensors")
    assert all_finite(tmp_path / "m.safetensors") and all_finite(tmp_path / "m.state.safetensors")


def test_nan_before_the_first_validation_rolls_back_to_the_start(corpus_file, tmp_path):
    trainer = make_trainer(corpus_file, tmp_path / "m.safetensors", steps=6, valid_every=5)
    initial = params_copy(trainer)
    poison_steps(trainer, {3})
    for event in trainer.run():
        if isinstance(event, events.Notice):
            assert "the start" in event.message
            assert all(np.array_equal(trainer.model.params[k], v) for k, v in initial.items())
            assert trainer.optimizer.t == 0 and trainer.optimizer.state == {}
    assert trainer.progress.step == 6 and trainer.progress.total_divergences == 1


def test_non_finite_validation_loss_rolls_back(corpus_file, tmp_path, monkeypatch):
    trainer = make_trainer(corpus_file, tmp_path / "m.safetensors", steps=15, valid_every=5)
    real = train.evaluate_in_windows
    calls = []

    def evaluate_in_windows(*args, **kwargs):  # (tokens so far, loss so far) per window
        calls.append(1)
        return iter([(1, float("inf"))]) if len(calls) == 2 else real(*args, **kwargs)

    monkeypatch.setattr(train, "evaluate_in_windows", evaluate_in_windows)
    seen = list(trainer.run())
    valid_steps = [e.step for e in seen if isinstance(e, events.Validated)]
    notices = [e.message for e in seen if isinstance(e, events.Notice)]
    assert valid_steps == [5, 15]  # the validation at step 10 failed: no Validated event
    assert len(notices) == 1 and "validation of step 10" in notices[0] and "step 5" in notices[0]
    rows = [json.loads(x) for x in (tmp_path / "m.metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in rows)
    load_model(tmp_path / "m.safetensors")


def test_gives_up_after_repeated_divergence_naming_the_fix(corpus_file, tmp_path):
    trainer = make_trainer(corpus_file, tmp_path / "m.safetensors", steps=40, valid_every=2)
    poison_steps(trainer, set(range(4, 41)))
    notices = []
    with pytest.raises(DivergenceError) as info:
        for event in trainer.run():
            if isinstance(event, events.Notice):
                notices.append(event.message)
    assert len(notices) == train.MAX_DIVERGENCES - 1
    message = str(info.value)
    for words in ("--lr", "--clip", str(tmp_path / "m.safetensors"), "step 2"):
        assert words in message, (words, message)
    assert "\n" not in message
    model, _, header = load_model(tmp_path / "m.safetensors")  # the best model, finite
    assert header["summary"]["best_step"] == 2


def test_total_cap_on_divergences(corpus_file, tmp_path):
    # A failure every other step, each after a good validation: never 4 in a row, but the
    # run stops at the 12th.
    trainer = make_trainer(corpus_file, tmp_path / "m.safetensors", steps=200, valid_every=1)
    poison_steps(trainer, set(range(2, 201, 2)))
    with pytest.raises(DivergenceError, match=f"{train.MAX_TOTAL_DIVERGENCES} times in this run"):
        for _ in trainer.run():
            pass
    assert trainer.progress.total_divergences == train.MAX_TOTAL_DIVERGENCES


def test_rollback_point_survives_resume_exactly(corpus_file, tmp_path):
    """Stopped at step 7 (between validations), resumed, then a NaN at step 9: the resumed run
    rolls back to step 5 like the uninterrupted one, and ends bit-identical."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    whole = make_trainer(corpus_file, a / "m.safetensors", steps=14)
    poison_steps(whole, {9})
    list(whole.run())
    assert whole.progress.total_divergences == 1

    first = make_trainer(corpus_file, b / "m.safetensors", steps=14)
    for event in first.run():
        if isinstance(event, events.Step) and event.step == 7:
            first.request_stop("test")
    _, _, arrays, info = load_training_state(b / "m.state.safetensors")
    assert info["snapshot"] == {"step": 5, "t": 5, "stored": True}
    resumed = api.resume_training(str(corpus_file), output=str(b / "m.safetensors"))
    poison_steps(resumed, {9})
    notices = [e.message for e in resumed.run() if isinstance(e, events.Notice)]
    assert len(notices) == 1 and "step 5" in notices[0]

    ta, _ = load_tensors(str(a / "m.state.safetensors"))
    tb, _ = load_tensors(str(b / "m.state.safetensors"))
    assert sorted(ta) == sorted(tb)
    assert [k for k in ta if not np.array_equal(ta[k], tb[k])] == []
    assert whole.optimizer.lr == resumed.optimizer.lr == pytest.approx(1e-3)


def test_real_divergence_through_the_cli(corpus_file, tmp_path, monkeypatch):
    """SGD with a huge learning rate and no clipping: exit status 1, one error line naming the
    fix, notices before it, no traceback, nothing non-finite on disk."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["train", str(corpus_file), *TINY, "--optimizer", "sgd", "--lr", "1e10",
                                      "--clip", "0", "--steps", "200", "--valid-every", "5"])
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and "Warning" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: training diverged")
    assert "--lr" in lines[-1] and "--clip" in lines[-1]
    assert sum("rolled back" in line for line in lines) >= train.MAX_DIVERGENCES - 1, result.stderr
    for name in ("charlm.safetensors", "charlm.state.safetensors"):
        if (tmp_path / name).exists():
            assert all_finite(tmp_path / name), name
