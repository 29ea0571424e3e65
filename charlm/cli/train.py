"""`charlm train`: options, signal handling and rendering around charlm.api's Trainer."""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Callable
from contextlib import contextmanager
from typing import Annotated, NoReturn, Optional

import typer

from charlm.config import SEED_MAX, ModelConfig, TokenizerConfig, TrainConfig
from charlm.train.presets import PRESETS

# Model and window sizes by level, when not given: a 2x512 LSTM for characters (char-rnn's
# recipe), PyTorch word_language_model's small shapes for words.
LEVEL_DEFAULTS = {
    "char": dict(embed=64, hidden=512, layers=2, batch=32, seq_len=100, lr=3e-3),
    "word": dict(embed=200, hidden=200, layers=2, batch=20, seq_len=35, lr=2e-3),
}
EXIT_ON_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}

Opt = typer.Option


def train(
    ctx: typer.Context,
    corpus: Annotated[str, typer.Argument(help="UTF-8 text file, or - for stdin.")],
    output: Annotated[Optional[str], Opt("-o", "--output", help="Model file to write. \\[default: ./charlm.safetensors]")] = None,
    valid: Annotated[Optional[str], Opt(help="Validation text file (default: the end of the corpus).")] = None,
    valid_frac: Annotated[float, Opt(help="Fraction at the end of the corpus used for validation.")] = 0.1,
    level: Annotated[str, Opt(help="Tokens: char (Unicode code points) or word (whitespace-separated).")] = "char",
    max_vocab: Annotated[int, Opt(help="Word level: most frequent words kept.")] = 10000,
    min_count: Annotated[int, Opt(help="Tokens seen fewer times become UNK.")] = 1,
    cell: Annotated[str, Opt(help="Recurrent cell: lstm, gru, rnn (tanh), leaky (a tanh RNN whose state leaks at the rate --leak) or esn (echo state network: a fixed random reservoir, only the output layer learns). No bidirectional RNN: it sees the future it should predict, so it is no language model; sequence-to-sequence models are out of scope.")] = "lstm",
    leak: Annotated[Optional[str], Opt(help="leaky, esn: the leak rate a in (0, 1]: s = (1 - a) s + a tanh(...); 1 is the plain RNN, smaller remembers longer. leaky: learn = one rate per unit, trained. \\[default: 0.5 leaky, 1 esn]")] = None,
    spectral_radius: Annotated[Optional[float], Opt(help="esn: the reservoir's largest eigenvalue modulus. \\[default: 0.9]")] = None,
    learn_embedding: Annotated[bool, Opt(help="esn: train the embedding too, backpropagating through the frozen reservoir (slower steps); by default only the output layer learns.")] = False,
    layers: Annotated[Optional[int], Opt(help="Stacked recurrent layers. \\[default: 2]")] = None,
    hidden: Annotated[Optional[int], Opt(help="Units per layer. \\[default: 512 char, 200 word]")] = None,
    embed: Annotated[Optional[int], Opt(help="Embedding size, 0 for one-hot. \\[default: 64 char, 200 word]")] = None,
    dropout: Annotated[float, Opt(help="Dropout on the embedding, between layers and before the output.")] = 0.2,
    locked_dropout: Annotated[bool, Opt(help="One dropout mask per window, shared by its time steps (locked dropout) instead of one per step.")] = False,
    tie: Annotated[bool, Opt(help="Tie the embedding and output weights (needs --embed = --hidden).")] = False,
    init: Annotated[str, Opt(help="Initial weights: uniform (PyTorch's default) or orthogonal (with LSTM forget-gate bias 1).")] = "uniform",
    batch: Annotated[Optional[int], Opt(help="Parallel streams. \\[default: 32 char, 20 word]")] = None,
    seq_len: Annotated[Optional[int], Opt(help="Tokens per BPTT window. \\[default: 100 char, 35 word]")] = None,
    optimizer: Annotated[str, Opt(help="adam, adamw (Adam with decoupled --weight-decay) or sgd.")] = "adam",
    lr: Annotated[Optional[float], Opt(help="Learning rate. \\[default: 0.003 char, 0.002 word]")] = None,
    beta2: Annotated[float, Opt(help="Adam: decay of the average of squared gradients (PyTorch's betas[1]).")] = TrainConfig.beta2,
    weight_decay: Annotated[float, Opt(help="Weight decay: adamw multiplies the weights by 1 - lr x this each step (e.g. 0.1); adam and sgd add this x the weights to the gradient (L2). Below 1 / --lr for adamw and sgd.")] = TrainConfig.weight_decay,
    clip: Annotated[float, Opt(help="Gradient clipping threshold (0: off).")] = 5.0,
    clip_mode: Annotated[str, Opt(help="norm (global L2 norm) or value (element-wise).")] = "norm",
    schedule: Annotated[str, Opt(help="Learning rate: plateau (decay when validation stalls), or over the run (needs --steps, --epochs or --time): cosine, or wsd (plateau decay, then linear to 0 over the last --decay of the run); auto: wsd when the run has a length, else plateau.")] = "auto",
    warmup: Annotated[float, Opt(help="cosine, wsd: fraction of the run with a linear warm-up.")] = 0.0,
    decay: Annotated[float, Opt(help="wsd: fraction at the end of the run over which the rate falls linearly to 0.")] = TrainConfig.decay,
    epochs: Annotated[Optional[float], Opt(help="Stop after this many epochs.")] = None,
    steps: Annotated[Optional[int], Opt(help="Stop after this many steps.")] = None,
    time: Annotated[Optional[str], Opt("--time", help="Stop after this wall-clock time, e.g. 90s, 10m, 1h.")] = None,
    patience: Annotated[int, Opt(help="Validations without improvement before the learning rate decays.")] = 2,
    lr_decay: Annotated[float, Opt(help="Plateau: factor applied to the learning rate when validation stalls.")] = 0.5,
    preset: Annotated[Optional[str], Opt(help=f"A named recipe (docs/RESULTS.md); options given here override it: {', '.join(PRESETS)}.")] = None,
    valid_every: Annotated[int, Opt(help="Steps between validations (0: automatic).")] = 0,
    valid_tokens: Annotated[int, Opt(min=0, help="Validate on the first N tokens of the validation text (0: all of it).")] = TrainConfig.valid_tokens,
    seed: Annotated[int, Opt(min=0, max=SEED_MAX, help="Random seed: same seed, same machine, same model.")] = 0,
    resume: Annotated[bool, Opt(help="Continue the interrupted run saved beside --output.")] = False,
    init_from: Annotated[Optional[str], Opt(help="Fine-tune this model file: its weights, architecture and level; tokens new to its vocabulary get new ids after its own.")] = None,
    encoding_errors: Annotated[str, Opt(help="Invalid UTF-8: strict (error), replace or ignore.")] = "strict",
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
        sizes = {k: a[k] for k in ("embed", "hidden", "layers", "batch", "seq_len", "lr") if a[k] is not None}
        defaults = {**LEVEL_DEFAULTS.get(a["level"], LEVEL_DEFAULTS["char"]), **sizes}
        limits = dict(epochs=a["epochs"], steps=a["steps"], time_budget=parse_duration(a["time"]))
        if encoding_errors not in ("strict", "replace", "ignore"):
            from charlm.errors import OptionError
            raise OptionError("--encoding-errors must be strict, replace or ignore")
        if resume:
            given = {k: v for k, v in limits.items() if v is not None}
            a["encoding_errors"] = encoding_errors
            trainer = api.resume_training(corpus, output=output, valid=valid, limits=given,
                                          encoding_errors=encoding_errors,
                                          settings=_given_settings(ctx, a, from_preset))
        else:
            rate, learned = _leak(a["leak"])
            model_cfg = ModelConfig(cell=a["cell"], embed=defaults["embed"], hidden=defaults["hidden"],
                                    layers=defaults["layers"], dropout=a["dropout"],
                                    locked_dropout=a["locked_dropout"], tie=a["tie"], init=a["init"],
                                    leak=rate, learn_leak=learned, spectral_radius=a["spectral_radius"],
                                    learn_embedding=a["learn_embedding"])
            tok_cfg = TokenizerConfig(level=a["level"], max_vocab=a["max_vocab"], min_count=a["min_count"])
            cfg = TrainConfig(batch=defaults["batch"], seq_len=defaults["seq_len"],
                              optimizer=a["optimizer"], lr=defaults["lr"], beta2=a["beta2"],
                              weight_decay=a["weight_decay"], clip=a["clip"],
                              clip_mode=a["clip_mode"], schedule=_schedule(a["schedule"], limits),
                              warmup=a["warmup"], decay=a["decay"],
                              patience=a["patience"], lr_decay=a["lr_decay"],
                              valid_every=a["valid_every"], valid_frac=a["valid_frac"],
                              valid_tokens=a["valid_tokens"],
                              seed=a["seed"], **limits)
            trainer = api.prepare_training(corpus, model_cfg=model_cfg, tok_cfg=tok_cfg, cfg=cfg,
                                           valid=valid, output=output,
                                           encoding_errors=encoding_errors, notes=notes,
                                           init_from=init_from, header_extra=header_extra)
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


def _leak(text: str | None) -> tuple[float | None, bool]:
    """--leak as (rate or None, learned): "learn" is a learned rate starting at the default."""
    from charlm.errors import OptionError

    if text is None:
        return None, False
    if text.strip().lower() == "learn":
        return None, True
    try:
        return float(text), False
    except ValueError:
        raise OptionError(f"--leak takes a rate in (0, 1], e.g. 0.5, or learn; not {text!r}") from None


def _schedule(name: str, limits: dict) -> str:
    """auto: anneal over the run when it has a length (wsd), else decay on plateaus."""
    if name != "auto":
        return name
    return "wsd" if any(v is not None for v in limits.values()) else "plateau"


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


def _given_settings(ctx: typer.Context, a: dict, from_preset: list[str]) -> dict:
    """The run settings set on the command line (or by --preset): what --resume checks the
    saved run against. --schedule auto names no schedule of its own."""
    names = [n for n in (*_RUN_SETTINGS, "encoding_errors") if n != "preset"]
    given = {n: a[n] for n in names
             if n in from_preset or getattr(ctx.get_parameter_source(n), "name", "DEFAULT") != "DEFAULT"}
    if given.get("schedule") == "auto":
        del given["schedule"]
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
