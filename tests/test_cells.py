"""The registry of cell types (charlm.nn.cells): its entries, their kernel files, and that a new
entry is all the model, the numpy path and the sampler need."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from numba.core.registry import CPUDispatcher

import charlm.nn.cells as cells
from charlm.config import CELLS, GATES, ModelConfig
from charlm.data.tokenizer import Tokenizer
from charlm.nn.model import Model
from charlm.nn.quick import quick_logprobs
from charlm.sample import generate_samples


@pytest.mark.parametrize("name", CELLS)
def test_every_cell_kernel_file_defines_the_cell_interface(name):
    kernels = cells.get_cell(name).kernels()
    missing = [f for f in cells.KERNEL_INTERFACE if not callable(getattr(kernels, f, None))]
    assert not missing, f"{kernels.__name__} lacks {missing}"
    assert isinstance(kernels.row_step, CPUDispatcher) and isinstance(kernels.sample_tokens, CPUDispatcher)


def test_the_config_offers_the_registered_cells():
    assert CELLS == tuple(cells.REGISTRY) == ("lstm", "gru", "rnn", "leaky", "esn")
    assert GATES == {"lstm": 4, "gru": 3, "rnn": 1, "leaky": 1, "esn": 1}


def test_an_unknown_cell_names_the_registered_ones():
    with pytest.raises(ValueError, match="unknown cell 'transformer'; expected one of lstm, gru"):
        cells.get_cell("transformer")


def test_the_config_and_the_numpy_path_load_without_numba():
    probe = "import sys, charlm.config, charlm.nn.quick, charlm.score; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture
def twin_of_rnn(monkeypatch):
    """A cell registered under a new name with the RNN's kernel file and numpy step."""
    twin = dataclasses.replace(cells.REGISTRY["rnn"], name="twin")
    monkeypatch.setitem(cells.REGISTRY, "twin", twin)
    return twin


def _model(cell: str) -> Model:
    return Model.create(ModelConfig(cell=cell, vocab_size=7, embed=4, hidden=6, layers=2, dropout=0.2), seed=2)


def test_a_new_registry_entry_runs_training_scoring_and_sampling(twin_of_rnn):
    rnn, twin = _model("rnn"), _model("twin")
    rng = np.random.default_rng(0)
    tokens, targets = rng.integers(0, 7, (5, 3)), rng.integers(0, 7, (5, 3))
    state = rnn.zero_state(3)
    loss, grads, new_state = rnn.loss_and_grads(tokens, targets, state, np.random.default_rng(1))
    twin_loss, twin_grads, twin_state = twin.loss_and_grads(tokens, targets, state, np.random.default_rng(1))
    assert twin_loss == loss and np.array_equal(twin_state, new_state)
    assert all(np.array_equal(twin_grads[n], g) for n, g in grads.items())
    logp, _ = quick_logprobs(rnn, tokens.astype(np.int32), targets, state)
    twin_logp, _ = quick_logprobs(twin, tokens.astype(np.int32), targets, state)
    assert np.array_equal(twin_logp, logp)
    tokenizer = Tokenizer("char", ["<unk>", "<eos>", "a", "b", "c", "d", "e"])

    def sample(model):
        return list(generate_samples(model, tokenizer, num=2, length=12, rng=np.random.default_rng(3)))

    assert sample(twin) == sample(rnn)
