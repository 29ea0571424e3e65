"""Optimizers and gradient clipping against torch.optim and torch.nn.utils."""

from __future__ import annotations

import numpy as np
import pytest

from charlm.errors import OptionError
from charlm.train.optim import Optimizer, clip_gradients, global_norm

SHAPES = {"a.weight": (5, 4), "a.bias": (5,), "b": (3, 2, 2)}


def random_params(seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}


def random_grads(step, seed=0, scale=1.0):
    rng = np.random.default_rng(1000 * seed + step + 1)
    return {k: (rng.standard_normal(s) * scale).astype(np.float32) for k, s in SHAPES.items()}


def copy(d):
    return {k: v.copy() for k, v in d.items()}


def torch_run(kind, params, grads_per_step, **hp):
    torch = pytest.importorskip("torch")
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    lr, wd = hp["lr"], hp.get("weight_decay", 0.0)
    if kind in ("adam", "adamw"):
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        opt = cls(tp.values(), lr=lr, betas=hp.get("betas", (0.9, 0.999)),
                  eps=hp.get("eps", 1e-8), weight_decay=wd)
    else:
        opt = torch.optim.SGD(tp.values(), lr=lr, weight_decay=wd)
    for grads in grads_per_step:
        for k, p in tp.items():
            p.grad = torch.tensor(grads[k])
        opt.step()
    return {k: p.detach().numpy() for k, p in tp.items()}


HPARAMS = [
    ("adam", dict(lr=1e-2)),
    ("adam", dict(lr=3e-3, weight_decay=0.1)),
    ("adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6)),
    ("adamw", dict(lr=3e-3, weight_decay=0.1)),
    ("adamw", dict(lr=1e-2, weight_decay=2.0, betas=(0.8, 0.99))),
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.05, weight_decay=0.01)),
]


@pytest.mark.parametrize("kind,hp", HPARAMS)
def test_matches_torch(kind, hp):
    pytest.importorskip("torch")
    params = random_params()
    steps = [random_grads(s, scale=10.0 ** (s % 3 - 1)) for s in range(5)]
    expected = torch_run(kind, params, steps, **hp)
    ours = copy(params)
    opt = Optimizer(kind, hp["lr"], hp.get("weight_decay", 0.0), betas=hp.get("betas", (0.9, 0.999)),
                    eps=hp.get("eps", 1e-8))
    for grads in steps:
        opt.step(ours, copy(grads))
    assert opt.t == 5
    for k in params:
        assert ours[k].dtype == np.float32
        np.testing.assert_allclose(ours[k], expected[k], rtol=1e-5, atol=1e-6, err_msg=k)
        assert not np.array_equal(ours[k], params[k])


def test_params_updated_in_place():
    params = random_params()
    ids = {k: id(v) for k, v in params.items()}
    opt = Optimizer("adam", 1e-2)
    opt.step(params, random_grads(0))
    assert {k: id(v) for k, v in params.items()} == ids


def test_unknown_optimizer():
    with pytest.raises(OptionError, match="adam, adamw, sgd"):
        Optimizer("rmsprop", 1e-3)


def test_adamw_step_by_hand():
    """One AdamW step written out from torch.optim.AdamW's algorithm (runs without torch): decay
    with the rate, then Adam's first step, whose bias-corrected moments are g and g^2."""
    params, grads = random_params(3), random_grads(0, seed=3)
    lr, wd, eps = 1e-2, 2.0, 1e-8
    ours = copy(params)
    Optimizer("adamw", lr, wd, eps=eps).step(ours, copy(grads))
    for k, p in params.items():
        g = grads[k]
        expected = p * (1 - lr * wd) - lr * g / (np.abs(g) + eps)
        np.testing.assert_allclose(ours[k], expected, rtol=1e-5, atol=1e-6, err_msg=k)


def test_adamw_decay_is_decoupled_from_the_gradient():
    """With zero gradients Adam's step is 0, so AdamW only shrinks each weight by (1 - lr wd) per
    step, whatever its scale; Adam's L2 term instead goes through the moments: a step of about
    lr towards 0 (Adam's normalized step), for weights far enough from 0 not to cross it."""
    params = random_params(2)
    zero = {k: np.zeros_like(v) for k, v in params.items()}
    lr, wd = 1e-2, 3.0
    decoupled, coupled = copy(params), copy(params)
    adamw, adam = Optimizer("adamw", lr, wd), Optimizer("adam", lr, wd)
    for _ in range(4):
        adamw.step(decoupled, copy(zero))
        adam.step(coupled, copy(zero))
    for k, p in params.items():
        np.testing.assert_allclose(decoupled[k], p * (1 - lr * wd) ** 4, rtol=1e-5, err_msg=k)
        far = np.abs(p) > 0.1
        np.testing.assert_allclose(coupled[k][far], (p - 4 * lr * np.sign(p))[far], atol=2e-3, err_msg=k)


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
def test_state_dict_round_trip_continues_identically(kind):
    params = random_params(1)
    opt = Optimizer(kind, 5e-3, weight_decay=0.01)
    for s in range(3):
        opt.step(params, random_grads(s, seed=1))
    arrays, scalars = opt.state_dict()
    # what a saved training state holds goes through JSON and a float32 file
    import json

    scalars = json.loads(json.dumps(scalars))
    resumed = Optimizer("sgd" if kind == "adam" else "adam", 1.0)  # overwritten by the load
    resumed.load_state_dict({k: v.copy() for k, v in arrays.items()}, scalars)
    shared = Optimizer(kind, 1.0)
    shared.load_state_dict(arrays, scalars)  # the very arrays state_dict returned
    p1, p2, p3 = copy(params), copy(params), copy(params)
    for s in range(3, 6):
        g = random_grads(s, seed=1)
        opt.step(p1, copy(g))
        resumed.step(p2, copy(g))
        shared.step(p3, copy(g))
    for k in params:
        np.testing.assert_array_equal(p2[k], p1[k], err_msg=k)
        np.testing.assert_array_equal(p3[k], p1[k], err_msg=k)
    assert resumed.t == opt.t == shared.t == 6
    assert resumed.kind == kind and resumed.lr == 5e-3 and resumed.weight_decay == 0.01
    if kind != "sgd":
        assert set(arrays) == {f"{m}.{k}" for m in "mv" for k in params}


# --- clipping ------------------------------------------------------------------------------------


def torch_clip(grads, clip, mode):
    torch = pytest.importorskip("torch")
    tp = []
    for g in grads.values():
        p = torch.zeros(g.shape, requires_grad=True)
        p.grad = torch.tensor(g)
        tp.append(p)
    if mode == "norm":
        norm = float(torch.nn.utils.clip_grad_norm_(tp, clip))
    else:
        torch.nn.utils.clip_grad_value_(tp, clip)
        norm = None
    return norm, {k: p.grad.numpy() for k, p in zip(grads, tp)}


@pytest.mark.parametrize("clip", [0.5, 3.0, 100.0])
def test_clip_norm_matches_torch(clip):
    grads = random_grads(0, scale=1.0)
    norm_t, expected = torch_clip(copy(grads), clip, "norm")
    ours = copy(grads)
    norm = clip_gradients(ours, clip, "norm")
    assert norm == pytest.approx(norm_t, rel=1e-6)
    assert norm == pytest.approx(global_norm(grads), rel=1e-12)
    for k in grads:
        np.testing.assert_allclose(ours[k], expected[k], rtol=1e-6, atol=1e-7, err_msg=k)
    assert global_norm(ours) <= clip * (1 + 1e-5)
    if clip == 100.0:  # under the threshold: untouched
        for k in grads:
            np.testing.assert_array_equal(ours[k], grads[k])


@pytest.mark.parametrize("clip", [0.1, 1.0, 10.0])
def test_clip_value_matches_torch(clip):
    grads = random_grads(2, scale=2.0)
    _, expected = torch_clip(copy(grads), clip, "value")
    ours = copy(grads)
    norm = clip_gradients(ours, clip, "value")
    assert norm == pytest.approx(global_norm(grads), rel=1e-12)  # the norm before clipping
    for k in grads:
        np.testing.assert_array_equal(ours[k], expected[k], err_msg=k)
        assert np.abs(ours[k]).max() <= clip


@pytest.mark.parametrize("mode", ["norm", "value"])
def test_clip_disabled_and_non_finite(mode):
    grads = random_grads(3, scale=100.0)
    ours = copy(grads)
    assert clip_gradients(ours, 0.0, mode) == pytest.approx(global_norm(grads))
    for k in grads:
        np.testing.assert_array_equal(ours[k], grads[k])
    bad = copy(grads)
    bad["b"][0, 0, 0] = np.nan
    kept = copy(bad)
    assert not np.isfinite(clip_gradients(bad, 1.0, mode))  # reported, left for the caller
    for k in grads:
        np.testing.assert_array_equal(bad[k], kept[k])


def numpy_adam_steps(params, grads_per_step, lr, betas=(0.9, 0.999), eps=1e-8):
    """Adam as float32 numpy steps, one operation at a time (the reference for the fused pass)."""
    b1, b2 = betas
    params = copy(params)
    m = {k: np.zeros_like(p) for k, p in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    for t, grads in enumerate(grads_per_step, start=1):
        for k, g in grads.items():
            m[k] = m[k] * np.float32(b1) + np.float32(1 - b1) * g
            v[k] = v[k] * np.float32(b2) + np.float32(1 - b2) * (g * g)
            denom = np.sqrt(v[k]) * np.float32(1.0 / np.sqrt(1 - b2**t)) + np.float32(eps)
            params[k] -= (m[k] / denom) * np.float32(lr / (1 - b1**t))
    return params


@pytest.mark.parametrize("size", [7, 3 * (1 << 18) + 5])  # one part; parts side by side
def test_fused_adam_has_the_bits_of_numpy_steps(size):
    rng = np.random.default_rng(4)
    params = {"w": rng.standard_normal(size).astype(np.float32)}
    steps = [{"w": (rng.standard_normal(size) * 10.0 ** (s - 1)).astype(np.float32)} for s in range(3)]
    expected = numpy_adam_steps(params, steps, 3e-3, betas=(0.8, 0.99), eps=1e-6)
    ours = copy(params)
    opt = Optimizer("adam", 3e-3, betas=(0.8, 0.99), eps=1e-6)
    for grads in steps:
        opt.step(ours, copy(grads))
    np.testing.assert_array_equal(ours["w"], expected["w"])
