"""charlm against PyTorch's CPU build on the machine it runs on, side by side: `make bench`.

    python -m benchmarks.bench [--json PATH] [--configs a,b] [--no-torch] [--rounds N]

For every configuration it measures training, scoring and sampling tokens/s for both
frameworks (each measurement in its own process, the whole set in rounds: each figure is the
median of its rounds), achieved GEMM GFLOP/s of training against the machine's fp32 GEMM peak
measured in the same run (the best of the rounds), peak resident memory of training, the
cold start of `charlm score "hello"` and the first JIT compile with an empty cache. It prints a
table with charlm/PyTorch ratios and writes the same figures as JSON. Without torch installed,
charlm's figures alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .workloads import CONFIGS, matmul_flops_per_token

ROOT = Path(__file__).resolve().parent.parent
WHATS = ("train", "score", "sample")


def run_worker(framework: str, config: str, what: str, threads: int | None = None) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.workloads", framework, config, what]
    out = subprocess.run(cmd + ([str(threads)] if threads else []),
                         cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def gemm_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """fp32 GEMM peak through the BLAS charlm uses (SciPy's OpenBLAS, via Numba)."""
    code = (
        "import numpy as np, time\n"
        "from charlm.nn.kernels.linalg import matmul\n"
        f"n={n}; a=np.random.rand(n,n).astype(np.float32); b=a.copy(); o=np.empty_like(a)\n"
        "matmul(a,b,o); best=1e9\n"
        f"for _ in range({repeats}):\n"
        "    t=time.perf_counter(); matmul(a,b,o); best=min(best,time.perf_counter()-t)\n"
        "print(2*n**3/best/1e9)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def blas_info() -> list[dict]:
    code = (
        "import json, numpy as np\n"
        "from charlm.nn.kernels.linalg import matmul\n"
        "matmul(np.ones((2,2),np.float32), np.ones((2,2),np.float32))\n"
        "from threadpoolctl import threadpool_info\n"
        "print(json.dumps([{k: i.get(k) for k in ('internal_api','version','architecture','num_threads','filepath')} for i in threadpool_info()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    libs = json.loads(out.stdout) if out.returncode == 0 else []
    for lib in libs:  # the library's file name; its directory says nothing of the machine's BLAS
        lib["filepath"] = Path(lib["filepath"]).name if lib.get("filepath") else None
    return libs


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def wall(cmd: list[str], env: dict | None = None, cwd=None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=cwd)
    return time.perf_counter() - t0


def startup_times() -> dict:
    """Cold start of `charlm score "hello"` (warm JIT cache), and first compile (empty cache)."""
    charlm = [sys.executable, "-m", "charlm"]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = ROOT / "corpora" / "shipslog.txt"
        model = str(Path(tmp) / "m.safetensors")
        env = dict(os.environ, NUMBA_CACHE_DIR=str(Path(tmp) / "numba-cache"))
        first = wall(charlm + ["train", str(corpus), "-o", model, "--steps", "1", "--hidden", "32",
                               "--embed", "16", "--batch", "4", "--seq-len", "16"], env=env, cwd=tmp)
        first += wall(charlm + ["score", "-m", model, "hello"], env=env)
        warm_train = wall(charlm + ["train", str(corpus), "-o", model, "--steps", "1", "--hidden", "32",
                                    "--embed", "16", "--batch", "4", "--seq-len", "16"], env=env, cwd=tmp)
        wall(charlm + ["score", "-m", model, "hello"], env=env)
        cold = [wall(charlm + ["score", "-m", model, "hello"], env=env) for _ in range(5)]
    return {"score_hello_s": statistics.median(cold),
            "first_compile_s": first, "train_1_step_warm_s": warm_train}


def measure(configs: list[str], with_torch: bool, rounds: int) -> tuple[dict, float]:
    """Per config and workload: charlm on every core, PyTorch, and charlm on one thread
    (train and score: the thread scaling of the stream-parallel engine).

    The whole set runs `rounds` times over, each figure in its own process, so that a drift in
    the machine's speed (other tenants, clocks) reaches both frameworks alike: each figure is
    the median of its rounds, its memory the largest. The GEMM peak is measured before every
    round; the best is the machine's peak. Returns (results, peak)."""
    runs = [("charlm", None)] + ([("torch", None)] if with_torch else []) + [("charlm-1t", 1)]
    samples: dict = {}
    peaks = []
    for round_ in range(rounds):
        peaks.append(gemm_peak_gflops())
        print(f"round {round_ + 1}/{rounds}: fp32 GEMM (2048^3) {peaks[-1]:.1f} GFLOP/s", file=sys.stderr)
        for config in configs:
            for what in WHATS:
                for name, threads in runs:
                    if threads and what == "sample":
                        continue  # one stream: nothing to split
                    r = run_worker(name.split("-")[0], config, what, threads)
                    samples.setdefault(config, {}).setdefault(what, {}).setdefault(name, []).append(r)
                    print(f"  {config:12s} {what:6s} {name:9s} {r['tokens_per_s']:>12,.0f} tok/s "
                          f"{r['peak_rss_mb']:>8.0f} MB", file=sys.stderr, flush=True)
    results = {config: {what: {name: _median_run(rs) for name, rs in by_name.items()}
                        for what, by_name in by_what.items()} for config, by_what in samples.items()}
    return results, max(peaks)


def _median_run(runs: list[dict]) -> dict:
    """One figure from its rounds: the median tokens/s, the largest peak memory, every round's tokens/s."""
    return dict(runs[0], tokens_per_s=statistics.median(r["tokens_per_s"] for r in runs),
                peak_rss_mb=max(r["peak_rss_mb"] for r in runs),
                rounds_tokens_per_s=[r["tokens_per_s"] for r in runs])


def measure_score_lines(configs: list[str], with_torch: bool) -> dict:
    """`charlm score` of a file of lines through the CLI (benchmarks.score_lines), per config."""
    results = {}
    for config in configs:
        cmd = [sys.executable, "-m", "benchmarks.score_lines", config] + ([] if with_torch else ["--no-torch"])
        out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
        results[config] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {config:12s} score-lines {results[config]}", file=sys.stderr, flush=True)
    return results


def lines_table(results: dict, with_torch: bool) -> str:
    head = f"{'config':12s} {'lines tok/s':>12s} {'--file tok/s':>13s}" + (f" {'torch tok/s':>12s} {'ratio':>6s}" if with_torch else "")
    rows = [head, "-" * len(head)]
    for config, r in results.items():
        row = f"{config:12s} {r['charlm_lines_tok_s']:>12,.0f} {r['charlm_file_tok_s']:>13,.0f}"
        if with_torch:
            row += f" {r['torch_lines_tok_s']:>12,.0f} {r['charlm_lines_tok_s'] / r['torch_lines_tok_s']:>5.2f}x"
        rows.append(row)
    return "\n".join(rows)


def table(results: dict, peak: float, with_torch: bool) -> str:
    head = f"{'config':12s} {'what':6s} {'charlm tok/s':>13s}"
    if with_torch:
        head += f" {'torch tok/s':>12s} {'ratio':>6s}"
    head += f" {'1 thread':>9s} {'scaling':>7s}"
    head += f" {'GFLOP/s':>8s} {'% peak':>7s} {'charlm MB':>10s}" + (f" {'torch MB':>9s}" if with_torch else "")
    lines = [head, "-" * len(head)]
    for config, by_what in results.items():
        for what, by_fw in by_what.items():
            c = by_fw["charlm"]
            row = f"{config:12s} {what:6s} {c['tokens_per_s']:>13,.0f}"
            if with_torch:
                t = by_fw["torch"]
                row += f" {t['tokens_per_s']:>12,.0f} {c['tokens_per_s'] / t['tokens_per_s']:>5.2f}x"
            one = by_fw.get("charlm-1t")
            row += (f" {one['tokens_per_s']:>9,.0f} {c['tokens_per_s'] / one['tokens_per_s']:>6.2f}x"
                    if one else f" {'':>9s} {'':>7s}")
            if what == "train":
                gflops = c["tokens_per_s"] * matmul_flops_per_token(CONFIGS[config]) / 1e9
                row += f" {gflops:>8.1f} {100 * gflops / peak:>6.1f}%"
                row += f" {c['peak_rss_mb']:>10.0f}" + (f" {by_fw['torch']['peak_rss_mb']:>9.0f}" if with_torch else "")
            lines.append(row)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="charlm vs PyTorch on this CPU")
    parser.add_argument("--json", default=str(ROOT / "bench-results" / "bench.json"))
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="times the whole set runs; each figure is the median")
    args = parser.parse_args()
    with_torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    configs = args.configs.split(",")

    blas = blas_info()
    env = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
           "blas": blas, "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}
    print(f"CPU: {env['cpu']} ({env['cores']} cores)", file=sys.stderr)
    for lib in blas:
        print(f"BLAS: {lib['internal_api']} {lib['version']} kernel {lib['architecture']} "
              f"threads {lib['num_threads']} ({Path(lib['filepath']).name})", file=sys.stderr)
    if env["OPENBLAS_CORETYPE"]:
        print(f"warning: OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']} is set: it forces another OpenBLAS "
              "kernel than the one OpenBLAS picks for this CPU, so the figures may not be typical",
              file=sys.stderr)
    if not with_torch:
        print("torch not installed: charlm's figures only (pip install torch==2.13.0)", file=sys.stderr)

    results, peak = measure(configs, with_torch, args.rounds)
    print(f"fp32 GEMM peak (2048^3, best of {args.rounds}): {peak:.1f} GFLOP/s", file=sys.stderr)
    lines = measure_score_lines(configs, with_torch)
    startup = startup_times()
    if with_torch:
        import torch
        env["torch"] = torch.__version__
    report = {"environment": env, "gemm_peak_gflops": peak, "results": results,
              "score_lines": lines, "startup": startup}
    print(table(results, peak, with_torch))
    print("\ncharlm score of a file of lines (the whole command, start-up included):")
    print(lines_table(lines, with_torch))
    print(f"charlm score \"hello\" (warm JIT cache): {startup['score_hello_s']:.2f} s; "
          f"first compile (empty cache: train 1 step + score): {startup['first_compile_s']:.1f} s")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"written {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
