"""Perplexity and bits per character, from a mean cross-entropy in nats per token.

    perplexity = e^loss          bits per character = loss / ln 2

(bits per character when the tokens are characters; per token otherwise).
"""

from __future__ import annotations

import math


def perplexity(loss: float) -> float:
    """e**loss (loss: nats/token), or inf where that exceeds a double (a diverged model)."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def bits_per_char(loss: float) -> float:
    return loss / math.log(2.0)
