"""`charlm plot`: training and validation loss curves of one or more runs."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from charlm.cli.common import err, user_errors

DEFAULT_SIZE = (100, 25)  # characters, when stdout is not a terminal


def plot(
    metrics: Annotated[list[Path], typer.Argument(metavar="METRICS", help="Metrics files written by charlm train (NAME.metrics.jsonl).")],
    x: Annotated[str, typer.Option("--x", help="Horizontal axis: step, time (seconds) or tokens.")] = "step",
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write a .png, .svg or .pdf instead of drawing in the terminal.")] = None,
) -> None:
    """Plot training and validation loss against steps, time or tokens; several runs overlay.

    Draws in the terminal (plotext), or writes an image with -o (matplotlib). Both come with
    the optional extra: pip install 'charlm\\[plot]'.
    """
    from charlm.views.curves import read_curves, save_chart, terminal_chart

    with user_errors():
        curves = [c for path in metrics for c in read_curves(path, x)]
        if output is not None:
            save_chart(curves, x, output)
            err.print(f"wrote {output}", highlight=False, markup=False)
            return
        tty = sys.stdout.isatty()
        width, height = shutil.get_terminal_size(DEFAULT_SIZE) if tty else DEFAULT_SIZE
        print(terminal_chart(curves, x, width, min(height - 2, 30) if tty else height, color=tty))
