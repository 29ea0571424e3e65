"""`charlm train`: options, signal handling and rendering around charlm.api's Trainer."""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Callable
from contextlib import contextmanager
from typing import Annotated, NoReturn, Optional

import typer

from charlm.cli.options import config_option, spec_option
from charlm.config import ENCODING_ERRORS
from charlm.errors import OptionError
from charlm.options import Spec
from charlm.train.presets import PRESETS

EXIT_ON_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}

Opt = typer.Option


def _leak_value(text):
    """--leak: "learn" (a learned rate) or a rate in the spec's range."""
    from charlm.validation import check_value

    if not isinstance(text, str):  # the default
        return text
    if text.strip().lower() == "learn":
        return "learn"
    try:
        rate = float(text)
    except ValueError:
        raise OptionError(f"--leak takes a rate in (0, 1], e.g. 0.5, or learn; not {text!r}") from None
    check_value("leak", rate)
    return rate


def _duration(text):
    """--time: a duration (charlm.cli.common.parse_duration) in the spec's range; kept as text."""
    from charlm.cli.common import parse_duration
    from charlm.validation import check_value

    if isinstance(text, str):
        check_value("time_budget", parse_duration(text))
    return text


_PRESET = Spec(str, f"A named recipe (docs/RESULTS.md); options given here override it: {', '.join(PRESETS)}.",
               choices=tuple(PRESETS))


def train(
    ctx: typer.Context,
    corpus: Annotated[str, typer.Argument(metavar="CORPUS", help="UTF-8 text file, or - for stdin.")],
    output: Annotated[Optional[str], Opt("-o", "--output", metavar="FILE", help="Model file to write. \\[default: ./charlm.safetensors]")] = None,
    valid: Annotated[Optional[str], Opt(metavar="FILE", help="Validation text file (default: the end of the corpus).")] = None,
    valid_frac: float = config_option("valid_frac"),
    level: str = config_option("level"),
    max_vocab: int = config_option("max_vocab"),
    min_count: int = config_option("min_count"),
    cell: str = config_option("cell"),
    leak: Optional[str] = config_option("leak", parser=_leak_value, metavar="<float> 0<x<=1|learn"),
    spectral_radius: Optional[float] = config_option("spectral_radius"),
    learn_embedding: bool = config_option("learn_embedding"),
    layers: Optional[int] = config_option("layers", level_default=True),
    hidden: Optional[int] = config_option("hidden", level_default=True),
    embed: Optional[int] = config_option("embed", level_default=True),
    dropout: float = config_option("dropout"),
    locked_dropout: bool = config_option("locked_dropout"),
    tie: bool = config_option("tie"),
    init: str = config_option("init"),
    batch: Optional[int] = config_option("batch", level_default=True),
    seq_len: Optional[int] = config_option("seq_len", level_default=True),
    optimizer: str = config_option("optimizer"),
    lr: Optional[float] = config_option("lr", level_default=True),
    beta2: float = config_option("beta2"),
    weight_decay: float = config_option("weight_decay"),
    clip: float = config_option("clip"),
    clip_mode: str = config_option("clip_mode"),
    schedule: str = config_option("schedule"),
    warmup: float = config_option("warmup"),
    decay: float = config_option("decay"),
    epochs: Optional[float] = config_option("epochs"),
    steps: Optional[int] = config_option("steps"),
    time: Optional[str] = config_option("time_budget", "--time", parser=_duration, metavar="<duration> x>0"),
    patience: int = config_option("patience"),
    lr_decay: float = config_option("lr_decay"),
    preset: Optional[str] = spec_option(_PRESET, None, flag="--preset"),
    valid_every: int = config_option("valid_every"),
    valid_tokens: int = config_option("valid_tokens"),
    seed: int = config_option("seed"),
    resume: Annotated[bool, Opt(help="Continue the interrupted run saved beside --output.")] = False,
    init_from: Annotated[Optional[str], Opt(metavar="MODEL", help="Fine-tune this model file: its weights, architecture and level; tokens new to its vocabulary get new ids after its own.")] = None,
    encoding_errors: str = config_option("encoding_errors", default=ENCODING_ERRORS[0]),
    threads: Annotated[Optional[int], Opt("--threads", envvar="CHARLM_THREADS", show_envvar=True, min=1, help="Threads to compute on; the model is the same for any count. \\[default: all cores]")] = None,
) -> None:
    """Train a model on CORPUS; the best model by validation loss is saved to --output.

    With no --epochs, --steps or --time, training stops when validation stops improving.
    """
    from rich.markup import escape

    from charlm import api
    from charlm.cli.common import err, parse_duration, use_threads, user_errors
    from charlm.cli.render import TrainingView

    with user_errors():
        use_threads(threads)
        a = {name: value for name, value in locals().items() if name in _OPTIONS}
        notes: list[str] = []
        from_preset: list[str] = []
        if preset is not None:
            from_preset = _apply_preset(ctx, preset, a, notes)
        if init_from is not None and not resume:
            _fine_tuning_options(ctx, init_from, a, notes)
        header_extra = {}
        if _sized_by_budget(ctx, a, resume):
            header_extra["size_rule"] = _apply_budget(ctx, corpus, a, notes)
        if resume:
            limits = dict(epochs=a["epochs"], steps=a["steps"], time_budget=parse_duration(a["time"]))
            trainer = api.resume_training(corpus, output=output, valid=valid,
                                          limits={k: v for k, v in limits.items() if v is not None},
                                          encoding_errors=encoding_errors,
                                          settings=_given_settings(ctx, a, from_preset, encoding_errors))
        else:
            trainer = api.prepare_training(corpus, valid=valid, output=output, encoding_errors=encoding_errors,
                                           notes=notes, init_from=init_from, header_extra=header_extra,
                                           **config_options(a))
        root = trainer.world.is_root  # under MPI, one rank speaks for all
        for note in notes if root else []:
            err.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
        view = TrainingView(err) if root else None
        caught: list[int] = []
        try:
            with _stop_on_signals(trainer, caught, lambda signum: _exit_at_once(signum, trainer, corpus, output)):
                for event in trainer.run():
                    if view is not None:
                        view.handle(event)
        finally:
            if view is not None:
                view.close()
        if root:
            err.print(escape(f"model saved to {trainer.model_path}; resumable state in {trainer.state_path}"),
                      soft_wrap=True)
        if caught:
            if root:
                err.print(escape(f"interrupted: continue with {_resume_command(corpus, output)}"), soft_wrap=True)
            raise typer.Exit(EXIT_ON_SIGNAL[caught[0]])


def _resume_command(corpus: str, output: str | None) -> str:
    return f"`charlm train {corpus} --resume{'' if output is None else ' -o ' + output}`"


def _exit_at_once(signum: int, trainer, corpus: str, output: str | None) -> NoReturn:
    """A second Ctrl-C or SIGTERM: say so and end the process from the signal handler, without
    unwinding the run. An exception raised into whatever the main thread was running (a save,
    the worker pool's locks) could leave a lock taken and hang the exit; ending here cannot.
    The files stay whole: every save is an atomic rename, and a save cut short leaves only its
    temporary file, which a later save removes."""
    name = signal.Signals(signum).name
    if os.path.exists(trainer.state_path):
        message = (f"stopped at once by a second {name}, without saving: {_resume_command(corpus, output)} "
                   f"continues from the state saved last in {trainer.state_path}")
    else:
        message = f"stopped at once by a second {name}: the run had saved nothing yet"
    try:
        os.write(2, f"\n{message}\n".encode("utf-8", "replace"))  # no locks: safe in a handler
    except OSError:  # stderr closed
        pass
    if trainer.run_lock is not None:
        trainer.run_lock.release()
    os._exit(EXIT_ON_SIGNAL[signum])


# Options fixed by the run that --resume continues (the limits --steps/--epochs/--time are not).
_RUN_SETTINGS = ("valid_frac", "level", "max_vocab", "min_count", "cell", "leak", "spectral_radius",
                 "learn_embedding",
                 "layers", "hidden", "embed",
                 "dropout", "locked_dropout", "tie", "init", "batch", "seq_len", "optimizer", "lr",
                 "beta2", "weight_decay", "clip", "clip_mode", "schedule", "warmup", "decay", "patience", "lr_decay",
                 "valid_every", "valid_tokens", "seed", "preset", "init_from")
_LIMITS = ("epochs", "steps", "time")
_OPTIONS = _RUN_SETTINGS + _LIMITS


def config_options(a: dict) -> dict:
    """The command line's options as charlm.config.configs_for takes them: --leak as leak and
    learn_leak, --time in seconds as time_budget; None for a size leaves it to the level."""
    from charlm.cli.common import parse_duration

    options = {name: a[name] for name in _RUN_SETTINGS if name not in ("preset", "init_from", "leak")}
    options.update(_leak(a["leak"]), epochs=a["epochs"], steps=a["steps"],
                   time_budget=parse_duration(a["time"]))
    return options


def _leak(value) -> dict:
    """--leak as config fields: "learn" is a learned rate starting at the cell's default."""
    if value == "learn":
        return dict(leak=None, learn_leak=True)
    return dict(leak=None if value is None else float(value), learn_leak=False)


def _apply_preset(ctx: typer.Context, name: str, a: dict, notes: list[str]) -> list[str]:
    """Fill the options the command line left at their defaults from the named preset; the
    names of the options it set."""
    from charlm.train.presets import describe, get_preset

    chosen = get_preset(name).options
    used = {k: v for k, v in chosen.items()
            if getattr(ctx.get_parameter_source(k), "name", "DEFAULT") == "DEFAULT"}
    a.update(used)
    notes.append(f"preset {name}: {describe(used)}")
    return list(used)


def _sized_by_budget(ctx: typer.Context, a: dict, resume: bool) -> bool:
    """A new model with a --time budget and no size option given: charlm.train.budget sizes it."""
    from charlm.train.budget import SIZE_OPTIONS

    return (a["time"] is not None and not resume and a["init_from"] is None
            and not any(_given(ctx, name) for name in SIZE_OPTIONS))


def _apply_budget(ctx: typer.Context, corpus: str, a: dict, notes: list[str]) -> str:
    """Fill the options left at their defaults from charlm.train.budget's rule; returns the rule."""
    from charlm.train.budget import describe_sizing, size_for_budget
    from charlm.cli.common import parse_duration
    from charlm.nn.stack import threads

    size = os.path.getsize(corpus) if corpus != "-" and os.path.isfile(corpus) else None
    sizing = size_for_budget(parse_duration(a["time"]), size, a["level"], threads())
    used = {k: v for k, v in sizing.options.items() if not _given(ctx, k)}
    a.update(used)
    notes.append(describe_sizing(dataclasses.replace(sizing, options=used)))
    return sizing.rule


# The architecture, which a fine-tuned model takes from its parent.
_ARCHITECTURE = ("cell", "layers", "hidden", "embed", "tie", "init")


def _fine_tuning_options(ctx: typer.Context, path: str, a: dict, notes: list[str]) -> None:
    """--init-from: the level is the parent's unless given; architecture options are ignored."""
    from charlm.api import load

    _, tokenizer, _ = load(path)
    if _given(ctx, "level") and a["level"] != tokenizer.level:
        from charlm.errors import OptionError
        raise OptionError(f"--level {a['level']} differs from {path}'s level {tokenizer.level}: "
                          "a fine-tuned model keeps its parent's tokens; omit --level")
    a["level"] = tokenizer.level
    ignored = [name for name in _ARCHITECTURE if _given(ctx, name)]
    if ignored:
        notes.append("--init-from keeps the parent's architecture; ignored: "
                     + ", ".join(f"--{n.replace('_', '-')}" for n in ignored))


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the option was given (command line or environment), not left at its default."""
    return getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"


def _given_settings(ctx: typer.Context, a: dict, from_preset: list[str], encoding_errors: str) -> dict:
    """The run settings set on the command line (or by --preset): what --resume checks the
    saved run against. --schedule auto names no schedule of its own."""
    names = [n for n in _RUN_SETTINGS if n != "preset"]
    given = {n: a[n] for n in names if n in from_preset or _given(ctx, n)}
    if _given(ctx, "encoding_errors"):
        given["encoding_errors"] = encoding_errors
    if given.get("schedule") == "auto":
        del given["schedule"]
    if "leak" in given:
        given.update(_leak(given.pop("leak")))
    return given


@contextmanager
def _stop_on_signals(trainer, caught: list, at_once: Callable[[int], None]):
    """First Ctrl-C / SIGTERM: finish the step, save, stop. A second one: at_once(signum)."""

    def handler(signum, frame):
        if caught:
            at_once(signum)
            return
        caught.append(signum)
        trainer.request_stop(f"stopped by {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, handler) for s in EXIT_ON_SIGNAL}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
