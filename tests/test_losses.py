"""Softmax cross-entropy: the fused Numba kernels against numpy's reference (charlm.nn.losses)."""

from __future__ import annotations

import numpy as np
import pytest

from charlm.nn import losses, stack
from charlm.nn.losses import fused_softmax_xent_, fused_target_logprobs, target_logprobs

from loss_reference import softmax_xent_


def problem(n, V, dtype, seed=0, scale=4.0):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, V)) * scale).astype(dtype)
    return logits, rng.integers(0, V, n).astype(np.int32)


@pytest.mark.parametrize("n, V", [(1, 2), (5, 7), (130, 1000), (333, 65)])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
def test_fused_xent_equals_numpy(n, V, dtype, tol):
    logits, targets = problem(n, V, dtype)
    loss, dlogits = softmax_xent_(logits.copy(), targets)
    f_loss, f_dlogits, f_dbias = fused_softmax_xent_(logits.copy(), targets)
    assert f_dlogits.dtype == dtype and f_dbias.dtype == dtype
    assert abs(f_loss - loss) <= tol * max(1.0, loss)
    np.testing.assert_allclose(f_dlogits, dlogits, rtol=0, atol=tol / n)
    np.testing.assert_allclose(f_dbias, dlogits.sum(axis=0), rtol=0, atol=tol)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
def test_fused_logprobs_equal_numpy_and_leave_the_logits(dtype, tol):
    logits, targets = problem(200, 500, dtype, scale=10.0)
    before = logits.copy()
    logp = fused_target_logprobs(logits, targets)
    assert logp.dtype == np.float64
    np.testing.assert_array_equal(logits, before)
    np.testing.assert_allclose(logp, target_logprobs(logits.copy(), targets), rtol=tol, atol=tol)


def test_very_unlikely_targets_keep_their_log_probability():
    """A target 200 nats below the best: its exp underflows, its log-probability must not."""
    logits = np.zeros((2, 4), np.float32)
    logits[:, 0] = 200.0
    targets = np.array([1, 0], np.int32)
    logp = fused_target_logprobs(logits, targets)
    assert logp[0] == pytest.approx(-200.0, abs=1e-4) and logp[1] == pytest.approx(0.0, abs=1e-6)
    loss, _, _ = fused_softmax_xent_(logits.copy(), targets)
    assert loss == pytest.approx(100.0, abs=1e-4)


def test_nan_logits_give_a_nan_loss():
    logits, targets = problem(64, 10, np.float32)
    logits[3, 4] = np.nan
    loss, _, _ = fused_softmax_xent_(logits.copy(), targets)
    assert np.isnan(loss)
    assert np.isnan(fused_target_logprobs(logits, targets)[3])


def test_one_core_and_two_give_the_same_bits(monkeypatch):
    logits, targets = problem(4 * losses.MIN_PART_ROWS + 3, 300, np.float32)
    results = []
    for workers in (1, 2):
        monkeypatch.setattr(stack, "_threads", workers)
        loss, dlogits, dbias = fused_softmax_xent_(logits.copy(), targets)
        results.append((loss, dlogits, dbias, fused_target_logprobs(logits, targets)))
    (a_loss, *a_arrays), (b_loss, *b_arrays) = results
    assert a_loss == b_loss
    for a, b in zip(a_arrays, b_arrays):
        np.testing.assert_array_equal(a, b)


def test_bad_shapes_are_refused():
    logits, targets = problem(4, 5, np.float32)
    with pytest.raises(ValueError):
        fused_softmax_xent_(logits, targets[:3])
    with pytest.raises(TypeError):
        fused_target_logprobs(logits.T, targets)  # not C-contiguous


@pytest.mark.parametrize("bad", [-1, 5])
def test_targets_outside_the_vocabulary_are_refused(bad):
    logits, targets = problem(4, 5, np.float32)
    targets[2] = bad
    with pytest.raises(ValueError, match="targets must lie"):
        fused_target_logprobs(logits, targets)
    with pytest.raises(ValueError, match="targets must lie"):
        fused_softmax_xent_(logits, targets)
