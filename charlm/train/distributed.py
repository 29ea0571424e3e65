"""Data-parallel work across processes over MPI: `mpiexec -n N charlm train ...`.

Every rank holds the whole model and takes a contiguous share of the batch's streams
(`World.streams`); a step's gradients are summed across ranks in rank order, whatever the MPI
library's own reduction algorithm, so a run with N ranks gives the same bits every time.
`sum_in_order` does it bandwidth-optimally: the flat buffer is cut into N slices; each rank
receives every rank's copy of its own slice (all-to-all), sums them in rank order, and the
sums are gathered by all (all-gather): 2 (N-1)/N of the buffer sent and received per rank.

A process started without an MPI launcher (no PMI_SIZE, OMPI_COMM_WORLD_SIZE,
MV2_COMM_WORLD_SIZE or PMIX_RANK in its environment), or with one rank, is `SingleProcess`: every call is a no-op,
and mpi4py is never imported.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from charlm.errors import CharlmError

LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class SingleProcess:
    """One process: rank 0 of 1."""

    rank = 0
    size = 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def streams(self, batch: int) -> tuple[int, int]:
        """This rank's streams [s0, s1) of a batch: ranks take contiguous, even shares."""
        return batch * self.rank // self.size, batch * (self.rank + 1) // self.size

    def sum_in_order(self, flat: np.ndarray) -> np.ndarray:
        return flat

    def sum_grads_in_order(self, grads: dict[str, np.ndarray]) -> None:
        """Every rank's gradients summed in rank order, in place: one flat buffer, one
        sum_in_order."""
        if self.size == 1:
            return
        flat = self.sum_in_order(np.concatenate([g.ravel() for g in grads.values()]))
        start = 0
        for g in grads.values():
            g.ravel()[:] = flat[start:start + g.size]
            start += g.size

    def broadcast(self, obj):
        return obj

    def agree(self, values: np.ndarray) -> np.ndarray:
        """The element-wise maximum over ranks of a small float64 vector."""
        return values

    def gather_streams(self, local: np.ndarray, batch: int) -> np.ndarray | None:
        """Each rank's streams (axis 2 of (L, S, Bk, H)) put together at the root."""
        return local

    def scatter(self, parts: list | None):
        """The root's parts[r] to each rank r (parts is ignored on the other ranks)."""
        return parts[0]

    def gather(self, obj) -> list | None:
        """Every rank's obj, in rank order, at the root (None elsewhere)."""
        return [obj]

    def barrier(self) -> None:
        pass

    def abort(self, code: int) -> None:
        raise SystemExit(code)


class MPIWorld(SingleProcess):
    """The ranks of MPI's world communicator (mpi4py)."""

    def __init__(self, comm):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()

    def sum_in_order(self, flat: np.ndarray) -> np.ndarray:
        n = self.size
        part = -(-len(flat) // n)
        padded = np.zeros(part * n, flat.dtype)
        padded[: len(flat)] = flat
        received = np.empty((n, part), flat.dtype)
        self.comm.Alltoall(padded.reshape(n, part), received)  # every rank's copy of my slice
        mine = received[0].copy()
        for r in range(1, n):  # rank order, never the library's
            mine += received[r]
        total = np.empty((n, part), flat.dtype)
        self.comm.Allgather(mine, total)
        return total.reshape(-1)[: len(flat)]

    def broadcast(self, obj):
        return self.comm.bcast(obj, root=0)

    def agree(self, values: np.ndarray) -> np.ndarray:
        from mpi4py import MPI

        out = np.empty_like(values)
        self.comm.Allreduce(np.ascontiguousarray(values), out, op=MPI.MAX)
        return out

    def gather_streams(self, local: np.ndarray, batch: int) -> np.ndarray | None:
        parts = self.comm.gather(local, root=0)
        return np.concatenate(parts, axis=2) if self.is_root else None

    def scatter(self, parts: list | None):
        return self.comm.scatter(parts, root=0)

    def gather(self, obj) -> list | None:
        return self.comm.gather(obj, root=0)

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int) -> None:
        sys.stderr.flush()
        self.comm.Abort(code)


def launched_ranks() -> int:
    """How many ranks the launcher that started this process says there are: 1 if none; 2 for
    a PMIx launcher (Slurm's srun --mpi=pmix), which leaves the count to MPI itself."""
    for name in LAUNCHER_SIZE_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 2 if "PMIX_RANK" in os.environ else 1


_world: SingleProcess | None = None


def world() -> SingleProcess:
    """This process's place among the ranks (imports mpi4py only under a launcher of N > 1)."""
    global _world
    if _world is None:
        _world = _connect() if launched_ranks() > 1 else SingleProcess()
    return _world


def _connect() -> SingleProcess:
    try:
        from mpi4py import MPI
    except ImportError:
        raise CharlmError("started by an MPI launcher, but mpi4py is not installed: "
                          "pip install 'charlm[mpi]'") from None
    comm = MPI.COMM_WORLD
    return MPIWorld(comm) if comm.Get_size() > 1 else SingleProcess()
