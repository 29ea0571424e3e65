"""Reading a corpus and cutting token ids into truncated-BPTT batches."""

from __future__ import annotations

import atexit
import codecs
import mmap
import os
import re
import sys
import tempfile
from collections.abc import Iterator

import numpy as np

from .errors import CorpusError, OptionError
from .tokenizer import BOM, TokenCounts, Tokenizer, normalize

ENCODING_ERRORS = ("strict", "replace", "ignore")
STDIN = "-"


# ---- reading ------------------------------------------------------------------------------

CHUNK_BYTES = 4 << 20  # bytes read at a time: bounds the memory of every pass over a corpus
_LAST_SPACE = re.compile(r"\s\S*\Z")  # the last whitespace character (str.split's notion)


def read_text(path: str, encoding_errors: str = "strict") -> str:
    """The UTF-8 text of `path` ("-" is stdin), without a leading BOM (for small texts).

    encoding_errors="replace" turns invalid bytes into U+FFFD ("ignore" drops them).
    """
    with Corpus(path, encoding_errors) as corpus:
        return "".join(corpus.texts())


class Corpus:
    """A UTF-8 corpus read in chunks of `chunk_bytes`, pass after pass, in bounded memory.

    `path` "-" is stdin: its bytes are first copied, chunk by chunk, to an unlinked temporary
    file in `spool_dir` (default: the system's), since a pipe cannot be read twice. The same
    checks as for a whole text (missing, directory, unreadable, NUL bytes, invalid UTF-8 with
    the byte offset, empty) raise CorpusError while reading.
    """

    def __init__(self, path: str, encoding_errors: str = "strict", *, spool_dir: str | None = None,
                 chunk_bytes: int = CHUNK_BYTES):
        if encoding_errors not in ENCODING_ERRORS:
            raise OptionError(
                f"--encoding-errors must be one of {', '.join(ENCODING_ERRORS)} (got {encoding_errors!r})")
        self.path, self.errors, self.chunk_bytes = str(path), encoding_errors, max(1, int(chunk_bytes))
        self.name = "standard input" if self.path == STDIN else self.path
        self._file = _spool(sys.stdin.buffer, spool_dir, self.chunk_bytes) if self.path == STDIN else _open(self.path)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Corpus:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- passes -------------------------------------------------------------------------

    def texts(self) -> Iterator[str]:
        """The decoded text from the start, piece by piece, without the leading BOM; raises
        CorpusError at the first NUL or invalid byte, or at the end if it is all whitespace."""
        f, name = self._file, self.name
        f.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")(self.errors)
        offset = 0  # bytes read so far
        at_start, content = True, False
        while True:
            data = _read(f, self.chunk_bytes, name)
            nul = data.find(b"\x00")
            if nul >= 0:
                raise CorpusError(_binary_message(name, offset + nul))
            pending = len(decoder.getstate()[0])  # undecoded bytes carried from the last chunk
            try:
                text = decoder.decode(data, final=not data)
            except UnicodeDecodeError as e:
                raise CorpusError(_utf8_message(name, e.object[e.start], offset - pending + e.start)) from None
            offset += len(data)
            if at_start and text:
                at_start = False
                if text.startswith(BOM):
                    text = text[1:]
            if text:
                content = content or not text.isspace()
                yield text
            if not data:
                break
        if not content:
            raise CorpusError(f"{name} is empty or only whitespace: pass a text file with some content")

    def pieces(self, level: str) -> Iterator[str]:
        """The normalized text (tokenizer.normalize) in pieces that tokenize independently:
        concatenating the tokens of the pieces gives the tokens of the whole text. A \\r at the
        end of a piece waits for the next one (it may start with \\n); at word level a piece
        ends at a whitespace character (a word or a line may straddle two chunks)."""
        carry = ""
        for text in self.texts():
            text = (carry + text).replace(BOM, "")
            hold = "\r" if text.endswith("\r") else ""
            text = text[: len(text) - len(hold)].replace("\r\n", "\n").replace("\r", "\n")
            cut = len(text)
            if level == "word":
                cut = max(text.rfind("\n"), text.rfind(" "))
                if cut < 0:
                    match = _LAST_SPACE.search(text)
                    cut = match.start() if match else -1
                cut += 1
            carry = text[cut:] + hold
            if cut:
                yield text[:cut]
        if carry:
            yield normalize(carry)

    def count(self, level: str) -> TokenCounts:
        """Pass 1: the token counts that Tokenizer.from_counts turns into a vocabulary."""
        counts = TokenCounts(level)
        for piece in self.pieces(level):
            counts.update(piece)
        return counts

    def encode(self, tokenizer: Tokenizer, directory: str | None = None) -> np.ndarray:
        """Pass 2: the token ids, framed as a corpus that starts after an EOS and ends with
        one, in a read-only memory map of a compact token file (compact_dtype).

        The file is created in `directory` (falling back to the system's temporary directory)
        and unlinked at once: the map keeps it alive, and its disk space is freed when the
        array is garbage collected or the process ends, however it ends.
        """
        dtype = compact_dtype(tokenizer.vocab_size)
        eos = tokenizer.eos_id
        f, where = _scratch_file(directory, "tokens")
        with f:
            n, last = 0, None
            _write(f, np.array([eos], dtype=dtype), where)  # the EOS before the first line
            for piece in self.pieces(tokenizer.level):
                ids = tokenizer.encode(piece)
                if len(ids):
                    _write(f, ids.astype(dtype), where)
                    n, last = n + len(ids), int(ids[-1])
                del ids
            if n == 0 or last != eos:
                _write(f, np.array([eos], dtype=dtype), where)
                n += 1
            _flush(f, where)
            return np.memmap(f, dtype=dtype, mode="r", shape=(n + 1,))  # the map outlives f


def _open(path: str):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise CorpusError(f"no such file: {path}: check the path of the corpus") from None
    except IsADirectoryError:
        raise CorpusError(f"{path} is a directory: pass a text file (e.g. {path}/input.txt)") from None
    except PermissionError:
        raise CorpusError(f"cannot read {path}: permission denied: make it readable (chmod +r) or copy it") from None
    except OSError as e:
        raise CorpusError(f"cannot read {path}: {e.strerror or e}: check the file and try again") from None


def _read(f, size: int, name: str) -> bytes:
    try:
        return f.read(size)
    except OSError as e:
        raise CorpusError(f"cannot read {name}: {e.strerror or e}: check the file and try again") from None


def _binary_message(name: str, offset: int) -> str:
    return (f"{name} looks like a binary file (NUL byte at offset {offset}): pass a UTF-8 text file "
            "(convert UTF-16 text with e.g. `iconv -f utf-16 -t utf-8`)")


def _utf8_message(name: str, byte: int, offset: int) -> str:
    return (f"{name} is not valid UTF-8 (byte 0x{byte:02x} at offset {offset}): convert it to "
            "UTF-8 (e.g. `iconv -f latin1 -t utf-8`) or pass --encoding-errors replace")


def _scratch_file(directory: str | None, kind: str):
    """(binary file for writing and reading, its directory): an anonymous temporary file,
    unlinked as soon as it is created, so that nothing is left behind however the run ends."""
    for d in ([directory] if directory else []) + [None]:
        try:
            fd, path = tempfile.mkstemp(prefix=f".charlm-{kind}-", suffix=".tmp", dir=d)
        except OSError:
            continue
        _unlink(path)
        return os.fdopen(fd, "w+b"), os.path.dirname(path)
    raise CorpusError(f"cannot create a temporary file in {directory or tempfile.gettempdir()}: "
                      "make the output directory writable or set TMPDIR")


def _unlink(path) -> None:
    """Remove a temporary file now; where an open file cannot be removed, at exit."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        atexit.register(_unlink_quietly, path)


def _unlink_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _write(f, array: np.ndarray, where: str) -> None:
    try:
        f.write(memoryview(np.ascontiguousarray(array)).cast("B"))
    except OSError as e:
        raise CorpusError(_write_message(where, e)) from None


def _flush(f, where: str) -> None:
    try:
        f.flush()
    except OSError as e:
        raise CorpusError(_write_message(where, e)) from None


def _write_message(where: str, e: OSError) -> str:
    return (f"cannot write a temporary file in {where}: {e.strerror or e}: free some disk space "
            "or write the model elsewhere (-o/--output)")


def _spool(stream, directory: str | None, chunk_bytes: int):
    """A copy of a binary stream (stdin) in an unlinked temporary file, copied chunk by chunk."""
    f, where = _scratch_file(directory, "stdin")
    try:
        while True:
            try:
                data = stream.read(chunk_bytes)
            except OSError as e:
                raise CorpusError(f"cannot read standard input: {e.strerror or e}") from None
            if not data:
                break
            _write(f, np.frombuffer(data, dtype=np.uint8), where)
        _flush(f, where)
    except BaseException:
        f.close()
        raise
    return f


# ---- splitting ----------------------------------------------------------------------------


def split_train_valid(ids: np.ndarray, valid_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) views: the last valid_frac of the tokens is validation (nanoGPT style)."""
    if not 0.0 <= valid_frac < 1.0:
        raise OptionError(f"--valid-frac must be in [0, 1) (got {valid_frac})")
    n_train = len(ids) - int(len(ids) * valid_frac)
    return ids[:n_train], ids[n_train:]


def compact_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id < vocab_size: uint8, uint16 or uint32."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise OptionError(f"vocabulary of {vocab_size} tokens is too large: use a smaller --max-vocab")


def compact_ids(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """A copy of ids in the smallest unsigned dtype that holds ids < vocab_size (saves memory)."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"ids outside [0, {vocab_size})")
    return np.array(ids, dtype=compact_dtype(vocab_size))


# ---- batches ------------------------------------------------------------------------------


def _streams(ids: np.ndarray, batch: int) -> np.ndarray:
    """(batch, L) view: ids cut into `batch` contiguous streams of L = len // batch tokens."""
    length = len(ids) // batch
    return np.asarray(ids)[: batch * length].reshape(batch, length)


def _window(streams: np.ndarray, index: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Window `index`: x (B, T) int32 and y (B, T) int32 = x shifted by one; T <= seq_len."""
    start = index * seq_len
    stop = min(start + seq_len, streams.shape[1] - 1)
    x = streams[:, start:stop].astype(np.int32)  # astype copies: C-contiguous, caller-owned
    y = streams[:, start + 1 : stop + 1].astype(np.int32)
    return x, y


RELEASE_BYTES = 64 << 20  # bytes of a memory-mapped token array read between two releases


class _Releaser:
    """Keeps the pages of a read-only memory-mapped token array that were read from counting
    towards the process's resident memory: every RELEASE_BYTES read, the whole mapping is
    dropped from the page tables (MADV_DONTNEED; the data stays in the page cache, and the
    next windows fault their few pages back in). A no-op for arrays in memory."""

    def __init__(self, ids: np.ndarray, bytes_per_window: int):
        self._map = _read_only_mapping(ids)
        self._every = max(1, RELEASE_BYTES // max(1, bytes_per_window))
        self._count = 0

    def tick(self) -> None:
        if self._map is not None:
            self._count += 1
            if self._count >= self._every:
                self.release()

    def release(self) -> None:
        if self._map is not None:
            self._count = 0
            try:
                self._map.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):  # e.g. closed, or not supported here
                self._map = None


def _read_only_mapping(ids) -> mmap.mmap | None:
    """The mmap behind a read-only np.memmap (or a view of one), where madvise is available."""
    if not hasattr(mmap, "MADV_DONTNEED") or getattr(ids, "flags", None) is None or ids.flags.writeable:
        return None  # dropping the pages of a writable private (copy-on-write) map loses writes
    base = ids
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return base


def _windows_count(stream_len: int, seq_len: int) -> int:
    """Windows per stream: every token but the last is an input once; the last window may be short."""
    return -(-(stream_len - 1) // seq_len)


def _check_sizes(n_tokens: int, batch: int, seq_len: int) -> None:
    if batch < 1 or seq_len < 1:
        raise OptionError(f"--batch and --seq-len must be at least 1 (got {batch} and {seq_len})")
    if n_tokens // batch < 2:
        raise CorpusError(
            f"the training text has {n_tokens} tokens: too few for --batch {batch} --seq-len {seq_len}, "
            f"which needs at least {2 * batch} tokens (2 per stream; {batch * (seq_len + 1)} for one full "
            f"window): use --batch {max(1, n_tokens // 2)} or less, a smaller --seq-len, or a longer text"
        )


class BatchStream:
    """Truncated-BPTT batches over a token array (in memory or memory-mapped), epoch after epoch.

    The ids are cut into `batch` contiguous streams of equal length L = len(ids) // batch (the
    remainder is dropped). Window w of an epoch is x = streams[:, w*T : w*T + T] and y = the
    same shifted by one token, T = seq_len (the last window may be shorter). Windows follow
    each other in every stream, so the caller carries the hidden state from one to the next
    and resets it when `starts_epoch` is True.
    """

    def __init__(self, ids: np.ndarray, batch: int, seq_len: int):
        _check_sizes(len(ids), batch, seq_len)
        self.batch = batch
        self.seq_len = seq_len
        self.n_tokens = len(ids)
        self._streams = _streams(ids, batch)  # (B, L)
        stream_len = self._streams.shape[1]
        self.windows_per_epoch = _windows_count(stream_len, seq_len)
        self.tokens_per_epoch = batch * (stream_len - 1)  # targets predicted per epoch
        self.position = 0  # index of the next window within the epoch
        self.epoch = 0  # epochs completed
        self._releaser = _Releaser(self._streams, batch * seq_len * self._streams.itemsize)

    @property
    def epochs_done(self) -> float:
        """Fractional epochs consumed so far (for --epochs 2.5)."""
        return self.epoch + self.position / self.windows_per_epoch

    def next(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """(x (B, T) int32, y (B, T) int32, starts_epoch) for the next window."""
        starts_epoch = self.position == 0
        x, y = _window(self._streams, self.position, self.seq_len)
        self._releaser.tick()
        self.position += 1
        if self.position == self.windows_per_epoch:
            self.position = 0
            self.epoch += 1
        return x, y, starts_epoch

    def state(self) -> dict:
        """JSON-able state for exact resume."""
        return {
            "position": self.position,
            "epoch": self.epoch,
            "batch": self.batch,
            "seq_len": self.seq_len,
            "n_tokens": self.n_tokens,
        }

    def load_state(self, d: dict) -> None:
        """Resume from state(). Exact when batch, seq_len and token count match; otherwise
        (another corpus or layout) continue at the same fraction of the epoch."""
        self.epoch = int(d["epoch"])
        position = int(d["position"])
        same = all(d.get(k) == getattr(self, k) for k in ("batch", "seq_len", "n_tokens"))
        if not same:
            old_windows = _windows_count(int(d["n_tokens"]) // int(d["batch"]), int(d["seq_len"]))
            position = position * self.windows_per_epoch // max(old_windows, 1)
        self.position = min(max(position, 0), self.windows_per_epoch - 1)


def eval_windows(ids: np.ndarray, batch: int, seq_len: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(x, y) windows over a whole array, same layout as BatchStream, one pass.

    The caller resets the hidden state once before the first window. batch is lowered to fit
    a short array (each stream needs 2 tokens); fewer than 2 tokens yield nothing.
    """
    if batch < 1 or seq_len < 1:
        raise OptionError(f"--batch and --seq-len must be at least 1 (got {batch} and {seq_len})")
    batch = min(batch, len(ids) // 2)
    if batch < 1:
        return
    streams = _streams(ids, batch)
    releaser = _Releaser(streams, batch * seq_len * streams.itemsize)
    for index in range(_windows_count(streams.shape[1], seq_len)):
        window = _window(streams, index, seq_len)
        releaser.tick()
        yield window
    releaser.release()
