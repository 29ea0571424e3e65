"""The training run's persistent state: its position (`Progress`), the in-memory rollback
point (`_Snapshot`), and the save/restore of the resumable training-state file (--resume).

The functions take the `charlm.train.trainer.Trainer` whose state they write or restore.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from charlm.io.checkpoint import save_training_state
from charlm.config import to_dict
from charlm.errors import ModelFileError
from charlm.json_numbers import is_number

if TYPE_CHECKING:  # train imports this module
    from charlm.train.trainer import Trainer


@dataclass
class Progress:
    """Everything about the run's position that --resume restores (JSON-able)."""

    step: int = 0
    tokens: int = 0
    elapsed: float = 0.0
    best_loss: float | None = None  # the model file's: the best of every validation
    best_step: int | None = None
    # The best of the scheduled validations (every valid_every steps) only: it drives the
    # plateau schedule, so the extra validation when a run stops (say at step k, for
    # --resume) cannot change the learning rate of the steps after k.
    schedule_loss: float | None = None
    bad_validations: int = 0
    plateaus_since_best: int = 0
    divergences: int = 0  # rollbacks since the last good validation
    total_divergences: int = 0
    lr_scale: float = 1.0  # lowered by rollbacks (and wsd plateaus); multiplies the cosine/wsd schedule
    last_valid_step: int = -1
    # The step of a scheduled validation that a stop request interrupted (-1: none): --resume
    # runs it before the next step, as the uninterrupted run did.
    interrupted_validation: int = -1


@dataclass
class _Snapshot:
    """The last good state, in memory, that a divergence rolls back to: the weights, the
    optimizer's moments and step count (Adam's bias correction), tagged with the step."""

    step: int
    params: dict[str, np.ndarray]
    opt_state: dict[str, np.ndarray]
    opt_t: int

    @classmethod
    def take(cls, trainer: "Trainer") -> "_Snapshot":
        model, opt = trainer.model, trainer.optimizer
        return cls(trainer.progress.step,
                   {n: model.params[n].copy() for n in model.trainable_names()},
                   {k: v.copy() for k, v in opt.state.items()}, opt.t)

    def restore(self, trainer: "Trainer") -> None:
        for name, saved in self.params.items():
            np.copyto(trainer.model.params[name], saved)  # in place: a tied decoder stays tied
        trainer.optimizer.state = {k: v.copy() for k, v in self.opt_state.items()}
        trainer.optimizer.t = self.opt_t


def save_state(trainer: "Trainer") -> None:
    """Write the trainer's resumable state to its state_path."""
    arrays = {"hidden": trainer.hidden}
    opt_arrays, opt_info = trainer.optimizer.state_dict()
    arrays.update({f"opt.{k}": v for k, v in opt_arrays.items()})
    snap = trainer._snapshot
    snap_info = {"step": snap.step, "t": snap.opt_t, "stored": not trainer._snapshot_is_current}
    if snap_info["stored"]:  # a stop between validations: --resume needs the rollback point
        arrays.update({f"snap.param.{k}": v for k, v in snap.params.items()})
        arrays.update({f"snap.opt.{k}": v for k, v in snap.opt_state.items()})
    info = {
        "progress": vars(trainer.progress).copy(),
        "optimizer": opt_info,
        "stream": trainer.stream.state(),
        "rng": trainer.rng.bit_generator.state,
        "train": to_dict(trainer.cfg),
        "header": trainer._header(),
        "snapshot": snap_info,
    }
    save_training_state(trainer.state_path, trainer.model, trainer.tokenizer, arrays, info)


def restore_state(trainer: "Trainer", arrays: dict, info: dict) -> None:
    """Continue exactly where a saved state left off. Raises ModelFileError when the state
    does not fit this model and configuration (a damaged or hand-edited file)."""
    try:
        _restore(trainer, arrays, info)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, ZeroDivisionError) as exc:
        raise ModelFileError(
            f"{trainer.state_path} holds a damaged training state ({type(exc).__name__}: {exc}): "
            "start a new run without --resume"
        ) from None


def _restore(trainer: "Trainer", arrays: dict, info: dict) -> None:
    def check(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(what)

    saved = info["progress"]
    fields = {f.name: f for f in dataclasses.fields(Progress)}
    check(isinstance(saved, dict) and set(saved) <= set(fields), "unknown progress fields")
    for name, value in saved.items():
        number = is_number(value)
        check(number and math.isfinite(value) or (value is None and "None" in fields[name].type),
              f"progress.{name} = {value!r}")
    progress = Progress(**{"schedule_loss": saved.get("best_loss"), **saved})
    for name in ("step", "tokens", "bad_validations", "plateaus_since_best", "divergences",
                 "total_divergences"):
        check(isinstance(getattr(progress, name), int) and getattr(progress, name) >= 0,
              f"progress.{name}")
    opt_info = info["optimizer"]
    check(isinstance(opt_info.get("t"), int) and opt_info["t"] >= 0, "optimizer.t")
    check(isinstance(opt_info.get("lr"), (int, float)) and 0 < opt_info["lr"] < math.inf, "optimizer.lr")
    check(opt_info.get("kind") == trainer.cfg.optimizer, "optimizer.kind")
    opt = _checked_opt_arrays(trainer, arrays, "opt.")
    stream = info["stream"]
    check(all(isinstance(stream.get(k), int) and stream[k] >= (1 if k in ("batch", "seq_len") else 0)
              for k in ("position", "epoch", "batch", "seq_len", "n_tokens")), "stream")
    hidden = arrays["hidden"]
    expected = trainer.model.zero_state(trainer.cfg.batch)
    check(hidden.shape == expected.shape and hidden.dtype == expected.dtype, "hidden state shape")

    trainer.progress = progress
    trainer.optimizer.load_state_dict(opt, opt_info)
    trainer.stream.load_state(stream)
    trainer.rng.bit_generator.state = info["rng"]
    trainer.hidden = np.ascontiguousarray(hidden, dtype=np.float32)
    snap = info.get("snapshot")  # absent in states written before rollbacks existed
    if snap is None or not snap.get("stored"):
        trainer._take_snapshot()
        if snap is not None:
            trainer._snapshot.step = int(snap["step"])
        return
    names = trainer.model.trainable_names()
    params = {n: arrays[f"snap.param.{n}"] for n in names}
    check(all(params[n].shape == trainer.model.params[n].shape for n in names), "snapshot shapes")
    check(isinstance(snap.get("t"), int) and snap["t"] >= 0, "snapshot.t")
    trainer._snapshot = _Snapshot(int(snap["step"]), {n: np.array(p, np.float32) for n, p in params.items()},
                                  _checked_opt_arrays(trainer, arrays, "snap.opt."), snap["t"])
    trainer._snapshot_is_current = False


def _checked_opt_arrays(trainer: "Trainer", arrays: dict, prefix: str) -> dict[str, np.ndarray]:
    """Optimizer moments "m.<param>"/"v.<param>" whose shapes match the parameters."""
    out = {}
    for key, value in arrays.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        kind, _, param = name.partition(".")
        p = trainer.model.params.get(param)
        if kind not in ("m", "v") or p is None or value.shape != p.shape or value.dtype != p.dtype:
            raise ValueError(f"optimizer array {key}")
        out[name] = value
    return out
