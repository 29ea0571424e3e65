"""Parallel work over stream blocks, layers and time chunks, with results independent of threads.

The B streams of a batch are cut into fixed blocks (`stream_blocks`, a function of B alone).
Only h_{t-1} W_hh depends on the previous step, so each (block, layer) pair is a chain of small
GEMMs over its own rows; blocks never depend on each other, and layer l+1 of a block needs
from layer l only the outputs of the steps it is about to run. `run_wavefront` splits the T
steps into chunks and runs task(block, layer, chunk) on the threads there are, each as soon as
task(block, layer - 1, chunk) and task(block, layer, chunk - 1) have ended: a wavefront whose
phase p holds the tasks with layer + chunk = p.

Every task is the same computation whatever the schedule: its GEMMs run on one BLAS thread, it
reads and writes only its own block's rows, and each sum over rows (weight gradients, the
decoder bias) is taken over all rows in one fixed order after the wavefront ends. So a run gives
the same bits on 1, 2 or 16 threads. The pool is plain threads: the kernels and BLAS release
the GIL.

The thread count is `threads()`: `set_threads(n)`, else the CHARLM_THREADS environment variable,
else the cores this process may run on.
"""

from __future__ import annotations

import atexit
import concurrent.futures as futures
import functools
import heapq
import os
import threading
from typing import Callable

import numpy as np

from charlm.nn.kernels.threads import kernel_blas, sequential_blas

__all__ = ["chunk_bounds", "stream_blocks", "whole_blocks", "run_wavefront", "run_parts", "run_alone",
           "threads", "set_threads", "THREADS_ENVVAR"]

THREADS_ENVVAR = "CHARLM_THREADS"
# Chunks of about T/16 steps, at least 4: a phase's hand-off (~0.1 ms) stays small beside a
# chunk's work, and a stack of L layers keeps L tasks per block busy after the first L phases.
TARGET_CHUNKS = 16
MIN_CHUNK = 4
# Streams per block of a one-layer model; twice as many with more layers, whose wavefront
# already keeps two layers busy side by side. Fewer rows make each step's product (rows x H by
# H x G*H) dearer per row: it reads the whole of W_hh once per group of 4 rows.
BLOCK_STREAMS = 16

_threads: int | None = None
_local = threading.local()  # .alone: this thread runs one of run_alone's calls


def chunk_bounds(steps: int, layers: int = 2) -> list[tuple[int, int]]:
    """Split range(steps) into consecutive (start, end) slices: one slice for a single layer,
    which has no layer above to hand chunks to.

    The first and the last slice are a third of the others: the wavefront's first task runs
    alone until it ends, and so does its last one."""
    if layers == 1:
        return [(0, steps)]
    size = max(MIN_CHUNK, -(-steps // TARGET_CHUNKS))
    end = max(1, size // 3)
    inner = steps - 2 * end  # shared as evenly as can be by the slices between the ends
    if inner < size:
        return [(a, min(a + size, steps)) for a in range(0, steps, size)]
    count = min(-(-inner // size), TARGET_CHUNKS - 2)
    cuts = [0] + [end + inner * i // count for i in range(count + 1)] + [steps]
    return list(zip(cuts[:-1], cuts[1:]))


def stream_blocks(batch: int, layers: int = 1) -> list[tuple[int, int]]:
    """Split range(batch) into consecutive (start, end) blocks of streams, about BLOCK_STREAMS
    each (2 x BLOCK_STREAMS for stacks of 2 layers or more), as even as can be. A function of
    the batch and the depth alone, never of the thread count: the blocks fix which rows each
    product and each loop sees, and so every bit of the result."""
    per_block = BLOCK_STREAMS * (1 if layers == 1 else 2)
    count = max(1, (batch + per_block // 2) // per_block)
    return [(batch * k // count, batch * (k + 1) // count) for k in range(count)]


def whole_blocks(batch: int, layers: int = 1) -> list[tuple[int, int]]:
    """The stream blocks that each run a whole training step as one task (run_alone): the
    stream_blocks of a one-layer model, whose only parallelism is across blocks; a single
    block for deeper stacks, whose wavefront runs the layers of each block side by side and
    whose products over all rows use every thread. A function of the batch and the depth
    alone, like stream_blocks."""
    if layers > 1:
        return [(0, batch)]
    return stream_blocks(batch, layers)


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads() -> int:
    """The number of threads charlm computes on (see the module docstring)."""
    if getattr(_local, "alone", False):
        return 1
    if _threads is not None:
        return _threads
    return threads_from_env() or available_cores()


def threads_from_env() -> int | None:
    """CHARLM_THREADS as a positive integer, or None when unset; ValueError when malformed."""
    text = os.environ.get(THREADS_ENVVAR, "").strip()
    if not text:
        return None
    value = int(text)
    if value < 1:
        raise ValueError(f"{THREADS_ENVVAR} must be a positive integer, not {text!r}")
    return value


def set_threads(count: int | None) -> int:
    """Compute on `count` threads from now on (None: back to the default); the large products
    over all rows then run on as many BLAS threads. Returns the count in force."""
    global _threads
    if count is not None and count < 1:
        raise ValueError(f"thread count must be at least 1, not {count}")
    _threads = count
    lib = kernel_blas() if count is not None else None  # loading BLAS costs a short run its start-up
    if lib is not None:
        lib.set_num_threads(count)
    return threads()


@functools.cache
def _pool(workers: int) -> futures.ThreadPoolExecutor:
    pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="charlm")
    atexit.register(pool.shutdown, wait=False)
    return pool


def run_wavefront(blocks: int, layers: int, chunks: int, task: Callable[[int, int, int], None],
                  reverse: bool = False) -> None:
    """Call task(block, layer, chunk) for every triple, after task(block, layer-1, chunk) and
    task(block, layer, chunk-1) (reverse: after task(block, layer+1, chunk) and
    task(block, layer, chunk+1)).

    A task starts as soon as both of its dependencies have ended, on the first thread free (the
    calling thread is one of them), the earliest wavefront phase (layer + chunk) first: no
    thread waits for a whole phase to end, so layer l runs ahead of layer l+1 when its tasks are
    the shorter. One thread runs the phases in order. BLAS runs on one thread throughout.
    """
    cells = [(k, l, p - l) for p in range(layers + chunks - 1) for l in range(layers)
             for k in range(blocks) if 0 <= p - l < chunks]
    if reverse:
        cells = [(k, layers - 1 - l, chunks - 1 - c) for k, l, c in cells]
    with sequential_blas():
        workers = min(threads(), blocks * min(layers, chunks))
        if workers <= 1:
            for cell in cells:
                task(*cell)
        else:
            _Dependencies(cells, layers, chunks, reverse).run(_pool(workers - 1), workers - 1, task)


class _Dependencies:
    """The wavefront's tasks run by several threads as their dependencies end (run_wavefront)."""

    def __init__(self, cells, layers: int, chunks: int, reverse: bool):
        self.order = {cell: i for i, cell in enumerate(cells)}  # phase order: the priority
        self.step = -1 if reverse else 1
        self.layers, self.chunks = layers, chunks
        self.waiting = {cell: sum(1 for dep in self._around(cell, -self.step)) for cell in cells}
        self.ready = [(self.order[c], c) for c, n in self.waiting.items() if n == 0]
        heapq.heapify(self.ready)
        self.left = len(cells)
        self.failed = False
        self.cond = threading.Condition()

    def _around(self, cell, step: int):
        """The cells one layer and one chunk `step` away from cell (dependencies: -step)."""
        k, l, c = cell
        for near in ((k, l + step, c), (k, l, c + step)):
            if 0 <= near[1] < self.layers and 0 <= near[2] < self.chunks:
                yield near

    def run(self, pool, helpers: int, task) -> None:
        """Drain on the calling thread and `helpers` pool threads; raise the first error once
        every task started has ended (none starts after an error)."""
        _drain_everywhere(pool, helpers, functools.partial(self._drain, task))

    def _drain(self, task) -> None:
        while True:
            with self.cond:
                while not self.ready and self.left and not self.failed:
                    self.cond.wait()
                if self.failed or not self.left:
                    return
                _, cell = heapq.heappop(self.ready)
            try:
                task(*cell)
            except BaseException:
                with self.cond:
                    self.failed = True
                    self.cond.notify_all()
                raise
            with self.cond:
                self.left -= 1
                for after in self._around(cell, self.step):
                    self.waiting[after] -= 1
                    if self.waiting[after] == 0:
                        heapq.heappush(self.ready, (self.order[after], after))
                self.cond.notify_all()


def run_parts(calls: list[Callable[[], None]]) -> None:
    """Run independent calls in parallel on the threads there are (all of them on pool threads,
    so that 4 calls on 2 threads split 2 and 2). Return when all have ended, raising the first error."""
    workers = min(len(calls), threads())
    if workers <= 1:
        for call in calls:
            call()
        return
    pending = [_pool(workers).submit(_guarded, call) for call in calls]
    futures.wait(pending)
    for f in pending:
        f.result()


def run_alone(calls: list[Callable[[], object]]) -> list:
    """run_parts, each call computing on one thread: inside a call threads() is 1 and BLAS
    runs on one thread, so a call computes the same bits on whichever thread runs it and
    whatever runs beside it. Returns the calls' results, in order. The calling thread takes
    calls too (one hand-off fewer)."""
    results: list = [None] * len(calls)
    todo = iter(enumerate(calls))
    lock = threading.Lock()

    def drain() -> None:
        while True:
            with lock:
                item = next(todo, None)
            if item is None:
                return
            k, call = item
            results[k] = _alone(call)

    with sequential_blas():
        workers = min(len(calls), threads())
        if workers <= 1:
            drain()
        else:
            _drain_everywhere(_pool(workers - 1), workers - 1, drain)
    return results


def _alone(call: Callable[[], object]):
    _local.alone = True
    try:
        return call()
    finally:
        _local.alone = False


def _guarded(call: Callable, *args) -> None:
    """Run call(*args) on a pool thread with numpy's floating-point warnings off: overflow to
    inf or NaN is expected in a diverging run and detected by the training loop, and numpy's
    error state is per thread (the caller's np.errstate does not reach here)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        call(*args)


def _drain_everywhere(pool, helpers: int, drain: Callable[[], None]) -> None:
    """Run drain() on the calling thread and on `helpers` pool threads at once (each takes
    work from a shared source until none is left); return when all have ended, raising the
    first error."""
    pending = [pool.submit(_guarded, drain) for _ in range(helpers)]
    try:
        drain()
    finally:
        futures.wait(pending)  # never leave a task writing into buffers after we return
    for f in pending:
        f.result()
