"""The wavefront over layers and time chunks (charlm.nn.stack) and the chunked recurrent steps."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import charlm.nn.model as model_module
import charlm.nn.stack as stack
from charlm.config import ModelConfig
from charlm.nn.model import Model
from charlm.nn.recurrent import (recurrent_backward_finish, recurrent_backward_start,
                                 recurrent_backward_steps, recurrent_start, recurrent_steps)
from charlm.nn.stack import chunk_bounds, run_wavefront

try:
    from tests.whole_sequence import recurrent_backward, recurrent_forward
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    from whole_sequence import recurrent_backward, recurrent_forward


@pytest.mark.parametrize("steps", [1, 3, 4, 35, 100, 257])
def test_chunk_bounds_cover_the_steps_in_order(steps):
    bounds = chunk_bounds(steps)
    assert bounds[0][0] == 0 and bounds[-1][1] == steps
    assert all(a < b for a, b in bounds)
    assert all(b == a2 for (_, b), (a2, _) in zip(bounds, bounds[1:]))
    assert len(bounds) <= max(stack.TARGET_CHUNKS, 1)


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("blocks", [1, 3])
@pytest.mark.parametrize("layers,chunks", [(1, 1), (1, 5), (2, 1), (2, 6), (3, 4), (4, 2)])
@pytest.mark.parametrize("reverse", [False, True])
def test_every_task_runs_once_after_its_dependencies(monkeypatch, workers, blocks, layers, chunks, reverse):
    monkeypatch.setattr(stack, "_threads", workers)
    done, lock, threads = set(), threading.Lock(), set()
    step = -1 if reverse else 1

    def task(block, layer, chunk):
        time.sleep(0.005)  # let parallel tasks overlap
        with lock:
            for dep in ((block, layer - step, chunk), (block, layer, chunk - step)):
                if 0 <= dep[1] < layers and 0 <= dep[2] < chunks:
                    assert dep in done, f"{(block, layer, chunk)} ran before {dep}"
            assert (block, layer, chunk) not in done
            done.add((block, layer, chunk))
            threads.add(threading.get_ident())

    run_wavefront(blocks, layers, chunks, task, reverse=reverse)
    assert done == {(k, l, c) for k in range(blocks) for l in range(layers) for c in range(chunks)}
    if workers > 1 and (blocks > 1 or (layers > 1 and chunks > 1)):
        assert len(threads) > 1  # the wavefront did run in parallel


def test_an_error_in_a_task_is_raised_once_the_tasks_running_have_ended(monkeypatch):
    monkeypatch.setattr(stack, "_threads", 2)
    started, finished = [], []

    def task(block, layer, chunk):
        started.append((layer, chunk))
        if (layer, chunk) == (0, 1):
            raise RuntimeError("boom")
        time.sleep(0.05)
        finished.append((layer, chunk))

    with pytest.raises(RuntimeError, match="boom"):
        run_wavefront(1, 2, 3, task)
    # every other task that started had ended when the error came out; none that needs the
    # failed task started
    assert sorted(finished) == sorted(c for c in started if c != (0, 1))
    assert (0, 2) not in started and (1, 1) not in started
    time.sleep(0.1)
    assert len(finished) == len(started) - 1  # nothing was left running


# --- chunked recurrent steps ---------------------------------------------------------------------


def _layer_problem(cell, T=9, B=3, H=5, seed=0):
    G = {"lstm": 4, "gru": 3, "rnn": 1, "leaky": 1}[cell]
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s) * 0.5  # noqa: E731
    return dict(xw=f(T, B, G * H), w_hh=f(G * H, H), b_hh=f(G * H), h0=f(B, H),
                c0=f(B, H) if cell == "lstm" else None, dhs=f(T, B, H),
                leak=rng.uniform(0.1, 1.0, H) if cell == "leaky" else None)


@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "leaky"])
def test_steps_in_slices_give_the_same_bits_as_one_call(cell, keep):
    p = _layer_problem(cell)
    hs, whole = recurrent_forward(cell, p["xw"].copy(), p["w_hh"], p["b_hh"], p["h0"], p["c0"],
                                  keep=keep, leak=p["leak"])
    cache = recurrent_start(cell, p["xw"].copy(), p["w_hh"], p["b_hh"], p["h0"], p["c0"], keep,
                            leak=p["leak"])
    for a, b in [(0, 1), (1, 4), (4, 5), (5, 9)]:
        recurrent_steps(cache, a, b)
    assert np.array_equal(cache.hs, hs)
    if cell == "lstm":
        assert np.array_equal(cache.c_last, whole.c_last)
    if not keep:
        return
    g_whole = recurrent_backward(whole, p["dhs"])
    recurrent_backward_start(cache)
    for a, b in [(6, 9), (5, 6), (1, 5), (0, 1)]:
        recurrent_backward_steps(cache, p["dhs"], a, b)
    g = recurrent_backward_finish(cache)
    for name in ("dxw", "dw_hh", "db_hh", "dh0", "dc0", "dleak"):
        x, y = getattr(g, name), getattr(g_whole, name)
        assert (x is None and y is None) or np.array_equal(x, y), name


def test_steps_out_of_order_are_refused():
    p = _layer_problem("lstm")
    cache = recurrent_start("lstm", p["xw"].copy(), p["w_hh"], p["b_hh"], p["h0"], p["c0"])
    with pytest.raises(ValueError, match="out of order"):
        recurrent_steps(cache, 1, 3)
    recurrent_steps(cache, 0, 4)
    with pytest.raises(ValueError, match="4 of 9"):
        recurrent_backward_start(cache)
    recurrent_steps(cache, 4, 9)
    recurrent_backward_start(cache)
    with pytest.raises(ValueError, match="out of order"):
        recurrent_backward_steps(cache, p["dhs"], 0, 4)
    recurrent_backward_steps(cache, p["dhs"], 3, 9)
    with pytest.raises(ValueError, match="not reached step 0"):
        recurrent_backward_finish(cache)


# --- the model on one or two workers -------------------------------------------------------------


@pytest.mark.parametrize("cell,layers,embed,dropout", [
    ("lstm", 2, 16, 0.2), ("gru", 3, 16, 0.3), ("rnn", 2, 0, 0.0), ("lstm", 3, 0, 0.5),
    ("lstm", 1, 16, 0.3), ("gru", 1, 0, 0.2),  # one layer: whole-block steps side by side
])
def test_any_thread_count_gives_the_same_bits(monkeypatch, cell, layers, embed, dropout):
    """float32 at a size where chunks hold several steps and the streams form 3 blocks: the
    thread count and the schedule must not change a bit."""
    monkeypatch.setattr(stack, "BLOCK_STREAMS", 2)
    cfg = ModelConfig(cell=cell, vocab_size=30, embed=embed, hidden=48, layers=layers,
                      dropout=dropout)
    model = Model.create(cfg, seed=1)
    rng = np.random.default_rng(2)
    tokens = rng.integers(0, 30, (37, 6)).astype(np.int32)
    targets = rng.integers(0, 30, (37, 6)).astype(np.int32)
    state = model.zero_state(6) + np.float32(0.1)
    assert len(chunk_bounds(37)) > 2 and len(stack.stream_blocks(6, layers)) >= 2
    results = []
    for workers in (1, 2, 3, 16):
        monkeypatch.setattr(stack, "_threads", workers)
        loss, grads, new_state = model.loss_and_grads(tokens, targets, state,
                                                      np.random.default_rng(3))
        logp, eval_state = model.target_logprobs(tokens, targets, state)
        results.append((loss, grads, new_state, logp, eval_state))
    (l1, g1, s1, p1, e1) = results[0]
    for l2, g2, s2, p2, e2 in results[1:]:
        assert l1 == l2
        assert np.array_equal(s1, s2) and np.array_equal(p1, p2) and np.array_equal(e1, e2)
        assert g1.keys() == g2.keys()
        for name in g1:
            assert np.array_equal(g1[name], g2[name]), name


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 5, 8, 15, 16, 20, 24, 32, 33, 64, 100])
def test_stream_blocks_cover_the_batch_evenly(batch, layers):
    blocks = stack.stream_blocks(batch, layers)
    assert blocks[0][0] == 0 and blocks[-1][1] == batch
    assert all(b == a2 for (_, b), (a2, _) in zip(blocks, blocks[1:]))
    sizes = [b - a for a, b in blocks]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    per_block = stack.BLOCK_STREAMS * (1 if layers == 1 else 2)
    assert all(per_block // 2 <= size < 2 * per_block for size in sizes) or len(blocks) == 1
    assert (len(blocks) > 1) == (batch >= per_block + per_block // 2)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_whole_block_steps_sum_to_the_step_of_the_batch(monkeypatch, cell):
    """A one-layer model's step runs its stream blocks as whole steps and sums their shares:
    the same loss, gradients and state as one step over all rows, up to rounding."""
    monkeypatch.setattr(stack, "BLOCK_STREAMS", 2)
    model = Model.create(ModelConfig(cell=cell, vocab_size=30, embed=16, hidden=40, layers=1,
                                     dropout=0.25), seed=4)
    rng = np.random.default_rng(5)
    tokens, targets = rng.integers(0, 30, (2, 11, 7)).astype(np.int32)
    state = model.zero_state(7) + np.float32(0.2)
    assert len(stack.whole_blocks(7, 1)) == 4
    loss, grads, new_state = model.loss_and_grads(tokens, targets, state, np.random.default_rng(6))
    monkeypatch.setattr(model_module, "whole_blocks", lambda batch, layers: [(0, batch)])
    loss1, grads1, state1 = model.loss_and_grads(tokens, targets, state, np.random.default_rng(6))
    np.testing.assert_allclose(loss, loss1, rtol=1e-6)
    np.testing.assert_array_equal(new_state, state1)
    for name, g in grads1.items():
        np.testing.assert_allclose(grads[name], g, rtol=1e-4, atol=1e-6 * np.abs(g).max(), err_msg=name)


def test_deeper_stacks_step_as_one_block():
    assert stack.whole_blocks(64, 2) == [(0, 64)]
    assert stack.whole_blocks(64, 1) == stack.stream_blocks(64, 1)


def test_blocks_depend_on_the_batch_and_depth_only(monkeypatch):
    expected = {(32, 1): 2, (32, 2): 1, (64, 2): 2, (20, 2): 1, (64, 1): 4}
    for threads in (1, 2, 16):
        monkeypatch.setattr(stack, "_threads", threads)
        assert {k: len(stack.stream_blocks(*k)) for k in expected} == expected
