"""Leaky tanh RNN forward and backward through time (the leaky unit; an echo state network's
reservoir runs the same forward).

    u_t = tanh(xw_t + s_{t-1} W_hh^T + b_hh)       (xw_t = x_t W_ih^T + b_ih, given)
    s_t = (1 - a) * s_{t-1} + a * u_t               (a (H,): one leak rate per unit, in (0, 1])

a = 1 is the Elman RNN of rnn.py, to the bit. The kernels take both a and 1 - a as arrays of the
state's dtype (a Python float literal would turn float32 arithmetic into float64). Backward, with g_t = dL/ds_t (from above and
from step t+1):

    dL/d(pre-activation) = g_t * a * (1 - u_t^2)
    dL/ds_{t-1}          = g_t * (1 - a) + dL/d(pre-activation) W_hh
    dL/da               += g_t * (u_t - s_{t-1})     (summed over steps and streams)

The kernels take arrays, all preallocated, and write into them. Time-major layout. The cell
interface (charlm.nn.cells; contracts in charlm.nn.kernels.rnn) is at the end.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from charlm.nn.kernels._numba import JIT_OPTIONS
from charlm.nn.kernels.activations import dtanh, tanh
from charlm.nn.kernels.packed import packed_product, tail_buffer
from charlm.nn.kernels.sampling import sample_loop


@njit(**JIT_OPTIONS)
def leaky_forward(xw, w_hh_p, b_hh, leak, retain, h0, hs, tail):
    """xw (T,B,H): input projection; overwritten with u_t, which the backward uses (xw is
    consumed either way). w_hh_p: W_hh (H,H) packed; b_hh (H,); leak (H,) the rates a,
    retain (H,) = 1 - a; h0 (B,H).
    hs (T,B,H): out, s of every step (the product s_{t-1} W_hh^T is written into hs[t]
    first). tail: the product's scratch (charlm.nn.kernels.packed.tail_buffer)."""
    T, B, H = xw.shape
    for t in range(T):
        s_prev = h0 if t == 0 else hs[t - 1]
        s_out = hs[t]
        packed_product(s_prev, w_hh_p, s_out, tail)
        x_t = xw[t]
        for b in range(B):
            _row_forward(x_t[b], s_out[b], b_hh, leak, retain, s_prev[b])


@njit(**JIT_OPTIONS)
def _row_forward(xb, so, b_hh, leak, retain, sp):
    """One row of a step: xb (H,) pre-activation from the input, overwritten with u;
    so (H,) in: s_{t-1} W_hh^T, out: s_t; sp (H,) s_{t-1}."""
    for k in range(sp.shape[0]):
        u = tanh(xb[k] + so[k] + b_hh[k])
        xb[k] = u
        so[k] = retain[k] * sp[k] + leak[k] * u


@njit(**JIT_OPTIONS)
def leaky_backward(us, hs, h0, w_hh_t_p, leak, retain, dhs, dh, dleak, kept, tail):
    """us (T,B,H): u_t stored by the forward; overwritten with dL/dxw (= dL/d(s_{t-1} W_hh^T
    + b_hh)). hs (T,B,H), h0 (B,H): the states (s_{t-1} is needed for dL/da).
    w_hh_t_p: W_hh^T (H,H) packed; leak (H,), retain (H,) = 1 - leak; dhs (T,B,H) read only.
    dh (B,H): in: gradient into the final s; out: gradient w.r.t. h0.
    dleak (H,): dL/da of these steps is added to it. kept (B,H): scratch; tail: the product's
    scratch (charlm.nn.kernels.packed.tail_buffer)."""
    T, B, H = us.shape
    for t in range(T - 1, -1, -1):
        s_prev = h0 if t == 0 else hs[t - 1]
        u_t = us[t]
        dh_t = dhs[t]
        for b in range(B):
            _row_backward(u_t[b], s_prev[b], dh_t[b], dh[b], leak, retain, dleak, kept[b])
        packed_product(u_t, w_hh_t_p, dh, tail)
        for b in range(B):
            dhr = dh[b]
            kb = kept[b]
            for k in range(H):
                dhr[k] += kb[k]


@njit(**JIT_OPTIONS)
def _row_backward(ub, sp, dhb, dhr, leak, retain, dleak, kb):
    """One row of a step backward: ub (H,) u_t, overwritten with dL/d(pre-activation);
    sp (H,) s_{t-1}; dhb (H,) dL/ds_t from above; dhr (H,) from step t+1; dleak (H,) added
    to; kb (H,) out: the direct part of dL/ds_{t-1}, g * (1 - a)."""
    for k in range(sp.shape[0]):
        g = dhb[k] + dhr[k]
        u = ub[k]
        dleak[k] += g * (u - sp[k])
        kb[k] = g * retain[k]
        ub[k] = g * leak[k] * dtanh(u)


# --- the cell interface (charlm.nn.cells) -----------------------------------------------------


def start_forward(cache) -> None:
    cache.scratch = (tail_buffer(cache.h0.shape[0], cache.hs.dtype),)  # the product goes into hs[t]


def forward_steps(cache, h_prev, a: int, b: int) -> None:
    leaky_forward(cache.xw[a:b], cache.w_hh_p, cache.b_hh, cache.leak, cache.retain, h_prev,
                  cache.hs[a:b], *cache.scratch)


def start_backward(cache) -> None:
    """The backward adds dL/da into cache.dleak (the cell is leaky)."""
    B, H = cache.h0.shape
    dtype = cache.hs.dtype
    cache.scratch = (np.empty((B, H), dtype), tail_buffer(B, dtype))  # the direct part of dh, g * (1 - a)


def backward_steps(cache, dhs, h_prev, a: int, b: int) -> None:
    leaky_backward(cache.xw[a:b], cache.hs[a:b], h_prev, cache.w_hh_t_p, cache.leak, cache.retain,
                   dhs[a:b], cache.dh, cache.dleak, *cache.scratch)


@njit(**JIT_OPTIONS)
def row_step(xb, gb, b_hh, leak, retain, h, c, work):
    h_new = work[0]
    for k in range(h.shape[0]):
        h_new[k] = retain[k] * h[k] + leak[k] * tanh(xb[k] + gb[k] + b_hh[k])
    h[:] = h_new


@njit(**JIT_OPTIONS)
def sample_tokens(args):
    return sample_loop(row_step, args)
