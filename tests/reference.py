"""Plain-numpy reference implementations of the recurrent cells: slow, obvious, loop over time.

Same interface as the kernels' math: xw (T,B,G*H) is the input projection (incl. b_ih),
w_hh (G*H,H), b_hh (G*H,), h0/c0 (B,H). Nothing is done in place; inputs are never modified.

backward(...) takes the forward's returned `store` plus dhs (T,B,H), dh_last, dc_last and returns
a dict with dxw, dw_hh, db_hh, dh0, (LSTM) dc0 and (leaky unit) dleak. The leaky unit takes
leak (H,), its rates a.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _zeros_if_none(a, like):
    return np.zeros_like(like) if a is None else a


# --- LSTM ------------------------------------------------------------------------------------


def lstm_forward(xw, w_hh, b_hh, h0, c0):
    T = xw.shape[0]
    H = h0.shape[1]
    h, c = h0, c0
    hs, steps = [], []
    for t in range(T):
        a = xw[t] + h @ w_hh.T + b_hh
        i = _sigmoid(a[:, 0:H])
        f = _sigmoid(a[:, H : 2 * H])
        g = np.tanh(a[:, 2 * H : 3 * H])
        o = _sigmoid(a[:, 3 * H : 4 * H])
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        steps.append(dict(h_prev=h, c_prev=c, i=i, f=f, g=g, o=o, c=c_new))
        h, c = h_new, c_new
        hs.append(h)
    return np.stack(hs), c, steps


def lstm_backward(steps, w_hh, dhs, dh_last=None, dc_last=None):
    T = len(steps)
    dh_next = _zeros_if_none(dh_last, steps[0]["h_prev"])
    dc_next = _zeros_if_none(dc_last, steps[0]["c_prev"])
    dxw = [None] * T
    dw_hh = np.zeros_like(w_hh)
    for t in reversed(range(T)):
        s = steps[t]
        dh = dhs[t] + dh_next
        tc = np.tanh(s["c"])
        do = dh * tc
        dc = dc_next + dh * s["o"] * (1 - tc**2)
        di = dc * s["g"]
        dg = dc * s["i"]
        df = dc * s["c_prev"]
        da = np.concatenate(
            [
                di * s["i"] * (1 - s["i"]),
                df * s["f"] * (1 - s["f"]),
                dg * (1 - s["g"] ** 2),
                do * s["o"] * (1 - s["o"]),
            ],
            axis=1,
        )
        dxw[t] = da
        dw_hh += da.T @ s["h_prev"]
        dh_next = da @ w_hh
        dc_next = dc * s["f"]
    dxw = np.stack(dxw)
    return dict(dxw=dxw, dw_hh=dw_hh, db_hh=dxw.sum(axis=(0, 1)), dh0=dh_next, dc0=dc_next)


# --- GRU -------------------------------------------------------------------------------------


def gru_forward(xw, w_hh, b_hh, h0):
    T = xw.shape[0]
    H = h0.shape[1]
    h = h0
    hs, steps = [], []
    for t in range(T):
        gi = xw[t]
        gh = h @ w_hh.T + b_hh
        r = _sigmoid(gi[:, 0:H] + gh[:, 0:H])
        z = _sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
        n = np.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
        h_new = (1 - z) * n + z * h
        steps.append(dict(h_prev=h, r=r, z=z, n=n, ghn=gh[:, 2 * H :]))
        h = h_new
        hs.append(h)
    return np.stack(hs), steps


def gru_backward(steps, w_hh, dhs, dh_last=None):
    T = len(steps)
    dh_next = _zeros_if_none(dh_last, steps[0]["h_prev"])
    dxw = [None] * T
    dw_hh = np.zeros_like(w_hh)
    db_hh = np.zeros(w_hh.shape[0], dtype=w_hh.dtype)
    for t in reversed(range(T)):
        s = steps[t]
        r, z, n, h_prev = s["r"], s["z"], s["n"], s["h_prev"]
        dh = dhs[t] + dh_next
        dn = dh * (1 - z)
        dz = dh * (h_prev - n)
        dn_pre = dn * (1 - n**2)
        dr = dn_pre * s["ghn"]
        dr_pre = dr * r * (1 - r)
        dz_pre = dz * z * (1 - z)
        dgi = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)  # d(xw_t)
        dgh = np.concatenate([dr_pre, dz_pre, dn_pre * r], axis=1)  # d(h W_hh^T + b_hh)
        dxw[t] = dgi
        dw_hh += dgh.T @ h_prev
        db_hh += dgh.sum(axis=0)
        dh_next = dgh @ w_hh + dh * z
    return dict(dxw=np.stack(dxw), dw_hh=dw_hh, db_hh=db_hh, dh0=dh_next)


# --- RNN -------------------------------------------------------------------------------------


def rnn_forward(xw, w_hh, b_hh, h0):
    T = xw.shape[0]
    h = h0
    hs, steps = [], []
    for t in range(T):
        h_new = np.tanh(xw[t] + h @ w_hh.T + b_hh)
        steps.append(dict(h_prev=h, h=h_new))
        h = h_new
        hs.append(h)
    return np.stack(hs), steps


def rnn_backward(steps, w_hh, dhs, dh_last=None):
    T = len(steps)
    dh_next = _zeros_if_none(dh_last, steps[0]["h_prev"])
    dxw = [None] * T
    dw_hh = np.zeros_like(w_hh)
    for t in reversed(range(T)):
        s = steps[t]
        da = (dhs[t] + dh_next) * (1 - s["h"] ** 2)
        dxw[t] = da
        dw_hh += da.T @ s["h_prev"]
        dh_next = da @ w_hh
    dxw = np.stack(dxw)
    return dict(dxw=dxw, dw_hh=dw_hh, db_hh=dxw.sum(axis=(0, 1)), dh0=dh_next)


# --- leaky RNN --------------------------------------------------------------------------------


def leaky_forward(xw, w_hh, b_hh, h0, leak):
    """s_t = (1 - a) s_{t-1} + a tanh(xw_t + s_{t-1} W_hh^T + b_hh)."""
    T = xw.shape[0]
    s = h0
    hs, steps = [], []
    for t in range(T):
        u = np.tanh(xw[t] + s @ w_hh.T + b_hh)
        s_new = (1 - leak) * s + leak * u
        steps.append(dict(h_prev=s, u=u, leak=leak))
        s = s_new
        hs.append(s)
    return np.stack(hs), steps


def leaky_backward(steps, w_hh, dhs, dh_last=None):
    T = len(steps)
    dh_next = _zeros_if_none(dh_last, steps[0]["h_prev"])
    leak = steps[0]["leak"]
    dxw = [None] * T
    dw_hh = np.zeros_like(w_hh)
    dleak = np.zeros_like(leak)
    for t in reversed(range(T)):
        s = steps[t]
        g = dhs[t] + dh_next
        da = g * leak * (1 - s["u"] ** 2)
        dleak += (g * (s["u"] - s["h_prev"])).sum(axis=0)
        dxw[t] = da
        dw_hh += da.T @ s["h_prev"]
        dh_next = da @ w_hh + g * (1 - leak)
    dxw = np.stack(dxw)
    return dict(dxw=dxw, dw_hh=dw_hh, db_hh=dxw.sum(axis=(0, 1)), dh0=dh_next, dleak=dleak)


# --- uniform entry points ----------------------------------------------------------------------


def forward(cell, xw, w_hh, b_hh, h0, c0=None, leak=None):
    """Returns (hs, c_last or None, store)."""
    if cell == "lstm":
        hs, c, steps = lstm_forward(xw, w_hh, b_hh, h0, c0)
        return hs, c, steps
    if cell == "gru":
        hs, steps = gru_forward(xw, w_hh, b_hh, h0)
        return hs, None, steps
    if cell == "rnn":
        hs, steps = rnn_forward(xw, w_hh, b_hh, h0)
        return hs, None, steps
    if cell in ("leaky", "esn"):
        hs, steps = leaky_forward(xw, w_hh, b_hh, h0, leak)
        return hs, None, steps
    raise ValueError(cell)


def backward(cell, store, w_hh, dhs, dh_last=None, dc_last=None):
    if cell == "lstm":
        return lstm_backward(store, w_hh, dhs, dh_last, dc_last)
    if cell == "gru":
        g = gru_backward(store, w_hh, dhs, dh_last)
    elif cell in ("leaky", "esn"):
        g = leaky_backward(store, w_hh, dhs, dh_last)
    else:
        g = rnn_backward(store, w_hh, dhs, dh_last)
    g["dc0"] = None
    return g
