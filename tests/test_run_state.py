"""The run state (charlm.train.state.RunState) saved and restored on its own, without a Trainer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from charlm.config import ModelConfig, TokenizerConfig, TrainConfig
from charlm.data.batches import BatchStream
from charlm.errors import ModelFileError
from charlm.io.checkpoint import load_training_state
from charlm.io.tensorfile import load_tensors
from charlm.nn.model import Model
from charlm.train.optim import Optimizer
from charlm.train.state import RunState

from vocabulary import build_tokenizer

TEXT = "the quick brown fox\njumps over the lazy dog\n" * 20
CFG = TrainConfig(batch=2, seq_len=8, seed=3)


def _run_state(path) -> RunState:
    tok = build_tokenizer(TEXT, TokenizerConfig())
    model = Model.create(ModelConfig(vocab_size=tok.vocab_size, embed=6, hidden=8, layers=1), seed=0)
    stream = BatchStream(tok.encode(TEXT), CFG.batch, CFG.seq_len)
    return RunState(path, model, tok, Optimizer.for_training(CFG), stream, CFG.seed)


def _advance(state: RunState) -> None:
    """One made-up optimizer step over a batch, as training takes one."""
    state.stream.next()
    grads = {n: np.full_like(state.model.params[n], 0.01) for n in state.model.trainable_names()}
    state.optimizer.step(state.model.params, grads)
    state.stepped()
    state.progress.step += 1
    state.progress.tokens += CFG.batch * CFG.seq_len
    state.rng.random(5)


@pytest.mark.parametrize("validated_last", [True, False])
def test_a_restored_run_state_is_the_saved_one(tmp_path, validated_last):
    path = tmp_path / "m.state.safetensors"
    saved = _run_state(path)
    saved.take_snapshot()
    _advance(saved)
    if validated_last:  # the snapshot is the current weights: the file does not store it
        saved.take_snapshot()
    saved.progress.best_loss, saved.progress.lr_scale = 2.5, 0.5
    zero = saved.model.zero_state(CFG.batch)
    hidden = np.arange(zero.size, dtype=np.float32).reshape(zero.shape)
    saved.save(hidden, CFG, {"note": "header"})
    stored = json.loads(load_tensors(str(path))[1]["charlm"])["train_state"]["snapshot"]["stored"]
    assert stored is not validated_last

    model, _, arrays, info = load_training_state(str(path))
    restored = _run_state(path)
    for name in restored.model.params:
        np.copyto(restored.model.params[name], model.params[name])
    restored_hidden = restored.restore(arrays, info, CFG)

    assert np.array_equal(restored_hidden, hidden)
    assert restored.progress == saved.progress
    assert restored.rng.bit_generator.state == saved.rng.bit_generator.state
    assert restored.stream.state() == saved.stream.state()
    assert restored.optimizer.t == saved.optimizer.t and restored.optimizer.lr == saved.optimizer.lr
    assert all(np.array_equal(restored.optimizer.state[k], v) for k, v in saved.optimizer.state.items())
    a, b = restored.snapshot, saved.snapshot
    assert (a.step, a.opt_t) == (b.step, b.opt_t)
    assert all(np.array_equal(a.params[k], v) for k, v in b.params.items())
    assert all(np.array_equal(a.opt_state[k], v) for k, v in b.opt_state.items())
    assert restored.snapshot_is_current is validated_last


def test_rolling_back_restores_the_snapshot_weights_and_optimizer(tmp_path):
    state = _run_state(tmp_path / "m.state.safetensors")
    state.take_snapshot()
    before = {n: state.model.params[n].copy() for n in state.model.trainable_names()}
    _advance(state)
    assert not state.snapshot_is_current and state.optimizer.t == 1
    snapshot = state.roll_back()
    assert snapshot.step == 0 and state.optimizer.t == 0 and state.optimizer.state == {}
    assert state.snapshot_is_current
    assert all(np.array_equal(state.model.params[n], v) for n, v in before.items())


def test_a_state_that_does_not_fit_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "m.state.safetensors"
    saved = _run_state(path)
    saved.take_snapshot()
    saved.save(saved.model.zero_state(CFG.batch), CFG, {})
    _, _, arrays, info = load_training_state(str(path))
    info["progress"]["step"] = -1
    with pytest.raises(ModelFileError, match="m.state.safetensors holds a damaged training state"):
        _run_state(path).restore(arrays, info, CFG)
