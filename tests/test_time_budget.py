"""The --time budget's arithmetic (charlm.train.time_budget): no Trainer, no clock."""

from __future__ import annotations

import pytest

from charlm.train.time_budget import VALIDATION_MARGIN, Durations, TimeBudget


def test_the_reserve_is_the_last_validation_with_a_margin():
    budget = TimeBudget(100.0, valid_tokens=1000)
    assert budget.closing_reserve(90.0, 9000, Durations(2.0, 4.0)) == pytest.approx(4.0 * VALIDATION_MARGIN)
    assert budget.closing_reserve(90.0, 9000, Durations(2.0, 4.0)) == pytest.approx(5.0)


def test_before_any_validation_the_reserve_is_guessed_from_the_training_rate():
    budget = TimeBudget(100.0, valid_tokens=1000)
    assert budget.closing_reserve(0.0, 0, Durations()) == 0.0  # nothing measured yet
    # 300 training tokens/s; a validation token costs a third: 900 validation tokens/s
    assert budget.closing_reserve(10.0, 3000, Durations()) == pytest.approx(1000 / 900)
    # an echo state network trains by a forward pass alone: a validation token costs as much
    forward_only = TimeBudget(100.0, valid_tokens=1000, validation_speedup=1.0)
    assert forward_only.closing_reserve(10.0, 3000, Durations()) == pytest.approx(1000 / 300)


def test_the_budget_is_exhausted_when_a_step_and_the_closing_validation_would_overrun():
    budget, durations = TimeBudget(100.0, valid_tokens=1000), Durations(step=2.0, validation=4.0)
    assert budget.seconds_for_training(90.0, 9000, durations) == pytest.approx(5.0)
    assert not budget.exhausted(90.0, 9000, durations)  # 90 + 2 + 5 <= 100: one more step fits
    assert budget.exhausted(93.5, 9000, durations)  # 93.5 + 2 + 5 > 100


def test_the_fraction_runs_over_the_time_left_for_training():
    budget, durations = TimeBudget(100.0, valid_tokens=1000), Durations(step=2.0, validation=4.0)
    assert budget.fraction(0.0, 0, durations) == 0.0
    assert budget.fraction(47.5, 9000, durations) == pytest.approx(0.5)
    assert budget.fraction(95.0, 9000, durations) == pytest.approx(1.0)  # ends where training ends


def test_a_scheduled_validation_just_before_the_closing_one_is_near():
    budget, durations = TimeBudget(100.0, valid_tokens=1000), Durations(step=0.5, validation=4.0)
    # reserve 5 s; after a 4 s validation at 80 s, 11 s for 22 steps: over a quarter of 40 steps
    assert not budget.closing_is_near(80.0, 9000, durations, valid_every=40)
    # at 86.5 s: 4.5 s for 9 steps after it, the closing validation would follow too soon
    assert budget.closing_is_near(86.5, 9000, durations, valid_every=40)
    assert not budget.closing_is_near(86.5, 9000, durations, valid_every=4)  # a short interval fits
    assert not budget.closing_is_near(86.5, 9000, Durations(), valid_every=40)  # no step timed yet
