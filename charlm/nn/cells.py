"""The registry of recurrent cell types: one `Cell` entry per `--cell` name.

A cell is the math of one recurrent step in PyTorch's weight layout (W_ih (G*H, I), W_hh (G*H, H),
b_ih, b_hh (G*H,)), the state it carries, and its compiled kernels. Everything that depends on
the cell (the layer's forward and backward through time, the model's state shape, the numpy
path for short inputs, the sampling loop, the initial biases, the config's choices) asks the
entry here instead of testing the cell's name.

Adding a cell type: write its kernel file charlm/nn/kernels/<kernel>.py with the functions of
KERNEL_INTERFACE (see charlm/nn/kernels/rnn.py, the smallest), then one `Cell(...)` entry in
REGISTRY below with its numpy step. tests/test_cells.py checks each entry against its kernel file;
the model, quick-path, scoring and sampling tests run every registered cell. The kernels' own
tests (tests/test_kernels.py) compare with a plain-numpy reference per cell in tests/reference.py.

The kernel files import Numba, so an entry names its kernel module instead of importing it:
`cell.kernels()` imports it on first use. This module itself imports numpy only (charlm.config
and the numpy path for short inputs, charlm.nn.quick, load it without Numba).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

import numpy as np

# What every kernel file charlm/nn/kernels/<kernel>.py defines; charlm.nn.recurrent and
# charlm.sample call these (contracts in charlm.nn.kernels.rnn).
KERNEL_INTERFACE = ("start_forward", "forward_steps", "start_backward", "backward_steps", "row_step",
                    "sample_tokens")


@dataclass(frozen=True)
class Cell:
    """One cell type.

    gates: G, pre-activations per hidden unit (W_hh is (G*H, H)), in PyTorch's gate order.
    state_slots: S, arrays the state carries per layer: 1 (h) or 2 (h, c); the model's state is
    (L, S, B, H), and a second slot is the `c0`/`c_last`/`dc0` of charlm.nn.recurrent.
    leaky: the step takes leak rates a (H,) per unit and its backward gives dL/da.
    default_leak: the leak rate a of a leaky cell when --leak is not given.
    hidden_grad_apart: the backward writes dL/d(h W_hh^T + b_hh) (T,B,G*H) apart from dL/dxw,
    because the two differ (the GRU's n gate); otherwise they are the same array.
    forget_gate: the gate whose bias the orthogonal initialization sets to 1 (b_ih + b_hh, split
    in halves), or None.
    kernel: the module charlm.nn.kernels.<kernel> holding KERNEL_INTERFACE.
    numpy_step: (xw, gh, h, c, leak) -> (h, c), one step in plain numpy from xw = x W_ih^T + b_ih
    and gh = h W_hh^T + b_hh, all (..., G*H) or (..., H); c is None for one slot, leak None for
    cells that are not leaky. Must compute what the kernels compute (tests/test_quick.py).
    """

    name: str
    gates: int
    kernel: str
    numpy_step: Callable
    state_slots: int = 1
    leaky: bool = False
    default_leak: float = 1.0
    hidden_grad_apart: bool = False
    forget_gate: int | None = None

    def kernels(self) -> ModuleType:
        """The cell's kernel module (imports Numba on first use)."""
        return importlib.import_module(f"charlm.nn.kernels.{self.kernel}")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * np.tanh(0.5 * x) + 0.5


def _lstm_step(xw, gh, h, c, leak):
    i, f, g, o = np.split(xw + gh, 4, axis=-1)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(c), c


def _gru_step(xw, gh, h, c, leak):
    xr, xz, xn = np.split(xw, 3, axis=-1)
    hr, hz, hn = np.split(gh, 3, axis=-1)
    r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
    n = np.tanh(xn + r * hn)
    return n + z * (h - n), None


def _rnn_step(xw, gh, h, c, leak):
    return np.tanh(xw + gh), None


def _leaky_step(xw, gh, h, c, leak):
    return (1 - leak) * h + leak * np.tanh(xw + gh), None


REGISTRY: dict[str, Cell] = {cell.name: cell for cell in (
    Cell("lstm", gates=4, kernel="lstm", numpy_step=_lstm_step, state_slots=2, forget_gate=1),
    Cell("gru", gates=3, kernel="gru", numpy_step=_gru_step, hidden_grad_apart=True),
    Cell("rnn", gates=1, kernel="rnn", numpy_step=_rnn_step),
    # The leaky unit: halfway leak by default (a = 1 is the plain RNN).
    Cell("leaky", gates=1, kernel="leaky", numpy_step=_leaky_step, leaky=True, default_leak=0.5),
    # The echo state network's frozen reservoir steps as the leaky unit; no leak by default
    # (the classical echo state network). Its training differs: see charlm.nn.reservoir.
    Cell("esn", gates=1, kernel="leaky", numpy_step=_leaky_step, leaky=True, default_leak=1.0),
)}


def get_cell(name: str) -> Cell:
    """The registered cell `name`; ValueError for another name (the config validates user input
    before it gets here)."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown cell {name!r}; expected one of {', '.join(REGISTRY)}") from None
