"""The one-line validation curve of charlm train's summary."""

import math

from typer.testing import CliRunner

from charlm.cli.app import app
from charlm.views.sparkline import BLOCKS, MAX_WIDTH, sparkline

from conftest import TINY


def test_a_falling_series_runs_from_the_top_block_to_the_bottom_one():
    line = sparkline([3.0, 2.0, 1.5, 1.2, 1.0])
    assert line[0] == "█" and line[-1] == "▁"
    assert [BLOCKS.index(c) for c in line] == sorted((BLOCKS.index(c) for c in line), reverse=True)


def test_flat_non_finite_and_long_series():
    assert sparkline([2.0, 2.0, 2.0]) == "▄▄▄"
    assert sparkline([1.0, math.nan, 2.0]) == "▁ █"
    assert sparkline([math.inf]) == " "
    assert sparkline([]) == ""
    long = sparkline([float(i) for i in range(1000)])
    assert len(long) == MAX_WIDTH and long[0] == "▁" and long[-1] == "█"


def test_the_training_summary_shows_the_validation_curve(corpus_file, tmp_path):
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(app, ["train", str(corpus_file), "-o", str(out), *TINY,
                                      "--steps", "20", "--valid-every", "5", "--seed", "1"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stderr.splitlines() if "validation curve" in line)
    curve = row.split("validation curve")[1].strip(" │|")
    blocks = curve.split()[0]
    assert len(blocks) == 4 and set(blocks) <= set(BLOCKS)  # validations at steps 5, 10, 15, 20
    assert blocks[0] == "█"  # the first validation is the worst of a short run from scratch
