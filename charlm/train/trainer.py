"""The training loop: truncated BPTT over parallel streams, clipping, an optimizer step,
periodic validation with learning-rate decay on plateaus, best-model and resumable-state saves.

`Trainer.run()` is a generator of events (charlm.train.events); it never prints. The run's
persistent state (Progress, the rollback snapshot, the --resume file) is the RunState of
charlm.train.state; the --time budget's arithmetic is charlm.train.time_budget.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time

import numpy as np

from charlm.train import events
from charlm.io.checkpoint import save_model
from charlm.config import BUDGET_SCHEDULES, TrainConfig, to_dict
from charlm.data.batches import BatchStream
from charlm.train.distributed import SingleProcess
from charlm.errors import CharlmError, DivergenceError
from charlm.json_numbers import json_safe
from charlm.metrics import bits_per_char, perplexity
from charlm.train.evaluate import evaluate_in_windows
from charlm.nn.model import Model
from charlm.train.optim import Optimizer, clip_gradients
from charlm.train.schedule import PLATEAU_DECAYS, budget_factor
from charlm.nn.stack import threads
from charlm.data.tokenizer import Tokenizer
from charlm.train.state import Progress, RunState
from charlm.train.time_budget import VALIDATION_SPEEDUP, Durations, TimeBudget

# A NaN/inf loss, gradient or validation loss rolls training back to the last good state
# (the last finite validation, or the start) and halves the learning rate. Training stops
# with a DivergenceError at the MAX_DIVERGENCES-th failure since the last good validation, or
# at the MAX_TOTAL_DIVERGENCES-th of the run.
MAX_DIVERGENCES = 4
MAX_TOTAL_DIVERGENCES = 12
EARLY_STOP_DECAYS = 3  # plateaus without improvement before early stopping


class Trainer:
    def __init__(self, model: Model, tokenizer: Tokenizer, train_ids, valid_ids,
                 cfg: TrainConfig, model_path, state_path, extra_header: dict | None = None,
                 metrics_path=None, run_lock=None, world: SingleProcess | None = None):
        # run_lock: the output's charlm.io.outputs.RunLock, released when run() ends (or None)
        self.run_lock = run_lock
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        # Under MPI each rank trains its share of the streams (charlm.train.distributed); the root
        # alone writes files.
        self.world = world or SingleProcess()
        self.streams = self.world.streams(cfg.batch)
        self.valid_ids = valid_ids[: cfg.valid_tokens] if cfg.valid_tokens else valid_ids
        self.model_path, self.state_path, self.metrics_path = model_path, state_path, metrics_path
        self.extra_header = extra_header or {}
        self.stream = BatchStream(train_ids, cfg.batch, cfg.seq_len)
        self.optimizer = Optimizer.for_training(cfg)
        # position, rollback snapshot, random generator: what --resume restores with the
        # weights, the optimizer and the stream
        self.run_state = RunState(state_path, model, tokenizer, self.optimizer, self.stream, cfg.seed)
        self.hidden = self._zero_state()
        # Automatic: twice an epoch, between 10 and 250 steps apart. A validation costs about as
        # much as 15-20 training steps (forward only over the validation text, 10% of the corpus).
        self.valid_every = cfg.valid_every or min(250, max(10, self.stream.windows_per_epoch // 2))
        self._stop_reason: str | None = None  # set by request_stop, at any moment
        self._agreed_stop: str | None = None  # under MPI: the stop every rank has agreed on
        self._stop_requests = 0  # a request during a validation interrupts it (one process)
        self._validation_interrupted = False
        self._losses: list[float] = []  # train losses since the last log line
        self._last_norm = 0.0
        self.durations = Durations()  # of the last step and validation: for a --time budget

    # ---- control ------------------------------------------------------------------------
    def request_stop(self, reason: str = "interrupted") -> None:
        """Safe from a signal handler: the loop stops after the current step (or interrupts
        the current validation) and saves."""
        self._stop_reason = reason
        self._stop_requests += 1

    @property
    def epoch(self) -> float:
        return self.stream.epochs_done

    @property
    def progress(self) -> Progress:
        return self.run_state.progress

    # ---- the loop -----------------------------------------------------------------------
    def run(self):
        """Train until a limit, early stopping or request_stop(); yields charlm.train.events.
        The output's lock is released when the run ends, however it ends."""
        try:
            for event in self._run():
                if isinstance(event, (events.Step, events.Validated)):
                    self._record(event)
                yield event
        finally:
            if self.run_lock is not None:
                self.run_lock.release()

    def _record(self, event) -> None:
        """Append one JSON line per log interval / validation to the metrics file."""
        if self.metrics_path is None or not self.world.is_root:
            return
        row = {"event": type(event).__name__.lower(), **dataclasses.asdict(event)}
        row = json_safe(row)
        try:
            with open(self.metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        except OSError as exc:
            raise CharlmError(
                f"cannot write the metrics file {self.metrics_path} beside the model {self.model_path} "
                f"({exc.strerror or exc}): free some disk space or choose another -o/--output; "
                "--resume continues from the last validation") from None

    def _run(self):
        cfg, pr = self.cfg, self.progress
        yield events.Started(
            params=self.model.num_parameters(), train_tokens=self.stream.tokens_per_epoch,
            valid_tokens=len(self.valid_ids), windows_per_epoch=self.stream.windows_per_epoch,
            total_steps=self._total_steps(), time_budget=cfg.time_budget,
            resumed_from_step=pr.step, threads=threads(),
        )
        if self.run_state.snapshot is None:
            self.run_state.take_snapshot()
        start = time.perf_counter() - pr.elapsed
        interval = _Interval(time.perf_counter(), pr.tokens)
        if pr.interrupted_validation == pr.step:  # resumed where a stop interrupted it
            yield from self._validate(start)
        reason = self._stop_requested() or self._limit_reached()  # e.g. --resume of a finished run
        while reason is None:
            t0 = time.perf_counter()
            notice = self._train_step()
            self.durations.step = time.perf_counter() - t0
            pr.elapsed = time.perf_counter() - start
            self._agree()
            if notice:
                yield events.Notice(notice)
            elif pr.step % cfg.log_every == 0:
                yield interval.report(self, time.perf_counter())
            if not notice and pr.step % self.valid_every == 0 and not self._closing_is_near():
                yield from self._validate(start)
            reason = self._stop_requested() or self._limit_reached()
        if pr.last_valid_step != pr.step and not self._validation_interrupted:
            yield from self._validate(start, scheduled=False)
        self._save_state()
        yield self._finished(reason)

    def _train_step(self) -> str | None:
        """One step; a notice (and no update) when the loss or the gradient is not finite."""
        cfg, pr = self.cfg, self.progress
        x, y, new_epoch = self.stream.next()
        if new_epoch:
            self.hidden = self._zero_state()
        with _quiet_overflow():  # detected below: no RuntimeWarning noise on stderr
            loss, grads, hidden = self.model.loss_and_grads(x.T, y.T, self.hidden, self.run_state.rng,
                                                            streams=self.streams)
            loss = self._sum_over_ranks(grads, loss)
            norm = clip_gradients(grads, cfg.clip, cfg.clip_mode)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            what = "loss" if not math.isfinite(loss) else "gradient"
            return self._roll_back(f"step {pr.step + 1}: the {what} is {loss if what == 'loss' else norm}")
        if cfg.schedule in BUDGET_SCHEDULES:
            fraction = self._run_fraction()
            factor = budget_factor(cfg.schedule, fraction, cfg.warmup, cfg.decay)
            self.optimizer.lr = cfg.lr * pr.lr_scale * factor
        with _quiet_overflow():  # an overflow to inf shows as a NaN/inf loss at the next step
            self.optimizer.step(self.model.params, grads)
        self.run_state.stepped()
        self.hidden = hidden
        pr.step += 1
        pr.tokens += x.size
        self._losses.append(loss)
        self._last_norm = norm
        return None

    def _roll_back(self, what: str) -> str:
        """Divergence: restore the last good state, reset the carried state, halve the
        learning rate; the data position moves on. Raises DivergenceError after too many."""
        pr, state = self.progress, self.run_state
        pr.divergences += 1
        pr.total_divergences += 1
        if pr.divergences >= MAX_DIVERGENCES or pr.total_divergences >= MAX_TOTAL_DIVERGENCES:
            raise DivergenceError(self._divergence_message(what))
        snap = state.roll_back()
        # The snapshot's data position has passed: start the next window from a zero state,
        # as at the start of an epoch.
        self.hidden = self._zero_state()
        self.optimizer.lr *= 0.5
        self.progress.lr_scale *= 0.5
        again = state.last_rollback == (pr.step, snap.step)
        state.last_rollback = (pr.step, snap.step)
        if again:  # the same step number: a failed step does not count, the batch moved on
            return (f"training diverged again, on the next batch: rolled back again, learning rate "
                    f"lowered to {self.optimizer.lr:.3g} ({pr.divergences} of {MAX_DIVERGENCES - 1} "
                    "rollbacks allowed since the last good validation)")
        origin = f"step {snap.step}" if snap.step else "the start"
        return (f"training diverged at {what}: rolled back to the weights of {origin}, "
                f"learning rate lowered to {self.optimizer.lr:.3g}")

    def _divergence_message(self, what: str) -> str:
        cfg, pr = self.cfg, self.progress
        times = (f"{pr.divergences} times since the last good validation" if pr.divergences >= MAX_DIVERGENCES
                 else f"{pr.total_divergences} times in this run")
        clip = f"--clip {cfg.clip:g}" if cfg.clip > 0 else "--clip 0 (off)"
        where = (f"the best model so far (step {pr.best_step}) is in {self.model_path}"
                 if pr.best_loss is not None else "no model was saved")
        return (f"training diverged (NaN or infinite values) {times}, last at {what}, even after "
                f"rolling back and lowering the learning rate: start again with a lower --lr "
                f"(was {cfg.lr:g}) or stronger clipping (was {clip}, try --clip 1); {where}")

    def _params_finite(self) -> bool:
        return all(np.isfinite(self.model.params[n]).all() for n in self.model.trainable_names())

    def _validate(self, start: float, scheduled: bool = True):
        """Validate, save the model if it is the best so far; a scheduled validation also
        drives the plateau schedule (learning-rate decay, early stopping)."""
        cfg, pr = self.cfg, self.progress
        t0 = time.perf_counter()
        loss = yield from self._evaluate()
        if loss is None:  # interrupted by a stop request
            self._validation_interrupted = True
            if scheduled:
                pr.interrupted_validation = pr.step
            yield events.Notice(f"the validation of step {pr.step} was interrupted; "
                                + ("--resume runs it again" if scheduled else "the state is saved"))
            return
        pr.interrupted_validation = -1
        if not (math.isfinite(loss) and self._params_finite()):
            self.durations.validation = time.perf_counter() - t0
            problem = f"the loss is {loss}" if not math.isfinite(loss) else "the weights hold NaN or inf"
            yield events.Notice(self._roll_back(f"the validation of step {pr.step}: {problem}"))
            self._save_state()
            return
        pr.last_valid_step = pr.step
        if scheduled:  # the stop-point validation takes none: --resume stays exact
            self.run_state.take_snapshot()
            pr.divergences = 0
        improved = pr.best_loss is None or loss < pr.best_loss - 1e-4
        if improved:
            pr.best_loss, pr.best_step = loss, pr.step
            if self.world.is_root:
                save_model(self.model_path, self.model, self.tokenizer, self._header())
        if scheduled and (pr.schedule_loss is None or loss < pr.schedule_loss - 1e-4):
            pr.schedule_loss = loss
            pr.bad_validations = pr.plateaus_since_best = 0
        elif scheduled:
            pr.bad_validations += 1
            if pr.bad_validations >= cfg.patience and cfg.schedule in PLATEAU_DECAYS:
                pr.bad_validations = 0
                pr.plateaus_since_best += 1
                self.optimizer.lr *= cfg.lr_decay
                pr.lr_scale *= cfg.lr_decay  # wsd: the schedule's rate is lowered from now on
                yield events.Notice(f"validation plateau: learning rate lowered to {self.optimizer.lr:.3g}")
        self.durations.validation = time.perf_counter() - t0  # model save included: the closing one has it too
        pr.elapsed = time.perf_counter() - start
        bpc = bits_per_char(loss) if self.tokenizer.level == "char" else None
        yield events.Validated(pr.step, self.epoch, loss, perplexity(loss), bpc, improved, pr.elapsed,
                               pr.tokens)
        self._save_state()

    def _evaluate(self):
        """The validation loss, yielding a Validating event after each window; None when a
        stop is requested meanwhile."""
        requests, pr = self._stop_requests, self.progress
        windows = evaluate_in_windows(self.model, self.valid_ids, self.cfg.batch, self.cfg.seq_len,
                                      self.world)
        loss = 0.0
        while True:
            with _quiet_overflow():
                window = next(windows, None)
            # under MPI every rank finishes the validation (a stop is agreed after the step)
            if self._stop_requests != requests and self.world.size == 1:
                return None
            if window is None:
                return loss
            done, loss = window
            yield events.Validating(pr.step, done, len(self.valid_ids))

    def _limit_reached(self) -> str | None:
        cfg, pr = self.cfg, self.progress
        if cfg.steps is not None and pr.step >= cfg.steps:
            return f"reached --steps {cfg.steps}"
        if cfg.epochs is not None and self.epoch >= cfg.epochs:
            return f"reached --epochs {cfg.epochs:g}"
        budget = self.time_budget()
        if budget is not None and budget.exhausted(pr.elapsed, pr.tokens, self.durations):
            return f"reached --time {cfg.time_budget:g}s"
        if self._unbounded() and pr.plateaus_since_best >= EARLY_STOP_DECAYS:
            return "validation loss stopped improving (early stopping)"
        return None

    def time_budget(self) -> TimeBudget | None:
        """The --time budget of this run and its validation text (None: no --time)."""
        if self.cfg.time_budget is None:
            return None
        # read-out training (an echo state network's) is a forward pass, as a validation is
        speedup = 1.0 if self.model.config.read_out_only else VALIDATION_SPEEDUP
        return TimeBudget(self.cfg.time_budget, len(self.valid_ids), speedup)

    def _closing_is_near(self) -> bool:
        """Under --time: would a scheduled validation now come too close before the closing one?"""
        budget, pr = self.time_budget(), self.progress
        return budget is not None and budget.closing_is_near(pr.elapsed, pr.tokens, self.durations,
                                                             self.valid_every)

    def _run_fraction(self) -> float:
        """How far the run is, 0..1: by steps when --steps/--epochs bound it (reproducible),
        else by the --time budget."""
        total, pr = self._total_steps(), self.progress
        if total:
            return pr.step / total
        if not self.cfg.time_budget:
            return 0.0
        return self.time_budget().fraction(pr.elapsed, pr.tokens, self.durations)

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
            "train_tokens_per_epoch": self.stream.tokens_per_epoch, "threads": threads(),
        }
        return {"train": to_dict(self.cfg), "summary": summary, **self.extra_header}

    def _save_state(self) -> None:
        """Write the resumable state (the root, with every rank's streams' hidden state)."""
        full = self.world.gather_streams(self.hidden, self.cfg.batch)
        if not self.world.is_root:
            return
        self.run_state.save(full, self.cfg, self._header())

    # ---- ranks --------------------------------------------------------------------------
    def _zero_state(self) -> np.ndarray:
        s0, s1 = self.streams
        return self.model.zero_state(s1 - s0)

    def _sum_over_ranks(self, grads: dict[str, np.ndarray], loss: float) -> float:
        """Every rank's gradients and loss summed in rank order, into grads; returns the loss."""
        if self.world.size == 1:
            return loss
        self.world.sum_grads_in_order(grads)
        return float(self.world.sum_in_order(np.array([loss]))[0])

    def _agree(self) -> None:
        """Ranks take the root's clock and any rank's stop request, so that every rank decides
        the same at every step (validations, limits, the schedule's rate)."""
        if self.world.size == 1:
            return
        root = self.world.is_root
        pr = self.progress
        timed = self.durations
        mine = np.array([1.0 if self._stop_reason else 0.0] + [
            v if root else -np.inf
            for v in (pr.elapsed, timed.step, -1.0 if timed.validation is None else timed.validation)])
        stop, pr.elapsed, timed.step, valid = self.world.agree(mine).tolist()
        timed.validation = None if valid < 0 else valid
        if stop:
            self._agreed_stop = self._stop_reason or "stopped on another rank"

    def _stop_requested(self) -> str | None:
        """The stop request to act on now: under MPI only one that every rank has seen (a
        signal may come between two ranks' checks)."""
        return self._stop_reason if self.world.size == 1 else self._agreed_stop

    def restore(self, arrays: dict, info: dict) -> None:
        """Continue exactly where a saved state left off. Raises ModelFileError when the state
        does not fit this model and configuration (a damaged or hand-edited file)."""
        hidden = self.run_state.restore(arrays, info, self.cfg)
        s0, s1 = self.streams  # the state holds every stream's; this rank continues its own
        self.hidden = np.ascontiguousarray(hidden[:, :, s0:s1])

    def _finished(self, reason: str) -> events.Finished:
        pr = self.progress
        return events.Finished(reason, pr.step, self.epoch, pr.elapsed, pr.tokens,
                               pr.best_loss, pr.best_step, self._header()["summary"])


def _quiet_overflow():
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


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
                           trainer._last_norm, rate, pr.elapsed, pr.tokens)
