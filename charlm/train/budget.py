"""A model and schedule sized to a `--time` budget and the corpus, when no size is given.

The table holds the measured recipes (the presets, docs/RESULTS.md): for characters
shakespeare-3m, -10m and -30m, on tiny-shakespeare (1,115,394 bytes); for words ptb-small
(10 minutes) and ptb-60m, on Penn Treebank (ptb.train.txt, 5,101,618 bytes); all measured on
2 cores. Between and beyond them, the rule:

1. the recipe whose budget is nearest on a log scale gives every option but the hidden size;
2. hidden = its hidden x sqrt(budget x cores / (its budget x its cores)): a step costs about
   hidden^2, so the run takes about as many steps as the measured one;
3. for a corpus smaller than the recipe's, hidden x sqrt(corpus bytes / its corpus bytes):
   parameters (~ hidden^2) in proportion to the text, against overfitting; a larger corpus
   changes nothing (the budget, not the data, limits the run);
4. hidden rounded to a multiple of 16 within [32, 1024] (within half a step of the measured
   size: the measured size); a tied model's embedding follows it.

At the measured budget, core count and corpus size every factor is 1: the preset's recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from charlm.train.presets import PRESETS, describe

MEASURED_CORES = 2
CORPUS_BYTES = {"char": 1_115_394, "word": 5_101_618}  # tiny-shakespeare, ptb.train.txt
ANCHORS = {  # level -> [(budget in seconds, preset name)], by budget
    "char": [(180.0, "shakespeare-3m"), (600.0, "shakespeare-10m"), (1800.0, "shakespeare-30m")],
    "word": [(600.0, "ptb-small"), (3600.0, "ptb-60m")],
}
HIDDEN_MIN, HIDDEN_MAX, HIDDEN_STEP = 32, 1024, 16
SIZE_OPTIONS = ("hidden", "layers", "cell", "embed", "preset")  # any of them turns the rule off


@dataclass(frozen=True)
class Sizing:
    options: dict  # train() parameter name -> value, as on the command line (no --time)
    anchor: str  # the preset the rule started from
    measured: bool  # the anchor's recipe unchanged, as measured
    rule: str  # why, in one line


def size_for_budget(seconds: float, corpus_bytes: int | None, level: str, cores: int) -> Sizing:
    """The options for a run of `seconds` on `cores` cores over a corpus of corpus_bytes (None:
    unknown, e.g. stdin: taken as the anchor's) at `level` ("char" or "word")."""
    budget, name = min(ANCHORS[level], key=lambda a: abs(math.log(seconds / a[0])))
    options = {k: v for k, v in PRESETS[name].options.items() if k not in ("time", "level")}
    compute = math.sqrt(seconds * cores / (budget * MEASURED_CORES))
    anchor_bytes = CORPUS_BYTES[level]
    data = 1.0 if corpus_bytes is None else min(1.0, math.sqrt(corpus_bytes / anchor_bytes))
    hidden = _round_hidden(options["hidden"], compute * data)
    measured = hidden == options["hidden"]
    options["hidden"] = hidden
    if options.get("tie"):
        options["embed"] = hidden
    size = "unknown size" if corpus_bytes is None else f"{corpus_bytes / 1e6:.2g} MB"
    rule = (f"{_minutes(seconds)} on {cores} cores, {size} corpus: {name}'s recipe"
            + (" as measured" if measured else
               f" with hidden {PRESETS[name].options['hidden']} x {compute:.2f} (sqrt of budget x cores "
               f"against its {_minutes(budget)} x {MEASURED_CORES}) x {data:.2f} (sqrt of the corpus "
               f"against its {anchor_bytes / 1e6:.2g} MB, at most 1) -> {hidden} (extrapolated)"))
    return Sizing(options, name, measured, rule)


def _round_hidden(measured: int, factor: float) -> int:
    """measured x factor to a multiple of HIDDEN_STEP within bounds; within half a step of the
    measured size, the measured size itself."""
    h = measured * factor
    if abs(h - measured) < HIDDEN_STEP / 2:
        return measured
    return int(min(HIDDEN_MAX, max(HIDDEN_MIN, HIDDEN_STEP * round(h / HIDDEN_STEP))))


def _minutes(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    return f"{seconds / 60:g}m" if seconds < 3600 else f"{seconds / 3600:g}h"


def describe_sizing(sizing: Sizing) -> str:
    """The note on stderr: what was picked and why."""
    return (f"sized to the budget ({sizing.rule}): {describe(sizing.options)}; "
            "give --hidden, --layers, --cell, --embed or --preset to choose yourself")
