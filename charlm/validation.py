"""The one check of option values: each against its Spec (charlm.config), then the rules
that join several options. The command line, charlm.api and the model-file reader all use it.

A rule's message names options as {name} placeholders: `--tie needs --embed equal to --hidden`
for a user's options, `tie needs embed equal to hidden` for a file's fields; {config.x} is the
value of the config's field x.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from charlm.config import BUDGET_SCHEDULES, FIELDS, LEAKY_CELLS, ModelConfig, TokenizerConfig, TrainConfig, spec_of
from charlm.errors import OptionError
from charlm.options import Spec, flag_of, specs

# (holds(model config), message): rules of a model config, which a model file must keep too.
MODEL_RULES: list[tuple[Callable[[ModelConfig], bool], str]] = [
    (lambda m: not m.tie or m.embed == m.hidden, "{tie} needs {embed} equal to {hidden}"),
    (lambda m: m.leak is None or m.cell in LEAKY_CELLS, "{leak} is for {cell} leaky or esn, not {config.cell}"),
    (lambda m: not m.learn_leak or m.cell == "leaky",
     "{learn_leak} is for {cell} leaky (an echo state network's reservoir is not trained)"),
    (lambda m: not m.learn_leak or m.leak is None or m.leak < 1.0,
     "{leak} must be below 1 when learned, e.g. 0.5 (a learned rate starts below 1)"),
    (lambda m: m.spectral_radius is None or m.cell == "esn", "{spectral_radius} is for {cell} esn, not {config.cell}"),
    (lambda m: not m.learn_embedding or (m.reservoir and m.embed > 0),
     "{learn_embedding} is for {cell} esn with an embedding ({embed} above 0); the other cells always "
     "learn theirs"),
    (lambda m: not (m.reservoir and m.tie),
     "{tie} cannot be used with {cell} esn: the embedding is frozen and the decoder is trained"),
]

# (holds(train config), message): rules of a run's training settings.
TRAIN_RULES: list[tuple[Callable[[TrainConfig], bool], str]] = [
    (lambda c: c.schedule not in BUDGET_SCHEDULES or c.has_length,
     "{schedule} {config.schedule} needs the length of the run: give {steps}, {epochs} or {time_budget}"),
    (lambda c: c.warmup + c.decay <= 1.0, "{warmup} and {decay} together must not exceed 1 (the whole run)"),
    (lambda c: c.optimizer == "adam" or c.lr * c.weight_decay < 1,
     "{weight_decay} with adamw or sgd must be below 1 / {lr} (each step multiplies the weights by "
     "1 - lr x weight decay)"),
    (lambda c: c.valid_tokens == 0 or c.valid_tokens >= 2, "{valid_tokens} must be 0 (all) or at least 2"),
]


def validate(model_cfg: ModelConfig, tok_cfg: TokenizerConfig, cfg: TrainConfig) -> None:
    """Raise OptionError naming the first option with a bad value and what it may be."""
    for config in (model_cfg, tok_cfg, cfg):
        check_config(config)
    broken = _first_broken(MODEL_RULES, model_cfg, flag_of) or _first_broken(TRAIN_RULES, cfg, flag_of)
    if broken is not None:
        raise OptionError(broken)


def check_config(config) -> None:
    """Raise OptionError naming the first field of one config with a bad value: for library
    functions that take one config."""
    for name, spec in specs(type(config)).items():
        _refuse(name, spec, getattr(config, name))


def check_value(name: str, value) -> None:
    """Raise OptionError if `value` is not a valid value of the option `name` (a config field or
    a charlm.config.RUN_OPTIONS entry): for library functions that take one option."""
    _refuse(name, spec_of(name), value)


def _refuse(name: str, spec: Spec, value) -> None:
    complaint = spec.complaint(flag_of(name, spec), value)
    if complaint is not None:
        raise OptionError(complaint)


def field_problems(config) -> Iterator[tuple[str, str]]:
    """(field, what it must be) for each field of a config whose value its Spec refuses."""
    for name, spec in specs(type(config)).items():
        problem = spec.problem(getattr(config, name))
        if problem is not None:
            yield name, problem


def dict_problems(cls, data: dict) -> Iterator[tuple[str, str]]:
    """(key, what it must be) for the keys of a stored config that are not valid fields of cls."""
    fields = specs(cls)
    for name, value in data.items():
        spec: Spec | None = fields.get(name)
        problem = "is not a setting" if spec is None else spec.problem(value)
        if problem is not None:
            yield name, problem


def model_rule_problem(model_cfg: ModelConfig) -> str | None:
    """The first rule a stored model config breaks, with its fields named as in the file."""
    return _first_broken(MODEL_RULES, model_cfg, lambda name, spec: name)


def _first_broken(rules: list, config, name_of: Callable[[str, Spec], str]) -> str | None:
    """The message of the first rule `config` breaks, options named by name_of(field, spec)."""
    for holds, message in rules:
        if not holds(config):
            names = {name: name_of(name, spec) for name, (_, spec) in FIELDS.items()}
            return message.format(config=config, **names)
    return None
