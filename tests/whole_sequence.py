"""One recurrent layer over all its T steps in one call: the tests' front to charlm.nn.recurrent,
whose start/steps/finish functions the model calls in time chunks."""

from __future__ import annotations

from charlm.nn.recurrent import (RecurrentCache, RecurrentGrads, check_array, recurrent_backward_finish,
                                 recurrent_backward_start, recurrent_backward_steps, recurrent_start,
                                 recurrent_steps)


def recurrent_forward(cell: str, xw, w_hh, b_hh, h0, c0=None, keep=True, leak=None):
    """Run one recurrent layer over T steps; arguments as recurrent_start's (xw is CONSUMED).

    Returns (hs, cache): hs (T,B,H) the output of every step (a new array). The final state is
    hs[-1] (= cache.h_last) and, for cells with two state slots, cache.c_last."""
    cache = recurrent_start(cell, xw, w_hh, b_hh, h0, c0, keep, leak=leak)
    recurrent_steps(cache, 0, cache.steps)
    return cache.hs, cache


def recurrent_backward(cache: RecurrentCache, dhs, dh_last=None, dc_last=None) -> RecurrentGrads:
    """Backpropagate through the T steps of the forward that produced ``cache``.

    dhs (T,B,H): dLoss/dhs from above (read only). dh_last, dc_last (B,H): gradient flowing into
    the final state; None means zeros. Returns the RecurrentGrads; dxw is written into the
    forward's xw buffer. The cache is consumed: a second backward raises ValueError."""
    if isinstance(cache, RecurrentCache):  # a bad dhs must not consume the cache
        check_array("dhs", dhs, cache.hs.shape, cache.hs.dtype)
    recurrent_backward_start(cache, dh_last, dc_last)
    recurrent_backward_steps(cache, dhs, 0, cache.steps)
    return recurrent_backward_finish(cache)
