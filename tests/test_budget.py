"""The model sized to a --time budget (charlm.train.budget): the table's rule, and the CLI using it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from charlm.train.budget import CORPUS_BYTES, size_for_budget
from charlm.cli.app import app
from charlm.train.presets import PRESETS

SHAKESPEARE, PTB = CORPUS_BYTES["char"], CORPUS_BYTES["word"]


@pytest.mark.parametrize("seconds,level,corpus,preset", [
    (180, "char", SHAKESPEARE, "shakespeare-3m"), (600, "char", SHAKESPEARE, "shakespeare-10m"),
    (1800, "char", SHAKESPEARE, "shakespeare-30m"), (600, "word", PTB, "ptb-small"),
    (3600, "word", PTB, "ptb-60m"),
])
def test_measured_budgets_pick_the_measured_recipe_exactly(seconds, level, corpus, preset):
    sizing = size_for_budget(seconds, corpus, level, cores=2)
    expected = {k: v for k, v in PRESETS[preset].options.items() if k not in ("time", "level")}
    assert sizing.options == expected
    assert sizing.measured and sizing.anchor == preset and "as measured" in sizing.rule
    # a larger corpus changes nothing: the budget limits the run
    assert size_for_budget(seconds, corpus * 10, level, cores=2).options == expected


def test_hidden_grows_with_the_square_root_of_budget_times_cores_within_bounds():
    base = size_for_budget(180, SHAKESPEARE, "char", cores=2).options["hidden"]
    assert size_for_budget(180 * 4 / 3, SHAKESPEARE, "char", cores=2).options["hidden"] == 256  # 224 x sqrt(4/3) = 258.7
    assert size_for_budget(180, SHAKESPEARE, "char", cores=8).options["hidden"] == 2 * base  # 4x the compute
    assert size_for_budget(45, SHAKESPEARE, "char", cores=2).options["hidden"] == base // 2
    assert size_for_budget(24 * 3600, SHAKESPEARE, "char", cores=2).options["hidden"] == 1024  # upper bound
    assert size_for_budget(30, 1000, "char", cores=1).options["hidden"] == 32  # lower bound
    assert size_for_budget(2 * 3600, SHAKESPEARE, "char", cores=2).anchor == "shakespeare-30m"
    assert not size_for_budget(45, SHAKESPEARE, "char", cores=2).measured


def test_a_small_corpus_gets_fewer_parameters_and_a_tied_model_stays_tied():
    small = size_for_budget(600, SHAKESPEARE // 4, "char", cores=2)
    assert small.options["hidden"] == 144  # 288 x sqrt(1/4)
    assert "extrapolated" in small.rule
    word = size_for_budget(3600, int(PTB * 0.36), "word", cores=2).options
    assert word["hidden"] == word["embed"] == 240 and word["tie"]  # 400 x sqrt(0.36)
    unknown = size_for_budget(600, None, "char", cores=2)  # stdin: taken as the measured corpus
    assert unknown.options["hidden"] == 288 and "unknown size" in unknown.rule


def train(tmp_path, corpus_file, *extra):
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(app, ["train", str(corpus_file), "-o", str(out), "--time", "1s", *extra])
    assert result.exit_code == 0, (result.output, result.exception)
    card = json.loads(CliRunner().invoke(app, ["info", str(out), "--json"]).stdout)
    return result.stderr, card


def test_time_alone_sizes_the_model_says_so_and_records_the_rule(tmp_path, corpus_file):
    stderr, card = train(tmp_path, corpus_file, "--threads", "2")
    expected = size_for_budget(1, corpus_file.stat().st_size, "char", cores=2)
    assert "note: sized to the budget" in stderr and "--cell gru" in stderr
    assert (card["cell"], card["hidden"], card["dropout"]) == ("gru", expected.options["hidden"], 0.0)
    assert (card["cell"], card["hidden"]) != ("lstm", 512)  # not the default model
    assert card["size_rule"] == expected.rule
    table = CliRunner().invoke(app, ["info", str(tmp_path / "m.safetensors")]).stdout
    assert "size rule" in table and "shakespeare-3m" in table


@pytest.mark.parametrize("size_option", [["--hidden", "24"], ["--layers", "1"], ["--cell", "rnn"], ["--embed", "8"]])
def test_any_size_option_turns_the_rule_off(tmp_path, corpus_file, size_option):
    stderr, card = train(tmp_path, corpus_file, *size_option, "--batch", "4", "--seq-len", "16",
                         "--hidden", "24", "--embed", "8", "--layers", "1")
    assert "sized to the budget" not in stderr and "size_rule" not in card


def test_options_given_win_over_the_picked_ones(tmp_path, corpus_file):
    stderr, card = train(tmp_path, corpus_file, "--dropout", "0.3", "--batch", "8")
    assert card["dropout"] == 0.3 and "--dropout" not in stderr.split("sized to the budget")[1].split("\n")[0]
    assert "--batch 64" not in stderr
