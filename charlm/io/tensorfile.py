"""Model and state files in the safetensors format, through the safetensors library.

The library writes and parses the format (a u64 little-endian header length, a JSON header
mapping each tensor name to its dtype, shape and byte range, plus "__metadata__" of strings,
then the tensors' bytes). This module adds what a command-line tool needs around it: an atomic
write (temporary file, fsync, rename, directory fsync; a crash leaves the old file or the new
one), one clear error naming the file for every way a file can be missing or damaged, and a
cap on the bytes a damaged header may make us read.
"""

from __future__ import annotations

import os
import re
import struct
import tempfile
import time

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save as _to_bytes

from charlm.errors import CharlmError, ModelFileError, read_error, write_error

# The dtypes charlm stores (safetensors' names): floats and the integer ids of states.
DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_CODES = {(dt.kind, dt.itemsize): code for code, dt in DTYPES.items()}
MAX_HEADER = 100 * 1024 * 1024  # a sane header is a few KB; refuse to read more
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
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError("metadata must map str to str")
    data = _to_bytes(arrays, metadata=dict(metadata) or None)
    directory = os.path.dirname(os.path.abspath(path))
    prefix = "." + os.path.basename(path) + "."
    _remove_stale_temps(directory, prefix)
    try:
        tmp = tempfile.NamedTemporaryFile(dir=directory, prefix=prefix, suffix=TEMP_SUFFIX, delete=False)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        with tmp:
            tmp.write(data)
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
    return write_error(CharlmError, path, e, "check that the directory exists and is writable and "
                       "that the disk has space")


# ---- reading ------------------------------------------------------------------------------


def load_tensors(path: str, max_bytes: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, metadata) of a safetensors file. Arrays are native-endian, C-contiguous and
    writable. max_bytes caps the tensor data size. Raises ModelFileError."""
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as f:
            data_len = size - _header_end(f.read(8), size, path)
    except OSError as e:
        raise read_error(ModelFileError, path, e, "pass a model file with -m/--model",
                         missing=f"no model at {path}: train one with `charlm train CORPUS` or pass -m/--model") from None
    if max_bytes is not None and data_len > max_bytes:
        raise _invalid(path, f"{data_len} bytes of tensors exceed the limit of {max_bytes}")
    try:
        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {name: _owned(f.get_tensor(name)) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, TypeError, OverflowError) as e:
        raise _invalid(path, _reason(e)) from None
    return tensors, metadata


def _header_end(first: bytes, size: int, path: str) -> int:
    """Where the tensor data starts, from the file's first 8 bytes (the header length)."""
    if len(first) < 8:
        raise _invalid(path, f"only {size} bytes")
    (n,) = struct.unpack("<Q", first)
    if n > MAX_HEADER or n > size - 8:
        raise _invalid(path, f"header length {n} does not fit in a file of {size} bytes")
    return 8 + n


def _owned(a: np.ndarray) -> np.ndarray:
    """A native-endian, C-contiguous, writable copy (the library may hand out views of its map)."""
    return np.array(a, dtype=a.dtype.newbyteorder("="), order="C", copy=True)


def _reason(e: Exception) -> str:
    """The library's account of what is wrong, on one line."""
    return " ".join(str(e).split()) or type(e).__name__


def _invalid(path: str, reason: str) -> ModelFileError:
    return ModelFileError(
        f"{path} is not a valid, complete charlm model file ({reason}): it may be truncated or "
        "corrupt; retrain the model or pass the right file with -m/--model"
    )
