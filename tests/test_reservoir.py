"""The echo state network: the reservoir's spectral radius, its frozen weights in training."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from charlm import api
from charlm.config import ModelConfig, TokenizerConfig, TrainConfig
from charlm.nn.model import Model
from charlm.nn.reservoir import spectral_radius


def exact_radius(w: np.ndarray) -> float:
    return float(np.abs(np.linalg.eigvals(w.astype(np.float64))).max())


@pytest.mark.parametrize("hidden", [5, 64, 300])
@pytest.mark.parametrize("radius", [0.5, 0.9, 1.3])
def test_reservoir_has_the_requested_spectral_radius(hidden, radius):
    cfg = ModelConfig(cell="esn", vocab_size=11, embed=4, hidden=hidden, layers=2, spectral_radius=radius)
    model = Model.create(cfg, seed=hidden)
    for layer in range(2):
        w_hh = model.params[f"rnn.weight_hh_l{layer}"]
        assert w_hh.dtype == np.float32 and w_hh.shape == (hidden, hidden)
        assert abs(exact_radius(w_hh) / radius - 1) < 1e-3


@pytest.mark.parametrize("seed", range(6))
def test_arnoldi_estimate_equals_the_exact_radius(seed):
    """Random matrices (eigenvalues crowding the rim of a disk, the largest a complex pair
    more often than not) and a rotation whose every eigenvalue has modulus 2 but one of 2.5."""
    w = np.random.default_rng(seed).standard_normal((200, 200))
    assert abs(spectral_radius(w) / exact_radius(w) - 1) < 1e-9
    blocks = [np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) * 2 for t in np.linspace(0.1, 3, 40)]
    rotation = np.zeros((81, 81))
    for k, blk in enumerate(blocks):
        rotation[2 * k : 2 * k + 2, 2 * k : 2 * k + 2] = blk
    rotation[80, 80] = -2.5
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((81, 81)))
    assert abs(spectral_radius(q @ rotation @ q.T) - 2.5) < 1e-9


def test_the_reservoir_comes_from_the_seed():
    cfg = ModelConfig(cell="esn", vocab_size=9, embed=0, hidden=40, layers=1)
    a, b, c = (Model.create(cfg, seed=s) for s in (3, 3, 4))
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    assert not np.array_equal(a.params["rnn.weight_hh_l0"], c.params["rnn.weight_hh_l0"])
    assert a.trainable_names() == ["decoder.weight", "decoder.bias"]
    assert set(a.frozen_names()) == {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0"}
    assert a.num_parameters() == 9 * 40 + 9


@pytest.mark.parametrize("learn_embedding", [False, True])
def test_training_changes_the_decoder_and_nothing_else(tmp_path, corpus_file, learn_embedding):
    """Frozen in training: every reservoir weight (and the embedding, unless learned) keeps the
    values drawn from the seed, in memory and in the saved model; the decoder learns (the loss
    falls), and the embedding when asked."""
    model_cfg = ModelConfig(cell="esn", embed=8, hidden=32, layers=2, dropout=0.2, leak=0.5,
                            learn_embedding=learn_embedding)
    cfg = TrainConfig(batch=4, seq_len=16, steps=40, lr=0.01, seed=7, valid_every=20)
    trainer = api.prepare_training(str(corpus_file), model_cfg=model_cfg, tok_cfg=TokenizerConfig(),
                                   cfg=cfg, output=str(tmp_path / "esn.safetensors"))
    fresh = Model.create(trainer.model.config, seed=7)
    losses = [e.loss for e in trainer.run() if type(e).__name__ == "Validated"]
    trained = trainer.model
    assert trained.frozen_names() and set(trained.frozen_names()) | set(trained.trainable_names()) == set(trained.params)
    for name in trained.frozen_names():
        np.testing.assert_array_equal(trained.params[name], fresh.params[name], err_msg=name)
    saved, _, _ = api.load(str(tmp_path / "esn.safetensors"))
    for name in trained.frozen_names():
        np.testing.assert_array_equal(saved.params[name], fresh.params[name], err_msg=name)
    assert not np.array_equal(trained.params["decoder.weight"], fresh.params["decoder.weight"])
    assert ("embedding.weight" in trained.frozen_names()) != learn_embedding
    assert np.array_equal(trained.params["embedding.weight"], fresh.params["embedding.weight"]) != learn_embedding
    assert losses[-1] < losses[0]
    # the spectral radius survives the float32 model file
    assert abs(exact_radius(saved.params["rnn.weight_hh_l1"]) / 0.9 - 1) < 1e-3


def test_a_training_step_needs_no_backward_through_the_reservoir(monkeypatch):
    """The ESN's step runs the forward without keeping anything for a backward, never
    backpropagates, and its gradients are a linear read-out's, computed from the top layer."""
    cfg = ModelConfig(cell="esn", vocab_size=7, embed=5, hidden=12, layers=2, dropout=0.0)
    model = Model.create(cfg, seed=1)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 7, (6, 3)).astype(np.int32)
    targets = rng.integers(0, 7, (6, 3)).astype(np.int32)
    state = model.zero_state(3)
    kept = []
    forward = Model._forward

    def watched_forward(self, tokens, state, dropout_rng, keep, **options):
        kept.append(keep)
        return forward(self, tokens, state, dropout_rng, keep, **options)

    def no_backward(*args, **kwargs):
        raise AssertionError("backpropagated through the reservoir")

    monkeypatch.setattr(Model, "_forward", watched_forward)
    monkeypatch.setattr(Model, "backward", no_backward)
    loss, grads, new_state = model.loss_and_grads(tokens, targets, state)
    assert kept == [False] and set(grads) == {"decoder.weight", "decoder.bias"}
    with pytest.raises(AssertionError, match="backpropagated"):  # a learned embedding does
        Model(dataclasses.replace(cfg, learn_embedding=True), model.params).loss_and_grads(tokens, targets, state)
    top, state2, _ = model.forward(tokens, state)
    np.testing.assert_array_equal(new_state, state2)
    logits = top.astype(np.float64) @ model.params["decoder.weight"].T.astype(np.float64) + model.params["decoder.bias"]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = targets.reshape(-1)
    d = p.copy()
    d[np.arange(len(y)), y] -= 1
    d /= len(y)
    assert np.isclose(loss, -np.log(p[np.arange(len(y)), y]).mean(), rtol=1e-5)
    np.testing.assert_allclose(grads["decoder.weight"], d.T @ top, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads["decoder.bias"], d.sum(axis=0), rtol=1e-4, atol=1e-6)
