"""The one place that saves and loads models and training states.

A model file is a safetensors file: tensors named like a PyTorch state_dict (so
`safetensors.torch.load_file` + `module.load_state_dict` work unchanged) and, in the header's
`__metadata__["charlm"]`, a JSON document with the format version, the model, tokenizer and
training configs, the vocabulary and a training summary. Files are written atomically.

The resumable training state is a second file beside the model (`*.state.safetensors`): the
latest weights, the optimizer's moments, the carried hidden state and, in its header, the
step, data position, random state and schedule, everything `--resume` needs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np

from charlm import __version__
from charlm.config import CELLS, CLIP_MODES, OPTIMIZERS, ModelConfig, TrainConfig, from_dict, to_dict
from charlm.errors import ModelFileError
from charlm.json_numbers import is_int, is_number
from charlm.nn.model import Model
from charlm.io.tensorfile import load_tensors, save_tensors
from charlm.nn.initializers import INITS
from charlm.train.schedule import SCHEDULES
from charlm.data.tokenizer import Tokenizer

FORMAT_VERSION = 1
DEFAULT_MODEL_PATH = "charlm.safetensors"
MODEL_ENVVAR = "CHARLM_MODEL"


def default_model_path() -> str:
    return os.environ.get(MODEL_ENVVAR) or DEFAULT_MODEL_PATH


def sidecar(model_path: str | os.PathLike, kind: str) -> Path:
    """A file beside the model: charlm.safetensors -> charlm.<kind> (e.g. kind='metrics.jsonl')."""
    path = Path(model_path)
    stem = path.name[: -len(".safetensors")] if path.name.endswith(".safetensors") else path.name
    return path.with_name(f"{stem}.{kind}")


# ---- model files ------------------------------------------------------------------------
def _refuse_non_finite(path, tensors: dict[str, np.ndarray]) -> None:
    for name, t in tensors.items():
        if t.dtype.kind == "f" and not np.isfinite(t).all():
            raise ModelFileError(f"refusing to save {path}: {name} holds NaN or inf")


def save_model(path, model: Model, tokenizer: Tokenizer, extra: dict | None = None) -> None:
    """Write the model atomically. extra: JSON-able sections (train config, summary).
    Never writes NaN or inf: raises ModelFileError instead."""
    _refuse_non_finite(path, {f"parameter {k}": v for k, v in model.params.items()})
    header = {
        "format": "charlm",
        "format_version": FORMAT_VERSION,
        "charlm_version": __version__,
        "model": to_dict(model.config),
        "tokenizer": tokenizer.to_dict(),
        **(extra or {}),
    }
    save_tensors(path, dict(model.params), {"charlm": json.dumps(header)})


def load_model(path) -> tuple[Model, Tokenizer, dict]:
    """Load and validate a model file: (model, tokenizer, header). Raises ModelFileError."""
    tensors, header = _load(path)
    return _build_model(path, tensors, header)


def _load(path) -> tuple[dict[str, np.ndarray], dict]:
    tensors, metadata = load_tensors(path)
    try:
        header = json.loads(metadata["charlm"])
        version = int(header["format_version"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{path} is a safetensors file but not a charlm model (no valid charlm header): "
            "pass a file written by `charlm train`"
        ) from exc
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written by a newer charlm (format {version}, this one reads up to "
            f"{FORMAT_VERSION}): upgrade charlm with `pip install -U charlm`"
        )
    return tensors, header


def _build_model(path, tensors: dict, header: dict) -> tuple[Model, Tokenizer, dict]:
    try:
        config = from_dict(ModelConfig, header["model"])
        tokenizer = Tokenizer.from_dict(header["tokenizer"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{path} has a damaged charlm header ({exc}): retrain the model") from exc
    _check_config(path, config, tokenizer)
    if 4 * config.layers > len(tensors):  # before listing the tensors of a billion layers
        raise ModelFileError(
            f"{path} is inconsistent: the header claims {config.layers} layers but the file holds "
            f"only {len(tensors)} tensors; the file is damaged: retrain the model"
        )
    expected = expected_shapes(config)
    params = {}
    for name, shape in expected.items():
        t = tensors.get(name)
        if t is None:
            raise ModelFileError(
                f"{path} is inconsistent: tensor {name} (shape {shape}) is missing; "
                "the file is damaged: retrain the model"
            )
        if tuple(t.shape) != shape:
            got = tuple(t.shape)
            raise ModelFileError(
                f"{path} is inconsistent: tensor {name} has shape {got}, the header implies {shape}; "
                "the file is damaged: retrain the model"
            )
        if t.dtype.kind != "f":
            raise ModelFileError(
                f"{path} is inconsistent: tensor {name} has dtype {t.dtype}, not floating point; "
                "the file is damaged: retrain the model"
            )
        params[name] = np.ascontiguousarray(t, dtype=np.float32)
        if not np.isfinite(params[name]).all():
            raise ModelFileError(
                f"{path} is damaged: tensor {name} holds NaN or infinite values: retrain the model"
            )
    if config.tie:
        params["decoder.weight"] = params["embedding.weight"]
    return Model(config, params), tokenizer, header


def _check_config(path, cfg: ModelConfig, tokenizer: Tokenizer) -> None:
    """Raise ModelFileError naming the first field of the model config that is out of range."""
    def number_or_none(x, low: float, high: float) -> bool:  # None: the cell's default
        return x is None or (is_number(x) and low < x <= high)

    checks = [
        ("cell", cfg.cell in CELLS, f"one of {', '.join(CELLS)}"),
        ("init", cfg.init in INITS, f"one of {', '.join(INITS)}"),
        ("layers", is_int(cfg.layers) and cfg.layers >= 1, "an integer, at least 1"),
        ("hidden", is_int(cfg.hidden) and cfg.hidden >= 1, "an integer, at least 1"),
        ("embed", is_int(cfg.embed) and cfg.embed >= 0, "an integer, 0 or more"),
        ("vocab_size", is_int(cfg.vocab_size) and cfg.vocab_size == tokenizer.vocab_size,
         f"the vocabulary's size, {tokenizer.vocab_size}"),
        ("dropout", is_number(cfg.dropout) and 0.0 <= cfg.dropout < 1.0, "a number in [0, 1)"),
        ("tie", isinstance(cfg.tie, bool), "true or false"),
        ("locked_dropout", isinstance(cfg.locked_dropout, bool), "true or false"),
        ("tie", not cfg.tie or cfg.embed == cfg.hidden, f"false unless embed equals hidden ({cfg.hidden!r})"),
        ("leak", number_or_none(cfg.leak, 0.0, 1.0), "a number in (0, 1], or null"),
        ("spectral_radius", number_or_none(cfg.spectral_radius, 0.0, math.inf), "a positive number, or null"),
        ("learn_leak", isinstance(cfg.learn_leak, bool) and (not cfg.learn_leak or cfg.cell == "leaky"),
         "true only for the leaky cell"),
        ("learn_embedding", isinstance(cfg.learn_embedding, bool), "true or false"),
    ]
    for field, ok, expected in checks:
        if not ok:
            raise ModelFileError(f"{path} has an invalid model config: {field} is "
                                 f"{getattr(cfg, field)!r}, expected {expected}: retrain the model")


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of a model file and its shape, in PyTorch's layout."""
    H, GH, V = cfg.hidden, cfg.gates * cfg.hidden, cfg.vocab_size
    shapes: dict[str, tuple[int, ...]] = {}
    if cfg.embed > 0:
        shapes["embedding.weight"] = (V, cfg.embed)
    for layer in range(cfg.layers):
        shapes[f"rnn.weight_ih_l{layer}"] = (GH, cfg.input_size(layer))
        shapes[f"rnn.weight_hh_l{layer}"] = (GH, H)
        shapes[f"rnn.bias_ih_l{layer}"] = (GH,)
        shapes[f"rnn.bias_hh_l{layer}"] = (GH,)
        if cfg.learn_leak:
            shapes[f"rnn.leak_logit_l{layer}"] = (H,)
    shapes["decoder.weight"] = (V, H)
    shapes["decoder.bias"] = (V,)
    return shapes


# ---- training states --------------------------------------------------------------------
def save_training_state(path, model: Model, tokenizer: Tokenizer, arrays: dict, info: dict) -> None:
    """Latest weights + named extra arrays (optimizer moments, hidden state) + JSON info.
    Never writes NaN or inf: raises ModelFileError instead."""
    tensors = {**model.params, **{f"train.{k}": v for k, v in arrays.items()}}
    _refuse_non_finite(path, tensors)
    header = {
        "format": "charlm-state",
        "format_version": FORMAT_VERSION,
        "charlm_version": __version__,
        "model": to_dict(model.config),
        "tokenizer": tokenizer.to_dict(),
        "train_state": info,
    }
    save_tensors(path, tensors, {"charlm": json.dumps(header)})


def load_training_state(path) -> tuple[Model, Tokenizer, dict, dict]:
    """(model with the latest weights, tokenizer, extra arrays, info) from a state file."""
    if not Path(path).exists():
        raise ModelFileError(
            f"no training state at {path} to resume from: start a new run without --resume"
        )
    tensors, header = _load(path)
    if header.get("format") != "charlm-state" or "train_state" not in header:
        raise ModelFileError(f"{path} is not a charlm training state: pass the .state.safetensors file")
    model, tokenizer, _ = _build_model(path, tensors, header)
    arrays = {k[len("train."):]: v for k, v in tensors.items() if k.startswith("train.")}
    info = header["train_state"]
    _check_train_state(path, model, arrays, info)
    return model, tokenizer, arrays, info


_TRAIN_TYPES = {  # TrainConfig field -> (accepted JSON types, lowest value)
    "batch": (int, 1), "seq_len": (int, 1), "patience": (int, 1), "valid_every": (int, 0),
    "valid_tokens": (int, 0),
    "log_every": (int, 1), "seed": (int, 0), "steps": (int, 1), "lr": (float, 0.0),
    "clip": (float, 0.0), "lr_decay": (float, 0.0), "valid_frac": (float, 0.0),
    "weight_decay": (float, 0.0), "epochs": (float, 0.0), "time_budget": (float, 0.0),
    "optimizer": (str, None), "clip_mode": (str, None), "schedule": (str, None),
    "warmup": (float, 0.0), "decay": (float, 0.0), "beta2": (float, 0.0),
}


def _check_train_state(path, model: Model, arrays: dict, info) -> None:
    """The parts of a state that api.resume_training uses before the Trainer checks the rest:
    the training config (every field of the right type and range) and a hidden state that
    fits it, so that a damaged file cannot make the trainer allocate absurd sizes."""
    def damaged(what: str) -> ModelFileError:
        return ModelFileError(
            f"{path} holds a damaged training state ({what}): start a new run without --resume"
        )

    if not isinstance(info, dict) or not isinstance(info.get("train"), dict):
        raise damaged("no training settings")
    if not isinstance(info.get("header", {}), dict):
        raise damaged("the saved model header is not an object")
    train = info["train"]
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    if not set(train) <= fields:
        raise damaged(f"unknown settings {sorted(set(train) - fields)}")
    for name, value in train.items():
        kind, lowest = _TRAIN_TYPES[name]
        if value is None and name in ("steps", "epochs", "time_budget"):
            continue
        if kind is float:
            ok = is_number(value) and math.isfinite(value)
        elif kind is int:
            ok = is_int(value)
        else:
            ok = isinstance(value, kind)
        if not ok or (lowest is not None and value < lowest):
            raise damaged(f"{name} = {value!r}")
    if (train.get("optimizer", "adam") not in OPTIMIZERS or train.get("clip_mode", "norm") not in CLIP_MODES
            or train.get("schedule", "plateau") not in SCHEDULES):
        raise damaged(f"optimizer {train.get('optimizer')!r}, clip mode {train.get('clip_mode')!r}")
    cfg = model.config
    hidden = arrays.get("hidden")
    expected = (cfg.layers, model.state_slots, train.get("batch", TrainConfig.batch), cfg.hidden)
    if hidden is None or tuple(hidden.shape) != expected:
        raise damaged(f"hidden state {None if hidden is None else tuple(hidden.shape)}, expected {expected}")
