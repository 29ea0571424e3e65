"""Numbers in JSON: read from model headers, training states and metrics rows, where Python's
bool is an int subclass but a JSON true or false is never a count or a rate; and written, where
JSON has no infinity or NaN.
"""

from __future__ import annotations

import math


def is_int(x) -> bool:
    """x is an int and not a bool."""
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x) -> bool:
    """x is an int or a float (NaN and inf included) and not a bool."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def json_safe(d: dict) -> dict:
    """d with every infinite or NaN float (a diverged model's perplexity) replaced by None (null)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
