"""No library warning reaches the user: a diverging run's overflow is detected and rolled back
by the training loop, on every thread of the engine."""

from __future__ import annotations

import subprocess
import sys


def test_a_diverging_run_of_a_deep_stack_prints_no_warning(tmp_path, corpus_file):
    """A real process (pytest would record the warnings of an in-process run itself)."""
    result = subprocess.run([
        sys.executable, "-m", "charlm", "train", str(corpus_file), "-o", str(tmp_path / "m.safetensors"),
        "--layers", "3", "--hidden", "16", "--embed", "8", "--batch", "24", "--seq-len", "16",
        "--steps", "12", "--dropout", "0.5", "--lr", "1e9", "--optimizer", "sgd", "--clip", "0",
        "--threads", "2"], capture_output=True, text=True, timeout=300)
    assert "diverged" in result.stderr
    assert "Warning" not in result.stderr, result.stderr
