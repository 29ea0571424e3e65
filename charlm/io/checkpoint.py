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

import json
import os
from pathlib import Path

import numpy as np

from charlm import __version__
from charlm.config import ModelConfig, TrainConfig, from_dict, to_dict
from charlm.errors import ModelFileError
from charlm.nn.model import Model
from charlm.io.tensorfile import load_tensors, save_tensors
from charlm.data.tokenizer import Tokenizer
from charlm.validation import dict_problems, field_problems, model_rule_problem

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
    """Raise ModelFileError naming the first field of the model config that is out of range
    (charlm.validation's rules, which a new model's options pass too)."""
    def invalid(what: str) -> ModelFileError:
        return ModelFileError(f"{path} has an invalid model config: {what}: retrain the model")

    for field, problem in field_problems(cfg):
        raise invalid(f"{field} is {getattr(cfg, field)!r}: it {problem}")
    vocab = cfg.vocab_size
    if isinstance(vocab, bool) or vocab != tokenizer.vocab_size:
        raise invalid(f"vocab_size is {vocab!r}: it must be the vocabulary's size, {tokenizer.vocab_size}")
    broken = model_rule_problem(cfg)
    if broken is not None:
        raise invalid(broken)


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
    for name, problem in dict_problems(TrainConfig, train):
        raise damaged(f"{name} = {train[name]!r}: it {problem}")
    cfg = model.config
    hidden = arrays.get("hidden")
    expected = (cfg.layers, model.state_slots, train.get("batch", TrainConfig.batch), cfg.hidden)
    if hidden is None or tuple(hidden.shape) != expected:
        raise damaged(f"hidden state {None if hidden is None else tuple(hidden.shape)}, expected {expected}")
