"""A tokenizer built from a whole text at once, and its UNK count: what the tests compare the
piecewise, streaming build of charlm.data against."""

from __future__ import annotations

import numpy as np

from charlm.config import TokenizerConfig
from charlm.data.tokenizer import UNK_ID, TokenCounts, Tokenizer, normalize


def build_tokenizer(text: str, cfg: TokenizerConfig) -> Tokenizer:
    """Vocabulary of `text`: tokens seen fewer than cfg.min_count times become UNK."""
    counts = TokenCounts(cfg.level)
    counts.update(normalize(text))
    return Tokenizer.from_counts(counts, cfg)


def count_unk(ids: np.ndarray) -> int:
    return int(np.count_nonzero(np.asarray(ids) == UNK_ID))
