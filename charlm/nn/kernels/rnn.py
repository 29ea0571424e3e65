"""Elman RNN forward and backward through time (PyTorch's nn.RNN, nonlinearity tanh).

    h_t = tanh(xw_t + h_{t-1} W_hh^T + b_hh)       (xw_t = x_t W_ih^T + b_ih, given)

The activations are the outputs hs themselves, so the forward stores nothing else.

Private kernels: arrays in, arrays out, all preallocated by charlm.nn.recurrent. Time-major layout.
"""

from __future__ import annotations

from numba import njit

from charlm.nn.kernels._numba import JIT_OPTIONS
from charlm.nn.kernels.activations import dtanh, tanh
from charlm.nn.kernels.linalg import rows_times_transposed


@njit(**JIT_OPTIONS)
def rnn_forward(xw, w_hh, b_hh, h0, hs, h_tr):
    """xw (T,B,H): input projection, read only. w_hh (H,H) C-contiguous; b_hh (H,);
    h0 (B,H). hs (T,B,H): out, h of every step (the product h_{t-1} W_hh^T is written into
    hs[t] first, then activated in place). h_tr (H,B): scratch."""
    T, B, H = xw.shape
    for t in range(T):
        h_prev = h0 if t == 0 else hs[t - 1]
        h_out = hs[t]
        rows_times_transposed(h_prev, w_hh, h_out, h_tr)
        x_t = xw[t]
        for b in range(B):
            xb = x_t[b]
            ho = h_out[b]
            for k in range(H):
                ho[k] = tanh(xb[k] + ho[k] + b_hh[k])


@njit(**JIT_OPTIONS)
def rnn_backward(hs, w_hh_t, dhs, dxw, dh, dh_tr):
    """hs (T,B,H) outputs of the forward; w_hh_t (H,H) = W_hh^T C-contiguous; dhs (T,B,H) read
    only. dxw (T,B,H): out, dL/d(pre-activation) (= dL/dxw = dL/d(h W_hh^T + b_hh)); may be the
    xw buffer. dh (B,H): in: gradient into the final h; out: gradient w.r.t. h0.
    dh_tr (H,B): scratch."""
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
        rows_times_transposed(d_t, w_hh_t, dh, dh_tr)
