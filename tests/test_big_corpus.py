"""Training on a 1 GB corpus in bounded memory (slow: run by `make test-slow`).

The corpus is read in chunks, twice, into a compact token file that training reads through a
memory map, so the peak resident memory of `charlm train` must stay under 600 MB plus the
model, whatever the corpus size. CHARLM_BIG_MB sets the corpus size (default 1024).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.slow

LIMIT_MB = 600
BIG_MB = int(os.environ.get("CHARLM_BIG_MB", "1024"))

_WORDS = (
    "the ship sailed north at dawn while the crew hauled ropes and the cook boiled salted fish "
    "wind rain fog calm gale storm sea swell heavy light sky grey clear stars moon harbour "
    "captain mate bosun sighted whales gulls island reef lighthouse anchor sails mast deck "
    "logged knots fathoms leagues bearing course west east south café über naïve señor"
).split()


def _block(seed: int, n_bytes: int) -> bytes:
    """A few MB of varied lines: words, numbers, times, coordinates, punctuation, blank lines."""
    rng = random.Random(seed)
    lines, size = [], 0
    while size < n_bytes:
        r = rng.random()
        if r < 0.03:
            line = ""
        elif r < 0.2:
            line = (f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d} lat {rng.uniform(-90, 90):.3f} "
                    f"lon {rng.uniform(-180, 180):.3f}, {rng.randint(1, 60)} knots, day {rng.randint(1, 999)}.")
        else:
            words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 16))]
            if rng.random() < 0.3:
                words.insert(rng.randrange(len(words)), str(rng.randint(0, 99999)))
            line = " ".join(words)
            line = line[0].upper() + line[1:] + rng.choice(".!?,;:")
        line += "\n"
        lines.append(line)
        size += len(line.encode())
    return "".join(lines).encode()


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.txt"
    blocks = [_block(seed, 4 << 20) for seed in range(4)]
    target = BIG_MB << 20
    written = 0
    with open(path, "wb") as f:
        while written < target:
            block = blocks[(written // len(blocks[0])) % len(blocks)][: target - written]
            f.write(block)
            written += len(block)
    return path


def _run_measured(args, cwd, timeout: float):
    """(returncode, stderr, peak RSS in MB, seconds) of a child process, from wait4's rusage."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()), daemon=True)
    reader.start()
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen
    seconds = time.perf_counter() - start
    reader.join(timeout=10)
    peak_kb = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss / 1024
    return proc.returncode, b"".join(stderr).decode(errors="replace"), peak_kb / 1024, seconds


@pytest.mark.skipif(not hasattr(os, "wait4"), reason="needs os.wait4 for the child's peak RSS")
@pytest.mark.parametrize("level", ["char", "word"])
def test_train_on_1gb_corpus_in_bounded_memory(big_corpus, tmp_path, level, capsys):
    out = tmp_path / "m.safetensors"
    args = [sys.executable, "-m", "charlm", "train", str(big_corpus), "--level", level, "--steps", "3",
            "--hidden", "32", "--embed", "16", "--valid-frac", "0.001", "-o", str(out)]
    code, stderr, peak_mb, seconds = _run_measured(args, tmp_path, timeout=1800)
    assert code == 0, stderr
    model_mb = out.stat().st_size / 2**20
    size_mb = big_corpus.stat().st_size / 2**20
    card = json.loads(subprocess.run([sys.executable, "-m", "charlm", "info", str(out), "--json"],
                                     capture_output=True, text=True, check=True).stdout)
    with capsys.disabled():
        print(f"\n[{level}] corpus {size_mb:.0f} MB: peak RSS {peak_mb:.0f} MB "
              f"(limit {LIMIT_MB} MB + model {model_mb:.1f} MB), {seconds:.1f} s, "
              f"vocabulary {card['vocabulary']}")
    assert card["training_steps"] in (1, 2, 3) and card["vocabulary"] > 50
    assert peak_mb < LIMIT_MB + model_mb
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".charlm-")]  # no temporary file left
