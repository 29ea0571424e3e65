"""Corpora that are valid but odd: one enormous line, a byte-order mark with CRLF line ends."""

import pytest
from typer.testing import CliRunner

from charlm.checkpoint import load_model
from charlm.cli import app
from conftest import TINY

FIFTY_MB = 50 * 1024 * 1024


@pytest.mark.parametrize("level", ["char", "word"])
def test_one_50_mb_line_trains(tmp_path, level):
    corpus = tmp_path / "one-line.txt"
    unit = b"the cat sat on the mat and looked at 42 birds; "
    corpus.write_bytes(unit * (FIFTY_MB // len(unit)))  # no line break anywhere
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(app, ["train", str(corpus), "-o", str(out), "--level", level, *TINY,
                                      "--steps", "2", "--valid-every", "2"])
    assert result.exit_code == 0, result.output
    model, tokenizer, _ = load_model(out)
    assert tokenizer.level == level
    assert tokenizer.vocab_size > 2


def test_bom_and_crlf_are_accepted_and_never_become_tokens(tmp_path):
    corpus = tmp_path / "windows.txt"
    lines = ["First line, with words.", "Second line!", "", "Third: the end."] * 200
    corpus.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(app, ["train", str(corpus), "-o", str(out), *TINY, "--steps", "2"])
    assert result.exit_code == 0, result.output
    _, tokenizer, _ = load_model(out)
    assert "\r" not in tokenizer.tokens and "\ufeff" not in tokenizer.tokens
    assert set("".join(lines)) <= set(tokenizer.tokens)
