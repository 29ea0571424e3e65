"""Learning-rate schedules: cosine, wsd, plateau decay, the default (auto), and --time budgets."""

import dataclasses
import json
import time

import pytest
from typer.testing import CliRunner

from charlm.cli.app import app
from charlm.train import events
from charlm.train.schedule import cosine_factor, wsd_factor
from conftest import TINY


def test_cosine_factor_warms_up_then_decays_to_the_floor():
    assert cosine_factor(0.0) == pytest.approx(1.0)
    assert cosine_factor(0.5) == pytest.approx(0.5)
    assert cosine_factor(1.0) == pytest.approx(0.0, abs=1e-12)
    assert cosine_factor(1.0, floor=0.1) == pytest.approx(0.1)
    assert cosine_factor(0.05, warmup=0.1) == pytest.approx(0.5)
    assert cosine_factor(0.1, warmup=0.1) == pytest.approx(1.0)
    values = [cosine_factor(i / 100, warmup=0.1) for i in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def _step_rates(corpus_file, tmp_path, *options) -> dict[int, float]:
    """Train TINY with the options; the learning rate of each logged step."""
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(app, ["train", str(corpus_file), "-o", str(out), *TINY, *options])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "m.metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["lr"] for r in rows if r["event"] == "step"}


def test_cosine_run_lowers_the_rate_towards_zero(corpus_file, tmp_path):
    lrs = list(_step_rates(corpus_file, tmp_path, "--steps", "40", "--schedule", "cosine", "--lr", "0.01",
                           "--valid-every", "20").values())  # in step order
    assert lrs[0] == pytest.approx(0.01 * cosine_factor(9 / 40), rel=1e-6)  # the rate step 10 used
    assert lrs[-1] == pytest.approx(0.01 * cosine_factor(39 / 40), rel=1e-6) and lrs[-1] < 1e-4
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_cosine_without_a_run_length_is_a_usage_error(corpus_file, tmp_path):
    result = CliRunner().invoke(app, ["train", str(corpus_file), "-o", str(tmp_path / "m.safetensors"),
                                      *TINY, "--schedule", "cosine"])
    assert result.exit_code == 2
    assert "--steps, --epochs or --time" in result.stderr


def test_wsd_factor_warms_up_holds_then_decays_linearly_to_zero():
    assert wsd_factor(0.05, warmup=0.1) == pytest.approx(0.5)
    assert wsd_factor(0.1, warmup=0.1) == 1.0
    assert wsd_factor(0.8) == 1.0
    assert wsd_factor(0.9) == pytest.approx(0.5)
    assert wsd_factor(1.0) == 0.0
    values = [wsd_factor(i / 100) for i in range(80, 101)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_wsd_factor_decays_over_the_given_fraction():
    assert wsd_factor(0.6, decay=0.4) == 1.0
    assert wsd_factor(0.7, decay=0.4) == pytest.approx(0.75)
    assert wsd_factor(0.8, decay=0.4) == pytest.approx(0.5)
    assert wsd_factor(0.5, decay=1.0) == pytest.approx(0.5)  # the whole run is a linear decay
    assert wsd_factor(0.05, warmup=0.1, decay=0.9) == pytest.approx(0.5)


def test_wsd_run_decays_over_the_decay_option(corpus_file, tmp_path):
    lrs = _step_rates(corpus_file, tmp_path, "--steps", "40", "--schedule", "wsd", "--decay", "0.5",
                      "--lr", "0.01")
    assert lrs[20] == 0.01  # step 20 used fraction 19/40: still stable
    assert lrs[30] == pytest.approx(0.01 * (1 - 29 / 40) / 0.5, rel=1e-6)


def test_wsd_run_holds_the_rate_then_lowers_it(corpus_file, tmp_path):
    lrs = _step_rates(corpus_file, tmp_path, "--steps", "50", "--schedule", "wsd", "--lr", "0.01",
                      "--valid-every", "25")
    assert lrs[10] == lrs[40] == 0.01  # the rate steps 10..40 used: stable
    assert lrs[50] == pytest.approx(0.01 * wsd_factor(49 / 50), rel=1e-6) == pytest.approx(1e-3)


# --- a --time budget keeps room for the closing validation -------------------------------------


def _timed_trainer(corpus_file, tmp_path, budget=100.0, cell="lstm"):
    from charlm import api
    from charlm.config import ModelConfig, TrainConfig

    return api.prepare_training(
        str(corpus_file), output=str(tmp_path / "m.safetensors"),
        model_cfg=ModelConfig(cell=cell, embed=8, hidden=16, layers=1),
        cfg=TrainConfig(batch=4, seq_len=16, time_budget=budget, schedule="wsd"))


def test_the_trainer_stops_when_its_time_budget_is_exhausted(corpus_file, tmp_path, monkeypatch):
    from charlm.train.time_budget import TimeBudget

    trainer = _timed_trainer(corpus_file, tmp_path)
    calls = []  # the budget is asked once before the first step, then after each step

    def exhausted_after_three_steps(self, elapsed, tokens, durations):
        calls.append((elapsed, tokens, durations.step))
        return len(calls) > 3

    monkeypatch.setattr(TimeBudget, "exhausted", exhausted_after_three_steps)
    finished = list(trainer.run())[-1]
    assert finished.reason == "reached --time 100s" and finished.steps == 3
    assert calls[0] == (0.0, 0, 0.0) and calls[-1][1] == 3 * 4 * 16 and calls[-1][2] > 0


def test_the_trainer_s_budget_knows_its_validation_text_and_cell(corpus_file, tmp_path):
    trainer = _timed_trainer(corpus_file, tmp_path)
    budget = trainer.time_budget()
    assert budget.seconds == 100.0 and budget.valid_tokens == len(trainer.valid_ids)
    assert budget.validation_speedup == 3.0  # forward only against forward and backward
    (tmp_path / "esn").mkdir()  # a run of its own: the first trainer holds its output's lock
    esn = _timed_trainer(corpus_file, tmp_path / "esn", cell="esn")
    assert esn.time_budget().validation_speedup == 1.0  # it trains by a forward pass alone
    trainer.cfg = dataclasses.replace(trainer.cfg, time_budget=None, steps=10)
    assert trainer.time_budget() is None


@pytest.mark.parametrize("near,validated", [(False, [5, 10, 12]), (True, [12])])
def test_the_loop_skips_scheduled_validations_when_the_closing_one_is_near(
        corpus_file, tmp_path, monkeypatch, near, validated):
    from charlm.train.time_budget import TimeBudget

    trainer = _timed_trainer(corpus_file, tmp_path, budget=1e6)
    trainer.cfg = dataclasses.replace(trainer.cfg, steps=12)
    trainer.valid_every = 5
    monkeypatch.setattr(TimeBudget, "closing_is_near", lambda *args: near)
    assert [e.step for e in trainer.run() if isinstance(e, events.Validated)] == validated


def test_the_reserve_is_the_whole_last_validation_model_save_included(corpus_file, tmp_path, monkeypatch):
    import charlm.train.trainer as train_module

    trainer = _timed_trainer(corpus_file, tmp_path, budget=1e6)
    trainer.cfg = dataclasses.replace(trainer.cfg, steps=1)
    monkeypatch.setattr(train_module, "evaluate_in_windows", lambda *a, **k: iter([(1, 2.0)]))

    def slow_save(*args, **kwargs):
        time.sleep(0.2)

    monkeypatch.setattr(train_module, "save_model", slow_save)
    validated = [e for e in trainer.run() if isinstance(e, events.Validated)]
    assert len(validated) == 1 and validated[0].improved  # the model was saved
    assert trainer.durations.validation >= 0.2


def test_wsd_also_lowers_the_rate_on_a_validation_plateau(corpus_file, tmp_path, monkeypatch):
    """wsd keeps the plateau decay during its stable part: the lowered scale carries into the
    schedule's rate from then on."""
    import charlm.train.trainer as train_module

    trainer = _timed_trainer(corpus_file, tmp_path, budget=1e6)
    trainer.cfg = dataclasses.replace(trainer.cfg, patience=1, lr=0.01)
    losses = iter([2.0, 2.5, 2.6])  # one improvement, then two plateaus
    monkeypatch.setattr(train_module, "evaluate_in_windows", lambda *a, **k: iter([(1, next(losses))]))
    notices = []
    for _ in range(3):
        notices += [e for e in trainer._validate(0.0) if isinstance(e, events.Notice)]
    assert len(notices) == 2 and "plateau" in notices[0].message
    assert trainer.progress.lr_scale == pytest.approx(0.25)
    trainer._train_step()  # one step: the schedule sets the rate
    assert trainer.optimizer.lr == pytest.approx(0.01 * 0.25)


def test_schedule_auto_is_wsd_for_a_run_with_a_length_and_plateau_without(corpus_file, tmp_path):
    from charlm.io.tensorfile import load_tensors

    def header(args):
        out = tmp_path / "m.safetensors"
        result = CliRunner().invoke(app, ["train", str(corpus_file), "-o", str(out), *TINY, *args])
        assert result.exit_code == 0, result.output
        return json.loads(load_tensors(str(out))[1]["charlm"])["train"]

    h = header(["--steps", "3"])
    assert h["schedule"] == "wsd" and h["lr"] == 3e-3  # char level: Adam 3e-3
    h = header(["--lr", "1e-9", "--patience", "1", "--valid-every", "2"])  # early stopping
    assert h["schedule"] == "plateau"
    h = header(["--steps", "3", "--level", "word", "--schedule", "cosine"])
    assert h["schedule"] == "cosine" and h["lr"] == 2e-3  # word level: Adam 2e-3
