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
from charlm.cli.options import OneLineErrors, spec_option
from charlm.config import SEED_MAX
from charlm.json_numbers import json_safe
from charlm.options import Range, Spec

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

app.command(help=train.__doc__, cls=OneLineErrors)(train)


# ---- sample --------------------------------------------------------------------------------
_TEMP = Spec(float, "Temperature: lower is more conservative; 0 is greedy.", range=Range(0.0))
_LENGTH = Spec(int, "Tokens to generate per sample.", range=Range(1))
_SEED = Spec(int, "Random seed (default: different each run).", range=Range(0, SEED_MAX), optional=True)
_TOP_K = Spec(int, "Sample only among the k most likely tokens. \\[default: all]", range=Range(1), optional=True,
              hint="omit it to sample from all tokens")
_TOP_P = Spec(float, "Nucleus: sample only among the most likely tokens that together hold probability P, after "
              "--top-k and --temp.", range=Range(0.0, 1.0, low_open=True), hint="1 samples from all tokens")
_NUM = Spec(int, "Number of samples, drawn together (as fast as one, nearly).", range=Range(1))


@app.command(cls=OneLineErrors)
def sample(
    model: ModelOpt = None,
    temp: float = spec_option(_TEMP, 1.0, flag="--temp"),
    length: int = spec_option(_LENGTH, 1000, "--length", "-n", flag="--length"),
    prime: Annotated[str, typer.Option(help="Text to condition on; printed first.")] = "",
    seed: Optional[int] = spec_option(_SEED, None, flag="--seed"),
    top_k: Optional[int] = spec_option(_TOP_K, None, flag="--top-k"),
    top_p: float = spec_option(_TOP_P, 1.0, flag="--top-p"),
    show_prob: Annotated[bool, typer.Option(help="On a terminal, shade each token by its probability (red: unlikely).")] = False,
    num: int = spec_option(_NUM, 1, flag="--num"),
    until_eos: Annotated[bool, typer.Option(help="End each sample at the end of a line.")] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Generate text, streamed to stdout as it is produced."""
    import numpy as np

    from charlm.api import load
    from charlm.sample import generate_samples
    from charlm.views.shading import token_writer

    with user_errors():
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


# ---- score ---------------------------------------------------------------------------------
from charlm.cli.score import score  # noqa: E402

app.command(cls=OneLineErrors)(score)


# ---- explore -------------------------------------------------------------------------------
from charlm.cli.explore import explore  # noqa: E402

app.command(cls=OneLineErrors)(explore)


# ---- plot ----------------------------------------------------------------------------------
from charlm.cli.plot import plot  # noqa: E402

app.command(cls=OneLineErrors)(plot)


# ---- info ----------------------------------------------------------------------------------
@app.command(cls=OneLineErrors)
def info(
    path: Annotated[Optional[str], typer.Argument(metavar="MODEL", help="Model file (default: -m, $CHARLM_MODEL or ./charlm.safetensors).")] = None,
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
