"""One benchmark measurement in this process: `python -m benchmarks.workloads FRAMEWORK CONFIG WHAT [THREADS]`.

Prints one JSON object: tokens/s (median of timed repeats after warm-up) and the process's
peak resident memory. Each measurement runs in its own process so that charlm's and PyTorch's
thread pools and memory never meet, and peak memory belongs to one workload.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Shape:
    name: str
    cell: str
    V: int
    E: int
    H: int
    L: int
    B: int
    T: int


CONFIGS = {
    s.name: s
    for s in [
        Shape("char-small", "lstm", 65, 32, 128, 1, 32, 64),
        Shape("char-medium", "lstm", 65, 64, 512, 2, 32, 100),
        Shape("gru-medium", "gru", 65, 64, 512, 2, 32, 100),
        Shape("word-small", "lstm", 10000, 200, 200, 2, 20, 35),
    ]
}
SAMPLE_TOKENS = 2000
MIN_SECONDS = 2.0  # time each measurement at least this long (benchmarks.bench repeats it in rounds)
WARMUP = 2


def matmul_flops_per_token(s: Shape) -> int:
    """FLOPs of the matrix products of one training token: forward 2*m*n per product, backward
    twice that (input and weight gradients), over the input and recurrent projections of every
    layer and the decoder."""
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[s.cell]
    total = 0
    for layer in range(s.L):
        n_in = s.E if layer == 0 else s.H
        total += 2 * (n_in + s.H) * gates * s.H
    total += 2 * s.H * s.V
    return 3 * total


def timed(step, tokens_per_call: int) -> float:
    """Median tokens/s of step() over repeats lasting MIN_SECONDS in all."""
    for _ in range(WARMUP):
        step()
    rates, start = [], time.perf_counter()
    while time.perf_counter() - start < MIN_SECONDS or len(rates) < 3:
        t0 = time.perf_counter()
        step()
        rates.append(tokens_per_call / (time.perf_counter() - t0))
    return statistics.median(rates)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---- charlm ------------------------------------------------------------------------------
def charlm_workload(s: Shape, what: str) -> float:
    from charlm.config import ModelConfig
    from charlm.nn.model import Model
    from charlm.train.optim import Optimizer, clip_gradients
    from charlm.sample import generate
    from charlm.data.tokenizer import Tokenizer

    model = Model.create(ModelConfig(cell=s.cell, vocab_size=s.V, embed=s.E, hidden=s.H,
                                     layers=s.L, dropout=0.0))
    rng = np.random.default_rng(0)
    x = rng.integers(0, s.V, (s.T, s.B)).astype(np.int32)
    y = rng.integers(0, s.V, (s.T, s.B)).astype(np.int32)
    state = model.zero_state(s.B)
    if what == "train":
        opt = Optimizer("adam", 2e-3)

        def step():
            _, grads, _ = model.loss_and_grads(x, y, state)
            clip_gradients(grads, 5.0, "norm")
            opt.step(model.params, grads)

        return timed(step, s.B * s.T)
    if what == "score":
        return timed(lambda: model.target_logprobs(x, y, state), s.B * s.T)
    tokenizer = Tokenizer("char", ["<unk>", "<eos>"] + [chr(0x4E00 + i) for i in range(s.V - 2)])
    gen_rng = np.random.default_rng(0)

    def sample():
        for _ in generate(model, tokenizer, length=SAMPLE_TOKENS, temp=0.8, rng=gen_rng):
            pass

    return timed(sample, SAMPLE_TOKENS)


# ---- PyTorch -----------------------------------------------------------------------------
def torch_workload(s: Shape, what: str) -> float:
    import torch

    cells = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(s.V, s.E)
            self.rnn = cells[s.cell](s.E, s.H, num_layers=s.L)
            self.decoder = torch.nn.Linear(s.H, s.V)

        def forward(self, tokens, state=None):
            out, state = self.rnn(self.embedding(tokens), state)
            return self.decoder(out), state

    torch.manual_seed(0)
    model = LM()
    x = torch.randint(0, s.V, (s.T, s.B))
    y = torch.randint(0, s.V, (s.T, s.B))
    if what == "train":
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)

        def step():
            logits, _ = model(x)
            loss = torch.nn.functional.cross_entropy(logits.view(-1, s.V), y.view(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()

        return timed(step, s.B * s.T)
    model.eval()
    if what == "score":
        def score():
            with torch.no_grad():
                logits, _ = model(x)
                torch.log_softmax(logits, -1).gather(-1, y.unsqueeze(-1))

        return timed(score, s.B * s.T)

    def sample():
        with torch.no_grad():
            token, state = torch.zeros((1, 1), dtype=torch.long), None
            for _ in range(SAMPLE_TOKENS):
                logits, state = model(token, state)
                probs = torch.softmax(logits[0, 0] / 0.8, -1)
                token = torch.multinomial(probs, 1).view(1, 1)

    return timed(sample, SAMPLE_TOKENS)


def main() -> None:
    framework, config, what = sys.argv[1:4]
    if len(sys.argv) > 4:  # charlm on this many threads (BLAS included); default: every core
        from charlm.nn.stack import set_threads

        set_threads(int(sys.argv[4]))
    shape = CONFIGS[config]
    run = charlm_workload if framework == "charlm" else torch_workload
    rate = run(shape, what)
    print(json.dumps({"framework": framework, "config": config, "what": what,
                      "tokens_per_s": rate, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
