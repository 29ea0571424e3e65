"""`charlm explore`: write the HTML page of charlm.views.explore for a text."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from charlm.cli.common import ModelOpt, _valid_text, err, user_errors
from charlm.errors import CharlmError, OptionError, write_error

MAX_TOKENS = 20_000


def explore(
    text: Annotated[Optional[str], typer.Argument(metavar="TEXT", help="A text to explore, read as one line.")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", metavar="FILE", help="Explore a document instead (its lines as one stream).")] = None,
    model: ModelOpt = None,
    output: Annotated[str, typer.Option("-o", "--output", metavar="FILE", help="The HTML file to write; - for stdout.")] = "explore.html",
    units: Annotated[Optional[int], typer.Option(help="Keep only the N units per layer and state that vary most (a smaller page). \\[default: all]")] = None,
    max_tokens: Annotated[int, typer.Option(help="Refuse longer texts (the page grows with the text).")] = MAX_TOKENS,
) -> None:
    """Write one self-contained HTML page: the text coloured by surprisal, the model's top-5
    predictions at each token, and the activations of any unit of any layer."""
    from charlm.api import load
    from charlm.data.corpus import read_text
    from charlm.views.explore import explorer_data, render_page

    with user_errors():
        if (text is None) == (file is None):
            raise OptionError("give a TEXT or --file FILE to explore (one of them)")
        net, tokenizer, _ = load(model)
        source = _valid_text(text) if file is None else read_text(str(file), "replace")
        data = explorer_data(net, tokenizer, source, as_line=file is None, units=units,
                             max_tokens=max_tokens)
        page = render_page(data, title=file.name if file is not None else _short(source))
        if output == "-":
            sys.stdout.write(page)
            sys.stdout.flush()
            return
        try:
            Path(output).write_text(page, encoding="utf-8")
        except OSError as exc:
            raise write_error(CharlmError, output, exc, "pick another -o path") from None
        err.print(f"wrote {output} ({len(page.encode()) / 1e3:,.0f} kB): open it in a browser",
                  highlight=False, markup=False)


def _short(text: str, limit: int = 40) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"
