"""`charlm score` of a file of lines, as a user runs it, against PyTorch on the same lines.

    python -m benchmarks.score_lines CONFIG [--lines N]

Writes a model of the configuration's shape (random weights) and N lines of random tokens with
lengths like sentences (5 to 60 tokens), then times whole commands, start-up included:
`charlm score -m MODEL < lines` (every line from the zero state, EOS first), `charlm score
--file` of the same text (one stream), and a PyTorch script that reads the same lines, sorts
them by length, pads them into batches of 64 and gathers each line's log-probabilities
(`torch` below, the same model's weights). Prints one JSON object of tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .workloads import CONFIGS, Shape

ROOT = Path(__file__).resolve().parent.parent
TORCH_BATCH = 64


def write_model_and_lines(s: Shape, n_lines: int, directory: Path) -> tuple[Path, Path, int]:
    """A random model of shape s, its file, and n_lines of its tokens: (model, lines, tokens)."""
    from charlm.io.checkpoint import save_model
    from charlm.config import ModelConfig
    from charlm.nn.model import Model
    from charlm.data.tokenizer import Tokenizer

    tokenizer = Tokenizer("char", ["<unk>", "<eos>"] + [chr(0x4E00 + i) for i in range(s.V - 2)])
    model = Model.create(ModelConfig(cell=s.cell, vocab_size=s.V, embed=s.E, hidden=s.H, layers=s.L,
                                     dropout=0.0))
    model_path = directory / "model.safetensors"
    save_model(model_path, model, tokenizer)
    rng = np.random.default_rng(0)
    lines = ["".join(tokenizer.tokens[i] for i in rng.integers(2, s.V, rng.integers(5, 61)))
             for _ in range(n_lines)]
    lines_path = directory / "lines.txt"
    lines_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tokens = sum(len(line) + 1 for line in lines)  # every token of a line and its EOS
    return model_path, lines_path, tokens


def timed_command(cmd: list[str], stdin_path: Path | None = None) -> float:
    with open(stdin_path or os.devnull, "rb") as stdin:
        t0 = time.perf_counter()
        subprocess.run(cmd, stdin=stdin, stdout=subprocess.DEVNULL, check=True, cwd=ROOT)
        return time.perf_counter() - t0


def torch_score_lines(model_path: str, lines_path: str) -> None:
    """The PyTorch side: the model file's weights in nn.Embedding/LSTM/GRU/RNN/Linear, lines
    sorted by length and padded into batches, log-probabilities per line printed in input order."""
    import torch
    from safetensors.torch import load_file

    from charlm.io.checkpoint import load_model

    cm, tokenizer, _ = load_model(model_path)
    cfg = cm.config
    cells = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
    embedding = torch.nn.Embedding(cfg.vocab_size, cfg.embed)
    rnn = cells[cfg.cell](cfg.embed, cfg.hidden, num_layers=cfg.layers)
    decoder = torch.nn.Linear(cfg.hidden, cfg.vocab_size)
    weights = load_file(model_path)
    for prefix, module in (("embedding.", embedding), ("rnn.", rnn), ("decoder.", decoder)):
        module.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
    lines = Path(lines_path).read_text(encoding="utf-8").splitlines()
    ids = [[1] + tokenizer.encode_line(line).tolist() + [1] for line in lines]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    totals = [0.0] * len(ids)
    with torch.no_grad():
        for start in range(0, len(order), TORCH_BATCH):
            batch = order[start:start + TORCH_BATCH]
            longest = max(len(ids[i]) for i in batch)
            padded = torch.ones((longest, len(batch)), dtype=torch.long)
            for column, i in enumerate(batch):
                padded[: len(ids[i]), column] = torch.tensor(ids[i])
            out, _ = rnn(embedding(padded[:-1]))
            logp = torch.log_softmax(decoder(out), -1).gather(-1, padded[1:].unsqueeze(-1))[..., 0]
            for column, i in enumerate(batch):
                totals[i] = float(logp[: len(ids[i]) - 1, column].sum())
    sys.stdout.write("".join(f"{t:.6f}\n" for t in totals))


def measure(config: str, n_lines: int, with_torch: bool) -> dict:
    s = CONFIGS[config]
    with tempfile.TemporaryDirectory() as tmp:
        model, lines, tokens = write_model_and_lines(s, n_lines, Path(tmp))
        charlm = [sys.executable, "-m", "charlm", "score", "-m", str(model), "--quiet"]
        timed_command(charlm + ["warm-up"])  # compiled kernels cached before the timed runs
        figures = {"config": config, "lines": n_lines, "tokens": tokens,
                   "charlm_lines_tok_s": tokens / timed_command(charlm, lines),
                   "charlm_file_tok_s": tokens / timed_command(charlm + ["--file", str(lines)])}
        if with_torch:
            script = [sys.executable, "-m", "benchmarks.score_lines", "--torch-worker", str(model), str(lines)]
            figures["torch_lines_tok_s"] = tokens / timed_command(script)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", choices=list(CONFIGS))
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--torch-worker", nargs=2, metavar=("MODEL", "LINES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_worker:
        torch_score_lines(*args.torch_worker)
        return
    print(json.dumps(measure(args.config, args.lines, not args.no_torch)))


if __name__ == "__main__":
    main()
