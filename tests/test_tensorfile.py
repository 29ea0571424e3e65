"""safetensors reader/writer: round trips, atomic writes, and distrust of corrupt files."""

import json
import os
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charlm.io import tensorfile
from charlm.errors import CharlmError, ModelFileError
from charlm.io.tensorfile import load_tensors, save_tensors

from leftovers import temp_files

DTYPES = ["float32", "float64", "int32", "int64", "uint8", "uint16", "uint32"]


def sample_tensors():
    rng = np.random.default_rng(0)
    return {
        "embedding.weight": rng.standard_normal((5, 3)).astype(np.float32),
        "rnn.bias": rng.standard_normal(7),
        "counts": np.arange(6, dtype=np.int64).reshape(2, 3),
        "ids": np.array([1, 65535], dtype=np.uint16),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.int32),
        "flags": np.array([0, 255], dtype=np.uint8),
    }


def assert_same(a: dict, b: dict):
    assert sorted(a) == sorted(b)  # the format keeps no order: the library sorts the tensors
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert np.array_equal(a[name], b[name]), name


def saved(tmp_path) -> str:
    path = str(tmp_path / "model.safetensors")
    save_tensors(path, sample_tensors(), {"format": "charlm", "config": json.dumps({"a": 1})})
    return path


# ---- round trips --------------------------------------------------------------------------


def test_round_trip(tmp_path):
    path = saved(tmp_path)
    tensors, metadata = load_tensors(path)
    assert_same(tensors, sample_tensors())
    assert metadata == {"format": "charlm", "config": '{"a": 1}'}
    for a in tensors.values():
        assert a.flags.writeable and a.flags.c_contiguous
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_layout_follows_the_format(tmp_path):
    path = saved(tmp_path)
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    header = json.loads(raw[8 : 8 + n])
    entries = [v for k, v in header.items() if k != "__metadata__"]
    offsets = [e["data_offsets"] for e in entries]
    assert offsets[0][0] == 0 and offsets[-1][1] == len(raw) - 8 - n
    assert all(a[1] == b[0] for a, b in zip(offsets, offsets[1:]))  # contiguous, header order
    assert header["embedding.weight"]["dtype"] == "F32" and header["embedding.weight"]["shape"] == [5, 3]


@given(
    dtype=st.sampled_from(DTYPES),
    shape=st.lists(st.integers(0, 4), max_size=3),
    big_endian=st.booleans(),
    transposed=st.booleans(),
)
@settings(max_examples=40, deadline=None)
def test_round_trip_any_array(tmp_path_factory, dtype, shape, big_endian, transposed):
    rng = np.random.default_rng(1)
    a = (rng.random(shape) * 200).astype(dtype)
    if transposed:
        a = a.T  # not C-contiguous
    if big_endian:
        a = a.astype(a.dtype.newbyteorder(">"))
    path = str(tmp_path_factory.mktemp("rt") / "m.safetensors")
    save_tensors(path, {"t": a}, {})
    tensors, metadata = load_tensors(path)
    assert metadata == {}
    assert tensors["t"].shape == a.shape and tensors["t"].dtype == np.dtype(dtype)
    assert np.array_equal(tensors["t"], a)


def test_overwrite_keeps_permissions(tmp_path):
    path = saved(tmp_path)
    os.chmod(path, 0o640)
    save_tensors(path, {"x": np.ones(3)}, {})
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert list(load_tensors(path)[0]) == ["x"]


def test_max_bytes(tmp_path):
    path = saved(tmp_path)
    with pytest.raises(ModelFileError, match="limit"):
        load_tensors(path, max_bytes=10)
    load_tensors(path, max_bytes=10**6)


# ---- atomic write -------------------------------------------------------------------------


@pytest.mark.parametrize("fail_in", ["fsync", "replace", "serialize"])
def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch, fail_in):
    path = saved(tmp_path)
    before = open(path, "rb").read()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if fail_in == "serialize":
        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(tensorfile, "_to_bytes", interrupted)
        expected = KeyboardInterrupt
    else:
        monkeypatch.setattr(tensorfile.os, fail_in, boom)
        expected = CharlmError
    with pytest.raises(expected):
        save_tensors(path, {"x": np.zeros(100)}, {"new": "yes"})
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_write_into_missing_directory(tmp_path):
    with pytest.raises(CharlmError, match="cannot write"):
        save_tensors(str(tmp_path / "no" / "m.safetensors"), {"x": np.zeros(1)}, {})


def test_refuses_unstorable_input(tmp_path):
    with pytest.raises(ValueError):
        save_tensors(str(tmp_path / "m"), {"x": np.zeros(2, dtype=np.complex64)}, {})
    with pytest.raises(ValueError):
        save_tensors(str(tmp_path / "m"), {"x": np.zeros(2)}, {"n": 1})
    assert os.listdir(tmp_path) == []


# ---- distrust -----------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no model at .*charlm train"):
        load_tensors(str(tmp_path / "absent.safetensors"))


def test_directory(tmp_path):
    with pytest.raises(ModelFileError, match="directory"):
        load_tensors(str(tmp_path))


@given(cut=st.integers(0, 10**6))
@settings(max_examples=60, deadline=None)
def test_truncated_anywhere(tmp_path_factory, cut):
    d = tmp_path_factory.mktemp("cut")
    raw = open(saved(d), "rb").read()
    path = d / "cut.safetensors"
    path.write_bytes(raw[: cut % len(raw)])
    with pytest.raises(ModelFileError, match="not a valid, complete charlm model file"):
        load_tensors(str(path))


@given(data=st.binary(max_size=300))
@settings(max_examples=60, deadline=None)
def test_random_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("rnd") / "r.safetensors"
    path.write_bytes(data)
    try:
        load_tensors(str(path))
    except ModelFileError:
        pass


@given(position=st.integers(0, 10**6), value=st.integers(0, 255))
@settings(max_examples=80, deadline=None)
def test_flipped_byte_loads_or_raises_model_file_error(tmp_path_factory, position, value):
    d = tmp_path_factory.mktemp("flip")
    raw = bytearray(open(saved(d), "rb").read())
    raw[position % len(raw)] = value
    path = d / "flip.safetensors"
    path.write_bytes(bytes(raw))
    try:
        load_tensors(str(path))
    except ModelFileError:
        pass


def build(header, data: bytes = b"", n: int | None = None) -> bytes:
    raw = json.dumps(header).encode() if isinstance(header, (dict, list)) else header
    return struct.pack("<Q", len(raw) if n is None else n) + raw + data


F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
BAD_FILES = {
    "huge header length": build({}, n=2**63),
    "header past end": build({}, n=10**6),
    "header 200 MB": build({}, n=200 * 2**20) + b" " * 10,
    "not json": build(b"{nope"),
    "not utf-8": build(b'{"\xff":1}'),
    "json list": build([1, 2]),
    "deep json": build(b"[" * 100000 + b"]" * 100000),
    "unknown dtype": build({"w": {**F32x2, "dtype": "Q8"}}, bytes(8)),
    "negative dim": build({"w": {**F32x2, "shape": [-2]}}, bytes(8)),
    "bool dim": build({"w": {**F32x2, "shape": [True, 2]}}, bytes(8)),
    "float dim": build({"w": {**F32x2, "shape": [2.0]}}, bytes(8)),
    "size mismatch": build({"w": {**F32x2, "shape": [3]}}, bytes(8)),
    "offsets reversed": build({"w": {**F32x2, "data_offsets": [8, 0]}}, bytes(8)),
    "offsets past end": build({"w": {**F32x2, "data_offsets": [8, 16]}}, bytes(8)),
    "gap": build({"w": {**F32x2, "data_offsets": [4, 12]}}, bytes(12)),
    "overlap": build({"a": F32x2, "b": {**F32x2, "data_offsets": [4, 12]}}, bytes(12)),
    "trailing bytes": build({"w": F32x2}, bytes(9)),
    "missing field": build({"w": {"dtype": "F32", "shape": [2]}}, bytes(8)),
    "bad metadata": build({"__metadata__": {"a": 1}}),
    "huge shape": build({"w": {"dtype": "F64", "shape": [2**40, 2**40], "data_offsets": [0, 8]}}, bytes(8)),
    "too short": b"\x01\x00",
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_corrupt_header(tmp_path, name):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(BAD_FILES[name])
    with pytest.raises(ModelFileError) as info:
        load_tensors(str(path))
    assert str(path) in str(info.value) and "-m/--model" in str(info.value)


def test_good_handmade_file(tmp_path):
    path = tmp_path / "ok.safetensors"
    path.write_bytes(build({"w": F32x2, "__metadata__": {"k": "v"}}, np.array([1, 2], "<f4").tobytes()))
    tensors, metadata = load_tensors(str(path))
    assert tensors["w"].tolist() == [1.0, 2.0] and metadata == {"k": "v"}


# ---- files of the library's own functions ----------------------------------------------------


def test_interop_with_safetensors(tmp_path):
    import safetensors.numpy as st_numpy
    ours = str(tmp_path / "ours.safetensors")
    theirs = str(tmp_path / "theirs.safetensors")
    tensors = {k: v for k, v in sample_tensors().items()}
    save_tensors(ours, tensors, {"k": "v"})
    loaded = st_numpy.load_file(ours)
    assert_same({k: loaded[k] for k in tensors}, tensors)
    st_numpy.save_file(tensors, theirs, metadata={"k": "v"})
    back, metadata = load_tensors(theirs)
    assert_same({k: back[k] for k in tensors}, tensors)
    assert metadata == {"k": "v"}


def test_save_fsyncs_the_file_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    import stat

    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        mode = os.fstat(fd).st_mode
        calls.append("dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other")
        real_fsync(fd)

    def replace(src, dst):
        calls.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(tensorfile.os, "fsync", fsync)
    monkeypatch.setattr(tensorfile.os, "replace", replace)
    save_tensors(str(tmp_path / "m.safetensors"), {"x": np.ones(3)}, {})
    assert calls == ["file", "rename", "dir"]


def test_stale_temporary_files_are_removed_by_the_next_save(tmp_path):
    import time

    path = str(tmp_path / "m.safetensors")
    stale = tmp_path / ".m.safetensors.k1ll3d_x.tmp"  # left by a save killed with -9
    fresh = tmp_path / ".m.safetensors.writing1.tmp"  # a concurrent save, still writing
    other = tmp_path / ".other.safetensors.abcdefgh.tmp"  # another file's: not ours to remove
    unrelated = tmp_path / "notes.tmp"
    for p in (stale, fresh, other, unrelated):
        p.write_bytes(b"partial")
    old = time.time() - 2 * tensorfile.STALE_TEMP_SECONDS
    for p in (stale, other, unrelated):
        os.utime(p, (old, old))
    assert temp_files(path) == [str(stale), str(fresh)]
    save_tensors(path, {"x": np.ones(3)}, {})
    assert sorted(os.listdir(tmp_path)) == sorted(
        [fresh.name, other.name, unrelated.name, "m.safetensors"])
    assert list(load_tensors(path)[0]) == ["x"]


def test_absurd_shape_is_refused_before_allocating(tmp_path):
    import tracemalloc

    path = tmp_path / "bad.safetensors"
    path.write_bytes(build({"w": {"dtype": "F32", "shape": [10**12, 10**12], "data_offsets": [0, 4 * 10**24]}},
                           bytes(64)))
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="not a valid"):
            load_tensors(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20
