"""Numbers among values decoded from JSON (model headers, training states, metrics rows).

Python's bool is an int subclass, but a JSON true or false is never a count or a rate.
"""

from __future__ import annotations


def is_int(x) -> bool:
    """x is an int and not a bool."""
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x) -> bool:
    """x is an int or a float (NaN and inf included) and not a bool."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)
