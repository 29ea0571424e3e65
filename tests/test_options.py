"""One definition per option: `charlm train` and charlm.api.prepare_training make the same
configs from the same options, and the command line shows and enforces the specs of
charlm.config."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from charlm import api
from charlm.cli.app import app
from charlm.config import LEVEL_DEFAULTS, ModelConfig, TokenizerConfig, TrainConfig, configs_for
from charlm.errors import OptionError
from charlm.io.tensorfile import load_tensors
from charlm.options import Range, specs
from charlm.validation import validate

# The sections of a model file's header that the options make (the rest: timings, paths).
CONFIG_SECTIONS = ("model", "tokenizer", "tokenizer_config", "train")


def run(args):
    return CliRunner().invoke(app, [str(a) for a in args])


def header_and_tensors(path) -> tuple[dict, dict]:
    tensors, meta = load_tensors(str(path))
    return json.loads(meta["charlm"]), tensors


@pytest.mark.parametrize("level", ["char", "word"])
def test_the_api_and_the_command_line_train_the_same_model(corpus, level):
    level_args = [] if level == "char" else ["--level", "word"]
    result = run(["train", "corpus.txt", "--steps", "1", "-o", "cli.safetensors", *level_args])
    assert result.exit_code == 0, result.output
    level_options = {} if level == "char" else {"level": "word"}
    trainer = api.prepare_training("corpus.txt", output="api.safetensors", steps=1, **level_options)
    for _ in trainer.run():
        pass
    cli, cli_tensors = header_and_tensors(corpus.parent / "cli.safetensors")
    by_api, api_tensors = header_and_tensors(corpus.parent / "api.safetensors")
    for section in CONFIG_SECTIONS:
        assert by_api[section] == cli[section], section
    assert by_api["run"]["settings"] == cli["run"]["settings"]
    assert cli["model"]["hidden"] == LEVEL_DEFAULTS[level]["hidden"]
    assert (cli["train"]["lr"], cli["train"]["schedule"], cli["train"]["patience"]) == (
        LEVEL_DEFAULTS[level]["lr"], "wsd", 2)
    assert cli_tensors.keys() == api_tensors.keys()
    assert all(np.array_equal(cli_tensors[k], api_tensors[k]) for k in cli_tensors)


def test_configs_without_options_are_the_char_level_defaults():
    assert configs_for() == (ModelConfig(), TokenizerConfig(), TrainConfig())
    word = configs_for(level="word", hidden=None, lr=0.01)
    assert (word.model.hidden, word.train.batch, word.train.lr) == (200, 20, 0.01)


@pytest.mark.parametrize("limits,schedule", [
    ({}, "plateau"), ({"steps": 5}, "wsd"), ({"epochs": 0.5}, "wsd"), ({"time_budget": 60.0}, "wsd")])
def test_schedule_auto_is_wsd_when_the_run_has_a_length(limits, schedule):
    assert TrainConfig(**limits).schedule == schedule
    assert TrainConfig(schedule="cosine", **limits).schedule == "cosine"


def test_prepare_training_refuses_unknown_options_and_options_with_configs(corpus):
    with pytest.raises(OptionError, match="unknown options hiddne"):
        api.prepare_training("corpus.txt", hiddne=8)
    with pytest.raises(OptionError, match="not both"):
        api.prepare_training("corpus.txt", cfg=TrainConfig(), steps=1)
    with pytest.raises(OptionError, match="--dropout must be in \\[0, 1\\), not 1.5"):
        api.prepare_training("corpus.txt", dropout=1.5)


def test_help_shows_each_option_s_choices_and_range():
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("│ --")}
    assert "<lstm|gru|rnn|leaky|esn>" in lines["--cell"]
    assert "<float> 0<=x<1" in lines["--dropout"]
    assert "<int> x>=1" in lines["--batch"] and "[default: 32 char, 20 word]" in lines["--batch"]
    assert "<float> x>0" in lines["--lr"] and "[default: 0.003 char, 0.002 word]" in lines["--lr"]
    assert "[default: 2]" in lines["--patience"]
    # every option of the configs is one of the command line's (or made from one)
    made_from = {"time_budget": "--time", "learn_leak": "--leak", "log_every": None}
    for cls in (ModelConfig, TokenizerConfig, TrainConfig):
        for name in specs(cls):
            flag = made_from.get(name, "--" + name.replace("_", "-"))
            assert flag is None or flag in lines, name


@pytest.mark.parametrize("args,line", [
    (["--batch", "0"], "error: --batch must be at least 1, not 0"),
    (["--batch", "two"], "error: --batch takes an integer, not 'two'"),
    (["--cell", "transformer"], "error: --cell must be one of lstm, gru, rnn, leaky, esn, not 'transformer'"),
    (["--lr", "inf"], "error: --lr must be positive, not inf"),
    (["--patience", "0"], "error: --patience must be at least 1, not 0"),
])
def test_a_bad_value_is_one_line_naming_the_option_and_its_range(corpus, args, line):
    result = run(["train", "corpus.txt", "--steps", "1", *args])
    assert result.exit_code == 2
    assert result.stderr.strip() == line


@pytest.mark.parametrize("args,line", [
    (["--temp", "-1"], "error: --temp must be 0 or more, not -1.0"),
    (["--top-p", "0"], "error: --top-p must be in (0, 1], not 0.0; 1 samples from all tokens"),
    (["--num", "0"], "error: --num must be at least 1, not 0"),
])
def test_sample_options_are_checked_against_their_ranges(tiny_model, args, line):
    result = run(["sample", "-m", tiny_model, *args])
    assert result.exit_code == 2
    assert result.stderr.strip() == line


def test_the_rules_of_a_model_config_name_options_or_fields():
    tied = ModelConfig(embed=8, hidden=16, tie=True)
    with pytest.raises(OptionError, match="^--tie needs --embed equal to --hidden$"):
        validate(tied, TokenizerConfig(), TrainConfig())


def test_a_model_file_breaking_a_rule_is_refused_naming_its_fields(cwd, tiny_model):
    from charlm.errors import ModelFileError
    from charlm.io.checkpoint import load_model
    from charlm.io.tensorfile import save_tensors

    tensors, meta = load_tensors(str(tiny_model))
    header = json.loads(meta["charlm"])
    header["model"]["spectral_radius"] = 0.5  # an LSTM has no reservoir
    save_tensors(str(cwd / "bad.safetensors"), tensors, {"charlm": json.dumps(header)})
    with pytest.raises(ModelFileError, match="bad.safetensors has an invalid model config: "
                                             "spectral_radius is for cell esn, not lstm: retrain"):
        load_model(cwd / "bad.safetensors")


@pytest.mark.parametrize("bounds,words,inside,outside", [
    (Range(1), "at least 1", [1, 10**9], [0, float("nan")]),
    (Range(0.0, low_open=True), "positive", [1e-9], [0.0, float("inf")]),
    (Range(0.0, 1.0, high_open=True), "in [0, 1)", [0.0, 0.5], [1.0, -0.1]),
    (Range(0.0, 1.0, low_open=True), "in (0, 1]", [1.0], [0.0]),
    (Range(0, 2**63 - 1), "in [0, 9223372036854775807]", [0, 2**63 - 1], [-1, 2**63]),
])
def test_a_range_describes_what_it_holds(bounds, words, inside, outside):
    assert bounds.describe() == words
    assert all(bounds.holds(x) for x in inside)
    assert not any(bounds.holds(x) for x in outside)


def test_resume_accepts_the_leak_rate_the_run_was_started_with(corpus):
    from conftest import TINY

    started = ["train", "corpus.txt", *TINY, "--cell", "leaky", "--leak", "0.5"]
    assert run([*started, "--steps", "2"]).exit_code == 0
    same = run(["train", "corpus.txt", "--cell", "leaky", "--leak", "0.5", "--resume", "--steps", "3"])
    assert same.exit_code == 0, same.output
    other = run(["train", "corpus.txt", "--leak", "0.25", "--resume", "--steps", "4"])
    assert other.exit_code == 1 and "--leak 0.5 (given: 0.25)" in other.stderr
    learned = run(["train", "corpus.txt", "--leak", "learn", "--resume", "--steps", "4"])
    assert learned.exit_code == 1 and "other settings" in learned.stderr
