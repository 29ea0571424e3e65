"""GRU forward and backward through time (PyTorch's nn.GRU cell, gate order r, z, n).

    gh = h_{t-1} W_hh^T + b_hh                     (xw_t = x_t W_ih^T + b_ih, given)
    r = sigmoid(xw_r + gh_r),  z = sigmoid(xw_z + gh_z)
    n = tanh(xw_n + r * gh_n)
    h_t = (1 - z) * n + z * h_{t-1}  =  n + z * (h_{t-1} - n)

The hidden-side gradient of the n part, d(gh_n) = dn_pre * r, differs from d(xw_n) = dn_pre,
so the backward writes the hidden side's gradient d(gh) (T,B,3H) apart from dL/dxw: one
contiguous array, whose T*B rows give dW_hh in GEMMs that read it in place, and db_hh.

The kernels take arrays, all preallocated, and write into them. Time-major layout. The cell
interface (charlm.nn.cells; contracts in charlm.nn.kernels.rnn) is at the end.
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
def gru_forward(xw, w_hh_p, b_hh, h0, hs, ghn, gh, tail, keep):
    """xw (T,B,3H): input projection; overwritten with the activations (r,z,n), which the
    backward uses when keep (xw is consumed either way).
    w_hh_p: W_hh (3H,H) packed (charlm.nn.kernels.packed); b_hh (3H,); h0 (B,H).
    hs (T,B,H): out, h of every step. ghn (T,B,H): out, gh_n = h_{t-1} W_hn^T + b_hn of every step
    (when not keep, (1,B,H) scratch rewritten every step). gh (B,3H): scratch; tail: the
    product's scratch (charlm.nn.kernels.packed.tail_buffer)."""
    T, B, _ = xw.shape
    for t in range(T):
        h_prev = h0 if t == 0 else hs[t - 1]
        packed_product(h_prev, w_hh_p, gh, tail)
        x_t = xw[t]
        h_out = hs[t]
        ghn_t = ghn[t] if keep else ghn[0]
        for b in range(B):
            gru_row_forward(x_t[b], gh[b], b_hh, h_prev[b], h_out[b], ghn_t[b])


@njit(**JIT_OPTIONS)
def gru_row_forward(xb, gb, b_hh, hp, ho, gnb):
    """One row of a step: xb (3H,) pre-activations from the input, overwritten with the
    activations r,z,n; gb (3H,) h_{t-1} W_hh^T; hp (H,) h_{t-1}; ho (H,) out: h_t;
    gnb (H,) out: gh_n. Its own function: LLVM vectorizes it there, not inline in the step loop
    (see lstm.lstm_row_forward)."""
    H = hp.shape[0]
    for k in range(H):
        r = sigmoid(xb[k] + gb[k] + b_hh[k])
        z = sigmoid(xb[H + k] + gb[H + k] + b_hh[H + k])
        hn = gb[2 * H + k] + b_hh[2 * H + k]
        n = tanh(xb[2 * H + k] + r * hn)
        ho[k] = n + z * (hp[k] - n)
        xb[k] = r  # stored unconditionally: a branch here stops the loop vectorizing
        xb[H + k] = z
        xb[2 * H + k] = n
        gnb[k] = hn


@njit(**JIT_OPTIONS)
def gru_backward(gates, ghn, hs, h0, w_hh_t_p, dhs, dh, dgh, dhz, tail):
    """gates (T,B,3H): activations stored by the forward; overwritten with dL/dxw.
    ghn (T,B,H): gh_n stored by the forward (read only). hs (T,B,H), h0 (B,H): the states
    (h_{t-1} is needed for dz). w_hh_t_p: W_hh^T (H,3H) packed. dhs (T,B,H) read only.
    dh (B,H): in: gradient into the final h; out: gradient w.r.t. h0.
    dgh (T,B,3H) C-contiguous (each step's (B,3H) is the per-step product's input): out,
    dL/d(h_{t-1} W_hh^T + b_hh) of every step: dL/dxw but dn_pre * r in the n part.
    dhz (B,H): scratch; tail: the product's scratch."""
    T, B, G = gates.shape
    H = G // 3
    for t in range(T - 1, -1, -1):
        h_prev = h0 if t == 0 else hs[t - 1]
        g_t = gates[t]
        gn_t = ghn[t]
        dh_t = dhs[t]
        dg_t = dgh[t]
        for b in range(B):
            _cell_backward(g_t[b], gn_t[b], h_prev[b], dh_t[b], dh[b], dg_t[b], dhz[b])
        packed_product(dg_t, w_hh_t_p, dh, tail)
        for b in range(B):
            dhr = dh[b]
            dzb = dhz[b]
            for k in range(H):
                dhr[k] += dzb[k]


@njit(**JIT_OPTIONS)
def _cell_backward(gb, gnb, hp, dhb, dhr, dgb, dzb):
    """One row of a step backward: gb (3H,) activations r,z,n, overwritten with dL/dxw;
    gnb (H,) gh_n; hp (H,) h_{t-1}; dhb (H,) dL/dh_t from above; dhr (H,) from step t+1;
    dgb (3H,) out: dL/d(h_{t-1} W_hh^T + b_hh); dzb (H,) out: the direct part of dL/dh_{t-1}
    (through z)."""
    H = hp.shape[0]
    for k in range(H):
        r = gb[k]
        z = gb[H + k]
        n = gb[2 * H + k]
        dhv = dhb[k] + dhr[k]
        dn_pre = (dhv - dhv * z) * dtanh(n)
        dr_pre = dn_pre * gnb[k] * dsigmoid(r)
        dz_pre = dhv * (hp[k] - n) * dsigmoid(z)
        gb[k] = dr_pre
        gb[H + k] = dz_pre
        gb[2 * H + k] = dn_pre
        dgb[k] = dr_pre
        dgb[H + k] = dz_pre
        dgb[2 * H + k] = dn_pre * r
        dzb[k] = dhv * z


# --- the cell interface (charlm.nn.cells) -----------------------------------------------------


def start_forward(cache) -> None:
    """cache.stored = (ghn,): gh_n of every step (T,B,H) when keep, else (1,B,H) scratch."""
    cache.stored = (per_step_buffer(cache),)
    cache.scratch = (product_buffer(cache, 3), tail_buffer(cache.h0.shape[0], cache.hs.dtype))


def forward_steps(cache, h_prev, a: int, b: int) -> None:
    (ghn,) = cache.stored
    gru_forward(cache.xw[a:b], cache.w_hh_p, cache.b_hh, h_prev, cache.hs[a:b],
                ghn[a:b] if cache.keep else ghn, *cache.scratch, cache.keep)


def start_backward(cache) -> None:
    """The backward writes cache.dgh (the cell is hidden_grad_apart)."""
    B, H = cache.h0.shape
    dtype = cache.hs.dtype
    cache.scratch = (np.empty((B, H), dtype), tail_buffer(B, dtype))  # dhz, the product's tail


def backward_steps(cache, dhs, h_prev, a: int, b: int) -> None:
    (ghn,) = cache.stored
    gru_backward(cache.xw[a:b], ghn[a:b], cache.hs[a:b], h_prev, cache.w_hh_t_p, dhs[a:b],
                 cache.dh, cache.dgh[a:b], *cache.scratch)


@njit(**JIT_OPTIONS)
def row_step(xb, gb, b_hh, leak, retain, h, c, work):
    h_new = work[0]
    gru_row_forward(xb, gb, b_hh, h, h_new, work[1])
    h[:] = h_new


@njit(**JIT_OPTIONS)
def sample_tokens(args):
    return sample_loop(row_step, args)
