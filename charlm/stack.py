"""Run the layers of a stack as a wavefront over time chunks, one layer per core.

Only h_{t-1} W_hh depends on the previous step, so a layer's loop is a chain of small GEMMs
(B x H by H x G*H) that a second BLAS thread barely speeds up. But layer l+1 needs from layer l
only the outputs of the steps it is about to run: split the T steps into chunks and let layer
l+1 run chunk k-1 while layer l runs chunk k, each on its own core. The backward runs the same
wavefront from the top layer and the last chunk down.

Every task is the same computation whatever the schedule (its GEMMs run on one BLAS thread in
both modes), so a run gives the same bits with one worker or several. Tasks of one phase touch
disjoint slices of the buffers; a phase ends only when all its tasks have, so the next phase
sees their writes. The pool is plain threads: the kernels and BLAS release the GIL.
"""

from __future__ import annotations

import atexit
import concurrent.futures as futures
import functools
import os
from typing import Callable

from .kernels.threads import sequential_blas

__all__ = ["chunk_bounds", "run_wavefront", "run_parts", "available_workers"]

# Chunks of about T/16 steps, at least 4: with L=2 the wavefront takes K+1 phases for 2K chunk
# tasks (1.9x ideal for K=16), while a phase's hand-off (~0.1 ms) stays small beside a chunk's
# work (~2 ms per step at B=32, H=512).
TARGET_CHUNKS = 16
MIN_CHUNK = 4


def chunk_bounds(steps: int) -> list[tuple[int, int]]:
    """Split range(steps) into consecutive (start, end) slices."""
    size = max(MIN_CHUNK, -(-steps // TARGET_CHUNKS))
    return [(a, min(a + size, steps)) for a in range(0, steps, size)]


def available_workers() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@functools.cache
def _pool(workers: int) -> futures.ThreadPoolExecutor:
    pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="charlm-stack")
    atexit.register(pool.shutdown, wait=False)
    return pool


def run_wavefront(layers: int, chunks: int, task: Callable[[int, int], None],
                  reverse: bool = False) -> None:
    """Call task(layer, chunk) for every pair, after task(layer-1, chunk) and task(layer, chunk-1)
    (reverse: after task(layer+1, chunk) and task(layer, chunk+1)).

    Phase p runs the pairs with layer + chunk = p, in parallel when there are cores for it; the
    calling thread takes one of them. BLAS runs on one thread throughout.
    """
    workers = min(layers, chunks, available_workers())
    pool = _pool(workers - 1) if workers > 1 else None
    with sequential_blas():
        for phase in range(layers + chunks - 1):
            cells = [(l, phase - l) for l in range(layers) if 0 <= phase - l < chunks]
            if reverse:
                cells = [(layers - 1 - l, chunks - 1 - k) for l, k in cells]
            if pool is None or len(cells) == 1:
                for layer, chunk in cells:
                    task(layer, chunk)
            else:
                _run_phase(pool, task, cells)


def run_parts(calls: list[Callable[[], None]]) -> None:
    """Run independent calls in parallel on the cores there are (all of them on pool threads,
    so that 4 calls on 2 cores split 2 and 2). Return when all have ended, raising the first error."""
    workers = min(len(calls), available_workers())
    if workers <= 1:
        for call in calls:
            call()
        return
    pending = [_pool(workers).submit(call) for call in calls]
    futures.wait(pending)
    for f in pending:
        f.result()


def _run_phase(pool, task, cells) -> None:
    """Run one phase's tasks; return when all have ended, raising the first error."""
    pending = [pool.submit(task, *cell) for cell in cells[1:]]
    try:
        task(*cells[0])
    finally:
        futures.wait(pending)  # never leave a task writing into buffers after we return
    for f in pending:
        f.result()
