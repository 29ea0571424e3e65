"""Odd corpora: one enormous line, a byte-order mark with CRLF line ends, an unreadable file."""

import pytest
from typer.testing import CliRunner

from charlm.io.checkpoint import load_model
from charlm.cli.app import app
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


def test_unreadable_corpus_is_a_one_line_error_even_as_root(tmp_path, monkeypatch):
    # chmod 0 does not stop root (CI runs as root), so the permission error is simulated.
    import builtins

    corpus = tmp_path / "secret.txt"
    corpus.write_text("some text\n" * 100)
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if str(file) == str(corpus):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(app, ["train", str(corpus), "-o", str(out), *TINY, "--steps", "1"])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "permission denied" in result.stderr.lower() and "Traceback" not in result.output
    assert not out.exists()
