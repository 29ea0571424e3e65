"""Configuration as frozen dataclasses; each is stored as JSON in the model file's header.

Every option is declared once, here, with its default, its choices or range and its help
(charlm.options.option); `charlm train` and charlm.api.prepare_training both build their
configs with `configs_for`, so the same options train the same model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

from charlm.errors import OptionError
from charlm.nn.cells import REGISTRY as _CELL_REGISTRY
from charlm.options import Spec, option, specs

CELLS = tuple(_CELL_REGISTRY)  # the cell types of the registry (charlm.nn.cells)
INITS = ("uniform", "orthogonal")  # charlm.nn.initializers draws them
OPTIMIZERS = ("adam", "adamw", "sgd")
CLIP_MODES = ("norm", "value")
LEVELS = ("char", "word")
ENCODING_ERRORS = ("strict", "replace", "ignore")
SCHEDULES = ("plateau", "cosine", "wsd")  # charlm.train.schedule computes them
BUDGET_SCHEDULES = ("cosine", "wsd")  # set the rate from how far the run is: need its length
WSD_DECAY = 0.2  # wsd: by default the last fifth of the run decays the rate linearly to zero

# --seed's range: numpy's generators take any non-negative integer; the bound keeps the seed a
# 64-bit signed integer for the readers of the JSON headers that store it.
SEED_MAX = 2**63 - 1

# Model and window sizes and the learning rate by level, when not given: a 2x512 LSTM for
# characters (char-rnn's recipe), PyTorch word_language_model's small shapes for words. The
# dataclasses' defaults are the char level's.
LEVEL_DEFAULTS = {
    "char": dict(embed=64, hidden=512, layers=2, batch=32, seq_len=100, lr=3e-3),
    "word": dict(embed=200, hidden=200, layers=2, batch=20, seq_len=35, lr=2e-3),
}
_CHAR = LEVEL_DEFAULTS["char"]

# Gates per cell, in PyTorch's order: LSTM i,f,g,o; GRU r,z,n; RNN one tanh pre-activation;
# the leaky unit and the echo state network's reservoir one tanh pre-activation, as the RNN.
GATES = {name: cell.gates for name, cell in _CELL_REGISTRY.items()}
# Cells whose state leaks: s_t = (1 - a) * s_{t-1} + a * tanh(x_t W_ih^T + b_ih + s_{t-1} W_hh^T + b_hh)
LEAKY_CELLS = tuple(name for name, cell in _CELL_REGISTRY.items() if cell.leaky)
DEFAULT_SPECTRAL_RADIUS = 0.9  # esn: largest eigenvalue modulus of the reservoir's W_hh


@dataclass(frozen=True)
class ModelConfig:
    cell: str = option(
        "lstm", "Recurrent cell: lstm, gru, rnn (tanh), leaky (a tanh RNN whose state leaks at the rate "
        "--leak) or esn (echo state network: a fixed random reservoir, only the output layer learns). "
        "No bidirectional RNN: it sees the future it should predict, so it is no language model; "
        "sequence-to-sequence models are out of scope.", choices=CELLS)
    vocab_size: int = 0
    # 0 means one-hot input: no embedding, weight_ih_l0 is (G*H, V)
    embed: int = option(_CHAR["embed"], "Embedding size, 0 for one-hot.", low=0)
    hidden: int = option(_CHAR["hidden"], "Units per layer.", low=1)
    layers: int = option(_CHAR["layers"], "Stacked recurrent layers.", low=1)
    dropout: float = option(0.2, "Dropout on the embedding, between layers and before the output.",
                            low=0.0, high=1.0, high_open=True)
    # One dropout mask per window and stream, shared by all its time steps (AWD-LSTM's locked
    # dropout; Gal & Ghahramani's variational dropout also locks a mask on the recurrent
    # connection, which charlm does not drop), instead of a new mask at every step.
    locked_dropout: bool = option(False, "One dropout mask per window, shared by its time steps "
                                  "(locked dropout) instead of one per step.")
    # decoder.weight is embedding.weight (needs embed == hidden)
    tie: bool = option(False, "Tie the embedding and output weights (needs --embed = --hidden).")
    init: str = option("uniform", "Initial weights: uniform (PyTorch's default) or orthogonal (with "
                       "LSTM forget-gate bias 1).", choices=INITS)
    # leaky, esn: the leak rate a in (0, 1]; None means the cell's default_leak (charlm.nn.cells)
    leak: float | None = option(
        None, "leaky, esn: the leak rate a in (0, 1]: s = (1 - a) s + a tanh(...); 1 is the plain RNN, "
        "smaller remembers longer. leaky: learn = one rate per unit, trained. \\[default: 0.5 leaky, 1 esn]",
        kind=float, low=0.0, high=1.0, low_open=True,
        hint="e.g. 0.5 (1 is the plain tanh RNN), or learn (a learned rate starts below 1)")
    # leaky: one rate per unit, learned: a = sigmoid(rnn.leak_logit_l{layer}), starting at `leak`
    learn_leak: bool = option(False, "leaky: learn one leak rate per unit.", flag="--leak learn")
    # esn: the spectral radius the reservoir's W_hh is scaled to; None means the default
    spectral_radius: float | None = option(
        None, "esn: the reservoir's largest eigenvalue modulus. \\[default: 0.9]", kind=float,
        low=0.0, low_open=True, hint="e.g. 0.9 (below 1 the reservoir forgets its start)")
    # esn: train the embedding too, by backpropagation through the frozen reservoir
    learn_embedding: bool = option(
        False, "esn: train the embedding too, backpropagating through the frozen reservoir (slower "
        "steps); by default only the output layer learns.")

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
    level: str = option("char", "Tokens: char (Unicode code points) or word (whitespace-separated).",
                        choices=LEVELS)
    # word level: the most frequent words are kept
    max_vocab: int = option(10000, "Word level: most frequent words kept.", low=3,
                            hint="it counts <unk> and <eos>")
    min_count: int = option(1, "Tokens seen fewer times become UNK.", low=1)  # rarer tokens become UNK


@dataclass(frozen=True)
class TrainConfig:
    batch: int = option(_CHAR["batch"], "Parallel streams.", low=1)
    seq_len: int = option(_CHAR["seq_len"], "Tokens per BPTT window.", low=1)
    optimizer: str = option("adam", "adam, adamw (Adam with decoupled --weight-decay) or sgd.",
                            choices=OPTIMIZERS)
    lr: float = option(_CHAR["lr"], "Learning rate.", low=0.0, low_open=True)
    clip: float = option(5.0, "Gradient clipping threshold (0: off).", low=0.0, hint="0 turns clipping off")
    clip_mode: str = option("norm", "norm (global L2 norm) or value (element-wise).", choices=CLIP_MODES)
    epochs: float | None = option(None, "Stop after this many epochs.", kind=float, low=0.0, low_open=True)
    steps: int | None = option(None, "Stop after this many steps.", kind=int, low=1)
    time_budget: float | None = option(  # seconds
        None, "Stop after this wall-clock time, e.g. 90s, 10m, 1h.", kind=float, low=0.0, low_open=True,
        hint="e.g. 90s or 10m", flag="--time")
    # validations without improvement before lr decay / early stop
    patience: int = option(2, "Validations without improvement before the learning rate decays.", low=1)
    # factor applied on a validation plateau
    lr_decay: float = option(0.5, "Plateau: factor applied to the learning rate when validation stalls.",
                             low=0.0, high=1.0, low_open=True)
    valid_frac: float = option(0.1, "Fraction at the end of the corpus used for validation.",
                               low=0.0, high=1.0, high_open=True, hint="e.g. 0.1")
    # steps between validations; 0 means automatic
    valid_every: int = option(0, "Steps between validations (0: automatic).", low=0)
    # Validation scores the first this many tokens of the validation text (0: all of it): a
    # validation's cost stays bounded on a large corpus, and its results comparable.
    valid_tokens: int = option(200_000, "Validate on the first N tokens of the validation text (0: all of it).",
                               low=0)
    log_every: int = option(10, "Steps between progress reports.", low=1)
    seed: int = option(0, "Random seed: same seed, same machine, same model.", low=0, high=SEED_MAX)
    weight_decay: float = option(
        0.0, "Weight decay: adamw multiplies the weights by 1 - lr x this each step (e.g. 0.1); adam and "
        "sgd add this x the weights to the gradient (L2). Below 1 / --lr for adamw and sgd.", low=0.0)
    # "plateau": decay on validation plateaus; "cosine", "wsd": over the run; "auto" is resolved
    # when the config is made (resolve_schedule): a TrainConfig never holds it.
    schedule: str = option(
        "auto", "Learning rate: plateau (decay when validation stalls), or over the run (needs --steps, "
        "--epochs or --time): cosine, or wsd (plateau decay, then linear to 0 over the last --decay of "
        "the run); auto: wsd when the run has a length, else plateau.", choices=("auto", *SCHEDULES))
    # cosine, wsd: fraction of the run spent warming up linearly
    warmup: float = option(0.0, "cosine, wsd: fraction of the run with a linear warm-up.",
                           low=0.0, high=1.0, high_open=True, hint="it is a fraction of the run")
    # wsd: the last fraction of the run, where the rate falls linearly to 0
    decay: float = option(WSD_DECAY, "wsd: fraction at the end of the run over which the rate falls "
                          "linearly to 0.", low=0.0, high=1.0, low_open=True,
                          hint="it is the fraction of the run that anneals")
    # adam: decay of the running average of squared gradients (PyTorch's betas[1]). Lower values
    # take larger steps as the gradients shrink: shakespeare-3m reached 1.9369 (0.99) and 1.8998
    # (0.95) at step 156 against 1.8152 with 0.999.
    beta2: float = option(0.999, "Adam: decay of the average of squared gradients (PyTorch's betas[1]).",
                          low=0.0, high=1.0, low_open=True, high_open=True, hint="e.g. 0.999 or 0.99")

    def __post_init__(self):
        object.__setattr__(self, "schedule", resolve_schedule(self.schedule, self.has_length))

    @property
    def has_length(self) -> bool:
        """The run stops after a number of steps, epochs or seconds (not on a plateau)."""
        return any(v is not None for v in (self.steps, self.epochs, self.time_budget))


def resolve_schedule(name: str, has_length: bool) -> str:
    """auto: anneal over the run when it has a length (wsd), else decay on plateaus."""
    if name != "auto":
        return name
    return "wsd" if has_length else "plateau"


# Options of a run that no config holds: how the corpus is decoded.
RUN_OPTIONS = {
    "encoding_errors": Spec(str, "Invalid UTF-8: strict (error), replace or ignore.", choices=ENCODING_ERRORS),
}


class Configs(NamedTuple):
    model: ModelConfig
    tokenizer: TokenizerConfig
    train: TrainConfig


CONFIG_CLASSES = (ModelConfig, TokenizerConfig, TrainConfig)
# Every option a config holds: field name -> (its config class, its Spec).
FIELDS = {name: (cls, spec) for cls in CONFIG_CLASSES for name, spec in specs(cls).items()}


def spec_of(name: str) -> Spec:
    """The Spec of the option `name`: a config field, or a RUN_OPTIONS entry."""
    return FIELDS[name][1] if name in FIELDS else RUN_OPTIONS[name]


def configs_for(**options) -> Configs:
    """The configs of a run from options by name (ModelConfig, TokenizerConfig and TrainConfig
    fields); a size or learning rate not given, or None, is the level's (LEVEL_DEFAULTS)."""
    level = options.get("level", TokenizerConfig.level)
    sized = LEVEL_DEFAULTS.get(level, _CHAR)
    given = {k: v for k, v in options.items() if not (v is None and k in sized)}
    values = {**sized, **given}
    parts = {cls: {k: v for k, v in values.items() if k in specs(cls)} for cls in CONFIG_CLASSES}
    unknown = set(values) - {k for part in parts.values() for k in part}
    if unknown:
        raise OptionError(f"unknown options {', '.join(sorted(unknown))}: see `charlm train --help`")
    return Configs(*(cls(**part) for cls, part in parts.items()))


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict):
    """Build a config, ignoring unknown keys so newer writers stay readable when possible."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
