"""PyTorch's reference recipe on tiny-shakespeare for the same time budget, on the same CPU.

    python -m benchmarks.torch_char_baseline CORPUS --time 180 --out torch.metrics.jsonl

PyTorch's reference recipe (char-rnn's): a 2x512 LSTM, embedding 64, dropout 0.2 (embedding,
between layers, before the decoder), Adam 2e-3, batch 32 x 100 with the state carried between
windows (truncated BPTT), global-norm clip 5; the last 10% of the characters for validation.
It writes charlm's metrics format (one "validated" line per validation, elapsed seconds
counting the validations), so benchmarks/curves.py draws both. Needs torch (not a charlm
dependency).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np


def main() -> None:
    import torch
    from torch import nn

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus")
    ap.add_argument("--time", type=float, required=True, help="seconds")
    ap.add_argument("--valid-every", type=int, default=60)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    text = open(args.corpus, encoding="utf-8").read()
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    data = np.fromiter((lookup[c] for c in text), dtype=np.int64, count=len(text))
    split = int(len(data) * 0.9)
    train, valid = torch.from_numpy(data[:split]), torch.from_numpy(data[split:])
    V, B, T = len(chars), 32, 100

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(V, 64)
            self.rnn = nn.LSTM(64, 512, 2, dropout=0.2)
            self.decoder = nn.Linear(512, V)
            self.drop = nn.Dropout(0.2)

        def forward(self, x, state):
            out, state = self.rnn(self.drop(self.embedding(x)), state)
            return self.decoder(self.drop(out)), state

    def streams(seq: torch.Tensor, batch: int) -> torch.Tensor:
        n = len(seq) // batch
        return seq[: n * batch].view(batch, n).t().contiguous()  # (n, batch), time-major

    def zero_state(batch: int):
        return (torch.zeros(2, batch, 512), torch.zeros(2, batch, 512))

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    tr, va = streams(train, B), streams(valid, B)
    out = open(args.out, "w", encoding="utf-8")

    def validate() -> float:
        net.eval()
        total, count, state = 0.0, 0, zero_state(B)
        with torch.no_grad():
            for i in range(0, len(va) - 1, T):
                x, y = va[i : i + T], va[i + 1 : i + 1 + T]
                x = x[: len(y)]
                logits, state = net(x, state)
                total += nn.functional.cross_entropy(logits.view(-1, V), y.reshape(-1), reduction="sum").item()
                count += y.numel()
        net.train()
        return total / count

    start, step, pos, state = time.perf_counter(), 0, 0, zero_state(B)
    while time.perf_counter() - start < args.time:
        if pos + T + 1 > len(tr):
            pos, state = 0, zero_state(B)
        x, y = tr[pos : pos + T], tr[pos + 1 : pos + 1 + T]
        pos += T
        state = tuple(s.detach() for s in state)
        logits, state = net(x, state)
        loss = nn.functional.cross_entropy(logits.view(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        step += 1
        if step % args.valid_every == 0:
            v = validate()
            row = {"event": "validated", "step": step, "loss": v, "ppl": math.exp(v),
                   "bpc": v / math.log(2), "elapsed": time.perf_counter() - start}
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(json.dumps(row), flush=True)
    v = validate()
    row = {"event": "validated", "step": step, "loss": v, "ppl": math.exp(v), "bpc": v / math.log(2),
           "elapsed": time.perf_counter() - start}
    out.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
