"""Named training recipes for `charlm train --preset NAME`.

A preset is a set of `charlm train` option values, each used only where the command line does
not give that option. The recipes and what they reached on a 2-core CPU are in docs/RESULTS.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import OptionError


@dataclass(frozen=True)
class Preset:
    summary: str
    options: dict = field(default_factory=dict)  # train() parameter name -> value, as on the CLI


PRESETS = {
    "shakespeare-3m": Preset(
        "tiny-shakespeare, characters, 3 minutes: a 2x256 LSTM, lr annealed over the budget",
        dict(level="char", cell="lstm", layers=2, hidden=256, embed=64, dropout=0.0,
             batch=32, seq_len=100, lr=4e-3, schedule="cosine", warmup=0.02, time="3m"),
    ),
    "shakespeare-10m": Preset(
        "tiny-shakespeare, characters, 10 minutes: a 2x512 LSTM, lr annealed over the budget",
        dict(level="char", cell="lstm", layers=2, hidden=512, embed=64, dropout=0.1,
             batch=32, seq_len=100, lr=3e-3, schedule="cosine", warmup=0.02, time="10m"),
    ),
    "shakespeare-30m": Preset(
        "tiny-shakespeare, characters, 30 minutes: a 2x512 LSTM with dropout 0.2",
        dict(level="char", cell="lstm", layers=2, hidden=512, embed=64, dropout=0.2,
             batch=32, seq_len=100, lr=2e-3, schedule="cosine", warmup=0.01, time="30m"),
    ),
    "ptb-small": Preset(
        "Penn Treebank, words, 10 minutes: PyTorch word_language_model's 2x200 LSTM, tied, "
        "SGD lr 20 divided by 4 on a validation plateau, clip 0.25",
        dict(level="word", cell="lstm", layers=2, hidden=200, embed=200, tie=True, dropout=0.2,
             batch=20, seq_len=35, optimizer="sgd", lr=20.0, clip=0.25, lr_decay=0.25,
             patience=1, time="10m"),
    ),
    "ptb-60m": Preset(
        "Penn Treebank, words, 60 minutes: a tied 2x650 LSTM (Zaremba's medium size), "
        "dropout 0.5, SGD lr 20 divided by 4 on a validation plateau, clip 0.25",
        dict(level="word", cell="lstm", layers=2, hidden=650, embed=650, tie=True, dropout=0.5,
             batch=20, seq_len=35, optimizer="sgd", lr=20.0, clip=0.25, lr_decay=0.25,
             patience=1, time="60m"),
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise OptionError(f"unknown --preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def describe(options: dict) -> str:
    """The options as they would be typed: '--hidden 256 --tie --time 3m'."""
    parts = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif value is False:
            parts.append("--no-" + name.replace("_", "-"))
        else:
            parts.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    return " ".join(parts)
