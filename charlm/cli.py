"""The command line: a thin layer over charlm.api.

stdout is data (generated text, one score per line); everything for people goes to stderr.
Library errors (CharlmError) become one line on stderr and exit status 1 (2 for usage).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .checkpoint import MODEL_ENVVAR, default_model_path
from .config import SEED_MAX
from .errors import CharlmError, OptionError

app = typer.Typer(
    name="charlm",
    help="Train, sample and score recurrent language models (RNN, GRU, LSTM) on the CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _Console(Console):
    """Rich's default on a closed pipe is exit status 1 (and /dev/null on stdout, even for a
    stderr console). Here a closed stderr only silences the messages for people (a training
    run goes on and saves), and a closed stdout ends the command quietly via user_errors."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        _silence(self.file)
        if not self.stderr:
            raise BrokenPipeError


err = _Console(stderr=True, highlight=False)

ModelOpt = Annotated[
    Optional[str],
    typer.Option("-m", "--model", envvar=MODEL_ENVVAR, show_envvar=True,
                 help="Model file. \\[default: ./charlm.safetensors]"),
]


# ---- error handling at the edge ----------------------------------------------------------
@contextmanager
def user_errors():
    """CharlmError -> one line on stderr + exit status; a closed stdout ends quietly."""
    try:
        yield
    except CharlmError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except BrokenPipeError:
        _silence(sys.stdout)
        raise typer.Exit(0) from None


def _silence(stream) -> None:
    """After EPIPE, point the stream's file descriptor at /dev/null so that later writes and
    the interpreter's final flush stay quiet."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (e.g. in tests)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _valid_text(text: str) -> str:
    """Undecodable bytes (surrogate escapes from argv or a non-UTF-8 locale) -> U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def parse_duration(text: str | None) -> float | None:
    """'90s', '10m', '1.5h', '45' (seconds) -> seconds."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", text.lower())
    if not m:
        raise OptionError(f"--time {text!r} is not a duration: use e.g. 90s, 10m or 1.5h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def _version(value: bool) -> None:
    if value:
        print(f"charlm {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    pass


# ---- train ---------------------------------------------------------------------------------
from .cli_train import train  # noqa: E402  (registers on `app`, needs the helpers above)

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
    num: Annotated[int, typer.Option(help="Number of samples.")] = 1,
    until_eos: Annotated[bool, typer.Option(help="End each sample at the end of a line.")] = False,
) -> None:
    """Generate text, streamed to stdout as it is produced."""
    import numpy as np

    from .api import load
    from .sample import generate

    with user_errors():
        _check_sample_options(temp, length, top_k, num)
        net, tokenizer, _ = load(model)
        prime = _valid_text(prime)
        rng = np.random.default_rng(seed)
        out = sys.stdout
        for i in range(num):
            out.write(prime)
            last = prime
            for piece in generate(net, tokenizer, length=length, temp=temp, top_k=top_k or 0,
                                  prime=prime, until_eos=until_eos, rng=rng):
                out.write(piece)
                out.flush()
                last = piece or last
            if not last.endswith("\n"):
                out.write("\n")
            out.flush()


def _check_sample_options(temp: float, length: int, top_k: int | None, num: int) -> None:
    if not (temp >= 0 and temp < float("inf")):
        raise OptionError(f"--temp must be 0 (greedy) or a positive number, not {temp}")
    if length < 1:
        raise OptionError(f"--length must be at least 1, not {length}")
    if top_k is not None and top_k < 1:
        raise OptionError(f"--top-k must be at least 1, not {top_k} (omit it to sample from all tokens)")
    if num < 1:
        raise OptionError(f"--num must be at least 1, not {num}")


# ---- score ---------------------------------------------------------------------------------
@app.command()
def score(
    texts: Annotated[Optional[list[str]], typer.Argument(help="Texts to score; none or '-' reads stdin lines.")] = None,
    model: ModelOpt = None,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    file: Annotated[Optional[Path], typer.Option("--file", help="Score a whole document as one stream.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary on stderr.")] = False,
) -> None:
    """Log-probability (natural log) and perplexity of each line.

    Output per input line (TSV): logprob, tokens, unk, ppl. Tokens include the end-of-line.
    """
    from .api import load
    from .data import read_text
    from .score import Totals, score_lines, score_text

    with user_errors():
        net, tokenizer, _ = load(model)
        totals = Totals()
        if file is not None:
            # Invalid UTF-8 becomes U+FFFD, an unseen character: UNK, counted, not an error.
            # An empty file, like empty stdin, has nothing to score: no result, not an error.
            document = read_text(str(file), "replace", allow_blank=True)
            results = [score_text(net, tokenizer, document, as_line=False)] if document else []
        elif not texts or texts == ["-"]:
            if hasattr(sys.stdin, "reconfigure"):
                sys.stdin.reconfigure(errors="replace")
            results = score_lines(net, tokenizer, (_valid_text(line) for line in sys.stdin))
        else:
            results = score_lines(net, tokenizer, [_valid_text(t) for t in texts])
        for s in results:
            totals.add(s)
            print(_format_score(s, json_lines, show_text=file is None), flush=True)
        if not quiet:
            _print_totals(totals)


def _json_safe(d: dict) -> dict:
    """JSON has no infinity or NaN: such a number becomes null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _format_score(s, json_lines: bool, show_text: bool) -> str:
    """TSV (a perplexity beyond a double is inf), or JSON, which has no infinity: null."""
    if json_lines:
        d = _json_safe(s.as_dict())
        if not show_text:
            d.pop("text")
        return json.dumps(d, ensure_ascii=False)
    return f"{s.logprob:.6f}\t{s.tokens}\t{s.unk}\t{s.ppl:.4f}"


def _print_totals(t) -> None:
    if t.tokens == 0:
        err.print("0 lines, 0 tokens: nothing to score")
        return
    err.print(
        f"{t.lines} lines, {t.tokens} tokens ({t.unk} unk): logprob {t.logprob:.4f} (natural log), "
        f"ppl {t.ppl:.4f}, ppl without unk {t.ppl_without_unk:.4f}, "
        f"{t.bits_per_char:.4f} bits/char",
        soft_wrap=True,
    )


# ---- info ----------------------------------------------------------------------------------
@app.command()
def info(
    path: Annotated[Optional[str], typer.Argument(help="Model file (default: -m, $CHARLM_MODEL or ./charlm.safetensors).")] = None,
    model: ModelOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the model card as JSON.")] = False,
) -> None:
    """Describe a model: cell, sizes, parameters, vocabulary, training figures."""
    from .api import load
    from .modelcard import model_card

    with user_errors():
        chosen = path or model or default_model_path()
        net, tokenizer, header = load(chosen)
        card = model_card(chosen, net, tokenizer, header)
        if json_out:
            print(json.dumps(_json_safe(card)))
            return
        table = Table(title=f"charlm model {escape(chosen)}", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for key, value in card.items():
            table.add_row(key.replace("_", " "), escape(str(value)))
        _Console().print(table)


def main() -> None:
    """Entry point: run the app; usage errors exit 2 (Click's convention)."""
    app()
