"""Corpus reading errors, the train/valid split and truncated-BPTT batches."""

import io
import os
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from charlm.data import BatchStream, compact_ids, eval_windows, read_text, split_train_valid
from charlm.errors import CorpusError, OptionError

# ---- read_text ----------------------------------------------------------------------------


def write(tmp_path, data: bytes, name="corpus.txt") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_reads_utf8_and_drops_bom(tmp_path):
    path = write(tmp_path, "\ufeffhéllo\r\nworld\n".encode())
    assert read_text(path) == "héllo\r\nworld\n"


def test_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="no such file.*nope.txt"):
        read_text(str(tmp_path / "nope.txt"))


def test_directory(tmp_path):
    with pytest.raises(CorpusError, match="is a directory"):
        read_text(str(tmp_path))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable(tmp_path):
    path = write(tmp_path, b"hello")
    os.chmod(path, 0)
    with pytest.raises(CorpusError, match="permission denied"):
        read_text(path)


@pytest.mark.parametrize("data", [b"", b"  \n\t\r\n", "\ufeff \n".encode()])
def test_empty(tmp_path, data):
    with pytest.raises(CorpusError, match="empty"):
        read_text(write(tmp_path, data))


def test_invalid_utf8_names_offset_and_fix(tmp_path):
    path = write(tmp_path, b"caf\xe9 au lait")
    with pytest.raises(CorpusError) as info:
        read_text(path)
    message = str(info.value)
    assert "offset 3" in message and "--encoding-errors replace" in message and path in message
    assert "\n" not in message
    assert read_text(path, encoding_errors="replace") == "caf\ufffd au lait"


def test_binary(tmp_path):
    with pytest.raises(CorpusError, match="binary"):
        read_text(write(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"))
    with pytest.raises(CorpusError, match="binary"):
        read_text(write(tmp_path, "hello".encode("utf-16")))


def test_bad_encoding_errors_option(tmp_path):
    with pytest.raises(OptionError):
        read_text(write(tmp_path, b"hi"), encoding_errors="bogus")


def test_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("héllo\n".encode())))
    assert read_text("-") == "héllo\n"


# ---- split / compact ----------------------------------------------------------------------


def test_split_train_valid():
    ids = np.arange(100)
    train, valid = split_train_valid(ids, 0.1)
    assert train.tolist() == list(range(90)) and valid.tolist() == list(range(90, 100))
    train, valid = split_train_valid(ids, 0.0)
    assert len(train) == 100 and len(valid) == 0
    with pytest.raises(OptionError):
        split_train_valid(ids, 1.0)


@pytest.mark.parametrize("vocab,dtype", [(2, np.uint8), (256, np.uint8), (257, np.uint16), (65536, np.uint16), (65537, np.uint32)])
def test_compact_ids(vocab, dtype):
    ids = np.array([0, vocab - 1], dtype=np.int32)
    out = compact_ids(ids, vocab)
    assert out.dtype == dtype and out.tolist() == ids.tolist()


# ---- BatchStream --------------------------------------------------------------------------


def collect_epoch(stream: BatchStream):
    xs, ys = [], []
    for w in range(stream.windows_per_epoch):
        x, y, starts = stream.next()
        assert starts == (w == 0)
        xs.append(x)
        ys.append(y)
    return xs, ys


@given(n=st.integers(2, 400), batch=st.integers(1, 9), seq_len=st.integers(1, 12))
def test_windows_cover_each_stream(n, batch, seq_len):
    ids = np.arange(n, dtype=np.uint16) * 3 % 1000  # distinct-ish values, compact dtype
    if n // batch < 2:
        with pytest.raises(CorpusError):
            BatchStream(ids, batch, seq_len)
        return
    stream = BatchStream(ids, batch, seq_len)
    length = n // batch
    streams = ids[: batch * length].reshape(batch, length)
    xs, ys = collect_epoch(stream)
    assert stream.epoch == 1 and stream.position == 0
    for x, y in zip(xs, ys):
        assert x.dtype == np.int32 and y.dtype == np.int32 and x.shape == y.shape
        assert x.shape[0] == batch and 1 <= x.shape[1] <= seq_len
        assert x.flags.c_contiguous and y.flags.c_contiguous
    assert all(x.shape[1] == seq_len for x in xs[:-1])
    assert np.array_equal(np.concatenate(xs, axis=1), streams[:, :-1])
    assert np.array_equal(np.concatenate(ys, axis=1), streams[:, 1:])
    assert sum(y.size for y in ys) == stream.tokens_per_epoch
    # The next epoch starts over at the beginning.
    x, _, starts = stream.next()
    assert starts and np.array_equal(x, xs[0])


@given(n=st.integers(40, 300), batch=st.integers(1, 5), seq_len=st.integers(1, 9), steps=st.integers(0, 80))
def test_resume_gives_the_same_windows(n, batch, seq_len, steps):
    ids = np.arange(n)
    a = BatchStream(ids, batch, seq_len)
    for _ in range(steps):
        a.next()
    b = BatchStream(ids, batch, seq_len)
    b.load_state(a.state())
    assert b.state() == a.state()
    for _ in range(a.windows_per_epoch + 2):
        xa, ya, sa = a.next()
        xb, yb, sb = b.next()
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb) and sa == sb


def test_resume_with_another_layout_keeps_the_fraction():
    a = BatchStream(np.arange(1000), 4, 10)  # 25 windows per epoch
    for _ in range(30):
        a.next()
    b = BatchStream(np.arange(1000), 2, 10)  # 50 windows per epoch
    b.load_state(a.state())
    assert b.epoch == 1 and b.position == 10
    assert b.epochs_done == pytest.approx(a.epochs_done)


def test_too_small_corpus_message():
    with pytest.raises(CorpusError) as info:
        BatchStream(np.arange(10), 32, 100)
    message = str(info.value)
    for piece in ("10 tokens", "--batch 32", "--seq-len 100", "64", "--batch 5"):
        assert piece in message
    assert "\n" not in message


def test_bad_sizes():
    with pytest.raises(OptionError):
        BatchStream(np.arange(100), 0, 10)
    with pytest.raises(OptionError):
        BatchStream(np.arange(100), 2, 0)


@given(n=st.integers(0, 300), batch=st.integers(1, 9), seq_len=st.integers(1, 12))
def test_eval_windows_cover_everything_but_the_remainder(n, batch, seq_len):
    ids = np.arange(n)
    windows = list(eval_windows(ids, batch, seq_len))
    if n < 2:
        assert windows == []
        return
    b = min(batch, n // 2)
    length = n // b
    streams = ids[: b * length].reshape(b, length)
    assert np.array_equal(np.concatenate([x for x, _ in windows], axis=1), streams[:, :-1])
    assert np.array_equal(np.concatenate([y for _, y in windows], axis=1), streams[:, 1:])
    assert n - sum(y.size for _, y in windows) == n % b + b  # remainder + each stream's first token
