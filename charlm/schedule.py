"""Learning-rate schedules other than the plateau decay that lives in the training loop."""

from __future__ import annotations

import math

SCHEDULES = ("plateau", "cosine")


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
