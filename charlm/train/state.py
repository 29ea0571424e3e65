"""The training run's persistent state: its position (`Progress`), the in-memory rollback
point (`Snapshot`), the random generator, and their save/restore in the resumable
training-state file (--resume), gathered in the `RunState` that the Trainer owns.

A RunState is saved with, and restored into, the parts it is given: the model, the optimizer
and the batch stream. It never sees the Trainer.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from charlm.config import TrainConfig, to_dict
from charlm.data.batches import BatchStream
from charlm.data.tokenizer import Tokenizer
from charlm.errors import ModelFileError
from charlm.json_numbers import is_number
from charlm.io.checkpoint import save_training_state
from charlm.nn.model import Model
from charlm.train.optim import Optimizer


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
class Snapshot:
    """The last good state, in memory, that a divergence rolls back to: the weights, the
    optimizer's moments and step count (Adam's bias correction), tagged with the step."""

    step: int
    params: dict[str, np.ndarray]
    opt_state: dict[str, np.ndarray]
    opt_t: int

    @classmethod
    def take(cls, step: int, model: Model, optimizer: Optimizer) -> Snapshot:
        return cls(step, {n: model.params[n].copy() for n in model.trainable_names()},
                   {k: v.copy() for k, v in optimizer.state.items()}, optimizer.t)

    def restore(self, model: Model, optimizer: Optimizer) -> None:
        for name, saved in self.params.items():
            np.copyto(model.params[name], saved)  # in place: a tied decoder stays tied
        optimizer.state = {k: v.copy() for k, v in self.opt_state.items()}
        optimizer.t = self.opt_t


class RunState:
    """The run's position, rollback point and random generator; saved to and restored from
    the state file at `path` together with the model, optimizer and stream it is given."""

    def __init__(self, path, model: Model, tokenizer: Tokenizer, optimizer: Optimizer,
                 stream: BatchStream, seed: int):
        self.path = path
        self.model, self.tokenizer, self.optimizer, self.stream = model, tokenizer, optimizer, stream
        self.progress = Progress()
        self.rng = np.random.default_rng(seed)  # dropout and the like, in the training steps
        self.snapshot: Snapshot | None = None  # taken when the run starts, unless restored
        self.snapshot_is_current = False  # no optimizer step since it was taken or restored
        # (step, snapshot step) of the last rollback: in memory only
        self.last_rollback: tuple[int, int] | None = None

    # ---- the rollback point -------------------------------------------------------------
    def take_snapshot(self) -> None:
        self.snapshot = Snapshot.take(self.progress.step, self.model, self.optimizer)
        self.snapshot_is_current = True

    def roll_back(self) -> Snapshot:
        """The weights and optimizer back to the snapshot, which is returned."""
        self.snapshot.restore(self.model, self.optimizer)
        self.snapshot_is_current = True
        return self.snapshot

    def stepped(self) -> None:
        """An optimizer step was taken: the snapshot is no longer the current weights."""
        self.snapshot_is_current = False

    # ---- the state file -----------------------------------------------------------------
    def save(self, hidden: np.ndarray, cfg: TrainConfig, header: dict) -> None:
        """Write the state file; hidden: every stream's carried state, (layers, slots, batch, hidden)."""
        arrays = {"hidden": hidden}
        opt_arrays, opt_info = self.optimizer.state_dict()
        arrays.update({f"opt.{k}": v for k, v in opt_arrays.items()})
        snap = self.snapshot
        snap_info = {"step": snap.step, "t": snap.opt_t, "stored": not self.snapshot_is_current}
        if snap_info["stored"]:  # a stop between validations: --resume needs the rollback point
            arrays.update({f"snap.param.{k}": v for k, v in snap.params.items()})
            arrays.update({f"snap.opt.{k}": v for k, v in snap.opt_state.items()})
        info = {
            "progress": vars(self.progress).copy(),
            "optimizer": opt_info,
            "stream": self.stream.state(),
            "rng": self.rng.bit_generator.state,
            "train": to_dict(cfg),
            "header": header,
            "snapshot": snap_info,
        }
        save_training_state(self.path, self.model, self.tokenizer, arrays, info)

    def restore(self, arrays: dict, info: dict, cfg: TrainConfig) -> np.ndarray:
        """Continue exactly where a saved state left off; returns the saved hidden state of
        every stream. Raises ModelFileError when the state does not fit this model and
        configuration (a damaged or hand-edited file)."""
        try:
            return self._restore(arrays, info, cfg)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, ZeroDivisionError) as exc:
            raise ModelFileError(
                f"{self.path} holds a damaged training state ({type(exc).__name__}: {exc}): "
                "start a new run without --resume"
            ) from None

    def _restore(self, arrays: dict, info: dict, cfg: TrainConfig) -> np.ndarray:
        saved = info["progress"]
        fields = {f.name: f for f in dataclasses.fields(Progress)}
        _check(isinstance(saved, dict) and set(saved) <= set(fields), "unknown progress fields")
        for name, value in saved.items():
            number = is_number(value)
            _check(number and math.isfinite(value) or (value is None and "None" in fields[name].type),
                   f"progress.{name} = {value!r}")
        progress = Progress(**{"schedule_loss": saved.get("best_loss"), **saved})
        for name in ("step", "tokens", "bad_validations", "plateaus_since_best", "divergences",
                     "total_divergences"):
            _check(isinstance(getattr(progress, name), int) and getattr(progress, name) >= 0,
                   f"progress.{name}")
        opt_info = info["optimizer"]
        _check(isinstance(opt_info.get("t"), int) and opt_info["t"] >= 0, "optimizer.t")
        _check(isinstance(opt_info.get("lr"), (int, float)) and 0 < opt_info["lr"] < math.inf, "optimizer.lr")
        _check(opt_info.get("kind") == cfg.optimizer, "optimizer.kind")
        opt = self._checked_opt_arrays(arrays, "opt.")
        stream = info["stream"]
        _check(all(isinstance(stream.get(k), int) and stream[k] >= (1 if k in ("batch", "seq_len") else 0)
                   for k in ("position", "epoch", "batch", "seq_len", "n_tokens")), "stream")
        hidden = arrays["hidden"]
        expected = self.model.zero_state(cfg.batch)
        _check(hidden.shape == expected.shape and hidden.dtype == expected.dtype, "hidden state shape")

        self.progress = progress
        self.optimizer.load_state_dict(opt, opt_info)
        self.stream.load_state(stream)
        self.rng.bit_generator.state = info["rng"]
        self._restore_snapshot(arrays, info.get("snapshot"))
        return np.ascontiguousarray(hidden, dtype=np.float32)

    def _restore_snapshot(self, arrays: dict, snap: dict | None) -> None:
        """The rollback point: the stored one, or (none stored: the state was saved right
        after it was taken) the restored weights; snap is None in states written before
        rollbacks existed."""
        if snap is None or not snap.get("stored"):
            self.take_snapshot()
            if snap is not None:
                self.snapshot.step = int(snap["step"])
            return
        names = self.model.trainable_names()
        params = {n: arrays[f"snap.param.{n}"] for n in names}
        _check(all(params[n].shape == self.model.params[n].shape for n in names), "snapshot shapes")
        _check(isinstance(snap.get("t"), int) and snap["t"] >= 0, "snapshot.t")
        self.snapshot = Snapshot(int(snap["step"]), {n: np.array(p, np.float32) for n, p in params.items()},
                                 self._checked_opt_arrays(arrays, "snap.opt."), snap["t"])
        self.snapshot_is_current = False

    def _checked_opt_arrays(self, arrays: dict, prefix: str) -> dict[str, np.ndarray]:
        """Optimizer moments "m.<param>"/"v.<param>" whose shapes match the parameters."""
        out = {}
        for key, value in arrays.items():
            if not key.startswith(prefix):
                continue
            name = key[len(prefix):]
            kind, _, param = name.partition(".")
            p = self.model.params.get(param)
            if kind not in ("m", "v") or p is None or value.shape != p.shape or value.dtype != p.dtype:
                raise ValueError(f"optimizer array {key}")
            out[name] = value
        return out


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(what)
