"""Token-by-token generation in one compiled loop: no Python per token.

Each step embeds the previous token, runs every layer one step (reusing the cells' forward
kernels with T = B = 1), applies the decoder, shapes the distribution (banned token removed,
top-k, temperature) and draws the next token by inverse CDF from a given uniform number.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._numba import JIT_OPTIONS
from .gru import gru_forward
from .lstm import lstm_forward
from .rnn import rnn_forward

CELL_CODES = {"lstm": 0, "gru": 1, "rnn": 2}


@njit(**JIT_OPTIONS)
def _draw(logits, temp, top_k, banned, u):
    """Index drawn from softmax(logits / temp) restricted to the top_k, without `banned`.
    temp == 0 is argmax. logits (V,) is used as scratch."""
    V = logits.shape[0]
    logits[banned] = -np.inf
    if top_k > 0 and top_k < V:
        kth = np.partition(logits, V - top_k)[V - top_k]
        for v in range(V):
            if logits[v] < kth:
                logits[v] = -np.inf
    best = 0
    for v in range(V):
        if logits[v] > logits[best]:
            best = v
    if temp == 0.0:
        return best
    peak = logits[best]
    total = 0.0
    for v in range(V):
        p = np.exp((logits[v] - peak) / temp) if logits[v] > -np.inf else 0.0
        logits[v] = p
        total += p
    target = u * total
    acc = 0.0
    for v in range(V):
        acc += logits[v]
        if acc > target and logits[v] > 0.0:
            return v
    return best


@njit(**JIT_OPTIONS)
def _sample_tokens(cell, emb, w_ih0, w_ih, b_ih, w_hh_t, b_hh, dec_w, dec_b, state, token,
                   uniforms, temp, top_k, banned, eos, stop_at_eos, out):
    """Generate up to len(out) tokens after `token`; returns how many were written.

    emb (V, E), or (0, 0) for one-hot input. w_ih0 (G*H, I0): layer 0's input weights;
    w_ih (max(L-1, 1), G*H, H): those of layers 1.. stacked; b_ih, b_hh (L, G*H);
    w_hh_t (L, H, G*H) = W_hh^T per layer, C-contiguous. dec_w (V, H), dec_b (V,).
    state (L, S, 1, H) is updated in place. uniforms (n,) in [0, 1), one per token.
    """
    L = state.shape[0]
    H = state.shape[3]
    GH = b_hh.shape[1]
    one_hot = emb.shape[0] == 0
    xw = np.empty((1, 1, GH), state.dtype)  # buffers reused by every step and layer
    gh = np.empty((1, GH), state.dtype)
    h_new = np.empty((1, 1, H), state.dtype)
    c_new = np.empty((1, 1, H), state.dtype)
    ghn = np.empty((1, 1, H), state.dtype)
    n_out = 0
    for step in range(out.shape[0]):
        x = state[0, 0, 0] if one_hot else emb[token]  # (I,); unused for one-hot layer 0
        for layer in range(L):
            if layer == 0 and one_hot:  # x W_ih^T for a one-hot x is a column of W_ih
                for g in range(GH):
                    xw[0, 0, g] = w_ih0[g, token] + b_ih[0, g]
            else:
                np.dot(w_ih0 if layer == 0 else w_ih[layer - 1], x, xw[0, 0])
                xw[0, 0] += b_ih[layer]
            if cell == 0:
                lstm_forward(xw, w_hh_t[layer], b_hh[layer], state[layer, 0], state[layer, 1],
                             h_new, c_new, gh, False)
                state[layer, 1] = c_new[0]
            elif cell == 1:
                gru_forward(xw, w_hh_t[layer], b_hh[layer], state[layer, 0], h_new, ghn, gh, False)
            else:
                rnn_forward(xw, w_hh_t[layer], b_hh[layer], state[layer, 0], h_new)
            state[layer, 0] = h_new[0]
            x = state[layer, 0, 0]
        logits = np.dot(dec_w, x) + dec_b
        token = _draw(logits, temp, top_k, banned, uniforms[step])
        out[step] = token
        n_out += 1
        if stop_at_eos and token == eos:
            break
    return n_out
