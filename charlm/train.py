"""The training loop: truncated BPTT over parallel streams, clipping, an optimizer step,
periodic validation with learning-rate decay on plateaus, best-model and resumable-state saves.

`Trainer.run()` is a generator of events (charlm.events); it never prints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass

import numpy as np

from . import events
from .checkpoint import save_model, save_training_state
from .config import TrainConfig, to_dict
from .data import BatchStream
from .errors import DivergenceError
from .evaluate import bits_per_char, evaluate_loss, perplexity
from .model import Model
from .optim import Optimizer, clip_gradients
from .tokenizer import Tokenizer

MAX_DIVERGENCES = 4  # NaN/inf steps in a row tolerated (each halves the learning rate)
EARLY_STOP_DECAYS = 3  # plateaus without improvement before early stopping


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
    divergences: int = 0
    last_valid_step: int = -1


class Trainer:
    def __init__(self, model: Model, tokenizer: Tokenizer, train_ids, valid_ids,
                 cfg: TrainConfig, model_path, state_path, extra_header: dict | None = None,
                 metrics_path=None):
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.valid_ids = valid_ids
        self.model_path, self.state_path, self.metrics_path = model_path, state_path, metrics_path
        self.extra_header = extra_header or {}
        self.stream = BatchStream(train_ids, cfg.batch, cfg.seq_len)
        self.optimizer = Optimizer(cfg.optimizer, cfg.lr, cfg.weight_decay)
        self.rng = np.random.default_rng(cfg.seed)
        self.hidden = model.zero_state(cfg.batch)
        self.progress = Progress()
        self.valid_every = cfg.valid_every or min(100, max(10, self.stream.windows_per_epoch // 2))
        self._stop_reason: str | None = None
        self._losses: list[float] = []  # train losses since the last log line
        self._last_norm = 0.0

    # ---- control ------------------------------------------------------------------------
    def request_stop(self, reason: str = "interrupted") -> None:
        """Safe from a signal handler: the loop stops after the current step and saves."""
        self._stop_reason = reason

    @property
    def epoch(self) -> float:
        s = self.stream
        return s.epoch + s.position / s.windows_per_epoch

    # ---- the loop -----------------------------------------------------------------------
    def run(self):
        """Train until a limit, early stopping or request_stop(); yields charlm.events."""
        for event in self._run():
            if isinstance(event, (events.Step, events.Validated)):
                self._record(event)
            yield event

    def _record(self, event) -> None:
        """Append one JSON line per log interval / validation to the metrics file."""
        if self.metrics_path is None:
            return
        row = {"event": type(event).__name__.lower(), **dataclasses.asdict(event)}
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def _run(self):
        cfg, pr = self.cfg, self.progress
        yield events.Started(
            params=self.model.num_parameters(), train_tokens=self.stream.tokens_per_epoch,
            valid_tokens=len(self.valid_ids), windows_per_epoch=self.stream.windows_per_epoch,
            total_steps=self._total_steps(), time_budget=cfg.time_budget,
            resumed_from_step=pr.step,
        )
        start = time.perf_counter() - pr.elapsed
        interval = _Interval(time.perf_counter(), pr.tokens)
        reason = self._stop_reason or self._limit_reached()  # e.g. --resume of a finished run
        while reason is None:
            notice = self._train_step()
            pr.elapsed = time.perf_counter() - start
            if notice:
                yield events.Notice(notice)
            elif pr.step % cfg.log_every == 0:
                yield interval.report(self, time.perf_counter())
            if not notice and pr.step % self.valid_every == 0:
                yield from self._validate(start)
            reason = self._stop_reason or self._limit_reached()
        if pr.last_valid_step != pr.step:
            yield from self._validate(start, scheduled=False)
        self._save_state()
        yield self._finished(reason)

    def _train_step(self) -> str | None:
        cfg, pr = self.cfg, self.progress
        x, y, new_epoch = self.stream.next()
        if new_epoch:
            self.hidden = self.model.zero_state(cfg.batch)
        loss, grads, hidden = self.model.loss_and_grads(x.T, y.T, self.hidden, self.rng)
        norm = clip_gradients(grads, cfg.clip, cfg.clip_mode)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            return self._diverged()
        self.optimizer.step(self.model.params, grads)
        self.hidden = hidden
        pr.step += 1
        pr.tokens += x.size
        pr.divergences = 0
        self._losses.append(loss)
        self._last_norm = norm
        return None

    def _diverged(self) -> str:
        """Drop the step (weights untouched), reset the carried state, halve the rate."""
        pr = self.progress
        pr.divergences += 1
        if pr.divergences > MAX_DIVERGENCES:
            raise DivergenceError(
                f"training diverged (NaN/inf loss) {MAX_DIVERGENCES} times in a row at step "
                f"{pr.step}: lower --lr or --clip; the best model so far is in {self.model_path}"
            )
        self.hidden = self.model.zero_state(self.cfg.batch)
        self.optimizer.lr *= 0.5
        return (f"non-finite loss or gradient at step {pr.step + 1}: step skipped, "
                f"learning rate lowered to {self.optimizer.lr:.3g}")

    def _validate(self, start: float, scheduled: bool = True):
        """Validate, save the model if it is the best so far; a scheduled validation also
        drives the plateau schedule (learning-rate decay, early stopping)."""
        cfg, pr = self.cfg, self.progress
        loss = evaluate_loss(self.model, self.valid_ids, cfg.batch, cfg.seq_len)
        pr.last_valid_step = pr.step
        improved = pr.best_loss is None or loss < pr.best_loss - 1e-4
        if improved:
            pr.best_loss, pr.best_step = loss, pr.step
            save_model(self.model_path, self.model, self.tokenizer, self._header())
        if scheduled and (pr.schedule_loss is None or loss < pr.schedule_loss - 1e-4):
            pr.schedule_loss = loss
            pr.bad_validations = pr.plateaus_since_best = 0
        elif scheduled:
            pr.bad_validations += 1
            if pr.bad_validations >= cfg.patience:
                pr.bad_validations = 0
                pr.plateaus_since_best += 1
                self.optimizer.lr *= cfg.lr_decay
                yield events.Notice(f"validation plateau: learning rate lowered to {self.optimizer.lr:.3g}")
        pr.elapsed = time.perf_counter() - start
        bpc = bits_per_char(loss) if self.tokenizer.level == "char" else None
        yield events.Validated(pr.step, self.epoch, loss, perplexity(loss), bpc, improved, pr.elapsed)
        self._save_state()

    def _limit_reached(self) -> str | None:
        cfg, pr = self.cfg, self.progress
        if cfg.steps is not None and pr.step >= cfg.steps:
            return f"reached --steps {cfg.steps}"
        if cfg.epochs is not None and self.epoch >= cfg.epochs:
            return f"reached --epochs {cfg.epochs:g}"
        if cfg.time_budget is not None and pr.elapsed >= cfg.time_budget:
            return f"reached --time {cfg.time_budget:g}s"
        if self._unbounded() and pr.plateaus_since_best >= EARLY_STOP_DECAYS:
            return "validation loss stopped improving (early stopping)"
        return None

    def _unbounded(self) -> bool:
        cfg = self.cfg
        return cfg.steps is None and cfg.epochs is None and cfg.time_budget is None

    def _total_steps(self) -> int | None:
        cfg = self.cfg
        bounds = []
        if cfg.steps is not None:
            bounds.append(cfg.steps)
        if cfg.epochs is not None:
            bounds.append(math.ceil(cfg.epochs * self.stream.windows_per_epoch))
        return min(bounds) if bounds else None

    # ---- persistence --------------------------------------------------------------------
    def _header(self) -> dict:
        pr = self.progress
        summary = {
            "steps": pr.step, "tokens": pr.tokens, "seconds": round(pr.elapsed, 2),
            "best_valid_loss": pr.best_loss, "best_step": pr.best_step,
            "train_tokens_per_epoch": self.stream.tokens_per_epoch,
        }
        return {"train": to_dict(self.cfg), "summary": summary, **self.extra_header}

    def _save_state(self) -> None:
        arrays = {"hidden": self.hidden}
        opt_arrays, opt_info = self.optimizer.state_dict()
        arrays.update({f"opt.{k}": v for k, v in opt_arrays.items()})
        info = {
            "progress": vars(self.progress).copy(),
            "optimizer": opt_info,
            "stream": self.stream.state(),
            "rng": self.rng.bit_generator.state,
            "train": to_dict(self.cfg),
            "header": self._header(),
        }
        save_training_state(self.state_path, self.model, self.tokenizer, arrays, info)

    def restore(self, arrays: dict, info: dict) -> None:
        """Continue exactly where a saved state left off."""
        saved = info["progress"]
        self.progress = Progress(**{"schedule_loss": saved.get("best_loss"), **saved})
        opt = {k[len("opt."):]: v for k, v in arrays.items() if k.startswith("opt.")}
        self.optimizer.load_state_dict(opt, info["optimizer"])
        self.stream.load_state(info["stream"])
        self.rng.bit_generator.state = info["rng"]
        self.hidden = np.ascontiguousarray(arrays["hidden"], dtype=np.float32)

    def _finished(self, reason: str) -> events.Finished:
        pr = self.progress
        return events.Finished(reason, pr.step, self.epoch, pr.elapsed, pr.tokens,
                               pr.best_loss, pr.best_step, self._header()["summary"])


class _Interval:
    """Averages the train loss and measures tokens/s between two log lines."""

    def __init__(self, t0: float, tokens: int):
        self.t0, self.tokens = t0, tokens

    def report(self, trainer: Trainer, now: float) -> events.Step:
        pr = trainer.progress
        rate = (pr.tokens - self.tokens) / max(now - self.t0, 1e-9)
        self.t0, self.tokens = now, pr.tokens
        loss = float(np.mean(trainer._losses)) if trainer._losses else float("nan")
        trainer._losses.clear()
        return events.Step(pr.step, trainer.epoch, loss, trainer.optimizer.lr,
                           trainer._last_norm, rate, pr.elapsed)
