"""Buffers that a cell's forward allocates once per window, for all its steps.

`cache` is the charlm.nn.recurrent cache of one layer and stream block: hs (T,B,H) its output,
keep whether the backward will run.
"""

from __future__ import annotations

import numpy as np


def per_step_buffer(cache) -> np.ndarray:
    """(T,B,H) when the backward needs a value of every step, else (1,B,H) for the latest."""
    T, B, H = cache.hs.shape
    return np.empty((T if cache.keep else 1, B, H), cache.hs.dtype)


def product_buffer(cache, gates: int) -> np.ndarray:
    """h_{t-1} W_hh^T of one step: (B, gates*H)."""
    _, B, H = cache.hs.shape
    return np.empty((B, gates * H), cache.hs.dtype)
