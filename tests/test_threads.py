"""--threads: the same model file, byte for byte, whatever the thread count."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import charlm.nn.stack as stack
from charlm.cli.app import app


def _tensors(path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


@pytest.fixture(autouse=True)
def _default_threads():
    yield
    stack.set_threads(None)  # the CLI sets the count for the process: give the default back


@pytest.mark.parametrize("shape", [
    ["--cell", "lstm", "--layers", "1", "--batch", "32", "--dropout", "0.2"],
    ["--cell", "gru", "--layers", "2", "--batch", "48", "--dropout", "0.3"],
])
def test_model_files_are_identical_for_any_thread_count(tmp_path, corpus_file, shape):
    files = {}
    for threads in (1, 2, 3):
        out = tmp_path / f"t{threads}.safetensors"
        result = CliRunner().invoke(app, [
            "train", str(corpus_file), "-o", str(out), "--hidden", "24", "--embed", "8",
            "--seq-len", "20", "--steps", "6", "--valid-every", "3", "--seed", "3",
            "--threads", str(threads), *shape])
        assert result.exit_code == 0, result.output
        assert f"{threads} thread" in result.output
        files[threads] = _tensors(out)
    assert len(stack.stream_blocks(int(shape[5]), int(shape[3]))) > 1  # the streams did split
    for threads in (2, 3):
        assert files[threads].keys() == files[1].keys()
        for name, tensor in files[1].items():
            assert tensor.tobytes() == files[threads][name].tobytes(), (threads, name)


def test_threads_from_the_environment_and_refused_when_not_positive(tiny_model, monkeypatch):
    monkeypatch.setenv("CHARLM_THREADS", "2")
    result = CliRunner().invoke(app, ["score", "-m", str(tiny_model), "--quiet", "abc"])
    assert result.exit_code == 0, result.output
    assert stack.threads() == 2
    result = CliRunner().invoke(app, ["score", "-m", str(tiny_model), "--threads", "0", "abc"])
    assert result.exit_code == 2
    assert "--threads" in result.output
