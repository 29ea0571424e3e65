"""`charlm plot`: loss curves in the terminal (plotext) and to image files (matplotlib)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charlm.cli.app import app

from conftest import TINY

REPO = Path(__file__).resolve().parent.parent


def run(args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def write_metrics(path: Path, losses: list[float], tokens_per_step: int = 640, with_tokens: bool = True) -> Path:
    rows = []
    for k, loss in enumerate(losses, 1):
        for event, value in (("step", loss), ("validated", loss * 1.1)):
            if event == "validated" and k % 2:
                continue
            row = {"event": event, "step": 10 * k, "loss": value, "elapsed": 1.5 * k}
            if with_tokens:
                row["tokens"] = 10 * k * tokens_per_step
            rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def assert_user_error(result, code: int, *words: str):
    assert result.exit_code == code, (result.output, result.exception)
    assert result.stdout == "" and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture
def two_runs(tmp_path):
    return (write_metrics(tmp_path / "small.metrics.jsonl", [3.0, 2.2, 1.8, 1.6, 1.5, 1.45]),
            write_metrics(tmp_path / "big.metrics.jsonl", [2.8, 1.9, 1.5, 1.3], tokens_per_step=2000))


def test_runs_are_overlaid_in_the_terminal_with_a_legend(two_runs):
    result = run(["plot", *two_runs])
    assert result.exit_code == 0, result.output
    for label in ("small train", "small validation", "big train", "big validation"):
        assert label in result.stdout
    assert "step" in result.stdout and "loss (nats/token)" in result.stdout
    assert "\x1b[" not in result.stdout  # no colour codes into a pipe
    assert max(len(line) for line in result.stdout.splitlines()) <= 100


@pytest.mark.parametrize("axis,label,largest", [("tokens", "training tokens", "80000"),
                                                 ("time", "time (s)", "9"), ("step", "step", "60")])
def test_the_horizontal_axis_is_steps_time_or_tokens(two_runs, axis, label, largest):
    result = run(["plot", "--x", axis, *two_runs])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[-1].strip() == label
    assert float(lines[-2].split()[-1]) == float(largest)  # the last tick: the largest x of all runs


def test_png_and_svg_files(two_runs, tmp_path):
    png, svg = tmp_path / "curve.png", tmp_path / "curve.svg"
    assert run(["plot", *two_runs, "-o", png]).exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    result = run(["plot", *two_runs, "--x", "tokens", "-o", svg])
    assert result.exit_code == 0 and result.stdout == ""
    assert f"wrote {svg}" in result.stderr
    text = svg.read_text()
    assert "<svg" in text and "big validation" in text and "training tokens" in text


def test_a_real_training_run_on_the_bundled_corpus_plots(tmp_path):
    model = tmp_path / "shipslog.safetensors"
    trained = run(["train", REPO / "corpora" / "shipslog.txt", "-o", model, *TINY,
                   "--steps", "30", "--valid-every", "10"])
    assert trained.exit_code == 0, trained.output
    metrics = tmp_path / "shipslog.metrics.jsonl"
    drawn = run(["plot", metrics, "--x", "tokens"])
    assert drawn.exit_code == 0 and "shipslog validation" in drawn.stdout
    png = tmp_path / "plot.png"
    assert run(["plot", metrics, "-o", png]).exit_code == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_user_errors(two_runs, tmp_path):
    assert_user_error(run(["plot", "--x", "epochs", *two_runs]), 2, "--x")
    assert_user_error(run(["plot", tmp_path / "missing.jsonl"]), 1, "missing.jsonl")
    assert_user_error(run(["plot", two_runs[0], "-o", tmp_path / "c.gif"]), 2, ".png")
    old = write_metrics(tmp_path / "old.metrics.jsonl", [2.0, 1.0], with_tokens=False)
    assert_user_error(run(["plot", old, "--x", "tokens"]), 1, "--x step")
    assert run(["plot", old]).exit_code == 0  # steps are fine
    assert_user_error(run(["plot", two_runs[0], "-o", tmp_path / "no" / "c.png"]), 1, "cannot write", "-o")
    junk = tmp_path / "junk.jsonl"
    junk.write_text("not json\n")
    assert_user_error(run(["plot", junk]), 1, "line 1")


@pytest.mark.parametrize("module,args", [("plotext", []), ("matplotlib", ["-o", "c.png"])])
def test_without_the_extra_one_line_says_what_to_install(two_runs, monkeypatch, module, args):
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    assert_user_error(run(["plot", two_runs[0], *args]), 1, "pip install 'charlm[plot]'")


def test_the_help_names_the_extra():
    result = run(["plot", "--help"])
    assert result.exit_code == 0 and "pip install 'charlm[plot]'" in result.stdout


def test_a_terminal_gets_one_colour_per_run_and_a_pipe_none(two_runs):
    from charlm.views.curves import read_curves, terminal_chart

    curves = [c for path in two_runs for c in read_curves(path, "step")]
    coloured = terminal_chart(curves, "step", 80, 20, color=True)
    plain = terminal_chart(curves, "step", 80, 20, color=False)
    assert "\x1b[" not in plain
    codes = set(re.findall(r"\x1b\[38;5;(\d+)m", coloured))
    assert len(codes) >= 2  # the two runs differ
