"""Learning-rate schedules other than the plateau decay that lives in the training loop (their
names, charlm.config.SCHEDULES)."""

from __future__ import annotations

import math

from charlm.config import WSD_DECAY
# Schedules that also lower the rate on a validation plateau: plateau, and wsd during its stable
# part, where a long budget may otherwise hold a rate the model has outgrown.
PLATEAU_DECAYS = ("plateau", "wsd")


def cosine_factor(fraction: float, warmup: float = 0.0, floor: float = 0.0) -> float:
    """Multiplier of the base learning rate at `fraction` (0..1) of the run.

    Linear warm-up over the first `warmup` fraction, then a half cosine from 1 down to
    `floor` at the end (Loshchilov & Hutter 2017, without restarts).
    """
    fraction = min(max(fraction, 0.0), 1.0)
    if warmup > 0 and fraction < warmup:
        return max(fraction / warmup, 1e-3)
    span = (fraction - warmup) / (1.0 - warmup) if warmup < 1 else 1.0
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * span))


def wsd_factor(fraction: float, warmup: float = 0.0, decay: float = WSD_DECAY) -> float:
    """Warm-up, stable, decay (Hu et al. 2024, MiniCPM): linear warm-up over the first `warmup`
    fraction, the full rate until the last `decay` fraction, then linearly down to zero.

    A short budget leaves a model far from converged: the full rate for most of it learns
    faster than a cosine that starts lowering the rate at once, and the final decay still
    gives the annealing gain."""
    fraction = min(max(fraction, 0.0), 1.0)
    if warmup > 0 and fraction < warmup:
        return max(fraction / warmup, 1e-3)
    if fraction <= 1.0 - decay:
        return 1.0
    return (1.0 - fraction) / decay


def budget_factor(schedule: str, fraction: float, warmup: float = 0.0, decay: float = WSD_DECAY) -> float:
    """Multiplier of the base rate for a schedule of BUDGET_SCHEDULES (`decay`: wsd only)."""
    if schedule == "cosine":
        return cosine_factor(fraction, warmup)
    return wsd_factor(fraction, warmup, decay)
