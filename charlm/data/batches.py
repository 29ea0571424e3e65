"""Cutting token ids into truncated-BPTT batches: the train/validation split, compact id
arrays, `BatchStream` (epoch after epoch, resumable) and `eval_windows` (one pass).

Reading a corpus is charlm.data.corpus.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator

import numpy as np

from charlm.errors import CorpusError
from charlm.validation import check_value


# ---- splitting ----------------------------------------------------------------------------


def split_train_valid(ids: np.ndarray, valid_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) views: the last valid_frac of the tokens is validation (nanoGPT style)."""
    check_value("valid_frac", valid_frac)
    n_train = len(ids) - int(len(ids) * valid_frac)
    return ids[:n_train], ids[n_train:]


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


def _check_window(batch: int, seq_len: int) -> None:
    check_value("batch", batch)
    check_value("seq_len", seq_len)


def _check_sizes(n_tokens: int, batch: int, seq_len: int) -> None:
    _check_window(batch, seq_len)
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
    _check_window(batch, seq_len)
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
