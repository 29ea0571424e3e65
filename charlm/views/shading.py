"""`charlm sample --show-prob`: each sampled token on a background that shows its probability."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

# Background by probability p: red (RED at p = 0) fading linearly to the terminal's black at p = 1.
RED = 200


def prob_style(prob: float) -> str:
    """The Rich style of a token drawn with probability prob in [0, 1]."""
    p = min(max(float(prob), 0.0), 1.0)
    return f"on rgb({round(RED * (1.0 - p))},0,0)"


def token_writer(out: TextIO, shade: bool) -> Callable[[str, float], None]:
    """write(text, prob): the text as it is (plain), or shaded by prob through Rich. A line break
    is written unshaded, so a shaded background never runs to the end of the line."""
    if not shade:
        return lambda text, prob: out.write(text)
    from rich.console import Console
    from rich.text import Text

    console = Console(file=out, force_terminal=True, color_system="truecolor", soft_wrap=True,
                      highlight=False)

    def write(text: str, prob: float) -> None:
        body, newline = (text[:-1], "\n") if text.endswith("\n") else (text, "")
        if body:
            console.print(Text(body, style=prob_style(prob)), end="")
        out.write(newline)

    return write
