"""Training over MPI on one host: `make bench-mpi`.

    python -m benchmarks.mpi [--configs char-medium,word-small] [--ranks 2]

For each configuration: training tokens/s of N ranks x 1 thread (`mpiexec -n N`) against one
process on N threads, the same batch, and the share of a step the ranks spend summing their
gradients (charlm.train.distributed's rank-ordered sum; bytes sent per rank per step =
2 (N-1)/N x 4 x parameters). Each figure from its own processes; prints one JSON object per
configuration and a table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .workloads import CONFIGS, MIN_SECONDS, WARMUP

ROOT = Path(__file__).resolve().parent.parent


def worker(config: str) -> None:
    """One rank (or the one process): timed training steps; the root prints the figures."""
    from charlm.config import ModelConfig
    from charlm.train.distributed import world
    from charlm.nn.model import Model
    from charlm.train.optim import Optimizer, clip_gradients
    from charlm.nn.stack import set_threads, threads_from_env

    set_threads(threads_from_env())  # the engine's threads and BLAS's
    s = CONFIGS[config]
    ranks = world()
    model = Model.create(ModelConfig(cell=s.cell, vocab_size=s.V, embed=s.E, hidden=s.H, layers=s.L,
                                     dropout=0.0))
    rng = np.random.default_rng(0)
    x = rng.integers(0, s.V, (s.T, s.B)).astype(np.int32)
    y = rng.integers(0, s.V, (s.T, s.B)).astype(np.int32)
    s0, s1 = ranks.streams(s.B)
    state = model.zero_state(s1 - s0)
    opt = Optimizer("adam", 2e-3)
    comm = [0.0]

    def step() -> None:
        _, grads, _ = model.loss_and_grads(x, y, state, streams=(s0, s1))
        t0 = time.perf_counter()
        ranks.sum_grads_in_order(grads)
        comm[0] += time.perf_counter() - t0
        clip_gradients(grads, 5.0, "norm")
        opt.step(model.params, grads)

    for _ in range(WARMUP):
        step()
    ranks.barrier()
    comm[0], steps, start = 0.0, 0, time.perf_counter()
    while True:
        step()
        steps += 1
        done = ranks.agree(np.array([float(time.perf_counter() - start >= MIN_SECONDS and steps >= 3)]))
        if done[0]:
            break
    seconds = time.perf_counter() - start
    if ranks.is_root:
        print(json.dumps({"config": config, "ranks": ranks.size, "tokens_per_s": steps * s.B * s.T / seconds,
                          "comm_share": comm[0] / seconds, "parameters": model.num_parameters(),
                          "steps": steps}))


def run(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="char-medium,word-small")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("mpiexec not found: pip install 'charlm[mpi]'")
    me = [sys.executable, "-m", "benchmarks.mpi", "--worker"]
    n = args.ranks
    print(f"{'config':12s} {'1 process x ' + str(n) + ' threads':>24s} {str(n) + ' ranks x 1 thread':>20s} "
          f"{'ratio':>6s} {'comm share':>10s}")
    for config in args.configs.split(","):
        env_threads = ["env", f"CHARLM_THREADS={n}"]
        one = run(env_threads + me + [config])
        many = run([mpiexec, "-n", str(n), "env", "CHARLM_THREADS=1"] + me + [config])
        print(json.dumps({"one_process": one, "ranks": many}), file=sys.stderr)
        print(f"{config:12s} {one['tokens_per_s']:>20,.0f} tok/s {many['tokens_per_s']:>14,.0f} tok/s "
              f"{many['tokens_per_s'] / one['tokens_per_s']:>5.2f}x {100 * many['comm_share']:>9.1f}%")


if __name__ == "__main__":
    main()
