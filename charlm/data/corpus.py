"""Reading a corpus: the streaming, chunked UTF-8 reader (`Corpus`, with the checks that
raise CorpusError), stdin spooled to a temporary file, and the compact token file that
`Corpus.encode` memory-maps. Cutting the ids into batches is charlm.data.batches.
"""

from __future__ import annotations

import atexit
import codecs
import hashlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

import numpy as np

from charlm.errors import CorpusError, OptionError, read_error
from charlm.data.tokenizer import BOM, TokenCounts, Tokenizer, normalize
from charlm.validation import check_value

STDIN = "-"


# ---- reading ------------------------------------------------------------------------------

CHUNK_BYTES = 4 << 20  # bytes read at a time: bounds the memory of every pass over a corpus
_LAST_SPACE = re.compile(r"\s\S*\Z")  # the last whitespace character (str.split's notion)


def read_text(path: str, encoding_errors: str = "strict", *, allow_blank: bool = False) -> str:
    """The UTF-8 text of `path` ("-" is stdin), without a leading BOM (for small texts).

    encoding_errors="replace" turns invalid bytes into U+FFFD ("ignore" drops them).
    allow_blank: an empty or all-whitespace text is returned rather than refused.
    """
    with Corpus(path, encoding_errors) as corpus:
        return "".join(corpus.texts(allow_blank=allow_blank))


class Corpus:
    """A UTF-8 corpus read in chunks of `chunk_bytes`, pass after pass, in bounded memory.

    `path` "-" is stdin: its bytes are first copied, chunk by chunk, to an unlinked temporary
    file in `spool_dir` (default: the system's), since a pipe cannot be read twice. The same
    checks as for a whole text (missing, directory, unreadable, NUL bytes, invalid UTF-8 with
    the byte offset, empty) raise CorpusError while reading.
    """

    def __init__(self, path: str, encoding_errors: str = "strict", *, spool_dir: str | None = None,
                 chunk_bytes: int = CHUNK_BYTES):
        check_value("encoding_errors", encoding_errors)
        self.path, self.errors, self.chunk_bytes = str(path), encoding_errors, max(1, int(chunk_bytes))
        self.name = "standard input" if self.path == STDIN else self.path
        # {"bytes": size, "blake2b": hex digest} of the raw bytes, once a pass has read them all
        self.fingerprint: dict | None = None
        self._file = _spool(sys.stdin.buffer, spool_dir, self.chunk_bytes) if self.path == STDIN else _open(self.path)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Corpus:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- passes -------------------------------------------------------------------------

    def texts(self, allow_blank: bool = False) -> Iterator[str]:
        """The decoded text from the start, piece by piece, without the leading BOM; raises
        CorpusError at the first NUL or invalid byte, or at the end if it is all whitespace
        (unless allow_blank)."""
        f, name = self._file, self.name
        f.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")(self.errors)
        offset = 0  # bytes read so far
        at_start, content = True, False
        digest = hashlib.blake2b(digest_size=16) if self.fingerprint is None else None  # once
        while True:
            data = _read(f, self.chunk_bytes, name)
            if digest is not None:
                digest.update(data)
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
        if digest is not None:
            self.fingerprint = {"bytes": offset, "blake2b": digest.hexdigest()}
        if not content and not allow_blank:
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
    except OSError as e:
        raise read_error(CorpusError, path, e, "pass a UTF-8 text file") from None


def _read(f, size: int, name: str) -> bytes:
    try:
        return f.read(size)
    except OSError as e:
        raise read_error(CorpusError, name, e, "pass a UTF-8 text file") from None


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


def compact_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id < vocab_size: uint8, uint16 or uint32."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise OptionError(f"vocabulary of {vocab_size} tokens is too large: use a smaller --max-vocab")
