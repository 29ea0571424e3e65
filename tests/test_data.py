"""Corpus reading errors, streaming reads into token files, the train/valid split and
truncated-BPTT batches."""

import io
import os
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from charlm.config import TokenizerConfig
from charlm.data.batches import BatchStream, eval_windows, split_train_valid
from charlm.data.corpus import Corpus, compact_dtype, read_text
from charlm.errors import CorpusError, OptionError
from charlm.data.tokenizer import Tokenizer

from vocabulary import build_tokenizer

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
def test_compact_dtype_is_the_smallest_that_holds_every_id(vocab, dtype):
    ids = np.array([0, vocab - 1], dtype=np.int32)
    assert compact_dtype(vocab) == dtype
    assert ids.astype(compact_dtype(vocab)).tolist() == ids.tolist()


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


# ---- streaming: Corpus read in chunks, compact token files --------------------------------

CHAR, WORD = TokenizerConfig(level="char"), TokenizerConfig(level="word")


def in_memory(path: str, cfg: TokenizerConfig, errors: str = "strict"):
    """(tokenizer, ids) the whole-text way: build, encode, an EOS before and after."""
    text = read_text(path, errors)
    tok = build_tokenizer(text, cfg)
    ids = tok.encode(text).tolist()
    if not ids or ids[-1] != tok.eos_id:
        ids.append(tok.eos_id)
    return tok, [tok.eos_id] + ids


def streamed(path: str, cfg: TokenizerConfig, chunk: int, tmp_path, errors: str = "strict"):
    with Corpus(path, errors, chunk_bytes=chunk) as corpus:
        tok = Tokenizer.from_counts(corpus.count(cfg.level), cfg)
        ids = corpus.encode(tok, str(tmp_path))
    return tok, ids


def assert_same_as_in_memory(path, cfg, chunks, tmp_path, errors="strict"):
    want_tok, want = in_memory(path, cfg, errors)
    for chunk in chunks:
        tok, ids = streamed(path, cfg, chunk, tmp_path, errors)
        assert tok.tokens == want_tok.tokens, chunk
        assert isinstance(ids, np.memmap) and ids.dtype == compact_dtype(tok.vocab_size)
        assert ids.tolist() == want, chunk


TRICKY = (
    "\ufeffhéllo wörld\r\n"          # BOM, 2-byte characters, CRLF
    "日本語 の テキスト 🙂🙂\r"       # 3- and 4-byte characters, a lone CR
    "tabs\tand  spaces \u00a0nbsp\n"  # other whitespace between words
    "\ufeffinner bom\r\n\r\n"         # a BOM inside is dropped too
    "a b c a b c\r\n"
    "last line, no newline 42"
)


@pytest.mark.parametrize("cfg", [CHAR, WORD], ids=["char", "word"])
def test_streaming_equals_in_memory_for_every_chunk_size(tmp_path, cfg):
    data = TRICKY.encode()
    path = write(tmp_path, data)
    # Every chunk size up to the whole text: CRLF, BOM and multi-byte characters get split at
    # every possible byte, and words and lines straddle chunks.
    assert_same_as_in_memory(path, cfg, range(1, len(data) + 2), tmp_path)


def test_crlf_split_exactly_at_a_chunk_boundary(tmp_path):
    path = write(tmp_path, b"ab\r\ncd\r\n")
    with Corpus(path, chunk_bytes=3) as corpus:
        assert list(corpus.texts()) == ["ab\r", "\ncd", "\r\n"]
        assert "".join(corpus.pieces("char")) == "ab\ncd\n"
    tok, ids = streamed(path, CHAR, 3, tmp_path)
    assert ids.tolist() == [1, 2, 3, 1, 4, 5, 1]  # one EOS per line break, not two


def test_multibyte_characters_split_across_chunks(tmp_path):
    text = "é🙂日" * 5
    path = write(tmp_path, text.encode())
    for chunk in range(1, 10):
        with Corpus(path, chunk_bytes=chunk) as corpus:
            assert "".join(corpus.texts()) == text
    assert_same_as_in_memory(path, CHAR, range(1, 10), tmp_path)


def test_word_pieces_end_between_words(tmp_path):
    text = "one two three\nfour five six seven\n" * 3 + "eight\tnine\u2003ten"
    path = write(tmp_path, text.encode())
    for chunk in (1, 4, 7, 16):
        with Corpus(path, chunk_bytes=chunk) as corpus:
            pieces = list(corpus.pieces("word"))
        assert "".join(pieces) == text
        assert all(p[-1].isspace() for p in pieces[:-1])  # a word never straddles two pieces
    assert_same_as_in_memory(path, WORD, (1, 4, 7, 16, 1000), tmp_path)


@given(
    st.lists(st.sampled_from(["a", "b", "é", "🙂", " ", "\t", "\n", "\r", "\r\n", "\ufeff", "word", "<unk>"]),
             min_size=1, max_size=40),
    st.integers(1, 12),
)
def test_streaming_equals_in_memory_property(tmp_path_factory, parts, chunk):
    text = "".join(parts)
    if not text.replace("\ufeff", "", 1).strip():
        return  # an empty corpus: covered by test_streaming_empty
    tmp = tmp_path_factory.mktemp("prop")
    path = write(tmp, text.encode())
    for cfg in (CHAR, WORD):
        want_tok, want = in_memory(path, cfg)
        tok, ids = streamed(path, cfg, chunk, tmp)
        assert tok.tokens == want_tok.tokens and ids.tolist() == want


def test_invalid_utf8_offset_beyond_the_first_chunk(tmp_path):
    cases = [
        b"a" * 100 + b"\xe9 au lait",         # an invalid byte in a later chunk
        b"a" * 15 + b"\xe2\x82x" + b"b" * 20,  # a sequence cut short, straddling chunks
        b"a" * 40 + b"\xe2\x82",               # a sequence cut short by the end of the file
    ]
    for data in cases:
        path = write(tmp_path, data)
        with pytest.raises(CorpusError) as whole:
            read_text(path)
        for chunk in (1, 3, 16, 64):
            with pytest.raises(CorpusError) as info:
                streamed(path, CHAR, chunk, tmp_path)
            assert str(info.value) == str(whole.value)
    path = write(tmp_path, cases[0])
    with pytest.raises(CorpusError, match="byte 0xe9 at offset 100"):
        streamed(path, CHAR, 16, tmp_path)
    for errors in ("replace", "ignore"):
        for data in cases:
            path = write(tmp_path, data)
            assert_same_as_in_memory(path, CHAR, (1, 3, 16), tmp_path, errors)


def test_nul_byte_offset_beyond_the_first_chunk(tmp_path):
    path = write(tmp_path, b"hello\n" * 10 + b"\x00rest")
    with pytest.raises(CorpusError, match="binary file .NUL byte at offset 60"):
        streamed(path, CHAR, 7, tmp_path)


def test_streaming_empty(tmp_path):
    for data in (b"", b"  \n\t\r\n", "\ufeff \n".encode()):
        path = write(tmp_path, data)
        for chunk in (1, 2, 1000):
            with pytest.raises(CorpusError, match="empty"):
                streamed(path, CHAR, chunk, tmp_path)


def test_streaming_stdin_is_spooled_and_read_twice(monkeypatch, tmp_path):
    data = TRICKY.encode() * 3
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    want_tok, want = in_memory(write(tmp_path, data), WORD)
    spool = tmp_path / "spool"
    spool.mkdir()
    tok, ids = streamed("-", WORD, 5, spool)
    assert tok.tokens == want_tok.tokens and ids.tolist() == want
    assert list(spool.iterdir()) == []  # the copy of stdin and the token file are unlinked


def test_token_file_is_a_read_only_map_of_an_unlinked_file(tmp_path):
    path = write(tmp_path, b"abc\n" * 100)
    tok, ids = streamed(path, CHAR, 16, tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["corpus.txt"]  # nothing left behind
    assert isinstance(ids, np.memmap) and not ids.flags.writeable
    assert ids.dtype == np.uint8 and len(ids) == 401 and ids[0] == ids[-1] == tok.eos_id


@pytest.mark.parametrize("n_chars,dtype", [(10, np.uint8), (254, np.uint8), (255, np.uint16), (70000, np.uint32)])
def test_token_file_dtype_follows_the_vocabulary(tmp_path, n_chars, dtype):
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + min(n_chars, 20000))]
    chars += [chr(c) for c in range(0x20000, 0x20000 + max(0, n_chars - 20000))]
    text = "".join(chars) + "\n"
    path = write(tmp_path, text.encode())
    tok, ids = streamed(path, CHAR, 1 << 16, tmp_path)
    assert tok.vocab_size == n_chars + 2
    assert ids.dtype == dtype
    assert ids[1:-1].tolist() == tok.encode(text).tolist()[:-1]


@pytest.mark.parametrize("vocab,dtype", [(1, np.uint8), (256, np.uint8), (257, np.uint16), (65536, np.uint16), (65537, np.uint32)])
def test_compact_dtype(vocab, dtype):
    assert compact_dtype(vocab) == dtype
    with pytest.raises(OptionError, match="--max-vocab"):
        compact_dtype(2**32 + 1)


def as_memmap(tmp_path, ids: np.ndarray) -> np.memmap:
    path = tmp_path / "ids.bin"
    ids.tofile(path)
    return np.memmap(path, dtype=ids.dtype, mode="r", shape=ids.shape)


def test_batch_stream_over_a_memmap_equals_over_an_array(tmp_path):
    ids = (np.arange(10_007) * 7919 % 251).astype(np.uint8)
    mm = as_memmap(tmp_path, ids)
    a, b = BatchStream(ids, 7, 13), BatchStream(mm, 7, 13)
    assert np.shares_memory(b._streams, mm)  # a view: never materialized
    for _ in range(2 * a.windows_per_epoch + 3):
        xa, ya, sa = a.next()
        xb, yb, sb = b.next()
        assert type(xb) is np.ndarray and xb.dtype == np.int32 and xb.flags.c_contiguous
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb) and sa == sb
    for (xa, ya), (xb, yb) in zip(eval_windows(ids, 5, 11), eval_windows(mm, 5, 11), strict=True):
        assert type(xb) is np.ndarray and np.array_equal(xa, xb) and np.array_equal(ya, yb)


def test_split_of_a_memmap_gives_views(tmp_path):
    mm = as_memmap(tmp_path, np.arange(1000, dtype=np.uint16))
    train, valid = split_train_valid(mm, 0.1)
    assert np.shares_memory(train, mm) and np.shares_memory(valid, mm)
    assert len(train) == 900 and valid[0] == 900


def _rss_file_kb() -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("RssFile:")).split()[1])


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_reading_a_memmap_does_not_keep_its_pages_resident(tmp_path, monkeypatch):
    import charlm.data.batches

    monkeypatch.setattr(charlm.data.batches, "RELEASE_BYTES", 1 << 20)
    ids = (np.arange(48 << 20) % 251).astype(np.uint8)
    mm = as_memmap(tmp_path, ids)
    del ids
    before = _rss_file_kb()
    stream = BatchStream(mm, 4, 4096)
    for _ in range(stream.windows_per_epoch):
        stream.next()
    for _ in eval_windows(mm, 4, 4096):
        pass
    grown = _rss_file_kb() - before
    assert grown < 16 << 10, f"{grown} kB of the 48 MB map stayed resident"
    # Writable maps (a copy-on-write "c" map could lose writes) are never released.
    assert charlm.data.batches._read_only_mapping(np.memmap(tmp_path / "ids.bin", mode="c")) is None
    assert charlm.data.batches._read_only_mapping(mm[10:]) is not None
