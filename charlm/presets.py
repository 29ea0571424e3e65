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
    # 3 minutes is about one epoch for a 2x256 LSTM on a 2-core CPU: it trains 1.9x faster
    # than a 2x512 and learns more in the time (measured: 1.98 at 99 s against the 2x512's
    # 1.96 at 169 s). No dropout: one epoch does not overfit. lr 4e-3: 6e-3 stalled a 2x512
    # at the unigram loss, 4e-3 reached 1.96 at step 157 where 2e-3 reached 2.01.
    "shakespeare-3m": Preset(
        "tiny-shakespeare, characters, 3 minutes: a 2x256 LSTM, no dropout, lr 4e-3 held "
        "then decayed to 0 over the last 20% (wsd)",
        dict(level="char", cell="lstm", layers=2, hidden=256, embed=64, dropout=0.0,
             batch=32, seq_len=100, lr=4e-3, schedule="wsd", warmup=0.02, time="3m"),
    ),
    # 10 minutes is about 1.5 epochs of the default 2x512: the defaults, which anneal over a
    # --time budget (wsd). A first recipe without dropout and with lr 4e-3 reached 1.7555; with
    # dropout 0.2 and lr 3e-3 the 30-minute run was at 1.64 by step 400 (about 9 minutes).
    "shakespeare-10m": Preset(
        "tiny-shakespeare, characters, 10 minutes: the default 2x512 LSTM (dropout 0.2, "
        "Adam 3e-3), wsd",
        dict(level="char", cell="lstm", layers=2, hidden=512, embed=64, dropout=0.2,
             batch=32, seq_len=100, lr=3e-3, schedule="wsd", warmup=0.0, time="10m"),
    ),
    # 30 minutes is about 5 epochs of a 2x512, where it starts to overfit: dropout 0.2.
    "shakespeare-30m": Preset(
        "tiny-shakespeare, characters, 30 minutes: a 2x512 LSTM, dropout 0.2, lr 3e-3, wsd",
        dict(level="char", cell="lstm", layers=2, hidden=512, embed=64, dropout=0.2,
             batch=32, seq_len=100, lr=3e-3, schedule="wsd", warmup=0.01, time="30m"),
    ),
    "ptb-small": Preset(
        "Penn Treebank, words, 10 minutes: PyTorch word_language_model's tied 2x200 LSTM, "
        "dropout 0.2, SGD lr 20 divided by 4 on a validation plateau, clip 0.25",
        dict(level="word", cell="lstm", layers=2, hidden=200, embed=200, tie=True, dropout=0.2,
             batch=20, seq_len=35, optimizer="sgd", lr=20.0, clip=0.25, schedule="plateau",
             lr_decay=0.25, patience=1, time="10m"),
    ),
    # Not measured yet (docs/RESULTS.md): a 2x400 sees about 6 epochs in an hour on 2 cores,
    # where Zaremba's medium 2x650 would see 3 of the 39 it needs.
    "ptb-60m": Preset(
        "Penn Treebank, words, 60 minutes: a tied 2x400 LSTM, dropout 0.4, SGD lr 20 "
        "divided by 4 on a validation plateau, clip 0.25",
        dict(level="word", cell="lstm", layers=2, hidden=400, embed=400, tie=True, dropout=0.4,
             batch=20, seq_len=35, optimizer="sgd", lr=20.0, clip=0.25, schedule="plateau",
             lr_decay=0.25, patience=1, time="60m"),
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
