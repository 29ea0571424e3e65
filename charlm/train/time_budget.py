"""A --time budget: when training stops, whether a validation still fits, how far the run is.

Pure arithmetic over what the Trainer measures (Durations) and its progress (seconds elapsed,
tokens trained): no clock is read here. The budget includes the closing validation, so a
reserve for it is kept at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

# The closing validation's reserve is the last validation's duration times this: the same
# validation's duration varies by some 15% with the machine's load, and a reserve of exactly
# the last duration lets the closing one run past the budget.
VALIDATION_MARGIN = 1.25
# A scheduled validation is skipped when it would leave less than this fraction of the
# validation interval before the closing one: it would score nearly the same weights twice.
SKIP_BEFORE_CLOSE = 0.25
# Before any validation, a validation token is taken to cost a third of a training token
# (forward only, no backward): this many validation tokens per training token's time. As many
# as one when training runs the forward alone (an echo state network's read-out training).
VALIDATION_SPEEDUP = 3.0


@dataclass
class Durations:
    """Wall-clock seconds the Trainer measured last: a training step, and a validation (its
    model save included; None before the first)."""

    step: float = 0.0
    validation: float | None = None


@dataclass(frozen=True)
class TimeBudget:
    """seconds for the whole run, closing validation included, with valid_tokens to validate;
    validation_speedup: validation tokens per training token's time (VALIDATION_SPEEDUP, or 1
    when training is a forward pass alone)."""

    seconds: float
    valid_tokens: int
    validation_speedup: float = VALIDATION_SPEEDUP

    def closing_reserve(self, elapsed: float, tokens: int, durations: Durations) -> float:
        """Seconds kept for the closing validation: the last one's duration with a margin, or
        before any, a guess from the training rate (tokens / elapsed); 0 before any training."""
        if durations.validation is not None:
            return VALIDATION_MARGIN * durations.validation
        if tokens == 0 or elapsed <= 0:
            return 0.0
        return self.valid_tokens / (self.validation_speedup * tokens / elapsed)

    def seconds_for_training(self, elapsed: float, tokens: int, durations: Durations) -> float:
        """What the budget has left once the closing validation's reserve is kept."""
        return self.seconds - elapsed - self.closing_reserve(elapsed, tokens, durations)

    def exhausted(self, elapsed: float, tokens: int, durations: Durations) -> bool:
        """True when another step (as long as the last) would eat into the closing reserve."""
        return self.seconds_for_training(elapsed, tokens, durations) < durations.step

    def closing_is_near(self, elapsed: float, tokens: int, durations: Durations, valid_every: int) -> bool:
        """Would a validation now leave less than SKIP_BEFORE_CLOSE of a validation interval
        (valid_every steps at the last step's pace) before the closing one? False before any
        step was timed."""
        if durations.step <= 0:
            return False
        seconds_left = self.seconds_for_training(elapsed, tokens, durations) - (durations.validation or 0.0)
        return seconds_left < SKIP_BEFORE_CLOSE * valid_every * durations.step

    def fraction(self, elapsed: float, tokens: int, durations: Durations) -> float:
        """How far the run is, 0 at the start, 1 where training ends (the closing reserve
        excluded): the position of a schedule such as cosine or wsd over the budget."""
        return elapsed / max(self.seconds - self.closing_reserve(elapsed, tokens, durations), 1e-9)
