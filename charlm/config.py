"""Configuration as frozen dataclasses; each is stored as JSON in the model file's header."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from charlm.nn.cells import REGISTRY as _CELL_REGISTRY
from charlm.train.schedule import WSD_DECAY

CELLS = tuple(_CELL_REGISTRY)  # the cell types of the registry (charlm.nn.cells)
OPTIMIZERS = ("adam", "adamw", "sgd")
CLIP_MODES = ("norm", "value")
LEVELS = ("char", "word")

# --seed's range: numpy's generators take any non-negative integer; the bound keeps the seed a
# 64-bit signed integer for the readers of the JSON headers that store it.
SEED_MAX = 2**63 - 1

# Gates per cell, in PyTorch's order: LSTM i,f,g,o; GRU r,z,n; RNN one tanh pre-activation;
# the leaky unit and the echo state network's reservoir one tanh pre-activation, as the RNN.
GATES = {name: cell.gates for name, cell in _CELL_REGISTRY.items()}
# Cells whose state leaks: s_t = (1 - a) * s_{t-1} + a * tanh(x_t W_ih^T + b_ih + s_{t-1} W_hh^T + b_hh)
LEAKY_CELLS = tuple(name for name, cell in _CELL_REGISTRY.items() if cell.leaky)
DEFAULT_SPECTRAL_RADIUS = 0.9  # esn: largest eigenvalue modulus of the reservoir's W_hh


@dataclass(frozen=True)
class ModelConfig:
    cell: str = "lstm"
    vocab_size: int = 0
    embed: int = 64  # 0 means one-hot input: no embedding, weight_ih_l0 is (G*H, V)
    hidden: int = 512
    layers: int = 2
    dropout: float = 0.2  # on the embedding output, between layers and before the decoder
    # One dropout mask per window and stream, shared by all its time steps (AWD-LSTM's locked
    # dropout; Gal & Ghahramani's variational dropout also locks a mask on the recurrent
    # connection, which charlm does not drop), instead of a new mask at every step.
    locked_dropout: bool = False
    tie: bool = False  # decoder.weight is embedding.weight (needs embed == hidden)
    init: str = "uniform"  # initial weights: see charlm.nn.initializers.INITS
    # leaky, esn: the leak rate a in (0, 1]; None means the cell's default_leak (charlm.nn.cells)
    leak: float | None = None
    # leaky: one rate per unit, learned: a = sigmoid(rnn.leak_logit_l{layer}), starting at `leak`
    learn_leak: bool = False
    # esn: the spectral radius the reservoir's W_hh is scaled to; None means the default
    spectral_radius: float | None = None
    # esn: train the embedding too, by backpropagation through the frozen reservoir
    learn_embedding: bool = False

    @property
    def gates(self) -> int:
        return _CELL_REGISTRY[self.cell].gates

    @property
    def leak_rate(self) -> float:
        """The leak rate a of a leaky cell (the starting rate when learned); 1 for the others."""
        if self.leak is not None:
            return self.leak
        return _CELL_REGISTRY[self.cell].default_leak if self.cell in _CELL_REGISTRY else 1.0

    @property
    def radius(self) -> float:
        """esn: the reservoir's spectral radius."""
        return DEFAULT_SPECTRAL_RADIUS if self.spectral_radius is None else self.spectral_radius

    @property
    def reservoir(self) -> bool:
        """An echo state network: recurrent layers frozen, only the decoder learns."""
        return self.cell == "esn"

    @property
    def read_out_only(self) -> bool:
        """Training runs the forward pass alone and learns the decoder: an echo state network
        whose embedding is frozen."""
        return self.reservoir and not self.learn_embedding

    def with_cell_defaults(self) -> "ModelConfig":
        """The same config with the cell's defaults written out (what a model file stores)."""
        if self.cell == "leaky":
            return dataclasses.replace(self, leak=self.leak_rate)
        if self.cell == "esn":
            return dataclasses.replace(self, leak=self.leak_rate, spectral_radius=self.radius)
        return self

    def input_size(self, layer: int) -> int:
        if layer > 0:
            return self.hidden
        return self.embed if self.embed > 0 else self.vocab_size


@dataclass(frozen=True)
class TokenizerConfig:
    level: str = "char"
    max_vocab: int = 10000  # word level: the most frequent words are kept
    min_count: int = 1  # rarer tokens become UNK


@dataclass(frozen=True)
class TrainConfig:
    batch: int = 32
    seq_len: int = 100
    optimizer: str = "adam"
    lr: float = 2e-3
    clip: float = 5.0
    clip_mode: str = "norm"  # "norm" (global norm) or "value" (element-wise)
    epochs: float | None = None
    steps: int | None = None
    time_budget: float | None = None  # seconds
    patience: int = 3  # validations without improvement before lr decay / early stop
    lr_decay: float = 0.5  # factor applied on a validation plateau
    valid_frac: float = 0.1
    valid_every: int = 0  # steps between validations; 0 means automatic
    # Validation scores the first this many tokens of the validation text (0: all of it): a
    # validation's cost stays bounded on a large corpus, and its results comparable.
    valid_tokens: int = 200_000
    log_every: int = 10
    seed: int = 0
    weight_decay: float = 0.0
    schedule: str = "plateau"  # "plateau": decay on validation plateaus; "cosine", "wsd": over the run
    warmup: float = 0.0  # cosine, wsd: fraction of the run spent warming up linearly
    decay: float = WSD_DECAY  # wsd: the last fraction of the run, where the rate falls linearly to 0
    # adam: decay of the running average of squared gradients (PyTorch's betas[1]). Lower values
    # take larger steps as the gradients shrink: shakespeare-3m reached 1.9369 (0.99) and 1.8998
    # (0.95) at step 156 against 1.8152 with 0.999.
    beta2: float = 0.999


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict):
    """Build a config, ignoring unknown keys so newer writers stay readable when possible."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
