"""safetensors-format files, read and written without pickle or dependencies.

Layout: u64 little-endian N, N bytes of UTF-8 JSON header (padded with spaces to a multiple
of 8), then the tensors' raw little-endian C-order bytes, contiguous in header order. The
header maps each name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative
to the data start) and "__metadata__" to a {str: str} object.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import tempfile
import time

import numpy as np

from .errors import CharlmError, ModelFileError

DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_CODES = {(dt.kind, dt.itemsize): code for code, dt in DTYPES.items()}
MAX_HEADER = 100 * 1024 * 1024  # a sane header is a few KB; refuse to allocate more
# A temporary file of an earlier save that was killed (kill -9, power loss) stays behind; the
# next save of the same file removes it once it is this old (a live writer touches it
# continuously, so a concurrent save of the same file is left alone).
STALE_TEMP_SECONDS = 60.0
METADATA = "__metadata__"
TEMP_SUFFIX = ".tmp"


# ---- writing ------------------------------------------------------------------------------


def save_tensors(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write atomically: a crash leaves either the old file or the new one at `path`."""
    arrays = {name: _little_endian(name, a) for name, a in tensors.items()}
    header = _header_bytes(arrays, metadata)
    directory = os.path.dirname(os.path.abspath(path))
    prefix = "." + os.path.basename(path) + "."
    _remove_stale_temps(directory, prefix)
    try:
        tmp = tempfile.NamedTemporaryFile(dir=directory, prefix=prefix, suffix=TEMP_SUFFIX, delete=False)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        with tmp:
            tmp.write(struct.pack("<Q", len(header)))
            tmp.write(header)
            for a in arrays.values():
                tmp.write(a.tobytes())
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, _file_mode(path))
        os.replace(tmp.name, path)
    except BaseException as e:
        _remove_quietly(tmp.name)
        if isinstance(e, OSError):
            raise _write_error(path, e) from None
        raise
    _fsync_dir(directory)


def _little_endian(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    code = _CODES.get((a.dtype.kind, a.dtype.itemsize))
    if not isinstance(name, str) or not name or name == METADATA:
        raise ValueError(f"bad tensor name {name!r}")
    if code is None:
        raise ValueError(f"tensor {name!r}: dtype {a.dtype} cannot be stored")
    # asarray, not ascontiguousarray, which turns 0-d arrays into 1-d ones.
    return np.asarray(a, dtype=DTYPES[code], order="C")


def _header_bytes(arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """JSON header, space-padded so that the data starts at a multiple of 8 bytes."""
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError("metadata must map str to str")
    header: dict = {METADATA: dict(metadata)} if metadata else {}
    offset = 0
    for name, a in arrays.items():
        code = _CODES[(a.dtype.kind, a.dtype.itemsize)]
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return raw + b" " * (-len(raw) % 8)


def _file_mode(path: str) -> int:
    """Keep an existing file's permissions; a new file gets 0o666 minus the umask (like open)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(directory: str) -> None:
    """Make the rename durable; some platforms cannot open directories, which is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_files(path: str) -> list[str]:
    """Temporary files that saves of `path` create beside it (left behind only by a kill)."""
    directory = os.path.dirname(os.path.abspath(path))
    prefix = "." + os.path.basename(path) + "."
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(os.path.join(directory, n) for n in names if _is_temp(n, prefix))


def _is_temp(name: str, prefix: str) -> bool:
    """tempfile's names: prefix + 8 characters of [a-z0-9_] + suffix."""
    return re.fullmatch(re.escape(prefix) + r"[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX), name) is not None


def _remove_stale_temps(directory: str, prefix: str) -> None:
    try:
        names = [n for n in os.listdir(directory) if _is_temp(n, prefix)]
    except OSError:
        return
    now = time.time()
    for name in names:
        full = os.path.join(directory, name)
        try:
            if now - os.lstat(full).st_mtime >= STALE_TEMP_SECONDS:
                os.unlink(full)
        except OSError:
            pass


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _write_error(path: str, e: OSError) -> CharlmError:
    reason = e.strerror or str(e)
    return CharlmError(
        f"cannot write {path}: {reason}: check that the directory exists and is writable and "
        "that the disk has space"
    )


# ---- reading ------------------------------------------------------------------------------


def load_tensors(path: str, max_bytes: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, metadata) of a file written by save_tensors (or any safetensors file with
    supported dtypes). Everything is validated before allocation; max_bytes caps the tensor
    data size. Arrays are native-endian, C-contiguous and writable. Raises ModelFileError."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            header, data_start = _read_header(f, size, path)
            entries, metadata = _parse_header(header, path)
            data_len = size - data_start
            _check_layout(entries, data_len, path)
            if max_bytes is not None and data_len > max_bytes:
                raise _invalid(path, f"{data_len} bytes of tensors exceed the limit of {max_bytes}")
            buf = f.read(data_len)
    except FileNotFoundError:
        raise ModelFileError(f"no model at {path}: train one with `charlm train CORPUS` or pass -m/--model") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path} is a directory, not a model file: pass the model file with -m/--model") from None
    except PermissionError:
        raise ModelFileError(f"cannot read {path}: permission denied: make it readable or pass another -m/--model") from None
    except OSError as e:
        raise ModelFileError(f"cannot read {path}: {e.strerror or e}: check the file or pass another -m/--model") from None
    if len(buf) != data_len:
        raise _invalid(path, "the file changed while it was read")
    return _arrays(entries, buf), metadata


def _invalid(path: str, reason: str) -> ModelFileError:
    return ModelFileError(
        f"{path} is not a valid, complete charlm model file ({reason}): it may be truncated or "
        "corrupt; retrain the model or pass the right file with -m/--model"
    )


def _read_header(f, size: int, path: str) -> tuple[bytes, int]:
    """The raw header bytes and the offset where tensor data starts; length checked first."""
    if size < 8:
        raise _invalid(path, f"only {size} bytes")
    (n,) = struct.unpack("<Q", f.read(8))
    if n > MAX_HEADER or n > size - 8:
        raise _invalid(path, f"header length {n} does not fit in a file of {size} bytes")
    header = f.read(n)
    if len(header) != n:
        raise _invalid(path, "the header is cut short")
    return header, 8 + n


def _no_duplicates(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key in header")
    return dict(pairs)


def _parse_header(raw: bytes, path: str) -> tuple[dict[str, tuple[np.dtype, tuple, int, int]], dict[str, str]]:
    """{name: (dtype, shape, begin, end)} and metadata, every field type-checked."""
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _invalid(path, f"unreadable header: {e}") from None
    if not isinstance(header, dict):
        raise _invalid(path, "the header is not a JSON object")
    metadata = header.pop(METADATA, {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _invalid(path, "__metadata__ is not an object of strings")
    entries = {}
    for name, entry in header.items():
        problem = _entry_problem(entry)
        if problem:
            raise _invalid(path, f"tensor {name!r}: {problem}")
        begin, end = entry["data_offsets"]
        entries[name] = (DTYPES[entry["dtype"]], tuple(entry["shape"]), begin, end)
    return entries, metadata


def _is_count(x) -> bool:
    """A non-negative JSON integer (bool is an int subclass in Python: reject it)."""
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _entry_problem(entry) -> str | None:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        return "entry must have exactly dtype, shape and data_offsets"
    if entry["dtype"] not in DTYPES:
        return f"unknown dtype {entry['dtype']!r}"
    shape, offsets = entry["shape"], entry["data_offsets"]
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        return "shape is not a list of non-negative integers"
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets):
        return "data_offsets is not two non-negative integers"
    begin, end = offsets
    # Python ints: no overflow however large the claimed shape.
    if end < begin or end - begin != math.prod(shape) * DTYPES[entry["dtype"]].itemsize:
        return f"data_offsets {offsets} do not match shape {shape}"
    return None


def _check_layout(entries: dict, data_len: int, path: str) -> None:
    """Tensors must tile the data exactly: no gap, no overlap, nothing missing or extra."""
    spans = sorted((begin, end) for _, _, begin, end in entries.values())
    cursor = 0
    for begin, end in spans:
        if begin != cursor:
            raise _invalid(path, f"tensor data at byte {begin} leaves a gap or overlaps (expected {cursor})")
        cursor = end
    if cursor != data_len:
        raise _invalid(path, f"the header describes {cursor} bytes of tensors but the file holds {data_len}")


def _arrays(entries: dict, buf: bytes) -> dict[str, np.ndarray]:
    """Copy each tensor out of buf into its own native-endian, writable array."""
    out = {}
    for name, (dtype, shape, begin, end) in entries.items():
        flat = np.frombuffer(buf, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=begin)
        out[name] = flat.astype(dtype.newbyteorder("="), copy=True).reshape(shape)
    return out
