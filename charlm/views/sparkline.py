"""A one-line chart of a series in Unicode blocks, e.g. ▇▅▃▂▂▁ for a falling loss."""

from __future__ import annotations

import math

BLOCKS = "▁▂▃▄▅▆▇█"
MAX_WIDTH = 40  # longer series are averaged down to this many characters


def sparkline(values: list[float], width: int = MAX_WIDTH) -> str:
    """One block per value (per bucket of values past `width`): the lowest value is ▁, the
    highest █; a series without spread is a flat line of ▄; NaN or infinity is a space."""
    values = _buckets(values, width)
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return " " * len(values)
    lo, hi = min(finite), max(finite)
    top = len(BLOCKS) - 1
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append(" ")
        elif hi == lo:
            out.append(BLOCKS[top // 2])
        else:
            out.append(BLOCKS[round((v - lo) / (hi - lo) * top)])
    return "".join(out)


def _buckets(values: list[float], width: int) -> list[float]:
    """values, or their means over `width` consecutive buckets of near-equal size."""
    n = len(values)
    if n <= width:
        return list(values)
    return [_mean(values[n * k // width : n * (k + 1) // width]) for k in range(width)]


def _mean(chunk: list[float]) -> float:
    return sum(chunk) / len(chunk)
