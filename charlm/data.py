"""Reading a corpus and cutting token ids into truncated-BPTT batches."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np

from .errors import CorpusError, OptionError

ENCODING_ERRORS = ("strict", "replace", "ignore")
STDIN = "-"


# ---- reading ------------------------------------------------------------------------------


def read_text(path: str, encoding_errors: str = "strict") -> str:
    """The UTF-8 text of `path` ("-" is stdin), without a leading BOM.

    encoding_errors="replace" turns invalid bytes into U+FFFD ("ignore" drops them).
    """
    if encoding_errors not in ENCODING_ERRORS:
        raise OptionError(f"--encoding-errors must be one of {', '.join(ENCODING_ERRORS)} (got {encoding_errors!r})")
    name = "standard input" if path == STDIN else str(path)
    data = sys.stdin.buffer.read() if path == STDIN else _read_bytes(path)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise CorpusError(
            f"{name} looks like a binary file (NUL byte at offset {nul}): pass a UTF-8 text file "
            "(convert UTF-16 text with e.g. `iconv -f utf-16 -t utf-8`)"
        )
    text = _decode(data, name, encoding_errors)
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise CorpusError(f"{name} is empty or only whitespace: pass a text file with some content")
    return text


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise CorpusError(f"no such file: {path}: check the path of the corpus") from None
    except IsADirectoryError:
        raise CorpusError(f"{path} is a directory: pass a text file (e.g. {path}/input.txt)") from None
    except PermissionError:
        raise CorpusError(f"cannot read {path}: permission denied: make it readable (chmod +r) or copy it") from None
    except OSError as e:
        raise CorpusError(f"cannot read {path}: {e.strerror or e}: check the file and try again") from None


def _decode(data: bytes, name: str, errors: str) -> str:
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"{name} is not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}): convert it to "
            "UTF-8 (e.g. `iconv -f latin1 -t utf-8`) or pass --encoding-errors replace"
        ) from None


# ---- splitting ----------------------------------------------------------------------------


def split_train_valid(ids: np.ndarray, valid_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) views: the last valid_frac of the tokens is validation (nanoGPT style)."""
    if not 0.0 <= valid_frac < 1.0:
        raise OptionError(f"--valid-frac must be in [0, 1) (got {valid_frac})")
    n_train = len(ids) - int(len(ids) * valid_frac)
    return ids[:n_train], ids[n_train:]


def compact_ids(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """A copy of ids in the smallest unsigned dtype that holds ids < vocab_size (saves memory)."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"ids outside [0, {vocab_size})")
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.array(ids, dtype=dtype)
    raise OptionError(f"vocabulary of {vocab_size} tokens is too large: use a smaller --max-vocab")


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
    """Truncated-BPTT batches over a token array, epoch after epoch.

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

    @property
    def epochs_done(self) -> float:
        """Fractional epochs consumed so far (for --epochs 2.5)."""
        return self.epoch + self.position / self.windows_per_epoch

    def next(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """(x (B, T) int32, y (B, T) int32, starts_epoch) for the next window."""
        starts_epoch = self.position == 0
        x, y = _window(self._streams, self.position, self.seq_len)
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
    for index in range(_windows_count(streams.shape[1], seq_len)):
        yield _window(streams, index, seq_len)
