"""One recurrent layer (LSTM, GRU, tanh RNN or leaky tanh RNN), forward and backward through time.

The math is exactly PyTorch's nn.LSTM / nn.GRU / nn.RNN (single layer, unidirectional), with the
weights in PyTorch's layout: W_ih (G*H, I), W_hh (G*H, H), b_ih, b_hh (G*H,); G = 4 (LSTM, gates
i,f,g,o), 3 (GRU, gates r,z,n) or 1 (RNN). The leaky unit (cell "leaky"; "esn", the echo state
network's reservoir, runs the same steps) is the RNN with a leak rate a (H,) per unit:
s_t = (1 - a) * s_{t-1} + a * tanh(xw_t + s_{t-1} W_hh^T + b_hh) (charlm.nn.kernels.leaky); its
backward also gives dL/da.

Division of labour: the model computes the input projection of all T steps at once,
``xw = x @ W_ih.T + b_ih`` of shape (T, B, G*H), time-major and C-contiguous. This module does
the sequential part (the Numba kernels in charlm.nn.kernels) and the hidden-side weight gradients
(one GEMM over all T*B rows). The model gets the input-side gradients from ``dxw``:
``dW_ih = dxw^T x``, ``db_ih = dxw.sum((0, 1))``, ``dx = dxw @ W_ih``.

Memory contract (the kernels work in place to save memory and bandwidth):

- ``recurrent_forward`` consumes ``xw`` (which must be writeable): with keep=True it is kept in
  the cache and, for LSTM, GRU and the leaky unit, overwritten with the activations (the RNN
  forward leaves it intact; its backward writes dxw there). keep=False may overwrite it too (the
  GRU's and the leaky unit's forward do). Do not reuse xw after the call.
- Read-only w_hh, b_hh, h0, c0, dhs (e.g. memory-mapped weights) are accepted; Numba compiles a
  separate specialization for them on first use.
- ``recurrent_backward`` writes ``dxw`` into that same buffer (so ``grads.dxw is xw``) and can be
  called only once per forward.
- The GRU's backward allocates one more (T, B, 3H) array, the hidden side's gradient ``dgh``
  (dxw but for the n part), so that dW_hh comes from contiguous rows: 3H more floats a row
  while the backward runs (4 * 3 * T * B * H bytes a layer in float32), in exchange for a
  strided copy of the r,z part per layer.
- The cache holds references to ``hs``, ``h0``, ``c0`` and ``w_hh``: do not modify them in place
  between the forward and the backward.

Time chunks: a layer can also run in consecutive slices of its T steps, so that charlm.nn.stack can
interleave the layers of a stack (layer l runs steps [a, b) while layer l+1 runs the slice
before). ``recurrent_start`` checks and allocates, ``recurrent_steps(cache, a, b)`` runs the
forward over steps [a, b) in increasing order; ``recurrent_backward_start``,
``recurrent_backward_steps(cache, dhs, a, b)`` (in decreasing order, ending at 0) and
``recurrent_backward_finish`` do the same for the backward. Each step computes exactly what the
whole-sequence call computes, so any slicing gives the same bits.

Errors raised here are ValueError: they are programmer errors (wrong dtype, shape, layout), not
user errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlm.config import GATES, LEAKY_CELLS
from charlm.nn.kernels.gru import gru_backward, gru_forward
from charlm.nn.kernels.linalg import matmul
from charlm.nn.kernels.threads import sequential_blas
from charlm.nn.kernels.leaky import leaky_backward, leaky_forward
from charlm.nn.kernels.lstm import lstm_backward, lstm_forward
from charlm.nn.kernels.rnn import rnn_backward, rnn_forward

__all__ = [
    "RecurrentCache", "RecurrentGrads", "recurrent_forward", "recurrent_backward",
    "recurrent_start", "recurrent_steps", "recurrent_backward_start", "recurrent_backward_steps",
    "recurrent_backward_finish",
]

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass
class RecurrentCache:
    """What the forward leaves for the backward (and the final state for the caller).

    ``h_last`` (= hs[-1]) and ``c_last`` (LSTM, else None) are the final state, to carry over to
    the next window in truncated BPTT; ``c_last`` is a fresh array, not a view into the cache.
    """

    cell: str
    keep: bool
    hs: np.ndarray  # (T,B,H)
    h0: np.ndarray  # (B,H)
    c0: np.ndarray | None  # (B,H) LSTM, else None
    c_last: np.ndarray | None  # (B,H) LSTM, else None
    w_hh: np.ndarray | None = None  # (G*H,H), C-contiguous
    cs: np.ndarray | None = None  # (T,B,H) LSTM cell states (keep only)
    ghn: np.ndarray | None = None  # (T,B,H) GRU h W_hn^T + b_hn (keep only)
    dgh: np.ndarray | None = None  # (T,B,3H) C-contiguous, GRU backward: dL/d(h W_hh^T + b_hh)
    used: bool = False  # set by the backward, which consumes the cache
    # (T,B,G*H) the input projection buffer, consumed: the forward overwrites it with the gate
    # activations (LSTM, GRU; keep only), the backward with dL/dxw
    xw: np.ndarray | None = None
    b_hh: np.ndarray | None = None  # (G*H,)
    w_hh_t: np.ndarray | None = None  # (H,G*H) C-contiguous copy of W_hh^T (backward only)
    scratch: tuple = ()  # per-layer work buffers of the kernels
    done: int = 0  # forward: steps run so far; backward: first step not yet backpropagated
    dh: np.ndarray | None = None  # (B,H) backward: gradient flowing into h of step `done` - 1
    dc: np.ndarray | None = None  # (B,H) LSTM backward: the same for c
    leak: np.ndarray | None = None  # (H,) leaky cells: the rates a, else None
    retain: np.ndarray | None = None  # (H,) leaky cells: 1 - a
    dleak: np.ndarray | None = None  # (H,) leaky cells backward: dL/da of the steps done

    @property
    def h_last(self) -> np.ndarray:
        return self.hs[-1]

    @property
    def steps(self) -> int:
        return self.hs.shape[0]


@dataclass
class RecurrentGrads:
    """Gradients of the loss w.r.t. the layer's inputs. dxw aliases the forward's xw buffer."""

    dxw: np.ndarray  # (T,B,G*H)
    dw_hh: np.ndarray | None  # (G*H,H); None when the caller sums it itself
    db_hh: np.ndarray | None  # (G*H,)
    dh0: np.ndarray  # (B,H)
    dc0: np.ndarray | None  # (B,H) LSTM, else None
    dleak: np.ndarray | None = None  # (H,) leaky cells: dL/da, else None


# --- checks ----------------------------------------------------------------------------------


def _check_array(name: str, a, shape: tuple, dtype: np.dtype, written: bool = False) -> None:
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise ValueError(f"{name} has dtype {a.dtype}, expected {dtype} (all arrays must match)")
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray)")
    if written and not a.flags.writeable:
        raise ValueError(f"{name} must be writeable (it is overwritten in place)")


def _check_cell(cell) -> int:
    if cell not in GATES:
        raise ValueError(f"unknown cell {cell!r}; expected one of {', '.join(GATES)}")
    return GATES[cell]


# --- forward ---------------------------------------------------------------------------------


def recurrent_forward(cell: str, xw, w_hh, b_hh, h0, c0=None, keep=True, leak=None):
    """Run one recurrent layer over T steps.

    xw (T,B,G*H): input projection x @ W_ih.T + b_ih, C-contiguous; CONSUMED (see module doc).
    w_hh (G*H,H), b_hh (G*H,): hidden-to-hidden weights, PyTorch layout.
    h0 (B,H), c0 (B,H): initial state; c0 only for 'lstm' (required there), None otherwise.
    keep: store what the backward needs; keep=False is for inference (cheaper, no backward).
    leak (H,): the leak rates a in (0, 1] of 'leaky' and 'esn' (required there), None otherwise.
    All arrays: same dtype, float32 or float64, C-contiguous. T >= 1.

    Returns (hs, cache): hs (T,B,H) the output of every step (a new array). The final state is
    hs[-1] (= cache.h_last) and, for LSTM, cache.c_last.
    """
    cache = recurrent_start(cell, xw, w_hh, b_hh, h0, c0, keep, leak=leak)
    recurrent_steps(cache, 0, cache.steps)
    return cache.hs, cache


def recurrent_start(cell: str, xw, w_hh, b_hh, h0, c0=None, keep=True, hs=None,
                    leak=None) -> RecurrentCache:
    """Check the arguments of recurrent_forward and allocate its outputs; run no step.

    xw may still be unfilled: each slice [a, b) must hold its input projection when
    recurrent_steps(cache, a, b) runs. hs (T,B,H), C-contiguous: where to write the outputs
    (e.g. a block of a larger array); None allocates it."""
    G = _check_cell(cell)
    if not isinstance(xw, np.ndarray) or xw.ndim != 3:
        raise ValueError("xw must be a 3-D numpy array (T, B, G*H)")
    if not isinstance(h0, np.ndarray) or h0.ndim != 2:
        raise ValueError("h0 must be a 2-D numpy array (B, H)")
    dtype = xw.dtype
    if dtype not in _DTYPES:
        raise ValueError(f"xw has dtype {dtype}; only float32 and float64 are supported")
    T, B, GH = xw.shape
    H = h0.shape[1]
    if T < 1 or B < 1 or H < 1:
        raise ValueError(f"empty input: T={T}, B={B}, H={H} (all must be >= 1)")
    if GH != G * H:
        raise ValueError(f"xw has last dimension {GH}, expected {G}*H = {G * H} for {cell}")
    _check_array("xw", xw, (T, B, G * H), dtype, written=True)
    _check_array("w_hh", w_hh, (G * H, H), dtype)
    _check_array("b_hh", b_hh, (G * H,), dtype)
    _check_array("h0", h0, (B, H), dtype)
    if cell == "lstm":
        if c0 is None:
            raise ValueError("lstm needs c0 (B, H)")
        _check_array("c0", c0, (B, H), dtype)
    elif c0 is not None:
        raise ValueError(f"c0 is only for lstm; pass None for {cell}")
    if cell in LEAKY_CELLS:
        if leak is None:
            raise ValueError(f"{cell} needs leak (H,), the leak rates")
        _check_array("leak", leak, (H,), dtype)
    elif leak is not None:
        raise ValueError(f"leak is only for {' and '.join(LEAKY_CELLS)}; pass None for {cell}")

    if hs is None:
        hs = np.empty((T, B, H), dtype)
    _check_array("hs", hs, (T, B, H), dtype, written=True)
    keep = bool(keep)
    cache = RecurrentCache(
        cell=cell, keep=keep, hs=hs, h0=h0, c0=c0, c_last=None,
        xw=xw, b_hh=b_hh, w_hh=w_hh,
    )
    if cell in LEAKY_CELLS:
        cache.leak = leak
        cache.retain = (1 - leak).astype(dtype)  # 1 - a, exactly 0 where a = 1
    # h_{t-1} W_hh^T of one step, and the same transposed (see rows_times_transposed)
    gh, gh_tr = np.empty((B, G * H), dtype), np.empty((G * H, B), dtype)
    if cell == "lstm":
        cache.cs = np.empty((T if keep else 1, B, H), dtype)
        cache.scratch = (gh, gh_tr)
    elif cell == "gru":
        cache.ghn = np.empty((T if keep else 1, B, H), dtype)
        cache.scratch = (gh, gh_tr)
    else:  # the RNN writes the product into hs[t]
        cache.scratch = (gh_tr,)
    return cache


def recurrent_steps(cache: RecurrentCache, a: int, b: int) -> None:
    """Run the forward over steps [a, b); slices must come in order, starting at 0."""
    if not (a == cache.done and a < b <= cache.steps):
        raise ValueError(f"forward steps [{a}, {b}) out of order: next step is {cache.done} "
                         f"of {cache.steps}")
    cell, keep, hs = cache.cell, cache.keep, cache.hs
    h_prev = cache.h0 if a == 0 else hs[a - 1]
    with sequential_blas():
        if cell == "lstm":
            cs = cache.cs
            if keep:
                c_prev, c_out = (cache.c0 if a == 0 else cs[a - 1]), cs[a:b]
            else:  # cs holds only the running c, updated in place
                c_prev, c_out = (cache.c0 if a == 0 else cs[0].copy()), cs
            lstm_forward(cache.xw[a:b], cache.w_hh, cache.b_hh, h_prev, c_prev, hs[a:b], c_out,
                         *cache.scratch, keep)
        elif cell == "gru":
            ghn = cache.ghn[a:b] if keep else cache.ghn
            gru_forward(cache.xw[a:b], cache.w_hh, cache.b_hh, h_prev, hs[a:b], ghn,
                        *cache.scratch, keep)
        elif cell in LEAKY_CELLS:
            leaky_forward(cache.xw[a:b], cache.w_hh, cache.b_hh, cache.leak, cache.retain, h_prev,
                          hs[a:b], *cache.scratch)
        else:
            rnn_forward(cache.xw[a:b], cache.w_hh, cache.b_hh, h_prev, hs[a:b], *cache.scratch)
    cache.done = b
    if b == cache.steps and cell == "lstm":
        cache.c_last = cache.cs[-1].copy()


# --- backward --------------------------------------------------------------------------------


def hidden_side_grad(cache: RecurrentCache) -> np.ndarray:
    """dL/d(h_{t-1} W_hh^T + b_hh) (T,B,G*H) once the backward has run: dL/dxw, except the GRU's
    n part (r * dn_pre), which its backward writes apart."""
    return cache.dgh if cache.cell == "gru" else cache.xw


def _hidden_weight_grad(d: np.ndarray, h0: np.ndarray, hs: np.ndarray, out: np.ndarray) -> None:
    """out = sum_t d[t]^T h_{t-1} with h_{-1} = h0, as two GEMMs (no copy of [h0, hs[:-1]]).
    d (T,B,K) C-contiguous: d[1:] is then (T-1)*B rows that BLAS reads in place (a view with a
    strided last axis would be copied first, and transposed at that)."""
    T, B, K = d.shape
    H = hs.shape[2]
    matmul(d[0].T, h0, out=out)
    if T > 1:
        out += matmul(d[1:].reshape((T - 1) * B, K).T, hs[:-1].reshape((T - 1) * B, H))


def recurrent_backward(cache: RecurrentCache, dhs, dh_last=None, dc_last=None) -> RecurrentGrads:
    """Backpropagate through the T steps of the forward that produced ``cache``.

    dhs (T,B,H): dLoss/dhs from above (read only). dh_last, dc_last (B,H): gradient flowing into
    the final state (h_last, c_last); None means zeros. dc_last is for LSTM only.
    Returns RecurrentGrads(dxw, dw_hh, db_hh, dh0, dc0); dxw is written into the forward's xw
    buffer. The cache is consumed: a second backward raises ValueError.
    """
    if isinstance(cache, RecurrentCache):  # a bad dhs must not consume the cache
        _check_array("dhs", dhs, cache.hs.shape, cache.hs.dtype)
    recurrent_backward_start(cache, dh_last, dc_last)
    recurrent_backward_steps(cache, dhs, 0, cache.steps)
    return recurrent_backward_finish(cache)


def recurrent_backward_start(cache: RecurrentCache, dh_last=None, dc_last=None, dgh=None) -> None:
    """Check the cache and the gradients into the final state; allocate the backward's buffers.
    dgh (T,B,3H), GRU only: where to write the hidden side's gradient; None allocates it."""
    if not isinstance(cache, RecurrentCache):
        raise ValueError("cache must be the RecurrentCache returned by recurrent_forward")
    if not cache.keep:
        raise ValueError("this forward ran with keep=False: no backward is possible")
    if cache.used:
        raise ValueError("recurrent_backward was already called on this cache (it is consumed)")
    if cache.done != cache.steps:
        raise ValueError(f"the forward ran {cache.done} of {cache.steps} steps")
    cell = cache.cell
    T, B, H = cache.hs.shape
    dtype = cache.hs.dtype
    if dh_last is None:
        dh = np.zeros((B, H), dtype)
    else:
        _check_array("dh_last", dh_last, (B, H), dtype)
        dh = dh_last.copy()
    dc = None
    if cell == "lstm":
        if dc_last is None:
            dc = np.zeros((B, H), dtype)
        else:
            _check_array("dc_last", dc_last, (B, H), dtype)
            dc = dc_last.copy()
    elif dc_last is not None:
        raise ValueError(f"dc_last is only for lstm; pass None for {cell}")
    cache.used = True
    cache.dh, cache.dc = dh, dc
    cache.w_hh_t = np.ascontiguousarray(cache.w_hh.T)  # dgates W_hh = dgates (W_hh^T)^T
    dh_tr = np.empty((H, B), dtype)  # dh transposed (see rows_times_transposed)
    if cell == "gru":
        if dgh is None:
            dgh = np.empty((T, B, 3 * H), dtype)
        _check_array("dgh", dgh, (T, B, 3 * H), dtype, written=True)
        cache.dgh = dgh
        cache.scratch = (np.empty((B, H), dtype), dh_tr)  # dhz
    elif cell in LEAKY_CELLS:
        cache.dleak = np.zeros(H, dtype)
        cache.scratch = (np.empty((B, H), dtype), dh_tr)  # the direct part of dh, g * (1 - a)
    else:
        cache.scratch = (dh_tr,)


def recurrent_backward_steps(cache: RecurrentCache, dhs, a: int, b: int) -> None:
    """Backpropagate through steps b-1 down to a; slices come from the end down to step 0.

    dhs (T,B,H) is the whole sequence's dLoss/dhs; only its slice [a, b) is read (and must be
    filled by now)."""
    if not cache.used or cache.dh is None:
        raise ValueError("call recurrent_backward_start first")
    if not (b == cache.done and 0 <= a < b):
        raise ValueError(f"backward steps [{a}, {b}) out of order: next slice ends at {cache.done}")
    hs = cache.hs
    _check_array("dhs", dhs, hs.shape, hs.dtype)
    h_prev = cache.h0 if a == 0 else hs[a - 1]
    with sequential_blas():
        if cache.cell == "lstm":
            c_prev = cache.c0 if a == 0 else cache.cs[a - 1]
            lstm_backward(cache.xw[a:b], cache.cs[a:b], c_prev, cache.w_hh_t, dhs[a:b],
                          cache.dh, cache.dc, *cache.scratch)
        elif cache.cell == "gru":
            gru_backward(cache.xw[a:b], cache.ghn[a:b], hs[a:b], h_prev, cache.w_hh_t, dhs[a:b],
                         cache.dh, cache.dgh[a:b], *cache.scratch)
        elif cache.cell in LEAKY_CELLS:
            leaky_backward(cache.xw[a:b], hs[a:b], h_prev, cache.w_hh_t, cache.leak, cache.retain,
                           dhs[a:b], cache.dh, cache.dleak, *cache.scratch)
        else:
            rnn_backward(hs[a:b], cache.w_hh_t, dhs[a:b], cache.xw[a:b], cache.dh, *cache.scratch)
    cache.done = a


def recurrent_backward_finish(cache: RecurrentCache, hidden_grads: bool = True) -> RecurrentGrads:
    """The hidden-side weight gradients (GEMMs over all T*B rows) once every step is done.

    hidden_grads=False leaves dw_hh and db_hh None (the caller sums them over several caches);
    the gradient of h_{t-1} W_hh^T + b_hh is then `hidden_side_grad(cache)`, read before this."""
    if not cache.used or cache.dh is None or cache.done != 0:
        raise ValueError("the backward has not reached step 0")
    hs, dxw = cache.hs, cache.xw
    dw_hh = db_hh = None
    if hidden_grads:
        GH, H = cache.w_hh.shape
        dw_hh = np.empty((GH, H), hs.dtype)
        dgh = hidden_side_grad(cache)
        _hidden_weight_grad(dgh, cache.h0, hs, dw_hh)
        db_hh = dgh.sum(axis=(0, 1))
    grads = RecurrentGrads(dxw=dxw, dw_hh=dw_hh, db_hh=db_hh, dh0=cache.dh, dc0=cache.dc,
                           dleak=cache.dleak)
    # Drop the large buffers the caller no longer needs through the cache.
    cache.cs = cache.ghn = cache.dgh = cache.xw = None
    cache.dh = cache.dc = cache.w_hh_t = cache.dleak = None
    cache.scratch = ()
    return grads
