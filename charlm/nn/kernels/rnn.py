"""Elman RNN forward and backward through time (PyTorch's nn.RNN, nonlinearity tanh).

    h_t = tanh(xw_t + h_{t-1} W_hh^T + b_hh)       (xw_t = x_t W_ih^T + b_ih, given)

The activations are the outputs hs themselves, so the forward stores nothing else.

The kernels take arrays, all preallocated, and write into them. Time-major layout. The cell
interface at the end (charlm.nn.cells.KERNEL_INTERFACE) is what every cell's kernel file
defines; its contracts are stated here, the smallest cell.
"""

from __future__ import annotations

from numba import njit

from charlm.nn.kernels._numba import JIT_OPTIONS
from charlm.nn.kernels.activations import dtanh, tanh
from charlm.nn.kernels.packed import packed_product, tail_buffer
from charlm.nn.kernels.sampling import sample_loop


@njit(**JIT_OPTIONS)
def rnn_forward(xw, w_hh_p, b_hh, h0, hs, tail):
    """xw (T,B,H): input projection, read only. w_hh_p: W_hh (H,H) packed
    (charlm.nn.kernels.packed); b_hh (H,); h0 (B,H). hs (T,B,H): out, h of every step (the
    product h_{t-1} W_hh^T is written into hs[t] first, then activated in place). tail: the
    product's scratch (charlm.nn.kernels.packed.tail_buffer)."""
    T, B, H = xw.shape
    for t in range(T):
        h_prev = h0 if t == 0 else hs[t - 1]
        h_out = hs[t]
        packed_product(h_prev, w_hh_p, h_out, tail)
        x_t = xw[t]
        for b in range(B):
            xb = x_t[b]
            ho = h_out[b]
            for k in range(H):
                ho[k] = tanh(xb[k] + ho[k] + b_hh[k])


@njit(**JIT_OPTIONS)
def rnn_backward(hs, w_hh_t_p, dhs, dxw, dh, tail):
    """hs (T,B,H) outputs of the forward; w_hh_t_p: W_hh^T (H,H) packed; dhs (T,B,H) read
    only. dxw (T,B,H): out, dL/d(pre-activation) (= dL/dxw = dL/d(h W_hh^T + b_hh)); may be the
    xw buffer. dh (B,H): in: gradient into the final h; out: gradient w.r.t. h0. tail: the
    product's scratch."""
    T, B, H = hs.shape
    for t in range(T - 1, -1, -1):
        h_t = hs[t]
        dh_t = dhs[t]
        d_t = dxw[t]
        for b in range(B):
            hb = h_t[b]
            dhb = dh_t[b]
            dhr = dh[b]
            db = d_t[b]
            for k in range(H):
                db[k] = (dhb[k] + dhr[k]) * dtanh(hb[k])
        packed_product(d_t, w_hh_t_p, dh, tail)


# --- the cell interface (charlm.nn.cells) -----------------------------------------------------


def start_forward(cache) -> None:
    """Allocate the forward's cell buffers of a charlm.nn.recurrent.RecurrentCache whose common
    fields are set (hs (T,B,H), h0, xw, w_hh, w_hh_p (W_hh packed), b_hh, keep; c0 and leak for
    the cells that take them): cache.stored, what the backward will need besides xw and hs, and
    cache.scratch. The plain RNN stores nothing; its product goes into hs[t]."""
    cache.scratch = (tail_buffer(cache.h0.shape[0], cache.hs.dtype),)


def forward_steps(cache, h_prev, a: int, b: int) -> None:
    """Run steps [a, b) (the slices come in order from 0): write hs[a:b] from xw[a:b] and h_prev
    (B,H), the state before step a. A cell with two state slots sets cache.c_last (a new array)
    once step T - 1 has run."""
    rnn_forward(cache.xw[a:b], cache.w_hh_p, cache.b_hh, h_prev, cache.hs[a:b], *cache.scratch)


def start_backward(cache) -> None:
    """Allocate the backward's cell buffers (cache.scratch) once the forward has run all steps
    and charlm.nn.recurrent has set cache.dh, cache.dc (two slots), cache.w_hh_t_p (W_hh^T
    (H,G*H) packed), cache.dgh (hidden_grad_apart) and cache.dleak (leaky)."""
    cache.scratch = (tail_buffer(cache.h0.shape[0], cache.hs.dtype),)


def backward_steps(cache, dhs, h_prev, a: int, b: int) -> None:
    """Backpropagate through steps b-1 down to a (the slices come from the end down to 0):
    dhs (T,B,H) dL/dhs from above, read only; h_prev (B,H) the state before step a. Writes
    dL/dxw into xw[a:b] (and dgh[a:b], dleak for the cells that have them) and turns cache.dh
    (and cache.dc) from the gradient into step b - 1's state into that into step a - 1's."""
    rnn_backward(cache.hs[a:b], cache.w_hh_t_p, dhs[a:b], cache.xw[a:b], cache.dh, *cache.scratch)


@njit(**JIT_OPTIONS)
def row_step(xb, gb, b_hh, leak, retain, h, c, work):
    """One stream's step of one layer, in place: xb (G*H,) x W_ih^T + b_ih (may be
    overwritten), gb (G*H,) h W_hh^T, b_hh (G*H,); leak, retain (H,) a and 1 - a (leaky cells;
    ones and zeros for the others); h (H,) the state, updated; c (H,) the second state slot,
    updated (scratch for cells with one slot); work (3, H) scratch."""
    h_new = work[0]
    for k in range(h.shape[0]):
        h_new[k] = tanh(xb[k] + gb[k] + b_hh[k])
    h[:] = h_new


@njit(**JIT_OPTIONS)
def sample_tokens(args):
    """The sampling loop stepping this cell: charlm.nn.kernels.sampling.sample_loop, compiled
    (and cached) here with row_step in place (args: its arguments after the step)."""
    return sample_loop(row_step, args)
