"""Time the training step of a preset's model: `python -m benchmarks.train_step PRESET [STEPS]`.

Random tokens of the preset's vocabulary size (65 characters, or PTB's 10,000 words), its batch,
window, model and optimizer; prints the median wall time of STEPS steps (default 20) after 3
of warm-up, and the tokens per second that gives. No validation, no data loading: the step
alone. Run it twice with a setting changed between the runs, alternating, to compare (a
machine's speed moves with its load within minutes). For example, OpenBLAS's own spinning of idle threads
against charlm's default (charlm/__init__.py):

    for i in 1 2 3; do
        OPENBLAS_THREAD_TIMEOUT=28 python -m benchmarks.train_step shakespeare-3m
        python -m benchmarks.train_step shakespeare-3m
    done
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from charlm.config import ModelConfig, TrainConfig, from_dict
from charlm.nn.model import Model
from charlm.train.optim import Optimizer, clip_gradients
from charlm.train.presets import get_preset

VOCAB = {"char": 65, "word": 10000}  # tiny-shakespeare's characters, PTB's words


def timed_step(model: Model, cfg: TrainConfig):
    """step() -> seconds of one training step of `model` on random tokens of cfg's window:
    forward, backward through time, clipping and the optimizer's update, as `charlm train`."""
    rng = np.random.default_rng(0)
    V = model.config.vocab_size
    x = rng.integers(0, V, (cfg.seq_len, cfg.batch)).astype(np.int32)
    y = rng.integers(0, V, (cfg.seq_len, cfg.batch)).astype(np.int32)
    state = model.zero_state(cfg.batch)
    optimizer = Optimizer.for_training(cfg)

    def step() -> float:
        start = time.perf_counter()
        _, grads, _ = model.loss_and_grads(x, y, state, rng)
        clip_gradients(grads, cfg.clip, cfg.clip_mode)
        optimizer.step(model.params, grads)
        return time.perf_counter() - start

    return step


def main(name: str, steps: int = 20) -> None:
    o = get_preset(name).options
    # the configs `charlm train --preset NAME` builds: what the preset leaves out, their defaults
    config = from_dict(ModelConfig, {**o, "vocab_size": VOCAB[o["level"]]})
    cfg = from_dict(TrainConfig, o)
    model = Model.create(config)
    T, B = cfg.seq_len, cfg.batch
    step = timed_step(model, cfg)
    for _ in range(3):
        step()
    median = statistics.median(step() for _ in range(steps))
    print(f"{name}: {1e3 * median:.1f} ms a step, {B * T / median:,.0f} tokens/s "
          f"(median of {steps}; {config.cell} {config.layers}x{config.hidden}, batch {B} x {T})")


if __name__ == "__main__":
    if not 2 <= len(sys.argv) <= 3:
        sys.exit("usage: python -m benchmarks.train_step PRESET [STEPS]")
    main(sys.argv[1], *(int(a) for a in sys.argv[2:3]))
