"""Shared fixtures for the command-line tests: a small generated corpus and a tiny trained model."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

# Tiny shapes: every training run in the CLI tests takes well under a second once the Numba
# kernels are compiled (cached on disk after the first run).
TINY = ["--hidden", "16", "--embed", "8", "--layers", "1", "--batch", "4", "--seq-len", "16"]

_WORDS = (
    "the quick brown fox jumps over a lazy dog while seven wizards quietly hex jolly "
    "boxing kings; rain falls on green hills and rivers run to the sea, 42 times? yes!"
).split()


def make_corpus(n_chars: int = 20_000, seed: int = 0) -> str:
    """A few hundred lines of varied ASCII text (letters, digits, punctuation, blank lines)."""
    rng = random.Random(seed)
    lines: list[str] = []
    size = 0
    while size < n_chars:
        if rng.random() < 0.03:
            line = ""
        else:
            line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 12)))
            line = line[0].upper() + line[1:] + rng.choice(".!?,;:")
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines) + "\n"


SHARED_CORPORA_ENVVAR = "CHARLM_SHARED_CORPORA"


@pytest.fixture(scope="session")
def shared_corpus():
    """shared_corpus("tinyshakespeare/input.txt") -> the path of a real corpus kept outside the
    repository: under $CHARLM_SHARED_CORPORA, by default ../shared/corpora beside the checkout.
    The test is skipped when the file is absent."""
    import os

    root = Path(os.environ.get(SHARED_CORPORA_ENVVAR)
                or Path(__file__).resolve().parent.parent.parent / "shared" / "corpora")

    def find(name: str) -> Path:
        path = root / name
        if not path.is_file():
            pytest.skip(f"{name} not found under {root} (set {SHARED_CORPORA_ENVVAR})")
        return path

    return find


@pytest.fixture(scope="session")
def corpus_text() -> str:
    return make_corpus()


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """A fresh working directory, with no model named in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHARLM_MODEL", raising=False)
    return tmp_path


@pytest.fixture
def corpus(cwd, corpus_text):
    """The generated corpus as ./corpus.txt in that directory."""
    path = cwd / "corpus.txt"
    path.write_text(corpus_text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory, corpus_text) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(corpus_text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, corpus_file) -> Path:
    """A tiny LSTM trained for a few steps through the CLI (trained once for the whole test run)."""
    from typer.testing import CliRunner

    from charlm.cli.app import app

    out = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    result = CliRunner().invoke(
        app, ["train", str(corpus_file), "-o", str(out), *TINY, "--steps", "20", "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    assert out.exists()
    return out


@pytest.fixture(params=["whole", "chunks-of-1-on-2-threads", "blocks-of-1-stream-on-3-threads"])
def chunking(request, monkeypatch):
    """Run the stacked layers as one block and one time chunk, as a wavefront of 1-step chunks
    on two threads, or with every stream a block of its own (charlm.nn.stack): every result must
    hold for all three."""
    import charlm.nn.stack as stack

    if request.param == "whole":
        monkeypatch.setattr(stack, "MIN_CHUNK", 10**9)
        monkeypatch.setattr(stack, "BLOCK_STREAMS", 10**9)
    elif request.param.startswith("chunks"):
        monkeypatch.setattr(stack, "MIN_CHUNK", 1)
        monkeypatch.setattr(stack, "TARGET_CHUNKS", 10**9)
        monkeypatch.setattr(stack, "_threads", 2)
    else:
        monkeypatch.setattr(stack, "BLOCK_STREAMS", 1)
        monkeypatch.setattr(stack, "_threads", 3)
    return request.param
