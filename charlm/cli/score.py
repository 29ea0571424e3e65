"""`charlm score`: a total per line, or (--tokens) a record per token, or (--color) the text
shaded by surprisal."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Optional

import typer

from charlm.cli.common import (ModelOpt, ThreadsOpt, _Console, _valid_text, err, ranks, use_threads,
                         user_errors)
from charlm.cli.options import spec_option
from charlm.errors import OptionError
from charlm.json_numbers import json_safe
from charlm.options import Range, Spec


_ALTERNATIVES = Spec(int, "The K most likely tokens at each token and their probabilities (implies --tokens).",
                     range=Range(0))


def score(
    texts: Annotated[Optional[list[str]], typer.Argument(metavar="TEXT", help="Texts to score; none or '-' reads stdin lines.")] = None,
    model: ModelOpt = None,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    file: Annotated[Optional[Path], typer.Option("--file", metavar="FILE", help="Score a whole document as one stream.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary on stderr.")] = False,
    tokens: Annotated[bool, typer.Option("--tokens", help="One record per token (TSV: line, pos, token, logprob, rank, unk).")] = False,
    alternatives: int = spec_option(_ALTERNATIVES, 0, "--alternatives", flag="--alternatives", metavar="K>=0"),
    color: Annotated[bool, typer.Option("--color", help="On a terminal, shade each token by its surprisal.")] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Log-probability (natural log) and perplexity of each line, or of each token.

    Output per input line (TSV): logprob, tokens, unk, ppl. Tokens include the end-of-line.
    With --tokens, one record per token instead; with --color, the text shaded by surprisal.
    """
    from charlm.api import load
    from charlm.score import Totals, score_lines, score_lines_across, score_text

    with user_errors():
        _check_options(json_lines, tokens, alternatives, color)
        use_threads(threads)
        net, tokenizer, _ = load(model)
        where = ranks()
        totals = Totals()
        as_line = file is None
        inputs = _inputs(texts, file)
        per_token = bool(tokens or alternatives)
        if per_token:
            scores = _token_records(net, tokenizer, inputs, as_line, json_lines, alternatives)
        elif color:
            scores = _shaded(net, tokenizer, inputs, as_line, quiet)
        elif as_line and where.size > 1:  # under MPI: the lines shared out between ranks
            scores = score_lines_across(where, net, tokenizer, inputs if where.is_root else None)
        elif as_line:
            scores = score_lines(net, tokenizer, inputs)  # in batches of the lines at hand
        else:  # one stream: under MPI the root scores it alone
            scores = (score_text(net, tokenizer, text, as_line=False) for text in inputs) if where.is_root else ()
        for s in scores:
            totals.add(s)
            if not (per_token or color):  # the others printed their own output
                print(_format_score(s, json_lines, show_text=as_line), flush=True)
        if not quiet and where.is_root:
            _print_totals(totals)


def _check_options(json_lines: bool, tokens: bool, alternatives: int, color: bool) -> None:
    if color and (tokens or alternatives or json_lines):
        raise OptionError("--color shows the text; use it without --tokens, --alternatives and --json")


def _inputs(texts: list[str] | None, file: Path | None) -> Iterable[str]:
    """The texts to score: one document (--file), the arguments (a list), or the lines of
    stdin as they come (each result is written as soon as its line is read)."""
    from charlm.data.corpus import read_text

    if file is not None:
        # Invalid UTF-8 becomes U+FFFD, an unseen character: UNK, counted, not an error.
        # An empty file, like empty stdin, has nothing to score: no result, not an error.
        document = read_text(str(file), "replace", allow_blank=True)
        return [document] if document else []
    if texts and texts != ["-"]:
        return [_valid_text(t).rstrip("\r\n") for t in texts]
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="replace")
    return (_valid_text(line).rstrip("\r\n") for line in sys.stdin)


def _token_records(net, tokenizer, inputs, as_line: bool, json_lines: bool, alternatives: int):
    """Print each input's token records; yield its Score for the totals."""
    from charlm.views.probe import predict
    from charlm.score import score_of, sequence_ids
    from charlm.views.token_records import json_row, surface_pieces, token_lines, tsv_rows

    for number, text in enumerate(inputs, 1):
        ids = sequence_ids(tokenizer, text, as_line=as_line)
        preds = predict(net, ids, k=max(alternatives, 1))
        pieces = surface_pieces(tokenizer, text, ids, as_line=as_line)
        for line, records in token_lines(tokenizer, preds, pieces, first_line=number,
                                         split_lines=not as_line, alternatives=alternatives):
            rows = [json_row(tokenizer, line, records)] if json_lines else tsv_rows(tokenizer, line, records)
            for row in rows:
                print(row)
        sys.stdout.flush()
        yield score_of(tokenizer, text, ids, preds.logprob, as_line=as_line)


def _shaded(net, tokenizer, inputs, as_line: bool, quiet: bool):
    """Print each input shaded by surprisal (plain text when stdout is not a terminal); yield
    its Score for the totals."""
    from charlm.views.heatmap import legend, plain_text, scale_bits, shaded_text
    from charlm.views.probe import predict
    from charlm.score import score_of, sequence_ids
    from charlm.views.token_records import surface_pieces

    out = _Console(highlight=False)
    top = scale_bits(tokenizer)
    if out.is_terminal and not quiet:
        err.print(legend(top), soft_wrap=True)
    for text in inputs:
        ids = sequence_ids(tokenizer, text, as_line=as_line)
        preds = predict(net, ids)
        pieces = surface_pieces(tokenizer, text, ids, as_line=as_line)
        if out.is_terminal:
            out.print(shaded_text(tokenizer, preds, pieces, top), soft_wrap=True)
        else:
            print(plain_text(tokenizer, pieces), flush=True)
        yield score_of(tokenizer, text, ids, preds.logprob, as_line=as_line)


def _format_score(s, json_lines: bool, show_text: bool) -> str:
    """TSV (a perplexity beyond a double is inf), or JSON, which has no infinity: null."""
    if json_lines:
        d = json_safe(s.as_dict())
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
