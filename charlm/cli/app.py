"""The command line: a thin layer over charlm.api.

stdout is data (generated text, one score per line); everything for people goes to stderr.
Library errors (CharlmError) become one line on stderr and exit status 1 (2 for usage).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from charlm import __version__
from charlm.io.checkpoint import default_model_path
from charlm.cli.common import ModelOpt, ThreadsOpt, _Console, _valid_text, use_threads, user_errors
from charlm.config import SEED_MAX
from charlm.errors import OptionError
from charlm.json_numbers import json_safe

app = typer.Typer(
    name="charlm",
    help="Train, sample and score recurrent language models (RNN, GRU, LSTM) on the CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"charlm {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    pass


# ---- train ---------------------------------------------------------------------------------
from charlm.cli.train import train  # noqa: E402

app.command(help=train.__doc__)(train)


# ---- sample --------------------------------------------------------------------------------
@app.command()
def sample(
    model: ModelOpt = None,
    temp: Annotated[float, typer.Option(help="Temperature: lower is more conservative; 0 is greedy.")] = 1.0,
    length: Annotated[int, typer.Option("--length", "-n", help="Tokens to generate per sample.")] = 1000,
    prime: Annotated[str, typer.Option(help="Text to condition on; printed first.")] = "",
    seed: Annotated[Optional[int], typer.Option(min=0, max=SEED_MAX, help="Random seed (default: different each run).")] = None,
    top_k: Annotated[Optional[int], typer.Option(help="Sample only among the k most likely tokens. \\[default: all]")] = None,
    top_p: Annotated[float, typer.Option(help="Nucleus: sample only among the most likely tokens that together hold probability P, after --top-k and --temp. \\[default: 1, all]")] = 1.0,
    show_prob: Annotated[bool, typer.Option(help="On a terminal, shade each token by its probability (red: unlikely).")] = False,
    num: Annotated[int, typer.Option(help="Number of samples, drawn together (as fast as one, nearly).")] = 1,
    until_eos: Annotated[bool, typer.Option(help="End each sample at the end of a line.")] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Generate text, streamed to stdout as it is produced."""
    import numpy as np

    from charlm.api import load
    from charlm.sample import generate_samples
    from charlm.views.shading import token_writer

    with user_errors():
        _check_sample_options(temp, length, top_k, num, top_p)
        use_threads(threads)
        net, tokenizer, _ = load(model)
        prime = _valid_text(prime)
        out = sys.stdout
        write = token_writer(out, show_prob and _stdout_is_terminal())
        out.write(prime)
        last, current = prime, 0
        for i, piece, prob in generate_samples(net, tokenizer, num=num, length=length, temp=temp,
                                               top_k=top_k or 0, top_p=top_p, prime=prime,
                                               until_eos=until_eos, rng=np.random.default_rng(seed)):
            if i != current:  # the next sample starts on a line of its own, after the prime
                out.write(("" if last.endswith("\n") else "\n") + prime)
                last, current = prime, i
            write(piece, prob)
            out.flush()
            last = piece or last
        if not last.endswith("\n"):
            out.write("\n")
        out.flush()


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _check_sample_options(temp: float, length: int, top_k: int | None, num: int, top_p: float = 1.0) -> None:
    if not (temp >= 0 and temp < float("inf")):
        raise OptionError(f"--temp must be 0 (greedy) or a positive number, not {temp}")
    if length < 1:
        raise OptionError(f"--length must be at least 1, not {length}")
    if top_k is not None and top_k < 1:
        raise OptionError(f"--top-k must be at least 1, not {top_k} (omit it to sample from all tokens)")
    if num < 1:
        raise OptionError(f"--num must be at least 1, not {num}")
    if not 0.0 < top_p <= 1.0:
        raise OptionError(f"--top-p must be in (0, 1], not {top_p} (1 samples from all tokens)")


# ---- score ---------------------------------------------------------------------------------
from charlm.cli.score import score  # noqa: E402

app.command()(score)


# ---- explore -------------------------------------------------------------------------------
from charlm.cli.explore import explore  # noqa: E402

app.command()(explore)


# ---- plot ----------------------------------------------------------------------------------
from charlm.cli.plot import plot  # noqa: E402

app.command()(plot)


# ---- info ----------------------------------------------------------------------------------
@app.command()
def info(
    path: Annotated[Optional[str], typer.Argument(help="Model file (default: -m, $CHARLM_MODEL or ./charlm.safetensors).")] = None,
    model: ModelOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the model card as JSON.")] = False,
) -> None:
    """Describe a model: cell, sizes, parameters, vocabulary, training figures."""
    from charlm.api import load
    from charlm.io.modelcard import card_rows, model_card

    with user_errors():
        chosen = path or model or default_model_path()
        net, tokenizer, header = load(chosen)
        card = model_card(chosen, net, tokenizer, header)
        if json_out:
            print(json.dumps(json_safe(card)))
            return
        table = Table(title=f"charlm model {escape(chosen)}", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for label, text in card_rows(card):
            table.add_row(label, escape(text))
        _Console().print(table)


def main() -> None:
    """Entry point: run the app; usage errors exit 2 (Click's convention)."""
    app()
