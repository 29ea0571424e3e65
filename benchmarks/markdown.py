"""The tables of a `make bench` run as Markdown, for docs/performance.md:

    python -m benchmarks.markdown bench-results/bench.json
"""

from __future__ import annotations

import json
import sys

from .workloads import CONFIGS, matmul_flops_per_token


def shape(name: str) -> str:
    s = CONFIGS[name]
    vocab = f", V {s.V:,}" if s.V > 1000 else ""
    return f"{name} ({s.cell.upper()} {s.L}x{s.H}{vocab}, B{s.B} T{s.T})"


def main_table(report: dict) -> str:
    peak = report["gemm_peak_gflops"]
    rows = ["| config | what | charlm tok/s | PyTorch tok/s | ratio | charlm, 1 thread | threads' gain | GFLOP/s (% peak) | charlm MB | PyTorch MB |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for config, by_what in report["results"].items():
        for i, (what, by) in enumerate(by_what.items()):
            c, t, one = by["charlm"], by.get("torch"), by.get("charlm-1t")
            cells = [shape(config) if i == 0 else "", what, f"{c['tokens_per_s']:,.0f}"]
            cells += [f"{t['tokens_per_s']:,.0f}", f"{c['tokens_per_s'] / t['tokens_per_s']:.2f}x"] if t else ["", ""]
            cells += [f"{one['tokens_per_s']:,.0f}", f"{c['tokens_per_s'] / one['tokens_per_s']:.2f}x"] if one else ["", ""]
            if what == "train":
                gflops = c["tokens_per_s"] * matmul_flops_per_token(CONFIGS[config]) / 1e9
                cells += [f"{gflops:.1f} ({100 * gflops / peak:.1f}%)", f"{c['peak_rss_mb']:.0f}",
                          f"{t['peak_rss_mb']:.0f}" if t else ""]
            else:
                cells += ["", "", ""]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def lines_table(report: dict) -> str:
    rows = ["| config | charlm score < lines | charlm score --file | PyTorch, padded batches of 64 | ratio |",
            "|---|---:|---:|---:|---:|"]
    for config, r in report.get("score_lines", {}).items():
        torch = r.get("torch_lines_tok_s")
        rows.append(f"| {shape(config)} | {r['charlm_lines_tok_s']:,.0f} | {r['charlm_file_tok_s']:,.0f} | "
                    + (f"{torch:,.0f} | {r['charlm_lines_tok_s'] / torch:.2f}x |" if torch else " | |"))
    return "\n".join(rows)


def main() -> None:
    report = json.loads(open(sys.argv[1]).read())
    print(main_table(report))
    print()
    print(lines_table(report))


if __name__ == "__main__":
    main()
