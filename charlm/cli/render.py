"""Training progress for people, on stderr: a live Rich bar on a terminal, plain periodic
log lines otherwise, and a summary table at the end. Consumes charlm.train.events."""

from __future__ import annotations

import math
import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from charlm.train import events
from charlm.metrics import perplexity
from charlm.views.sparkline import sparkline

PLAIN_LOG_SECONDS = 30.0  # a plain log line at most this often, plus one per validation


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _ppl(x: float) -> str:
    """A perplexity: two decimals, or 3 significant digits once huge (a diverging run's 1e300)."""
    return format(x, ".2f" if x < 1e6 else ".3g")


class TrainingView:
    """Feed it every event; call close() at the end (also on errors)."""

    def __init__(self, console: Console):
        self.console = console
        self.live = console.is_terminal
        self.progress: Progress | None = None
        self.task = None
        self.started: events.Started | None = None
        self.last_valid: events.Validated | None = None
        self.best_valid: events.Validated | None = None
        self.last_step: events.Step | None = None
        self.valid_losses: list[float] = []  # this run's validations, for the summary's curve
        self._last_plain = 0.0

    # ---- event handlers ---------------------------------------------------------------
    def handle(self, event) -> None:
        handler = getattr(self, f"_on_{type(event).__name__.lower()}", None)
        if handler:
            handler(event)

    def _on_started(self, e: events.Started) -> None:
        self.started = e
        resumed = f", resumed at step {e.resumed_from_step}" if e.resumed_from_step else ""
        self._line(
            f"training {e.params:,} parameters on {e.train_tokens:,} tokens "
            f"({e.windows_per_epoch} steps/epoch), validating on {e.valid_tokens:,}, "
            f"{e.threads} thread{'s' if e.threads != 1 else ''}{resumed}"
        )
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]step {task.fields[step]}[/] ep {task.fields[epoch]}"),
                BarColumn(),
                TextColumn("loss {task.fields[loss]}  val {task.fields[val]} ppl {task.fields[ppl]}"),
                TextColumn("{task.fields[rate]} tok/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            total = e.total_steps or e.time_budget
            self.task = self.progress.add_task(
                "train", total=total, step=e.resumed_from_step, epoch="0.00", loss="-",
                val="-", ppl="-", rate="-",
            )
            self.progress.start()

    def _on_step(self, e: events.Step) -> None:
        self.last_step = e
        if self.progress is not None:
            self._update_bar(e.step, e.epoch, e.elapsed, loss=_fmt(e.loss), rate=f"{e.tokens_per_s:,.0f}")
        elif time.monotonic() - self._last_plain >= PLAIN_LOG_SECONDS:
            self._last_plain = time.monotonic()
            self._line(
                f"step {e.step} epoch {e.epoch:.2f} loss {e.loss:.4f} lr {e.lr:.3g} "
                f"grad-norm {e.grad_norm:.3g} {e.tokens_per_s:,.0f} tok/s {e.elapsed:.0f}s"
            )

    def _on_validated(self, e: events.Validated) -> None:
        self.last_valid = e
        self.valid_losses.append(e.loss)
        if e.improved:
            self.best_valid = e
        if self.progress is not None:
            self._update_bar(e.step, e.epoch, e.elapsed, val=_fmt(e.loss), ppl=_ppl(e.ppl))
        bpc = f" bpc {e.bpc:.4f}" if e.bpc is not None else ""
        mark = " (best, saved)" if e.improved else ""
        self._line(
            f"validation step {e.step} epoch {e.epoch:.2f}: loss {e.loss:.4f} ppl {_ppl(e.ppl)}"
            f"{bpc} at {e.elapsed:.0f}s{mark}"
        )

    def _on_validating(self, e: events.Validating) -> None:
        """A long validation shows its progress: in the bar's val field, or a plain line at
        most every PLAIN_LOG_SECONDS."""
        share = f"{100 * e.tokens_done / max(e.tokens_total, 1):.0f}%"
        if self.progress is not None:
            self.progress.update(self.task, val=share)
        elif time.monotonic() - self._last_plain >= PLAIN_LOG_SECONDS:
            self._last_plain = time.monotonic()
            self._line(f"validating step {e.step}: {e.tokens_done:,} of {e.tokens_total:,} tokens ({share})")

    def _on_notice(self, e: events.Notice) -> None:
        self._line(e.message, style="yellow")

    def _on_finished(self, e: events.Finished) -> None:
        self.close()
        self.console.print(self._summary(e))

    # ---- helpers ------------------------------------------------------------------------
    def _line(self, text: str, style: str | None = None) -> None:
        """One log line, printed literally (no markup); not wrapped when logging to a file."""
        self.console.print(escape(text), style=style, highlight=False, soft_wrap=not self.live)

    def _update_bar(self, step: int, epoch: float, elapsed: float, **fields) -> None:
        s = self.started
        completed = step if (s and s.total_steps) else elapsed
        if s and s.total_steps is None and s.time_budget is None:
            completed = None
        self.progress.update(self.task, completed=completed, step=step, epoch=f"{epoch:.2f}", **fields)

    def _summary(self, e: events.Finished) -> Table:
        table = Table(title=f"charlm train: {e.reason}", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        rate = e.tokens / e.elapsed if e.elapsed > 0 else 0.0
        rows = [
            ("steps", f"{e.steps:,}"), ("epochs", f"{e.epoch:.2f}"), ("tokens", f"{e.tokens:,}"),
            ("time", f"{e.elapsed:.1f} s"), ("tokens/s", f"{rate:,.0f}"),
            ("threads", str(e.summary.get("threads", "-"))),
            ("best validation loss", f"{_fmt(e.best_loss)} nats/token (step {e.best_step})"),
        ]
        if e.best_loss is not None:
            rows.append(("best validation ppl", _ppl(perplexity(e.best_loss))))
            if self.best_valid is not None and self.best_valid.bpc is not None:
                rows.append(("best bits/char", f"{self.best_valid.bpc:.4f}"))
        if len(self.valid_losses) >= 2:
            first, last = self.valid_losses[0], self.valid_losses[-1]
            rows.append(("validation curve", f"{sparkline(self.valid_losses)} {_fmt(first)} to {_fmt(last)}"))
        for name, value in rows:
            table.add_row(name, value)
        return table

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
