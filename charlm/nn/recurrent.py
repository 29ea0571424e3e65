"""One recurrent layer (any cell of charlm.nn.cells), forward and backward through time.

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

The cell is looked up in the registry (charlm.nn.cells); its kernel file runs the steps
(``start_forward``, ``forward_steps``, ``start_backward``, ``backward_steps``). This module
checks the arguments, allocates what every cell needs (hs, the gradients into the state and
the leak) and makes the hidden-side weight gradients.

Memory contract (the kernels work in place to save memory and bandwidth):

- the forward consumes ``xw`` (which must be writeable): with keep=True it is kept in
  the cache and, for LSTM, GRU and the leaky unit, overwritten with the activations (the RNN
  forward leaves it intact; its backward writes dxw there). keep=False may overwrite it too (the
  GRU's and the leaky unit's forward do). Do not reuse xw after the call.
- Read-only w_hh, b_hh, h0, c0, dhs (e.g. memory-mapped weights) are accepted; Numba compiles a
  separate specialization for them on first use.
- the backward writes ``dxw`` into that same buffer (so ``grads.dxw is xw``) and can run only
  once per forward.
- A cell with ``hidden_grad_apart`` (the GRU) has its backward write one more (T, B, G*H) array,
  the hidden side's gradient ``dgh`` (dxw but for the GRU's n part), so that dW_hh comes from contiguous rows: 3H more floats a row
  while the backward runs (4 * 3 * T * B * H bytes a layer in float32), in exchange for a
  strided copy of the r,z part per layer.
- The cache holds references to ``hs``, ``h0``, ``c0`` and ``w_hh``: do not modify them in place
  between the forward and the backward.

Time chunks: a layer runs in consecutive slices of its T steps, so that charlm.nn.stack can
interleave the layers of a stack (layer l runs steps [a, b) while layer l+1 runs the slice
before). ``recurrent_start`` checks and allocates, ``recurrent_steps(cache, a, b)`` runs the
forward over steps [a, b) in increasing order; ``recurrent_backward_start``,
``recurrent_backward_steps(cache, dhs, a, b)`` (in decreasing order, ending at 0) and
``recurrent_backward_finish`` do the same for the backward. Each step computes exactly what one
slice of all T steps computes, so any slicing gives the same bits.

Errors raised here are ValueError: they are programmer errors (wrong dtype, shape, layout), not
user errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlm.nn.cells import REGISTRY, Cell, get_cell
from charlm.nn.kernels.linalg import matmul
from charlm.nn.kernels.packed import pack_panels, panels_shape
from charlm.nn.kernels.threads import sequential_blas

__all__ = [
    "RecurrentCache", "RecurrentGrads", "recurrent_start", "recurrent_steps", "recurrent_backward_start",
    "recurrent_backward_steps", "recurrent_backward_finish", "hidden_side_grad",
]

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass
class RecurrentCache:
    """What the forward leaves for the backward (and the final state for the caller).

    ``h_last`` (= hs[-1]) and ``c_last`` (cells with two state slots, else None) are the final
    state, to carry over to the next window in truncated BPTT; ``c_last`` is a fresh array, not a
    view into the cache. The fields marked "cell" belong to the cell's kernel file, which
    allocates and reads them (charlm.nn.kernels.rnn states the interface).
    """

    cell: Cell
    keep: bool
    hs: np.ndarray  # (T,B,H)
    h0: np.ndarray  # (B,H)
    c0: np.ndarray | None  # (B,H) the second state slot (LSTM's c), else None
    c_last: np.ndarray | None  # (B,H) the same at the end; set by the cell's last forward step
    w_hh: np.ndarray | None = None  # (G*H,H), C-contiguous
    w_hh_p: np.ndarray | None = None  # W_hh packed for the step products (charlm.nn.kernels.packed)
    # cell: what its backward needs besides the gates, e.g. (cs,) the LSTM's c of every step
    # (T,B,H), or (1,B,H) the running c when not keep
    stored: tuple = ()
    dgh: np.ndarray | None = None  # (T,B,G*H) C-contiguous, hidden_grad_apart cells' backward: dL/d(h W_hh^T + b_hh)
    used: bool = False  # set by the backward, which consumes the cache
    # (T,B,G*H) the input projection buffer, consumed: the forward may overwrite it with the
    # activations (keep only), the backward with dL/dxw
    xw: np.ndarray | None = None
    b_hh: np.ndarray | None = None  # (G*H,)
    w_hh_t_p: np.ndarray | None = None  # W_hh^T (H,G*H) packed (backward only)
    scratch: tuple = ()  # cell: per-layer work buffers of the kernels
    done: int = 0  # forward: steps run so far; backward: first step not yet backpropagated
    dh: np.ndarray | None = None  # (B,H) backward: gradient flowing into h of step `done` - 1
    dc: np.ndarray | None = None  # (B,H) backward, second state slot: the same for c
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
    dc0: np.ndarray | None  # (B,H) second state slot, else None
    dleak: np.ndarray | None = None  # (H,) leaky cells: dL/da, else None


# --- checks ----------------------------------------------------------------------------------


def check_array(name: str, a, shape: tuple, dtype: np.dtype, written: bool = False) -> None:
    """ValueError unless a is a C-contiguous numpy array of that shape and dtype (and writeable)."""
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


def _packed(w: np.ndarray, given) -> np.ndarray:
    """given, checked to be pack_panels(w)'s shape and dtype, or pack_panels(w) when None."""
    if given is None:
        return pack_panels(w)
    shape = panels_shape(*w.shape)
    if not isinstance(given, np.ndarray) or given.shape != shape or given.dtype != w.dtype:
        raise ValueError(f"packed weights must be pack_panels of the weights: {shape} {w.dtype}")
    return given


def _names_of(test) -> str:
    return " and ".join(name for name, cell in REGISTRY.items() if test(cell))


def _check_state(cell: Cell, c0, leak, B: int, H: int, dtype) -> None:
    if cell.state_slots == 2:
        if c0 is None:
            raise ValueError(f"{cell.name} needs c0 (B, H)")
        check_array("c0", c0, (B, H), dtype)
    elif c0 is not None:
        raise ValueError(f"c0 is only for {_names_of(lambda c: c.state_slots == 2)}; pass None for {cell.name}")
    if cell.leaky:
        if leak is None:
            raise ValueError(f"{cell.name} needs leak (H,), the leak rates")
        check_array("leak", leak, (H,), dtype)
    elif leak is not None:
        raise ValueError(f"leak is only for {_names_of(lambda c: c.leaky)}; pass None for {cell.name}")


# --- forward ---------------------------------------------------------------------------------


def recurrent_start(cell: str, xw, w_hh, b_hh, h0, c0=None, keep=True, hs=None,
                    leak=None, w_hh_p=None) -> RecurrentCache:
    """Check the arguments of one layer's forward and allocate its outputs; run no step.

    xw (T,B,G*H): input projection x @ W_ih.T + b_ih, C-contiguous; CONSUMED (see module doc).
    It may still be unfilled: each slice [a, b) must hold its input projection when
    recurrent_steps(cache, a, b) runs.
    w_hh (G*H,H), b_hh (G*H,): hidden-to-hidden weights, PyTorch layout.
    h0 (B,H), c0 (B,H): initial state; c0 only for cells with two state slots (required there).
    keep: store what the backward needs; keep=False is for inference (cheaper, no backward).
    hs (T,B,H), C-contiguous: where to write the outputs (e.g. a block of a larger array); None
    allocates it. leak (H,): the leak rates a in (0, 1] of leaky cells (required there).
    w_hh_p: pack_panels(w_hh) (charlm.nn.kernels.packed), e.g. shared by a layer's stream
    blocks; None packs w_hh here.
    All arrays: same dtype, float32 or float64, C-contiguous. T >= 1."""
    spec = get_cell(cell)
    G = spec.gates
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
    check_array("xw", xw, (T, B, G * H), dtype, written=True)
    check_array("w_hh", w_hh, (G * H, H), dtype)
    check_array("b_hh", b_hh, (G * H,), dtype)
    check_array("h0", h0, (B, H), dtype)
    _check_state(spec, c0, leak, B, H, dtype)

    if hs is None:
        hs = np.empty((T, B, H), dtype)
    check_array("hs", hs, (T, B, H), dtype, written=True)
    cache = RecurrentCache(
        cell=spec, keep=bool(keep), hs=hs, h0=h0, c0=c0, c_last=None,
        xw=xw, b_hh=b_hh, w_hh=w_hh, w_hh_p=_packed(w_hh, w_hh_p),
    )
    if spec.leaky:
        cache.leak = leak
        cache.retain = (1 - leak).astype(dtype)  # 1 - a, exactly 0 where a = 1
    spec.kernels().start_forward(cache)
    return cache


def recurrent_steps(cache: RecurrentCache, a: int, b: int) -> None:
    """Run the forward over steps [a, b); slices must come in order, starting at 0."""
    if not (a == cache.done and a < b <= cache.steps):
        raise ValueError(f"forward steps [{a}, {b}) out of order: next step is {cache.done} "
                         f"of {cache.steps}")
    h_prev = cache.h0 if a == 0 else cache.hs[a - 1]
    with sequential_blas():
        cache.cell.kernels().forward_steps(cache, h_prev, a, b)
    cache.done = b


# --- backward --------------------------------------------------------------------------------


def hidden_side_grad(cache: RecurrentCache) -> np.ndarray:
    """dL/d(h_{t-1} W_hh^T + b_hh) (T,B,G*H) once the backward has run: dL/dxw, except for the
    cells whose backward writes it apart (hidden_grad_apart)."""
    return cache.dgh if cache.cell.hidden_grad_apart else cache.xw


def _hidden_weight_grad(d: np.ndarray, h0: np.ndarray, hs: np.ndarray, out: np.ndarray) -> None:
    """out = sum_t d[t]^T h_{t-1} with h_{-1} = h0, as two GEMMs (no copy of [h0, hs[:-1]]).
    d (T,B,K) C-contiguous: d[1:] is then (T-1)*B rows that BLAS reads in place (a view with a
    strided last axis would be copied first, and transposed at that)."""
    T, B, K = d.shape
    H = hs.shape[2]
    matmul(d[0].T, h0, out=out)
    if T > 1:
        out += matmul(d[1:].reshape((T - 1) * B, K).T, hs[:-1].reshape((T - 1) * B, H))


def recurrent_backward_start(cache: RecurrentCache, dh_last=None, dc_last=None, dgh=None,
                             w_hh_t_p=None) -> None:
    """Check the cache and the gradients into the final state; allocate the backward's buffers.

    dh_last, dc_last (B,H): gradient flowing into the final state (h_last, c_last); None means
    zeros; dc_last only for cells with two state slots. dgh (T,B,G*H), hidden_grad_apart cells
    only: where to write the hidden side's gradient; None allocates it. w_hh_t_p:
    pack_panels(W_hh^T), e.g. shared by a layer's stream blocks; None packs it here."""
    if not isinstance(cache, RecurrentCache):
        raise ValueError("cache must be the RecurrentCache returned by recurrent_start")
    if not cache.keep:
        raise ValueError("this forward ran with keep=False: no backward is possible")
    if cache.used:
        raise ValueError("the backward already ran on this cache (it is consumed)")
    if cache.done != cache.steps:
        raise ValueError(f"the forward ran {cache.done} of {cache.steps} steps")
    cell = cache.cell
    T, B, H = cache.hs.shape
    dtype = cache.hs.dtype
    if dh_last is None:
        dh = np.zeros((B, H), dtype)
    else:
        check_array("dh_last", dh_last, (B, H), dtype)
        dh = dh_last.copy()
    dc = None
    if cell.state_slots == 2:
        if dc_last is None:
            dc = np.zeros((B, H), dtype)
        else:
            check_array("dc_last", dc_last, (B, H), dtype)
            dc = dc_last.copy()
    elif dc_last is not None:
        raise ValueError(f"dc_last is only for {_names_of(lambda c: c.state_slots == 2)}; "
                         f"pass None for {cell.name}")
    cache.used = True
    cache.dh, cache.dc = dh, dc
    cache.w_hh_t_p = _packed(cache.w_hh.T, w_hh_t_p)  # dgates W_hh = dgates (W_hh^T)^T
    if cell.hidden_grad_apart:
        GH = cache.w_hh.shape[0]
        if dgh is None:
            dgh = np.empty((T, B, GH), dtype)
        check_array("dgh", dgh, (T, B, GH), dtype, written=True)
        cache.dgh = dgh
    if cell.leaky:
        cache.dleak = np.zeros(H, dtype)
    cell.kernels().start_backward(cache)


def recurrent_backward_steps(cache: RecurrentCache, dhs, a: int, b: int) -> None:
    """Backpropagate through steps b-1 down to a; slices come from the end down to step 0.

    dhs (T,B,H) is the whole sequence's dLoss/dhs (read only); only its slice [a, b) is read
    (and must be filled by now)."""
    if not cache.used or cache.dh is None:
        raise ValueError("call recurrent_backward_start first")
    if not (b == cache.done and 0 <= a < b):
        raise ValueError(f"backward steps [{a}, {b}) out of order: next slice ends at {cache.done}")
    hs = cache.hs
    check_array("dhs", dhs, hs.shape, hs.dtype)
    h_prev = cache.h0 if a == 0 else hs[a - 1]
    with sequential_blas():
        cache.cell.kernels().backward_steps(cache, dhs, h_prev, a, b)
    cache.done = a


def recurrent_backward_finish(cache: RecurrentCache, hidden_grads: bool = True) -> RecurrentGrads:
    """The hidden-side weight gradients (GEMMs over all T*B rows) once every step is done.

    hidden_grads=False leaves dw_hh and db_hh None (the caller sums them over several caches);
    the gradient of h_{t-1} W_hh^T + b_hh is then `hidden_side_grad(cache)`, read before this.
    Returns RecurrentGrads(dxw, dw_hh, db_hh, dh0, dc0, dleak); dxw is the forward's xw buffer."""
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
    cache.stored = cache.scratch = ()
    cache.dgh = cache.xw = None
    cache.dh = cache.dc = cache.w_hh_p = cache.w_hh_t_p = cache.dleak = None
    return grads
