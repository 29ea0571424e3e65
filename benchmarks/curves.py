"""Validation curves of training runs: a markdown table and an SVG picture, from metrics files.

    python benchmarks/curves.py --svg docs/curve.svg --target 1.5 "3 min=run/charlm.metrics.jsonl"

Each RUN is LABEL=PATH of a `*.metrics.jsonl` written by `charlm train`. The table (stdout)
lists every validation: minutes, step, loss, perplexity; the SVG plots loss against minutes,
one line per run, with the target as a dashed line. No plotting library: the SVG is written
by hand, so docs can be regenerated anywhere.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 640, 360, 60, 20, 20, 45


def read_validations(path: str) -> list[dict]:
    """The 'validated' events of a metrics file (a resumed run appends: elapsed keeps growing)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event.get("event") == "validated":
            out.append(event)
    return out


def table(runs: dict[str, list[dict]]) -> str:
    rows = ["| run | minutes | step | loss | ppl |", "|---|---|---|---|---|"]
    for label, events in runs.items():
        for e in events:
            rows.append(f"| {label} | {e['elapsed'] / 60:.2f} | {e['step']} | "
                        f"{e['loss']:.4f} | {e['ppl']:.2f} |")
    return "\n".join(rows)


def _ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    step = 10 ** math.floor(math.log10(max(hi - lo, 1e-9) / n))
    for mult in (1, 2, 5, 10):
        if (hi - lo) / (step * mult) <= n:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def svg(runs: dict[str, list[dict]], metric: str, target: float | None, title: str) -> str:
    points = [(e["elapsed"] / 60, e[metric]) for events in runs.values() for e in events]
    x_hi = max(p[0] for p in points) * 1.03
    ys = [p[1] for p in points] + ([target] if target is not None else [])
    y_lo, y_hi = min(ys), max(ys)
    margin = (y_hi - y_lo) * 0.05 or 0.1
    y_lo, y_hi = y_lo - margin, y_hi + margin

    def sx(x: float) -> float:
        return PAD_L + x / x_hi * (W - PAD_L - PAD_R)

    def sy(y: float) -> float:
        return PAD_T + (y_hi - y) / (y_hi - y_lo) * (H - PAD_T - PAD_B)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="14" text-anchor="middle">{title}</text>']
    for x in _ticks(0, x_hi):
        out.append(f'<line x1="{sx(x):.1f}" y1="{PAD_T}" x2="{sx(x):.1f}" y2="{H - PAD_B}" stroke="#eee"/>')
        out.append(f'<text x="{sx(x):.1f}" y="{H - PAD_B + 14}" text-anchor="middle">{x:g}</text>')
    for y in _ticks(y_lo, y_hi):
        out.append(f'<line x1="{PAD_L}" y1="{sy(y):.1f}" x2="{W - PAD_R}" y2="{sy(y):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{PAD_L - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{y:.2f}</text>')
    out.append(f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle">minutes</text>')
    out.append(f'<text x="14" y="{H / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {H / 2})">validation {metric}</text>')
    if target is not None:
        out.append(f'<line x1="{PAD_L}" y1="{sy(target):.1f}" x2="{W - PAD_R}" y2="{sy(target):.1f}" '
                   f'stroke="black" stroke-dasharray="5,4"/>')
        out.append(f'<text x="{W - PAD_R - 4}" y="{sy(target) - 4:.1f}" text-anchor="end">target {target:g}</text>')
    for i, (label, events) in enumerate(runs.items()):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{sx(e['elapsed'] / 60):.1f},{sy(e[metric]):.1f}" for e in events)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for e in events:
            out.append(f'<circle cx="{sx(e["elapsed"] / 60):.1f}" cy="{sy(e[metric]):.1f}" r="2.5" fill="{color}"/>')
        out.append(f'<text x="{W - PAD_R - 4}" y="{PAD_T + 16 + 14 * i}" text-anchor="end" fill="{color}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="LABEL=PATH to a *.metrics.jsonl")
    ap.add_argument("--svg", help="write the picture here")
    ap.add_argument("--metric", default="loss", choices=("loss", "ppl", "bpc"))
    ap.add_argument("--target", type=float)
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    runs = {}
    for item in args.runs:
        label, _, path = item.partition("=")
        runs[label] = read_validations(path)
    print(table(runs))
    if args.svg:
        Path(args.svg).write_text(svg(runs, args.metric, args.target, args.title), encoding="utf-8")


if __name__ == "__main__":
    main()
