"""Data-parallel training over MPI (charlm.train.distributed): `mpiexec -n 2 charlm train` on one host.

Skipped when mpi4py or mpiexec is missing (`pip install 'charlm[mpi]'` brings both)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

BIN = Path(sys.executable).parent
MPIEXEC = shutil.which("mpiexec", path=str(BIN)) or shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(
    MPIEXEC is None or __import__("importlib").util.find_spec("mpi4py") is None,
    reason="MPI not installed: pip install 'charlm[mpi]'")

SHAPE = ["--hidden", "32", "--embed", "8", "--batch", "12", "--seq-len", "30", "--seed", "2",
         "--dropout", "0.2", "--threads", "1"]


def charlm(*args: str) -> list[str]:
    return [sys.executable, "-m", "charlm", *args]


def mpi(ranks: int, *args: str) -> list[str]:
    return [MPIEXEC, "-n", str(ranks), *charlm(*args)]


def run(cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_"))}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def tensors(path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def losses(model: Path) -> list[tuple[str, int, float]]:
    rows = [json.loads(line) for line in model.with_name(model.stem + ".metrics.jsonl").read_text().splitlines()]
    return [(r["event"], r["step"], r["loss"]) for r in rows]


def test_two_ranks_repeat_their_bits_and_agree_with_one_process(tmp_path, corpus_file):
    args = ["--steps", "20", "--valid-every", "5", *SHAPE]
    out = {name: tmp_path / f"{name}.safetensors" for name in ("a", "b", "one")}
    for name, cmd in (("a", mpi(2, "train", str(corpus_file), "-o", str(out["a"]), *args)),
                      ("b", mpi(2, "train", str(corpus_file), "-o", str(out["b"]), *args)),
                      ("one", charlm("train", str(corpus_file), "-o", str(out["one"]), *args))):
        result = run(cmd)
        assert result.returncode == 0, result.stderr
    a, b = tensors(out["a"]), tensors(out["b"])
    assert a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)
    two, one = losses(out["a"]), losses(out["one"])
    assert [r[:2] for r in two] == [r[:2] for r in one] and len(one) >= 4
    for (_, _, x), (_, _, y) in zip(two, one):
        assert x == pytest.approx(y, rel=1e-4)
    assert (out["a"].parent / "a.state.safetensors").exists()
    assert not list(tmp_path.glob("*.tokens"))  # the shared token files are gone


def test_only_the_root_speaks(tmp_path, corpus_file):
    result = run(mpi(2, "train", str(corpus_file), "-o", str(tmp_path / "m.safetensors"),
                     "--steps", "4", "--valid-every", "2", *SHAPE))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("model saved to") == 1
    assert result.stderr.count("training ") == 1  # the opening line, once


def test_a_run_of_two_ranks_resumes_on_one(tmp_path, corpus_file):
    model = tmp_path / "m.safetensors"
    result = run(mpi(2, "train", str(corpus_file), "-o", str(model), "--steps", "6", "--valid-every", "3", *SHAPE))
    assert result.returncode == 0, result.stderr
    result = run(charlm("train", str(corpus_file), "-o", str(model), "--resume", "--steps", "12"))
    assert result.returncode == 0, result.stderr
    assert "resumed at step 6" in result.stderr
    steps = [s for e, s, _ in losses(model) if e == "validated"]
    assert steps[-1] == 12 and all(np.isfinite([x for _, _, x in losses(model)]))


def test_a_killed_rank_ends_the_job_and_leaves_the_saved_files_intact(tmp_path, corpus_file):
    from charlm.io.checkpoint import load_model, load_training_state

    model = tmp_path / "m.safetensors"
    state = tmp_path / "m.state.safetensors"
    job = _long_run_saved_once(corpus_file, model, state)
    try:
        assert state.exists(), "no state saved"
        ranks = _rank_pids(str(model))
        assert len(ranks) == 2
        os.kill(max(ranks), signal.SIGKILL)
        killed = time.monotonic()
        job.wait(timeout=60)
        assert time.monotonic() - killed < 30
        assert job.returncode != 0
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    load_model(model)  # intact: both load
    load_training_state(state)


def _long_run_saved_once(corpus_file, model: Path, state: Path) -> subprocess.Popen:
    """A 2-rank training run without end, returned once it has saved its state (or after 120 s)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_"))}
    job = subprocess.Popen(mpi(2, "train", str(corpus_file), "-o", str(model), "--steps", "100000",
                               "--valid-every", "5", *SHAPE),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not state.exists() and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.2)
    return job


def _rank_pids(marker: str) -> list[int]:
    """PIDs of the Python processes whose command line names `marker` (the ranks)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in argv and argv and b"python" in Path(argv[0].decode()).name.encode():
            pids.append(int(entry.name))
    return pids


def test_lines_scored_across_ranks_come_out_in_input_order(tmp_path, tiny_model):
    lines = [f"line {i} " + "ab" * (i % 7) for i in range(50)]
    text = "\n".join(lines) + "\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_"))}
    one = subprocess.run(charlm("score", "-m", str(tiny_model), "--json"), input=text,
                         capture_output=True, text=True, env=env, timeout=120)
    two = subprocess.run(mpi(2, "score", "-m", str(tiny_model), "--json"), input=text,
                         capture_output=True, text=True, env=env, timeout=120)
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    a = [json.loads(x) for x in one.stdout.splitlines()]
    b = [json.loads(x) for x in two.stdout.splitlines()]
    assert [r["text"] for r in b] == lines
    for x, y in zip(a, b):
        assert y["logprob"] == pytest.approx(x["logprob"], rel=1e-5)
    assert two.stderr.count(" lines, ") == 1  # one summary, from the root


def test_ctrl_c_on_mpiexec_saves_and_exits_as_one_process_does(tmp_path, corpus_file):
    model = tmp_path / "m.safetensors"
    state = tmp_path / "m.state.safetensors"
    job = _long_run_saved_once(corpus_file, model, state)
    try:
        job.send_signal(signal.SIGINT)
        _, stderr = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode == 130, stderr
    assert "interrupted: continue with" in stderr and "--resume" in stderr
    result = run(charlm("train", str(corpus_file), "-o", str(model), "--resume", "--epochs", "0.001"))
    assert result.returncode == 0, result.stderr
    assert "resumed at step" in result.stderr
