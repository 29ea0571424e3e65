"""Log-probabilities of a short sequence in plain numpy, for instant start-up.

`charlm score "a sentence"` is often one short line in a shell loop. Numba needs about a second
in each new process before its first kernel runs (importing it, then loading its compiled
kernels), far longer than the arithmetic of a few dozen tokens. This module does the same
forward pass with numpy alone, one step at a time; charlm.score uses it for short inputs and
the compiled kernels for everything else. Each step is the cell's numpy step from the registry
(charlm.nn.cells). The tests check both give the same numbers.
"""

from __future__ import annotations

import numpy as np

from charlm.nn.losses import target_logprobs
from charlm.nn.model import Model

QUICK_MAX_TOKENS = 256  # up to this many steps the numpy loop beats Numba's start-up


def quick_states(model: Model, tokens: np.ndarray, state: np.ndarray, keep_cells: bool = False):
    """Run the stack over tokens (T, B) from state (L, S, B, H), one step at a time in numpy.

    Returns (hidden, cells, new_state): hidden is a list of L arrays (T, B, H), each layer's
    output after every step (hidden[-1] feeds the decoder); cells likewise holds the second state
    slot (the LSTM's cell states) when keep_cells (else None).
    """
    cfg, p = model.config, model.params
    T, B = tokens.shape
    x = p["embedding.weight"][tokens] if cfg.embed > 0 else None
    new_state = np.empty_like(state)
    hidden: list[np.ndarray] = []
    cell = model.cell
    two_slots = cell.state_slots == 2
    cells: list[np.ndarray] | None = [] if keep_cells and two_slots else None
    for layer in range(cfg.layers):
        w_ih, b_ih = p[f"rnn.weight_ih_l{layer}"], p[f"rnn.bias_ih_l{layer}"]
        w_hh, b_hh = p[f"rnn.weight_hh_l{layer}"], p[f"rnn.bias_hh_l{layer}"]
        xw = (w_ih.T[tokens] if x is None else x @ w_ih.T) + b_ih  # (T, B, G*H)
        h = state[layer, 0]
        c = state[layer, 1] if two_slots else None
        leak = model.leak_rates(layer)
        hs = np.empty((T, B, cfg.hidden), state.dtype)
        cs = np.empty((T, B, cfg.hidden), state.dtype) if cells is not None else None
        for t in range(T):
            h, c = cell.numpy_step(xw[t], h @ w_hh.T + b_hh, h, c, leak)
            hs[t] = h
            if cs is not None:
                cs[t] = c
        new_state[layer, 0] = h
        if c is not None:
            new_state[layer, 1] = c
        hidden.append(hs)
        if cells is not None:
            cells.append(cs)
        x = hs
    return hidden, cells, new_state


def quick_logits(model: Model, top: np.ndarray) -> np.ndarray:
    """Decoder in numpy: top (N, H) -> logits (N, V)."""
    p = model.params
    return top @ p["decoder.weight"].T + p["decoder.bias"]


def quick_logprobs(model: Model, tokens: np.ndarray, targets: np.ndarray, state: np.ndarray):
    """Like Model.target_logprobs for tokens, targets (T, B), in numpy: (logp (T, B), new_state)."""
    T, B = tokens.shape
    hidden, _, new_state = quick_states(model, tokens, state)
    logits = quick_logits(model, hidden[-1].reshape(T * B, -1))
    logp = target_logprobs(logits, np.asarray(targets).reshape(-1))
    return logp.reshape(T, B), new_state
