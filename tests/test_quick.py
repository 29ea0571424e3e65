"""The numpy start-up path for short inputs (charlm.nn.quick) against the compiled kernels."""

import numpy as np
import pytest

from charlm.config import CELLS, ModelConfig
from charlm.nn.model import Model
from charlm.nn.quick import quick_logprobs


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("embed", [6, 0])
def test_quick_path_equals_the_kernels(cell, embed):
    model = Model.create(ModelConfig(cell=cell, vocab_size=11, embed=embed, hidden=9, layers=2, dropout=0.3))
    rng = np.random.default_rng(4)
    tokens = rng.integers(0, 11, (13, 3)).astype(np.int32)
    targets = rng.integers(0, 11, (13, 3)).astype(np.int32)
    state = (rng.standard_normal(model.zero_state(3).shape) * 0.5).astype(np.float32)
    expected, expected_state = model.target_logprobs(tokens, targets, state)
    got, got_state = quick_logprobs(model, tokens, targets, state)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_state, expected_state, rtol=1e-5, atol=1e-6)


def test_scoring_a_long_line_takes_the_kernel_path_and_agrees():
    from charlm.nn.quick import QUICK_MAX_TOKENS
    from charlm.score import score_text
    from charlm.data.tokenizer import Tokenizer

    tokenizer = Tokenizer("char", ["<unk>", "<eos>", "a", "b", " "])
    model = Model.create(ModelConfig(vocab_size=5, embed=4, hidden=8, layers=1))
    short = "ab " * 20
    long = "ab " * (QUICK_MAX_TOKENS // 3 + 5)
    per_token_short = score_text(model, tokenizer, short).logprob
    per_token_long = score_text(model, tokenizer, long).logprob
    assert np.isfinite(per_token_short) and np.isfinite(per_token_long)
    # The long line through the kernels equals the numpy path run on it directly.
    ids = np.array([1, *tokenizer.encode_line(long), 1], np.int32)
    logp, _ = quick_logprobs(model, ids[:-1, None], ids[1:, None], model.zero_state(1))
    np.testing.assert_allclose(per_token_long, logp.sum(), rtol=1e-5)
