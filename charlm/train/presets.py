"""Named training recipes for `charlm train --preset NAME`.

A preset is a set of `charlm train` option values, each used only where the command line does
not give that option. docs/RESULTS.md gives, for each, the validation loss it reaches in its
budget, its curve and samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from charlm.errors import OptionError


@dataclass(frozen=True)
class Preset:
    summary: str
    options: dict = field(default_factory=dict)  # train() parameter name -> value, as on the CLI


PRESETS = {
    "shakespeare-3m": Preset(
        "tiny-shakespeare, characters, 3 minutes: a 2x224 GRU, no dropout, batch 64, lr 5e-3 "
        "held then decayed to 0 over the last 30% (wsd)",
        dict(level="char", cell="gru", layers=2, hidden=224, embed=64, dropout=0.0,
             batch=64, seq_len=100, lr=5e-3, schedule="wsd", warmup=0.02, decay=0.3, time="3m",
             valid_every=160),
    ),
    "shakespeare-10m": Preset(
        "tiny-shakespeare, characters, 10 minutes: a 2x288 GRU, dropout 0.1, batch 64, "
        "AdamW 4e-3 with weight decay 0.3, wsd over the last 30%",
        dict(level="char", cell="gru", layers=2, hidden=288, embed=64, dropout=0.1,
             batch=64, seq_len=100, optimizer="adamw", lr=4e-3, weight_decay=0.3, schedule="wsd",
             warmup=0.01, decay=0.3, time="10m", valid_every=200),
    ),
    "shakespeare-30m": Preset(
        "tiny-shakespeare, characters, 30 minutes: a 2x512 LSTM, dropout 0.2, AdamW 3e-3 with "
        "weight decay 0.3, wsd over the last 30%",
        dict(level="char", cell="lstm", layers=2, hidden=512, embed=64, dropout=0.2,
             batch=32, seq_len=100, optimizer="adamw", lr=3e-3, weight_decay=0.3, schedule="wsd",
             warmup=0.01, decay=0.3, time="30m", valid_every=300),
    ),
    "ptb-small": Preset(
        "Penn Treebank, words, 10 minutes: PyTorch word_language_model's tied 2x200 LSTM "
        "without dropout, SGD lr 30 divided by 4 on a validation plateau and annealed to 0 "
        "over the last 20% (wsd), clip 0.25",
        dict(level="word", cell="lstm", layers=2, hidden=200, embed=200, tie=True, dropout=0.0,
             batch=20, seq_len=35, optimizer="sgd", lr=30.0, clip=0.25, schedule="wsd",
             warmup=0.0, lr_decay=0.25, patience=1, time="10m", valid_every=1200),
    ),
    "ptb-60m": Preset(
        "Penn Treebank, words, 60 minutes: a tied 2x400 LSTM, dropout 0.3, SGD lr 20 "
        "divided by 4 on a validation plateau and annealed to 0 over the last 35% (wsd), clip 0.25",
        dict(level="word", cell="lstm", layers=2, hidden=400, embed=400, tie=True, dropout=0.3,
             batch=20, seq_len=35, optimizer="sgd", lr=20.0, clip=0.25, schedule="wsd",
             warmup=0.0, decay=0.35, lr_decay=0.25, patience=1, time="60m", valid_every=1000),
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
