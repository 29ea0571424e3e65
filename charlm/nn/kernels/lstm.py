"""LSTM forward and backward through time (PyTorch's nn.LSTM cell, gate order i, f, g, o).

    gates = xw_t + h_{t-1} W_hh^T + b_hh          (xw_t = x_t W_ih^T + b_ih, given)
    i, f, o = sigmoid(.), g = tanh(.)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

The kernels take arrays, all preallocated, and write into them. Time-major layout. No division
anywhere (Numba's Python error model would put a zero check in the loop). The cell interface
(charlm.nn.cells; contracts in charlm.nn.kernels.rnn) is at the end.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from charlm.nn.kernels._numba import JIT_OPTIONS
from charlm.nn.kernels.activations import dsigmoid, dtanh, sigmoid, tanh
from charlm.nn.kernels.buffers import per_step_buffer, product_buffer
from charlm.nn.kernels.packed import packed_product, tail_buffer
from charlm.nn.kernels.sampling import sample_loop


@njit(**JIT_OPTIONS)
def lstm_forward(xw, w_hh_p, b_hh, h0, c0, hs, cs, gh, tail, keep):
    """xw (T,B,4H): input projection; overwritten with the activations (i,f,g,o), which the
    backward uses when keep (xw is consumed either way).
    w_hh_p: W_hh (4H,H) packed (charlm.nn.kernels.packed); b_hh (4H,); h0, c0 (B,H).
    hs (T,B,H): out, h of every step. cs: out, c of every step (T,B,H) if keep, else (1,B,H)
    holding the last c; c0 must not share memory with cs. gh (B,4H): scratch for h_{t-1} W_hh^T,
    tail the product's scratch (charlm.nn.kernels.packed.tail_buffer).

    Without keep, c_{t-1} and c_t alternate between cs[0] and a second buffer, the last step
    writing cs[0]: a row read and written in place would stop LLVM vectorizing the cell."""
    T, B, _ = xw.shape
    spare = np.empty_like(cs[0])
    c_prev = c0
    for t in range(T):
        h_prev = h0 if t == 0 else hs[t - 1]
        if keep:
            c_out = cs[t]
        else:
            c_out = cs[0] if (T - 1 - t) % 2 == 0 else spare
        packed_product(h_prev, w_hh_p, gh, tail)
        x_t = xw[t]
        h_out = hs[t]
        for b in range(B):
            lstm_row_forward(x_t[b], gh[b], b_hh, c_prev[b], c_out[b], h_out[b])
        c_prev = c_out


@njit(**JIT_OPTIONS)
def lstm_row_forward(xb, gb, b_hh, cp, co, ho):
    """One row of a step: xb (4H,) pre-activations from the input, overwritten with the
    activations i,f,g,o; gb (4H,) from h_{t-1}; cp (H,) c_{t-1}; co, ho (H,) out: c_t, h_t.

    A function of its own, not a loop inside the step loop: written inline there, LLVM does
    not vectorize it. The plain RNN row (one tanh) vectorizes inline."""
    H = cp.shape[0]
    for k in range(H):
        i = sigmoid(xb[k] + gb[k] + b_hh[k])
        f = sigmoid(xb[H + k] + gb[H + k] + b_hh[H + k])
        g = tanh(xb[2 * H + k] + gb[2 * H + k] + b_hh[2 * H + k])
        o = sigmoid(xb[3 * H + k] + gb[3 * H + k] + b_hh[3 * H + k])
        c = f * cp[k] + i * g
        co[k] = c
        ho[k] = o * tanh(c)
        xb[k] = i  # stored unconditionally: a branch here stops the loop vectorizing
        xb[H + k] = f
        xb[2 * H + k] = g
        xb[3 * H + k] = o


@njit(**JIT_OPTIONS)
def lstm_backward(gates, cs, c0, w_hh_t_p, dhs, dh, dc, tail):
    """gates (T,B,4H): the activations stored by the forward; overwritten with dL/d(pre-activation
    gates), which is both dL/dxw and dL/d(h W_hh^T + b_hh).
    cs (T,B,H) c of every step; c0 (B,H); w_hh_t_p: W_hh^T (H,4H) packed; dhs (T,B,H) read
    only. dh, dc (B,H): in: gradient into the final h and c; out: gradient w.r.t. h0 and c0.
    tail: the product's scratch."""
    T, B, _ = gates.shape
    for t in range(T - 1, -1, -1):
        c_prev = c0 if t == 0 else cs[t - 1]
        g_t = gates[t]
        c_t = cs[t]
        dh_t = dhs[t]
        for b in range(B):
            _cell_backward(g_t[b], c_t[b], c_prev[b], dh_t[b], dh[b], dc[b])
        packed_product(g_t, w_hh_t_p, dh, tail)


@njit(**JIT_OPTIONS)
def _cell_backward(gb, cb, cp, dhb, dhr, dcb):
    """One row of a step backward: gb (4H,) activations i,f,g,o, overwritten with the gradients
    of their pre-activations; cb, cp (H,) c_t and c_{t-1}; dhb (H,) dL/dh_t from above;
    dhr, dcb (H,) in: gradient from step t+1 into h_t and c_t; dcb out: into c_{t-1}.
    (Own function for the same reason as lstm_row_forward.)"""
    H = cb.shape[0]
    for k in range(H):
        i = gb[k]
        f = gb[H + k]
        g = gb[2 * H + k]
        o = gb[3 * H + k]
        tc = tanh(cb[k])
        dhv = dhb[k] + dhr[k]
        dcv = dcb[k] + dhv * o * dtanh(tc)
        dcb[k] = dcv * f
        gb[k] = dcv * g * dsigmoid(i)
        gb[H + k] = dcv * cp[k] * dsigmoid(f)
        gb[2 * H + k] = dcv * i * dtanh(g)
        gb[3 * H + k] = dhv * tc * dsigmoid(o)


# --- the cell interface (charlm.nn.cells) -----------------------------------------------------


def start_forward(cache) -> None:
    """cache.stored = (cs,): c of every step (T,B,H) when keep, else (1,B,H) the running c."""
    cache.stored = (per_step_buffer(cache),)
    cache.scratch = (product_buffer(cache, 4), tail_buffer(cache.h0.shape[0], cache.hs.dtype))


def forward_steps(cache, h_prev, a: int, b: int) -> None:
    (cs,) = cache.stored
    if cache.keep:
        c_prev, c_out = (cache.c0 if a == 0 else cs[a - 1]), cs[a:b]
    else:  # cs holds only the running c, updated in place
        c_prev, c_out = (cache.c0 if a == 0 else cs[0].copy()), cs
    lstm_forward(cache.xw[a:b], cache.w_hh_p, cache.b_hh, h_prev, c_prev, cache.hs[a:b], c_out,
                 *cache.scratch, cache.keep)
    if b == cache.steps:
        cache.c_last = cs[-1].copy()


def start_backward(cache) -> None:
    cache.scratch = (tail_buffer(cache.h0.shape[0], cache.hs.dtype),)


def backward_steps(cache, dhs, h_prev, a: int, b: int) -> None:
    (cs,) = cache.stored
    c_prev = cache.c0 if a == 0 else cs[a - 1]
    lstm_backward(cache.xw[a:b], cs[a:b], c_prev, cache.w_hh_t_p, dhs[a:b], cache.dh, cache.dc,
                  *cache.scratch)


@njit(**JIT_OPTIONS)
def row_step(xb, gb, b_hh, leak, retain, h, c, work):
    h_new, c_new = work[0], work[1]
    lstm_row_forward(xb, gb, b_hh, c, c_new, h_new)
    c[:] = c_new
    h[:] = h_new


@njit(**JIT_OPTIONS)
def sample_tokens(args):
    return sample_loop(row_step, args)
