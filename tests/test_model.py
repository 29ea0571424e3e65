"""The whole model: finite-difference gradients, equivalence with PyTorch, initialization."""

from __future__ import annotations

import dataclasses
import numpy as np
import pytest

from charlm.io.checkpoint import expected_shapes
from charlm.config import CELLS, ModelConfig
from charlm.nn.model import Model

TORCH_CELLS = ("lstm", "gru", "rnn")  # the cells PyTorch has
V, E, H, T, B = 7, 5, 6, 4, 3
# The leaky unit learns its leak rates here (a fixed rate is the same path without dL/da); the
# echo state network leaks too, and only its decoder is trained.
CELL_SETTINGS = {"leaky": dict(leak=0.6, learn_leak=True), "esn": dict(leak=0.7, spectral_radius=0.8)}

# name -> (embed, layers, dropout, tie[, locked dropout])
VARIANTS = {
    "embed-1layer": (E, 1, 0.0, False),
    "embed-2layers": (E, 2, 0.0, False),
    "onehot-2layers": (0, 2, 0.0, False),
    "onehot-1layer-dropout": (0, 1, 0.4, False),
    "tie-2layers": (H, 2, 0.0, True),
    "dropout-3layers": (E, 3, 0.3, False),
    "tie-dropout-2layers": (H, 2, 0.3, True),
    "locked-dropout-2layers": (E, 2, 0.3, False, True),
    "onehot-locked-dropout-1layer": (0, 1, 0.4, False, True),
}


def make_config(cell, variant, vocab=V, hidden=H, **settings):
    embed, layers, dropout, tie, *locked = VARIANTS[variant]
    if tie:
        embed = hidden
    settings = {**CELL_SETTINGS.get(cell, {}), **settings}
    return ModelConfig(cell=cell, vocab_size=vocab, embed=embed, hidden=hidden, layers=layers,
                       dropout=dropout, tie=tie, locked_dropout=bool(locked and locked[0]), **settings)


def cell_variants(cells, variants):
    """(cell, variant) pairs; an echo state network cannot be tied (its embedding is frozen)."""
    return [(c, v) for c in cells for v in variants if not (c == "esn" and VARIANTS[v][3])]


def as_dtype(params, dtype):
    """Cast every parameter, keeping tied names on one shared array."""
    cast, out = {}, {}
    for name, p in params.items():
        if id(p) not in cast:
            cast[id(p)] = np.ascontiguousarray(p, dtype=dtype)
        out[name] = cast[id(p)]
    return out


def make_model(cell, variant, dtype=np.float64, seed=0, scale=0.5, **settings):
    """A model with larger-than-default random weights (so every nonlinearity matters)."""
    cfg = make_config(cell, variant, **settings)
    model = Model.create(cfg, seed=seed)
    rng = np.random.default_rng(seed + 100)
    params = as_dtype(model.params, dtype)
    for name in model.trainable_names():
        p = params[name]
        p += (rng.standard_normal(p.shape) * scale).astype(dtype)
    return Model(cfg, params)


def make_data(model, seed=1, t=T, b=B):
    rng = np.random.default_rng(seed)
    cfg = model.config
    tokens = rng.integers(0, cfg.vocab_size, (t, b)).astype(np.int32)
    targets = rng.integers(0, cfg.vocab_size, (t, b)).astype(np.int32)
    state = model.zero_state(b)
    state += (rng.standard_normal(state.shape) * 0.5).astype(state.dtype)
    return tokens, targets, state


def rel_error(a, n):
    """Relative error; below 1e-5 (where rounding in the loss dominates) it is absolute * 1e5."""
    return np.abs(a - n) / max(np.abs(a) + np.abs(n), 1e-5)


# --- finite differences --------------------------------------------------------------------------


@pytest.mark.parametrize("cell, variant", cell_variants(CELLS, VARIANTS) + [
    ("leaky-fixed", "embed-2layers"), ("leaky-fixed", "dropout-3layers"),
    ("esn-learned-embedding", "embed-2layers"), ("esn-learned-embedding", "dropout-3layers")])
def test_finite_differences(cell, variant, chunking):
    if cell == "leaky-fixed":  # a leak rate that is not learned: no leak parameter
        model = make_model("leaky", variant, leak=0.3, learn_leak=False)
        assert not any("leak" in n for n in model.params)
    elif cell == "esn-learned-embedding":  # backpropagated through the frozen reservoir
        model = make_model("esn", variant, learn_embedding=True)
        assert model.trainable_names() == ["embedding.weight", "decoder.weight", "decoder.bias"]
    else:
        model = make_model(cell, variant)
    tokens, targets, state = make_data(model)
    state_before = state.copy()
    seed = 1234

    def loss():
        rng = np.random.default_rng(seed) if model.config.dropout > 0 else None
        return model.loss_and_grads(tokens, targets, state, rng)[0]

    rng = np.random.default_rng(seed) if model.config.dropout > 0 else None
    loss0, grads, new_state = model.loss_and_grads(tokens, targets, state, rng)
    assert np.array_equal(state, state_before), "loss_and_grads modified the carried state"
    assert new_state.shape == state.shape and new_state.dtype == np.float64
    assert loss() == loss0  # the same generator seed gives the same masks
    assert set(grads) == set(model.trainable_names())
    if model.config.tie:
        assert model.params["decoder.weight"] is model.params["embedding.weight"]
        assert "decoder.weight" not in grads

    pick = np.random.default_rng(0)
    h = 1e-4  # five-point stencil: truncation O(h^4), rounding O(1e-16 / h)
    for name in model.trainable_names():
        arr = model.params[name]
        g = grads[name]
        assert g.shape == arr.shape and g.dtype == np.float64, name
        flat, gflat = arr.reshape(-1), g.reshape(-1)
        idx = pick.choice(arr.size, size=min(arr.size, 8), replace=False)
        if name.startswith(("embedding", "rnn.weight_ih_l0")):
            # rows/columns of tokens that occur carry the gradient: sample those too
            tok = int(tokens[0, 0])
            j = tok * arr.shape[1] if name.startswith("embedding") else tok
            idx = np.append(idx, j)
        for j in idx:
            old = flat[j]
            f = []
            for k in (2, 1, -1, -2):
                flat[j] = old + k * h
                f.append(loss())
            flat[j] = old
            num = (-f[0] + 8 * f[1] - 8 * f[2] + f[3]) / (12 * h)
            err = rel_error(gflat[j], num)
            assert err <= 1e-6, (name, int(j), gflat[j], num, err)


def test_dropout_masks_depend_on_rng_and_are_off_without_it():
    model = make_model("lstm", "dropout-3layers")
    tokens, targets, state = make_data(model)
    a = model.loss_and_grads(tokens, targets, state, np.random.default_rng(1))[0]
    b = model.loss_and_grads(tokens, targets, state, np.random.default_rng(2))[0]
    c = model.loss_and_grads(tokens, targets, state, None)[0]
    d = model.loss_and_grads(tokens, targets, state, None)[0]
    assert a != b and a != c and c == d
    # evaluation never drops anything: target_logprobs equals the no-rng training loss
    logp, _ = model.target_logprobs(tokens, targets, state)
    assert np.isclose(-logp.mean(), c, rtol=1e-12)


# --- against PyTorch -----------------------------------------------------------------------------

TORCH_VARIANTS = ("embed-2layers", "onehot-2layers", "tie-2layers", "embed-1layer")


def _torch():
    torch = pytest.importorskip("torch")
    try:
        from tests import torch_reference as tref
    except ImportError:  # tests/ is not a package: pytest puts it on sys.path
        import torch_reference as tref
    return torch, tref


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", TORCH_VARIANTS)
@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_matches_pytorch(cell, variant, dtype, chunking):
    torch, tref = _torch()
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    model = make_model(cell, variant, dtype=dtype, seed=3, scale=0.3)
    tokens, targets, state = make_data(model, seed=5, t=6, b=3)
    if dtype == np.float64:
        tol = dict(rtol=1e-9, atol=1e-11)
    else:
        tol = dict(rtol=1e-4, atol=1e-6)

    net = tref.torch_module(model, tdtype)
    for name, p in net.state_dict().items():  # same names, same values: no renaming
        np.testing.assert_array_equal(p.numpy(), model.params[name].astype(dtype), err_msg=name)

    # per-position log-probabilities and the carried state (evaluation: no dropout)
    logp, new_state = model.target_logprobs(tokens, targets, state)
    assert logp.shape == tokens.shape and logp.dtype == np.float64
    tt = torch.tensor(tokens, dtype=torch.long)
    ty = torch.tensor(targets, dtype=torch.long)
    logits, tstate = net(tt, tref.torch_state(model, state, tdtype))
    tlogp = torch.log_softmax(logits, -1).gather(-1, ty[..., None])[..., 0]
    np.testing.assert_allclose(logp, tlogp.detach().numpy(), **tol)
    np.testing.assert_allclose(new_state, tref.state_to_numpy(model, tstate), **tol)

    # mean cross-entropy and gradients of every parameter (dropout off)
    loss, grads, train_state = model.loss_and_grads(tokens, targets, state)
    np.testing.assert_array_equal(train_state, new_state)
    flat_logits = logits.reshape(-1, model.config.vocab_size)
    tloss = torch.nn.functional.cross_entropy(flat_logits, ty.reshape(-1))
    tloss.backward()
    np.testing.assert_allclose(loss, tloss.item(), **tol)
    tgrads = {n: p.grad.numpy() for n, p in net.named_parameters()}  # tied: named once
    assert set(tgrads) == set(grads) == set(model.trainable_names())
    for name, g in grads.items():
        assert g.dtype == dtype, name
        tg = tgrads[name]
        scale = np.abs(tg).max()
        np.testing.assert_allclose(g, tg, rtol=tol["rtol"], atol=tol["atol"] + tol["rtol"] * 0.1 * scale,
                                   err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
def test_carried_state_equals_one_long_window(cell):
    """Two windows with the state carried equal one window of twice the length."""
    model = make_model(cell, "embed-2layers", dtype=np.float32, seed=7, scale=0.3)
    tokens, targets, state = make_data(model, seed=2, t=8, b=2)
    logp, s_end = model.target_logprobs(tokens, targets, state)
    a, s_mid = model.target_logprobs(tokens[:3], targets[:3], state)
    b, s_end2 = model.target_logprobs(tokens[3:], targets[3:], s_mid)
    np.testing.assert_allclose(np.concatenate([a, b]), logp, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s_end2, s_end, rtol=1e-5, atol=1e-6)
    # and the training path carries the same state
    _, _, s_train = model.loss_and_grads(tokens[:3], targets[:3], state)
    np.testing.assert_allclose(s_train, s_mid, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cell", CELLS)
def test_logprobs_of_valid_positions_only(cell):
    """target_logprobs(valid=...) gives the same log-probabilities where valid (over several
    stream blocks) and 0 elsewhere, with the same final state."""
    model = make_model(cell, "embed-2layers", dtype=np.float32, seed=7, scale=0.3)
    tokens, targets, state = make_data(model, seed=4, t=7, b=70)
    valid = np.random.default_rng(1).random(tokens.shape) < 0.6
    every, s_every = model.target_logprobs(tokens, targets, state)
    some, s_some = model.target_logprobs(tokens, targets, state, valid)
    np.testing.assert_allclose(some[valid], every[valid], rtol=1e-6, atol=1e-7)
    assert not some[~valid].any()
    np.testing.assert_array_equal(s_some, s_every)


@pytest.mark.parametrize("cell", CELLS)
def test_input_projection_folded_into_a_table_of_the_vocabulary(cell, monkeypatch):
    """With fewer tokens in the vocabulary than rows, layer 0's input projection is gathered
    from E W_ih^T: the same logprobs, loss and gradients as the product over all rows."""
    model = make_model(cell, "embed-2layers", dtype=np.float64, seed=3, scale=0.3)
    tokens, targets, state = make_data(model, seed=8, t=9, b=4)
    assert model._folds_embedding(None, tokens.size)
    folded = model.loss_and_grads(tokens, targets, state), model.target_logprobs(tokens, targets, state)
    monkeypatch.setattr(Model, "_folds_embedding", lambda self, mask, rows: False)
    (loss, grads, new_state), (logp, _) = model.loss_and_grads(tokens, targets, state), \
        model.target_logprobs(tokens, targets, state)
    (loss_f, grads_f, state_f), (logp_f, _) = folded
    np.testing.assert_allclose(loss_f, loss, rtol=1e-12)
    np.testing.assert_allclose(state_f, new_state, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(logp_f, logp, rtol=1e-12)
    for name, g in grads.items():
        np.testing.assert_allclose(grads_f[name], g, rtol=1e-10, atol=1e-13, err_msg=name)


# --- creation --------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["embed-2layers", "onehot-2layers", "tie-2layers"])
@pytest.mark.parametrize("cell", TORCH_CELLS + ("leaky",))
def test_create(cell, variant):
    cfg = make_config(cell, variant, vocab=11, hidden=8)
    model = Model.create(cfg, seed=4)
    shapes = expected_shapes(cfg)
    assert list(model.params) == list(shapes)  # same names, same order
    for name, p in model.params.items():
        assert p.shape == shapes[name] and p.dtype == np.float32 and p.flags.c_contiguous, name
        assert np.isfinite(p).all(), name
    if cfg.tie:
        assert model.params["decoder.weight"] is model.params["embedding.weight"]
        assert "decoder.weight" not in model.trainable_names()
    else:
        assert model.trainable_names() == list(model.params)
    assert model.num_parameters() == sum(model.params[n].size for n in model.trainable_names())
    # deterministic in the seed
    again = Model.create(cfg, seed=4)
    other = Model.create(cfg, seed=5)
    for name in model.params:
        np.testing.assert_array_equal(again.params[name], model.params[name])
    assert any(not np.array_equal(other.params[n], model.params[n]) for n in model.params)
    # init "uniform" (the default): PyTorch's U(-1/sqrt(H), 1/sqrt(H)) for recurrent weights and biases
    Hn = cfg.hidden
    for layer in range(cfg.layers):
        for kind in ("weight_hh", "bias_ih", "bias_hh"):
            p = model.params[f"rnn.{kind}_l{layer}"]
            assert np.abs(p).max() <= 1 / np.sqrt(Hn) and p.std() > 0.2 / np.sqrt(Hn), kind
    # init "orthogonal": one orthogonal (H, H) block per gate, LSTM forget-gate bias 1
    model = Model.create(dataclasses.replace(cfg, init="orthogonal"), seed=4)
    for layer in range(cfg.layers):
        w_hh = model.params[f"rnn.weight_hh_l{layer}"].astype(np.float64)
        for gate in range(cfg.gates):
            blk = w_hh[gate * Hn : (gate + 1) * Hn]
            np.testing.assert_allclose(blk @ blk.T, np.eye(Hn), atol=1e-5)
        b = model.params[f"rnn.bias_ih_l{layer}"] + model.params[f"rnn.bias_hh_l{layer}"]
        if cell == "lstm":  # forget gate bias 1, others 0
            np.testing.assert_array_equal(b[Hn : 2 * Hn], 1.0)
            np.testing.assert_array_equal(np.delete(b, np.s_[Hn : 2 * Hn]), 0.0)
        else:
            np.testing.assert_array_equal(b, 0.0)
        bound = 1 / np.sqrt(Hn)
        assert np.abs(model.params[f"rnn.weight_ih_l{layer}"]).max() <= bound
    np.testing.assert_array_equal(model.params["decoder.bias"], 0.0)
    # the embedding: N(0, 1), but uniform(-0.1, 0.1) when it is also the decoder (tied)
    if cfg.embed > 0:
        emb = model.params["embedding.weight"]
        if cfg.tie:
            assert np.abs(emb).max() <= 0.1 and emb.std() > 0.04
        else:
            assert np.abs(emb).max() > 1.0 and 0.7 < emb.std() < 1.3
    # state
    s = model.zero_state(3)
    assert s.shape == (cfg.layers, 2 if cell == "lstm" else 1, 3, cfg.hidden)
    assert s.dtype == np.float32 and not s.any()


def test_num_parameters_matches_torch():
    torch, tref = _torch()
    for variant in ("embed-2layers", "onehot-2layers", "tie-2layers"):
        for cell in TORCH_CELLS:
            model = Model.create(make_config(cell, variant), seed=0)
            net = tref.torch_module(model)
            assert model.num_parameters() == sum(p.numel() for p in net.parameters()), (cell, variant)


def test_float32_training_step_outputs():
    model = Model.create(make_config("lstm", "tie-dropout-2layers"), seed=0)
    tokens, targets, state = make_data(model)
    loss, grads, new_state = model.loss_and_grads(tokens, targets, state, np.random.default_rng(0))
    assert isinstance(loss, float) and np.isfinite(loss)
    assert new_state.dtype == np.float32
    for name, g in grads.items():
        assert g.dtype == np.float32 and g.shape == model.params[name].shape and np.isfinite(g).all()
    # a fresh model is close to uniform: the loss is near log V
    assert abs(loss - np.log(V)) < 1.0



def test_dropout_is_inverted_dropout():
    """Kept units are scaled by 1/(1-p) during training so that evaluation needs no rescaling."""
    p = 0.3
    cfg = ModelConfig(cell="gru", vocab_size=V, embed=E, hidden=H, layers=2, dropout=p)
    model = Model.create(cfg)
    tokens = np.random.default_rng(0).integers(0, V, (50, 40))
    _, _, trace = model.forward(tokens, model.zero_state(40), np.random.default_rng(0))
    assert len(trace.masks) == 1 + cfg.layers  # embedding output and each layer's output
    for mask in trace.masks:
        assert mask.dtype == np.float32
        assert set(np.unique(mask).tolist()) <= {0.0, np.float32(1 / (1 - p))}
        assert abs((mask == 0).mean() - p) < 0.03
        assert abs(mask.mean() - 1.0) < 0.05
    _, _, trace = model.forward(tokens, model.zero_state(40))
    assert all(m is None for m in trace.masks)


def test_locked_dropout_shares_one_mask_across_the_time_steps():
    """Locked dropout: a window's masks are the same at every step, differ
    between streams and units, and are drawn anew for the next window."""
    p, T_, B_ = 0.3, 50, 40
    cfg = ModelConfig(cell="lstm", vocab_size=V, embed=E, hidden=H, layers=2, dropout=p,
                      locked_dropout=True)
    model = Model.create(cfg)
    tokens = np.random.default_rng(0).integers(0, V, (T_, B_))
    rng = np.random.default_rng(0)
    _, _, first = model.forward(tokens, model.zero_state(B_), rng)
    _, _, second = model.forward(tokens, model.zero_state(B_), rng)
    assert len(first.masks) == 1 + cfg.layers
    for a, b in zip(first.masks, second.masks):
        assert a.shape[:2] == (T_, B_) and a.dtype == np.float32
        assert (a == a[:1]).all()  # every step has the first step's mask
        assert set(np.unique(a).tolist()) <= {0.0, np.float32(1 / (1 - p))}
        assert abs((a[0] == 0).mean() - p) < 0.1
        assert not (a[0] == a[0, :1]).all()  # streams get their own masks
        assert not np.array_equal(a, b)  # a new draw for the next window
    # per-step dropout draws a different mask at every step
    model.config = dataclasses.replace(cfg, locked_dropout=False)
    _, _, per_step = model.forward(tokens, model.zero_state(B_), np.random.default_rng(0))
    assert not (per_step.masks[1] == per_step.masks[1][:1]).all()


# --- the leaky unit ------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["embed-2layers", "onehot-1layer-dropout"])
def test_leaky_unit_with_leak_one_is_the_rnn_to_the_bit(variant):
    """Same seed, same weights; with a = 1 the loss, every gradient, the carried state and the
    evaluation's log-probabilities equal the tanh RNN's exactly."""
    rnn = Model.create(make_config("rnn", variant), seed=2)
    leaky = Model.create(make_config("leaky", variant, leak=1.0, learn_leak=False), seed=2)
    assert list(leaky.params) == list(rnn.params)
    for name in rnn.params:
        np.testing.assert_array_equal(leaky.params[name], rnn.params[name])
    tokens, targets, state = make_data(rnn, seed=3, t=9, b=4)
    dropout = rnn.config.dropout > 0
    loss_r, grads_r, state_r = rnn.loss_and_grads(tokens, targets, state, np.random.default_rng(1) if dropout else None)
    loss_l, grads_l, state_l = leaky.loss_and_grads(tokens, targets, state, np.random.default_rng(1) if dropout else None)
    assert loss_l == loss_r
    np.testing.assert_array_equal(state_l, state_r)
    assert set(grads_l) == set(grads_r)
    for name in grads_r:
        np.testing.assert_array_equal(grads_l[name], grads_r[name], err_msg=name)
    np.testing.assert_array_equal(leaky.target_logprobs(tokens, targets, state)[0],
                                  rnn.target_logprobs(tokens, targets, state)[0])
    # and a rate below 1 is a different model
    slower = Model(dataclasses.replace(leaky.config, leak=0.5), leaky.params)
    assert slower.loss_and_grads(tokens, targets, state)[0] != rnn.loss_and_grads(tokens, targets, state)[0]


def test_learned_leak_rates_start_at_the_given_rate_and_stay_in_range():
    model = Model.create(make_config("leaky", "embed-2layers", leak=0.3, learn_leak=True), seed=0)
    for layer in range(2):
        assert model.params[f"rnn.leak_logit_l{layer}"].shape == (H,)
        np.testing.assert_allclose(model.leak_rates(layer), 0.3, rtol=1e-6)
    assert "rnn.leak_logit_l0" in model.trainable_names()
    model.params["rnn.leak_logit_l0"][:] = [-40, -5, 0, 5, 40, 80]  # any logit is a rate in (0, 1]
    a = model.leak_rates(0)
    assert np.all(a > 0) and np.all(a <= 1) and a[2] == 0.5 and a[-1] == 1.0
