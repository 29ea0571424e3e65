"""Time the training step of each cell at one size: `python -m benchmarks.cell_step [HIDDEN [LAYERS [BATCH]]]`.

Random tokens of tiny-shakespeare's 65 characters, windows of 100, embedding 64, no dropout,
Adam. The cells take turns (rnn, leaky, leaky with learned rates, esn, esn with a learned
embedding; three rounds) so that a change in the machine's speed touches them all alike; prints
each cell's median step of all rounds and the tokens per second that gives. The echo state
network's step is the forward pass and the decoder's gradient alone (no backpropagation
through time, nothing kept); with a learned embedding it backpropagates through the reservoir.
"""

from __future__ import annotations

import statistics
import sys

from charlm.config import ModelConfig, TrainConfig
from charlm.nn.model import Model

from .train_step import timed_step

CELLS = {"rnn": {}, "leaky": dict(leak=0.5), "leaky-learned": dict(learn_leak=True), "esn": {},
         "esn-embedding": dict(learn_embedding=True)}
ROUNDS, STEPS = 3, 8


def step_timer(cell: str, settings: dict, hidden: int, layers: int, batch: int):
    cfg = ModelConfig(cell=cell.split("-")[0], vocab_size=65, embed=64, hidden=hidden, layers=layers,
                      dropout=0.0, **settings)
    model = Model.create(cfg)
    step = timed_step(model, TrainConfig(batch=batch))
    step()  # compile and warm up
    return step


def main(hidden: int = 512, layers: int = 1, batch: int = 32) -> None:
    timers = {name: step_timer(name, s, hidden, layers, batch) for name, s in CELLS.items()}
    times: dict[str, list[float]] = {name: [] for name in CELLS}
    for _ in range(ROUNDS):
        for name, step in timers.items():
            times[name] += [step() for _ in range(STEPS)]
    base = statistics.median(times["rnn"])
    for name, t in times.items():
        median = statistics.median(t)
        print(f"{name:14s} {layers}x{hidden} batch {batch} x 100: {1e3 * median:7.1f} ms a step, "
              f"{batch * 100 / median:9,.0f} tokens/s, {base / median:.2f}x the rnn's")


if __name__ == "__main__":
    if len(sys.argv) > 4:
        sys.exit("usage: python -m benchmarks.cell_step [HIDDEN [LAYERS [BATCH]]]")
    main(*(int(a) for a in sys.argv[1:]))
