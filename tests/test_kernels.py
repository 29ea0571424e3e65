"""Recurrent kernels: vs plain-numpy reference, finite differences, PyTorch, approximation error."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

from charlm.config import GATES
from charlm.nn.kernels.packed import pack_panels, packed_product, tail_buffer
from charlm.nn.recurrent import RecurrentGrads

try:
    from tests import reference as ref
    from tests.whole_sequence import recurrent_backward, recurrent_forward
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    import reference as ref
    from whole_sequence import recurrent_backward, recurrent_forward

from kernel_arrays import exp_array, sigmoid_array, tanh_array

CELLS = ("lstm", "gru", "rnn", "leaky")
GRAD_NAMES = ("dxw", "dw_hh", "db_hh", "dh0", "dc0", "dleak")


def make_problem(cell, T, B, H, dtype, seed=0, scale=0.5):
    """Random layer inputs with non-zero initial state and non-zero final-state gradients."""
    rng = np.random.default_rng(seed)
    G = GATES[cell]

    def rnd(*shape, s=1.0):
        return (rng.standard_normal(shape) * s).astype(dtype)

    p = dict(
        xw=rnd(T, B, G * H),
        w_hh=rnd(G * H, H, s=scale / np.sqrt(H) * 2),
        b_hh=rnd(G * H, s=0.3),
        h0=rnd(B, H, s=0.5),
        c0=rnd(B, H, s=0.5) if cell == "lstm" else None,
        dhs=rnd(T, B, H),
        dh_last=rnd(B, H),
        dc_last=rnd(B, H) if cell == "lstm" else None,
        # leak rates spread over (0, 1], one of them 1 (the plain RNN's unit)
        leak=np.minimum(rng.uniform(0.1, 1.2, H), 1.0).astype(dtype) if cell == "leaky" else None,
    )
    return p


def run(cell, p, keep=True):
    """Forward + backward through the public wrapper; never touches p's arrays' contents."""
    hs, cache = recurrent_forward(
        cell, p["xw"].copy(), p["w_hh"], p["b_hh"], p["h0"], p["c0"], keep=keep, leak=p["leak"]
    )
    if not keep:
        return hs, cache, None
    grads = recurrent_backward(cache, p["dhs"], p["dh_last"], p["dc_last"])
    return hs, cache, grads


def run_reference(cell, p):
    f64 = {k: (None if v is None else v.astype(np.float64)) for k, v in p.items()}
    hs, c_last, store = ref.forward(cell, f64["xw"], f64["w_hh"], f64["b_hh"], f64["h0"], f64["c0"],
                                    f64["leak"])
    g = ref.backward(cell, store, f64["w_hh"], f64["dhs"], f64["dh_last"], f64["dc_last"])
    return hs, c_last, g


# --- activations -------------------------------------------------------------------------------


def test_float32_activation_accuracy():
    """Dense grid: max abs error of the float32 approximations vs float64 numpy (documented in
    charlm/nn/kernels/activations.py: tanh 2.7e-7 to 3.9e-7 depending on FMA contraction)."""
    x = np.linspace(-20.0, 20.0, 4_000_001).astype(np.float32)
    x64 = x.astype(np.float64)
    t = tanh_array(x)
    s = sigmoid_array(x)
    assert t.dtype == np.float32 and s.dtype == np.float32
    err_t = np.abs(t - np.tanh(x64)).max()
    err_s = np.abs(s - 1.0 / (1.0 + np.exp(-x64))).max()
    assert err_t < 5e-7, err_t
    assert err_s < 5e-7, err_s
    assert np.abs(t).max() <= 1.0
    np.testing.assert_array_equal(t, -tanh_array(-x))  # odd
    assert 0.0 <= s.min() and s.max() <= 1.0
    special = np.array([np.nan, np.inf, -np.inf, 0.0], np.float32)
    t_sp, s_sp = tanh_array(special), sigmoid_array(special)
    assert np.isnan(t_sp[0]) and np.isnan(s_sp[0])  # NaN propagates (divergence checks rely on it)
    assert t_sp[1] > 0.999999 and t_sp[2] < -0.999999 and t_sp[3] == 0.0
    assert s_sp[1] > 0.999999 and s_sp[2] < 1e-6 and s_sp[3] == 0.5


def test_float64_activations_exact():
    x = np.linspace(-30.0, 30.0, 100_001)
    np.testing.assert_allclose(tanh_array(x), np.tanh(x), rtol=1e-15, atol=0)
    np.testing.assert_allclose(sigmoid_array(x), 1.0 / (1.0 + np.exp(-x)), rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(exp_array(x), np.exp(x), rtol=1e-15, atol=0)


def test_float32_exp_accuracy():
    """Dense grid over float32's normal range: relative error vs float64 numpy (documented in
    charlm/nn/kernels/activations.py: 3.0e-7)."""
    x = np.linspace(-87.0, 88.0, 4_000_001).astype(np.float32)
    e = exp_array(x)
    assert e.dtype == np.float32
    rel = np.abs(e / np.exp(x.astype(np.float64)) - 1.0).max()
    assert rel < 4e-7, rel
    assert np.all(np.diff(e) >= 0)  # monotone: a softmax keeps the order of its logits
    special = exp_array(np.array([np.nan, np.inf, -np.inf, 0.0, -1000.0, 1.0], np.float32))
    assert np.isnan(special[0]) and special[1] == np.inf  # NaN and overflow stay visible
    assert 0.0 <= special[2] < 1e-37 and special[4] < 1e-37  # the clamp: 1.2e-38, not 0
    assert special[3] == 1.0 and abs(special[5] - np.float32(np.e)) <= 1e-6


# --- the per-step product -----------------------------------------------------------------------


@njit
def _compiled_product(a, wp, out, tail):
    packed_product(a, wp, out, tail)


def _packed_product(a, wp, out):
    _compiled_product(a, wp, out, tail_buffer(a.shape[0], out.dtype))


# N: whole panels, an odd count, a cut last panel; B: 4-row groups and remainders
@pytest.mark.parametrize("B, K, N", [(1, 5, 3), (17, 20, 80), (32, 16, 48), (3, 1, 33), (6, 128, 512), (5, 200, 200)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_product(B, K, N, dtype):
    rng = np.random.default_rng(B * K + N)
    a = rng.standard_normal((B, K)).astype(dtype)
    w = rng.standard_normal((N, K)).astype(dtype)
    out = np.full((B, N), np.nan, dtype)
    _packed_product(a, pack_panels(w), out)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, a @ w.T, rtol=tol, atol=tol)  # every element written


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transposed", [False, True])
def test_pack_panels_lays_out_panels_of_rows_padded_with_zeros(dtype, transposed):
    from charlm.nn.kernels.packed import PANEL

    w = np.random.default_rng(1).standard_normal((37, 2 * PANEL + 5)).astype(dtype)
    w = w.T if transposed else w  # (2 PANEL + 5, 37) F-contiguous, or (37, 2 PANEL + 5)
    N, K = w.shape
    P = -(-N // PANEL)
    padded = np.zeros((P * PANEL, K), dtype)
    padded[:N] = w
    expected = padded.reshape(P, PANEL, K).transpose(0, 2, 1)
    wp = pack_panels(w)
    assert wp.flags.c_contiguous and wp.dtype == dtype
    np.testing.assert_array_equal(wp, expected)


def test_packed_product_rows_do_not_depend_on_their_neighbours():
    """A row's result is the same bits alone, in a 4-row group or in a strided view: the step
    product cannot make the model depend on how streams are grouped into blocks."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 9, 96)).astype(np.float32)
    wp = pack_panels(rng.standard_normal((80, 96)).astype(np.float32))
    together = np.empty((9, 80), np.float32)
    _packed_product(a[2], wp, together)  # a view: rows 96 floats apart inside a bigger array
    for row in range(9):
        alone = np.empty((1, 80), np.float32)
        _packed_product(np.ascontiguousarray(a[2, row:row + 1]), wp, alone)
        assert np.array_equal(alone[0], together[row])


_AVX2_CHECK = """
import numpy as np
from numba import njit
from charlm.nn.kernels.packed import PANEL, pack_panels, packed_product, tail_buffer
assert PANEL == 8, PANEL
@njit
def compiled(a, wp, out, tail):
    packed_product(a, wp, out, tail)
def product(a, wp, out):
    compiled(a, wp, out, tail_buffer(a.shape[0], out.dtype))
rng = np.random.default_rng(0)
for B, K, N in ((13, 40, 56), (4, 128, 512), (20, 200, 200)):
    a = rng.standard_normal((B, K)).astype(np.float32)
    w = rng.standard_normal((N, K)).astype(np.float32)
    out = np.full((B, N), np.nan, np.float32)
    product(a, pack_panels(w), out)
    np.testing.assert_allclose(out, a @ w.T, rtol=1e-5, atol=1e-5)
"""


def test_packed_product_with_avx2_vectors(tmp_path):
    """Compiled for a CPU without AVX-512: panels of 8 columns, 4-row groups."""
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="+avx,+avx2,+fma,+sse4.2,-avx512f",
               NUMBA_CACHE_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-c", _AVX2_CHECK], env=env, check=True, timeout=300)


def test_pack_panels_layout():
    w = np.arange(20 * 3, dtype=np.float32).reshape(20, 3)
    wp = pack_panels(w)
    assert wp.shape == (2, 3, 16) and wp.flags.c_contiguous
    assert wp[1, 2, 3] == w[19, 2] and np.all(wp[1, :, 4:] == 0)  # zero past the last row


# --- kernels vs reference ------------------------------------------------------------------------


# (4, 19, 21): H = 21 cuts the step product's last panel of 16 columns
@pytest.mark.parametrize("shape", [(5, 3, 7), (1, 1, 4), (3, 2, 1), (4, 19, 21)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", CELLS)
def test_matches_reference(cell, dtype, shape):
    T, B, H = shape
    p = make_problem(cell, T, B, H, dtype, seed=T * 100 + B * 10 + H)
    xw_before = p["xw"].copy()
    hs, cache, g = run(cell, p)
    np.testing.assert_array_equal(p["xw"], xw_before)  # run() passes a copy
    r_hs, r_c, r_g = run_reference(cell, p)
    if dtype == np.float64:
        tol = dict(rtol=1e-10, atol=1e-10)
    else:
        tol = dict(rtol=1e-5, atol=2e-5)
    assert hs.dtype == dtype and hs.shape == (T, B, H)
    np.testing.assert_allclose(hs, r_hs, **tol)
    np.testing.assert_allclose(cache.h_last, r_hs[-1], **tol)
    if cell == "lstm":
        np.testing.assert_allclose(cache.c_last, r_c, **tol)
    else:
        assert cache.c_last is None
    assert isinstance(g, RecurrentGrads)
    G = GATES[cell]
    assert g.dxw.shape == (T, B, G * H) and g.dw_hh.shape == (G * H, H)
    assert g.db_hh.shape == (G * H,) and g.dh0.shape == (B, H)
    for name in GRAD_NAMES:
        ours, theirs = getattr(g, name), r_g.get(name)
        if theirs is None:
            assert ours is None, name
            continue
        assert ours.dtype == dtype, name
        np.testing.assert_allclose(ours, theirs, **tol, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", CELLS)
def test_inference_mode_same_outputs(cell, dtype):
    p = make_problem(cell, 6, 2, 5, dtype, seed=3)
    hs1, c1, _ = run(cell, p, keep=True)
    hs2, c2, _ = run(cell, p, keep=False)
    np.testing.assert_array_equal(hs1, hs2)
    if cell == "lstm":
        np.testing.assert_array_equal(c1.c_last, c2.c_last)
    with pytest.raises(ValueError, match="keep=False"):
        recurrent_backward(c2, p["dhs"])


@pytest.mark.parametrize("cell", CELLS)
def test_state_carry_equals_one_long_run(cell):
    """Two windows with the state carried over give the same outputs as one long forward."""
    p = make_problem(cell, 8, 3, 4, np.float64, seed=5)
    leak = p["leak"]
    hs, cache = recurrent_forward(cell, p["xw"].copy(), p["w_hh"], p["b_hh"], p["h0"], p["c0"], leak=leak)
    xw = p["xw"].copy()
    hs_a, ca = recurrent_forward(cell, xw[:3].copy(), p["w_hh"], p["b_hh"], p["h0"], p["c0"], leak=leak)
    h1 = np.ascontiguousarray(ca.h_last)
    hs_b, cb = recurrent_forward(cell, xw[3:].copy(), p["w_hh"], p["b_hh"], h1, ca.c_last, leak=leak)
    np.testing.assert_allclose(np.concatenate([hs_a, hs_b]), hs, rtol=1e-13, atol=1e-13)
    if cell == "lstm":
        np.testing.assert_allclose(cb.c_last, cache.c_last, rtol=1e-13, atol=1e-13)


def test_none_final_gradients_mean_zeros():
    for cell in CELLS:
        p = make_problem(cell, 4, 2, 3, np.float64, seed=9)
        args = (cell, p["xw"].copy(), p["w_hh"], p["b_hh"], p["h0"], p["c0"])
        _, cache = recurrent_forward(*args, leak=p["leak"])
        g1 = recurrent_backward(cache, p["dhs"])
        args = (cell, p["xw"].copy(), p["w_hh"], p["b_hh"], p["h0"], p["c0"])
        _, cache = recurrent_forward(*args, leak=p["leak"])
        zeros = np.zeros_like(p["h0"])
        g2 = recurrent_backward(cache, p["dhs"], zeros, zeros if cell == "lstm" else None)
        for name in GRAD_NAMES:
            a, b = getattr(g1, name), getattr(g2, name)
            if a is None:
                assert b is None
            else:
                np.testing.assert_array_equal(a, b)


# --- finite differences ------------------------------------------------------------------------


def rel_error(a, n):
    return np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), 1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_finite_differences(cell):
    T, B, H = 4, 2, 3
    p = make_problem(cell, T, B, H, np.float64, seed=11, scale=1.0)
    R, R2, R3 = p["dhs"], p["dh_last"], p["dc_last"]
    params = {k: p[k] for k in ("xw", "w_hh", "b_hh", "h0", "c0", "leak") if p[k] is not None}

    def loss():
        hs, cache = recurrent_forward(
            cell, params["xw"].copy(), params["w_hh"], params["b_hh"], params["h0"],
            params.get("c0"), leak=params.get("leak"),
        )
        val = np.sum(hs * R) + np.sum(cache.h_last * R2)
        if cell == "lstm":
            val += np.sum(cache.c_last * R3)
        return val

    _, cache = recurrent_forward(
        cell, params["xw"].copy(), params["w_hh"], params["b_hh"], params["h0"], params.get("c0"),
        leak=params.get("leak"),
    )
    g = recurrent_backward(cache, R, R2, R3)
    analytic = dict(xw=g.dxw, w_hh=g.dw_hh, b_hh=g.db_hh, h0=g.dh0, c0=g.dc0, leak=g.dleak)

    rng = np.random.default_rng(0)
    eps = 1e-5
    worst = 0.0
    for name, arr in params.items():
        n = arr.size
        idx = rng.choice(n, size=min(n, 25), replace=False)
        flat = arr.reshape(-1)
        for j in idx:
            old = flat[j]
            flat[j] = old + eps
            lp = loss()
            flat[j] = old - eps
            lm = loss()
            flat[j] = old
            num = (lp - lm) / (2 * eps)
            err = rel_error(analytic[name].reshape(-1)[j], num)
            worst = max(worst, err)
            assert err <= 1e-6, (name, j, analytic[name].reshape(-1)[j], num, err)
    assert worst <= 1e-6


# --- PyTorch -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(5, 3, 7), (4, 19, 21)])
def test_leaky_with_leak_one_is_the_rnn_to_the_bit(shape, dtype):
    """a = 1 everywhere: the leaky unit's outputs and every gradient equal the tanh RNN's
    exactly (the same products, activations and sums; dL/da is the leaky unit's alone)."""
    T, B, H = shape
    p = make_problem("rnn", T, B, H, dtype, seed=21)
    hs_rnn, _, g_rnn = run("rnn", p)
    hs_leaky, _, g_leaky = run("leaky", {**p, "leak": np.ones(H, dtype)})
    np.testing.assert_array_equal(hs_leaky, hs_rnn)
    for name in ("dxw", "dw_hh", "db_hh", "dh0"):
        np.testing.assert_array_equal(getattr(g_leaky, name), getattr(g_rnn, name), err_msg=name)
    assert g_rnn.dleak is None and g_leaky.dleak.shape == (H,) and np.abs(g_leaky.dleak).sum() > 0


def test_small_leak_remembers_longer():
    """With a small rate the state moves little per step: s_t - s_{t-1} = a (u_t - s_{t-1})."""
    p = make_problem("leaky", 6, 2, 5, np.float64, seed=2)
    for a in (1.0, 0.3, 0.05):
        leak = np.full(5, a)
        hs, _, _ = run("leaky", {**p, "leak": leak}, keep=False)
        states = np.concatenate([p["h0"][None], hs])
        bound = a * (1 + np.abs(states[:-1]))  # |u - s| <= 1 + |s|
        assert np.all(np.abs(np.diff(states, axis=0)) <= bound + 1e-12)
    hs_slow, _, _ = run("leaky", {**p, "leak": np.full(5, 0.05)}, keep=False)
    assert np.abs(hs_slow[-1] - p["h0"]).max() < 0.6  # still near where it started


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", CELLS[:3])
def test_matches_pytorch(cell, dtype):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    T, B, I, H = 6, 3, 5, 8
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    mod = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    net = mod(input_size=I, hidden_size=H, batch_first=False).to(tdtype)
    with torch.no_grad():  # larger than the default init, so the nonlinearities matter
        for prm in net.parameters():
            prm.uniform_(-0.6, 0.6)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = (rng.standard_normal((B, H)) * 0.5).astype(dtype)
    c0 = (rng.standard_normal((B, H)) * 0.5).astype(dtype) if cell == "lstm" else None
    R = rng.standard_normal((T, B, H)).astype(dtype)
    R2 = rng.standard_normal((B, H)).astype(dtype)
    R3 = rng.standard_normal((B, H)).astype(dtype)

    # PyTorch
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0[None], requires_grad=True)
    if cell == "lstm":
        c0t = torch.tensor(c0[None], requires_grad=True)
        out, (hn, cn) = net(xt, (h0t, c0t))
        loss = (out * torch.tensor(R)).sum() + (hn[0] * torch.tensor(R2)).sum()
        loss = loss + (cn[0] * torch.tensor(R3)).sum()
    else:
        out, hn = net(xt, h0t)
        loss = (out * torch.tensor(R)).sum() + (hn[0] * torch.tensor(R2)).sum()
    loss.backward()

    # charlm
    w_ih = net.weight_ih_l0.detach().numpy()
    b_ih = net.bias_ih_l0.detach().numpy()
    w_hh = np.ascontiguousarray(net.weight_hh_l0.detach().numpy())
    b_hh = np.ascontiguousarray(net.bias_hh_l0.detach().numpy())
    xw = np.ascontiguousarray(x @ w_ih.T + b_ih, dtype=dtype)
    hs, cache = recurrent_forward(cell, xw, w_hh, b_hh, h0, c0)
    g = recurrent_backward(cache, R, R2, R3 if cell == "lstm" else None)
    G = GATES[cell]
    dxw2 = g.dxw.reshape(T * B, G * H)
    d_w_ih = dxw2.T @ x.reshape(T * B, I)
    d_b_ih = dxw2.sum(axis=0)
    d_x = g.dxw @ w_ih

    if dtype == np.float64:
        tol = dict(rtol=1e-10, atol=1e-11)
    else:
        tol = dict(rtol=1e-4, atol=1e-5)

    def check(ours, t, name):
        np.testing.assert_allclose(ours, t.detach().numpy(), **tol, err_msg=name)

    check(hs, out, "hs")
    check(cache.h_last, hn[0], "h_last")
    if cell == "lstm":
        check(cache.c_last, cn[0], "c_last")
        check(g.dc0, c0t.grad[0], "dc0")
    check(d_w_ih, net.weight_ih_l0.grad, "weight_ih")
    check(d_b_ih, net.bias_ih_l0.grad, "bias_ih")
    check(g.dw_hh, net.weight_hh_l0.grad, "weight_hh")
    check(g.db_hh, net.bias_hh_l0.grad, "bias_hh")
    check(d_x, xt.grad, "x")
    check(g.dh0, h0t.grad[0], "h0")


# --- argument checks -----------------------------------------------------------------------------


def test_argument_errors():
    p = make_problem("lstm", 3, 2, 4, np.float32)
    args = (p["xw"], p["w_hh"], p["b_hh"], p["h0"], p["c0"])

    def fwd(cell="lstm", xw=None, w_hh=None, b_hh=None, h0=None, c0="same", **kw):
        a = [v.copy() if v is not None else None for v in args]
        return recurrent_forward(
            cell,
            a[0] if xw is None else xw,
            a[1] if w_hh is None else w_hh,
            a[2] if b_hh is None else b_hh,
            a[3] if h0 is None else h0,
            a[4] if isinstance(c0, str) else c0,
            **kw,
        )

    with pytest.raises(ValueError, match="unknown cell"):
        fwd(cell="transformer")
    with pytest.raises(ValueError, match="dtype"):
        fwd(w_hh=p["w_hh"].astype(np.float64))
    with pytest.raises(ValueError, match="dtype"):
        fwd(xw=p["xw"].astype(np.float16))
    with pytest.raises(ValueError, match="C-contiguous"):
        fwd(h0=np.ones((4, 2), np.float32).T)
    with pytest.raises(ValueError, match="C-contiguous"):
        fwd(xw=np.ascontiguousarray(np.repeat(p["xw"], 2, axis=2))[:, :, ::2])
    with pytest.raises(ValueError, match="shape"):
        fwd(b_hh=p["b_hh"][:-1].copy())
    with pytest.raises(ValueError, match="last dimension"):
        fwd(cell="gru")
    with pytest.raises(ValueError, match="c0"):
        fwd(c0=None)
    with pytest.raises(ValueError, match="empty"):
        fwd(xw=p["xw"][:0].copy())
    pg = make_problem("gru", 3, 2, 4, np.float32)
    with pytest.raises(ValueError, match="only for lstm"):
        recurrent_forward("gru", pg["xw"], pg["w_hh"], pg["b_hh"], pg["h0"], pg["h0"])
    pl = make_problem("leaky", 3, 2, 4, np.float32)
    with pytest.raises(ValueError, match="needs leak"):
        recurrent_forward("leaky", pl["xw"], pl["w_hh"], pl["b_hh"], pl["h0"])
    with pytest.raises(ValueError, match="leak has shape"):
        recurrent_forward("leaky", pl["xw"], pl["w_hh"], pl["b_hh"], pl["h0"], leak=pl["leak"][:3].copy())
    with pytest.raises(ValueError, match="leak is only for"):
        recurrent_forward("rnn", pl["xw"], pl["w_hh"], pl["b_hh"], pl["h0"], leak=pl["leak"])

    hs, cache = fwd()
    with pytest.raises(ValueError, match="dhs"):
        recurrent_backward(cache, p["dhs"][:-1].copy())
    with pytest.raises(ValueError, match="dtype"):
        recurrent_backward(cache, p["dhs"].astype(np.float64))
    recurrent_backward(cache, p["dhs"])
    with pytest.raises(ValueError, match="already"):
        recurrent_backward(cache, p["dhs"])


def test_recurrent_start_takes_only_the_weights_own_packing():
    from charlm.nn.recurrent import recurrent_start

    rng = np.random.default_rng(0)
    T, B, H = 3, 2, 8
    xw = rng.standard_normal((T, B, H)).astype(np.float32)
    w_hh = rng.standard_normal((H, H)).astype(np.float32)
    b_hh, h0 = np.zeros(H, np.float32), np.zeros((B, H), np.float32)
    shared = pack_panels(w_hh)
    assert recurrent_start("rnn", xw.copy(), w_hh, b_hh, h0, w_hh_p=shared).w_hh_p is shared
    with pytest.raises(ValueError, match="pack_panels"):
        recurrent_start("rnn", xw.copy(), w_hh, b_hh, h0, w_hh_p=pack_panels(np.hstack([w_hh, w_hh])))
