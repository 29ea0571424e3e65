"""`charlm train --preset NAME`: every preset is a valid set of options, and the command line wins."""

from __future__ import annotations

import inspect
import json

import pytest

from charlm.cli.train import train
from charlm.train.presets import PRESETS, describe
from charlm.io.tensorfile import load_tensors

from test_cli import assert_ok, assert_user_error, run

# Small shapes over any preset: a few steps on the test corpus.
SMALL = ["--hidden", "12", "--embed", "12", "--layers", "1", "--batch", "4", "--seq-len", "8",
         "--steps", "2", "--max-vocab", "50"]


def header(path) -> dict:
    return json.loads(load_tensors(str(path))[1]["charlm"])


def test_preset_options_are_train_options():
    params = inspect.signature(train).parameters
    for name, preset in PRESETS.items():
        for option, value in preset.options.items():
            assert option in params, (name, option)
            default = params[option].default
            assert default is None or isinstance(value, type(default)) or (
                isinstance(default, float) and isinstance(value, int)), (name, option, value)
        assert preset.summary


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_trains_and_is_recorded(corpus, name):  # noqa: F811
    options = PRESETS[name].options
    result = run(["train", "corpus.txt", "--preset", name, *SMALL])
    assert_ok(result)
    assert f"preset {name}:" in result.stderr
    h = header("charlm.safetensors")
    # the preset's own values where the command line is silent ...
    assert h["tokenizer"]["level"] == options["level"]
    assert h["train"]["lr"] == options["lr"]
    assert h["train"]["optimizer"] == options.get("optimizer", "adam")
    assert h["train"]["schedule"] == options.get("schedule", "plateau")
    assert h["train"]["decay"] == options.get("decay", 0.2)
    assert h["model"]["tie"] == options.get("tie", False)
    assert h["model"]["dropout"] == options["dropout"]
    # ... and the command line's where it speaks
    assert h["model"]["hidden"] == 12 and h["train"]["steps"] == 2 and h["train"]["batch"] == 4


def test_command_line_overrides_the_preset_even_with_the_default_value(corpus):  # noqa: F811
    # shakespeare-3m sets --dropout 0 and --lr 0.004; --lr 0.002 is train's own default
    result = run(["train", "corpus.txt", "--preset", "shakespeare-3m", *SMALL, "--lr", "0.002",
                  "--dropout", "0.3"])
    assert_ok(result)
    h = header("charlm.safetensors")
    assert h["train"]["lr"] == 0.002 and h["model"]["dropout"] == 0.3
    note = next(line for line in result.stderr.splitlines() if "preset" in line)
    assert "--lr" not in note and "--dropout" not in note and "--schedule wsd" in note


def test_unknown_preset_is_a_usage_error(corpus):  # noqa: F811
    result = run(["train", "corpus.txt", "--preset", "shakespeare-1h"])
    assert_user_error(result, 2, "unknown --preset", "shakespeare-3m")


def test_describe_spells_options_as_typed():
    assert describe({"hidden": 256, "tie": True, "lr": 0.004, "time": "3m"}) == \
        "--hidden 256 --tie --lr 0.004 --time 3m"
