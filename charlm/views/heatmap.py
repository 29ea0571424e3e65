"""Text shaded by surprisal for a terminal (`charlm score --color`), with Rich.

Each token's background goes from pale yellow (the model was sure) to dark red (surprised) as
its surprisal -log2 p rises from 0 to log2(vocabulary size) bits, what a uniform guess scores;
more surprising tokens keep the darkest shade.
"""

from __future__ import annotations

import math

from rich.text import Text

from charlm.views.probe import Predictions
from charlm.data.tokenizer import Tokenizer

EOS_GLYPH = "\u21b5"  # shown, shaded, where a line ends
# Yellow-orange-red stops (ColorBrewer YlOrRd) of the background, at fractions 0, 1/3, 2/3, 1.
STOPS = [(255, 255, 204), (254, 178, 76), (240, 59, 32), (128, 0, 38)]
LEGEND_STEPS = 5


def scale_bits(tokenizer: Tokenizer) -> float:
    """The top of the scale: the surprisal of a uniform guess over the vocabulary."""
    return math.log2(max(tokenizer.vocab_size, 2))


def surprisal_style(bits: float, top: float) -> str:
    """A Rich style: the background for `bits` on a 0..top scale, with readable text on it."""
    x = min(max(bits / top, 0.0), 1.0) * (len(STOPS) - 1)
    i = min(int(x), len(STOPS) - 2)
    a, b, f = STOPS[i], STOPS[i + 1], x - i
    r, g, bl = (round(a[k] + (b[k] - a[k]) * f) for k in range(3))
    ink = "black" if x < 1.8 else "white"
    return f"{ink} on #{r:02x}{g:02x}{bl:02x}"


def shaded_text(tokenizer: Tokenizer, preds: Predictions, pieces: list[str], top: float) -> Text:
    """The sequence's tokens (pieces, from token_records.surface_pieces), each shaded by its
    surprisal; a line end is a shaded EOS_GLYPH and then a line break. Word-level tokens are
    separated by unshaded spaces."""
    text = Text()
    after_break = True
    for piece, logprob in zip(pieces, preds.logprob):
        style = surprisal_style(-logprob / math.log(2.0), top)
        if piece == "\n":
            text.append(EOS_GLYPH, style)
            text.append("\n")
            after_break = True
            continue
        if tokenizer.level == "word" and not after_break:
            text.append(" ")
        text.append(piece, style)
        after_break = False
    text.rstrip()
    return text


def plain_text(tokenizer: Tokenizer, pieces: list[str]) -> str:
    """The same text without shading or glyphs (for a pipe), without its final line break."""
    sep = "" if tokenizer.level == "char" else " "
    lines, current = [], []
    for piece in pieces:
        if piece == "\n":
            lines.append(sep.join(current))
            current = []
        else:
            current.append(piece)
    if current:
        lines.append(sep.join(current))
    return "\n".join(lines)


def legend(top: float) -> Text:
    """'surprisal, bits: 0 1.6 3.2 4.8 6.3+' on the shades they stand for."""
    text = Text("surprisal, bits: ")
    for k in range(LEGEND_STEPS):
        bits = top * k / (LEGEND_STEPS - 1)
        label = f" {bits:.1f}{'+' if k == LEGEND_STEPS - 1 else ''} "
        text.append(label, surprisal_style(bits, top))
    text.append(f"  ({EOS_GLYPH} end of line; {top:.1f} bits = a uniform guess among "
                f"{2 ** top:.0f} tokens)")
    return text
