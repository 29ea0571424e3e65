"""Loss curves from training metrics files (`charlm plot`): in the terminal with plotext, or
to a PNG/SVG/PDF with matplotlib (both from the optional extra charlm[plot]).

A metrics file (charlm.metrics.jsonl) has one JSON object a line: `"event": "step"` rows hold
the mean training loss of a log interval, `"event": "validated"` rows the validation loss;
both have `step`, `elapsed` (seconds) and `tokens` (training tokens read so far).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from charlm.errors import CharlmError, MetricsError, MissingExtraError, OptionError, read_error, write_error

X_AXES = {"step": ("step", "step"), "time": ("elapsed", "time (s)"), "tokens": ("tokens", "training tokens")}
IMAGE_SUFFIXES = (".png", ".svg", ".pdf")
INSTALL_HINT = "pip install 'charlm[plot]'"
VALID_MARKERS = ["dot", "x", "+", "o", "*"]  # terminal: one per run, told apart without colour
RUN_COLOURS = ["blue+", "red+", "green+", "magenta+", "cyan+", "orange+"]  # terminal: one per run


@dataclass(frozen=True)
class Curve:
    label: str  # e.g. "shipslog train"
    x: list[float]
    loss: list[float]  # nats/token
    validation: bool


def read_curves(path: Path, x_axis: str) -> list[Curve]:
    """The training and validation curves of one metrics file, against x_axis."""
    key, _ = _axis(x_axis)
    rows = _read_rows(path)
    name = path.name.removesuffix(".jsonl").removesuffix(".metrics")
    curves = []
    for event, kind in (("step", "train"), ("validated", "validation")):
        points = [(r.get(key), r["loss"]) for r in rows if r.get("event") == event]
        if any(px is None for px, _ in points):
            raise MetricsError(f"{path} has no {key} figures (written by an older charlm): "
                               "plot it with --x step or --x time")
        points = [(float(px), float(py)) for px, py in points if _finite(py)]
        if points:
            curves.append(Curve(f"{name} {kind}", [p[0] for p in points], [p[1] for p in points],
                                kind == "validation"))
    if not curves:
        raise MetricsError(f"{path} has no finite losses to plot: train a little longer")
    return curves


def _read_rows(path: Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise read_error(MetricsError, path, exc, "pass a metrics file such as charlm.metrics.jsonl "
                         "(written beside the model by charlm train)") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise MetricsError(f"{path} line {number} is not JSON: pass a metrics file written "
                               "by charlm train (NAME.metrics.jsonl)") from None
        if not isinstance(row, dict) or "loss" not in row or "step" not in row:
            raise MetricsError(f"{path} line {number} is not a training metrics row (no step or loss)")
        rows.append(row)
    return rows


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _axis(x_axis: str) -> tuple[str, str]:
    if x_axis not in X_AXES:
        raise OptionError(f"--x {x_axis!r}: use step, time or tokens")
    return X_AXES[x_axis]


def terminal_chart(curves: list[Curve], x_axis: str, width: int, height: int, color: bool) -> str:
    """The chart as text for a terminal of width x height characters (ANSI colours if color)."""
    try:
        import plotext as plt
    except ImportError:
        raise MissingExtraError(f"charlm plot needs plotext to draw in the terminal: {INSTALL_HINT}") from None
    plt.clear_figure()
    plt.theme("clear")
    plt.plotsize(width, height)
    runs = list(dict.fromkeys(c.label.rsplit(" ", 1)[0] for c in curves))
    for c in curves:
        run = runs.index(c.label.rsplit(" ", 1)[0])
        marker = VALID_MARKERS[run % len(VALID_MARKERS)] if c.validation else "braille"
        plt.plot(c.x, c.loss, label=c.label, marker=marker, color=RUN_COLOURS[run % len(RUN_COLOURS)])
    plt.title("loss (nats/token)")
    plt.xlabel(_axis(x_axis)[1])
    chart = plt.build()
    plt.clear_figure()
    chart = chart.rstrip("\n")
    return chart if color else plt.uncolorize(chart)


def save_chart(curves: list[Curve], x_axis: str, output: Path) -> None:
    """Write the chart to output, a .png, .svg or .pdf file."""
    if output.suffix.lower() not in IMAGE_SUFFIXES:
        raise OptionError(f"-o {output}: the file name must end in {', '.join(IMAGE_SUFFIXES)}")
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError(f"charlm plot -o needs matplotlib: {INSTALL_HINT}") from None
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as pyplot

    fig, ax = pyplot.subplots(figsize=(6.4, 3.6), dpi=100)
    try:
        colours = {}
        for c in curves:
            run = c.label.rsplit(" ", 1)[0]
            colour = colours.setdefault(run, f"C{len(colours)}")
            if c.validation:
                ax.plot(c.x, c.loss, "o-", color=colour, label=c.label, markersize=3, linewidth=1.5)
            else:
                ax.plot(c.x, c.loss, "-", color=colour, label=c.label, alpha=0.45, linewidth=1)
        ax.set_xlabel(_axis(x_axis)[1])
        ax.set_ylabel("loss (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        try:
            fig.savefig(output)
        except OSError as exc:
            raise write_error(CharlmError, output, exc, "pick another -o path") from None
    finally:
        pyplot.close(fig)
