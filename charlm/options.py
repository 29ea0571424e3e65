"""What the value of an option may be: its type, its choices or its range, and its help text.

A config dataclass (charlm.config) declares each field with `option(...)`; the command line
builds its options from these specs, and charlm.validation checks values against them, so a
default, a range or a message is written once.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

SPEC_KEY = "option"  # a dataclass field's metadata key holding its Spec


@dataclass(frozen=True)
class Range:
    """Numbers from low to high; an open end excludes its bound, a missing end is unbounded.
    Only finite numbers are in a range."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        above = self.low is None or (x > self.low if self.low_open else x >= self.low)
        below = self.high is None or (x < self.high if self.high_open else x <= self.high)
        return above and below

    def describe(self) -> str:
        """In words: 'at least 1', 'positive', 'in [0, 1)'."""
        low, high = _written(self.low), _written(self.high)
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            if self.low_open:
                return "positive" if self.low == 0 else f"above {low}"
            return f"{low} or more" if self.low == 0 else f"at least {low}"
        if self.high is not None:
            return f"below {high}" if self.high_open else f"at most {high}"
        return "a finite number"

    def formula(self) -> str:
        """As the command line's help shows ranges: 'x>=1', '0<=x<1'."""
        low, high = _written(self.low), _written(self.high)
        if self.high is None:
            return f"x{'>' if self.low_open else '>='}{low}"
        left = "" if self.low is None else f"{low}{'<' if self.low_open else '<='}"
        return f"{left}x{'<' if self.high_open else '<='}{high}"


def _written(bound: float | None) -> str:
    """A bound as a person writes it: 1, 0.5, 9223372036854775807 (an int in full); "" for none."""
    if bound is None:
        return ""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


@dataclass(frozen=True)
class Spec:
    """One option: the type of its values (int, float, str or bool), its choices or range,
    whether None is a value (not given / no limit), its help, and its command-line name when
    that is not --field-name."""

    kind: type
    help: str
    choices: tuple = ()
    range: Range | None = None
    optional: bool = False
    hint: str = ""  # ends a message about a bad value: "e.g. 0.1"
    flag: str = ""

    def problem(self, value) -> str | None:
        """What is wrong with `value` ('must be at least 1'), or None when it is valid."""
        if value is None:
            return None if self.optional else "must be given"
        if not _has_kind(value, self.kind):
            return _KIND_PROBLEM[self.kind]
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(map(str, self.choices))}"
        if self.range is not None and not self.range.holds(value):
            return f"must be {self.range.describe()}"
        if self.kind is float and not math.isfinite(value):
            return _KIND_PROBLEM[float]
        return None

    def complaint(self, flag: str, value) -> str | None:
        """'--batch must be at least 1, not 0' (and the hint), or None when `value` is valid."""
        problem = self.problem(value)
        if problem is None:
            return None
        shown = repr(value) if isinstance(value, str) else str(value)
        return f"{flag} {problem}, not {shown}" + (f"; {self.hint}" if self.hint else "")

    def parse(self, text: str):
        """The value of a command-line word (int, float or str); ValueError if it is none."""
        if self.kind is int:
            return int(text)
        if self.kind is float:
            return float(text)
        return text


_KIND_PROBLEM = {int: "must be an integer", float: "must be a finite number", str: "must be text",
                 bool: "must be true or false"}


def _has_kind(value, kind: type) -> bool:
    if isinstance(value, bool):  # bool is an int subclass in Python
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def option(default, help: str, *, kind: type | None = None, choices: tuple = (),
           low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, hint: str = "", flag: str = ""):
    """A dataclass field holding `default` and its Spec. kind defaults to the default's type;
    a None default makes the option optional."""
    bounds = None if low is None and high is None else Range(low, high, low_open, high_open)
    spec = Spec(kind or type(default), help, tuple(choices), bounds, default is None, hint, flag)
    return dataclasses.field(default=default, metadata={SPEC_KEY: spec})


def specs(cls) -> dict[str, Spec]:
    """Field name -> Spec of a config dataclass's options."""
    return {f.name: f.metadata[SPEC_KEY] for f in dataclasses.fields(cls) if SPEC_KEY in f.metadata}


def flag_of(name: str, spec: Spec | None = None) -> str:
    """The command line's name of an option: '--seq-len' for seq_len."""
    return (spec.flag if spec is not None and spec.flag else None) or "--" + name.replace("_", "-")
