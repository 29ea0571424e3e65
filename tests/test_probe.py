"""charlm.views.probe: per-position predictions and hidden states, against charlm.score's totals and
the model's own forward pass."""

import numpy as np
import pytest

from charlm.config import ModelConfig
from charlm.nn.model import Model
from charlm.views.probe import predict, probe
from charlm.nn.quick import QUICK_MAX_TOKENS
from charlm.score import score_text, sequence_ids
from charlm.data.tokenizer import Tokenizer

TOKENIZER = Tokenizer("char", ["<unk>", "<eos>", " ", "a", "b", "c", "d"])
SHORT = "abc dab cab"
LONG = "abcd ba dcab " * (QUICK_MAX_TOKENS // 13 + 4)  # past the numpy path: the compiled one
DOCUMENT = "ab cd\nda bc\n\ncab"


def make_model(cell: str, embed: int = 4) -> Model:
    return Model.create(ModelConfig(cell=cell, vocab_size=TOKENIZER.vocab_size, embed=embed,
                                    hidden=8, layers=2), seed=3)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("text,as_line", [(SHORT, True), (LONG, True), (DOCUMENT, False)])
def test_per_token_logprobs_sum_to_the_score(cell, text, as_line):
    model = make_model(cell)
    ids = sequence_ids(TOKENIZER, text, as_line=as_line)
    expected = score_text(model, TOKENIZER, text, as_line=as_line)
    for preds in (predict(model, ids), probe(model, ids)[0]):
        assert len(preds.logprob) == expected.tokens == len(ids) - 1
        assert abs(preds.logprob.sum() - expected.logprob) < 1e-5


@pytest.mark.parametrize("text", [SHORT, LONG])
def test_ranks_and_top_tokens_agree_with_each_other(text):
    preds = predict(make_model("lstm"), sequence_ids(TOKENIZER, text), k=3)
    assert preds.top_ids.shape == (len(preds.logprob), 3)
    assert np.all(np.diff(preds.top_logprob, axis=1) <= 0)  # most likely first
    first = preds.rank == 1
    np.testing.assert_array_equal(first, preds.targets == preds.top_ids[:, 0])
    for t in range(len(preds.logprob)):
        if preds.rank[t] <= 3:  # the target is among the top 3, at its rank
            assert preds.top_ids[t, preds.rank[t] - 1] == preds.targets[t]
            assert preds.top_logprob[t, preds.rank[t] - 1] == pytest.approx(preds.logprob[t])
        else:
            assert preds.logprob[t] < preds.top_logprob[t, -1]
    # probabilities of a position sum to at most 1 over its top tokens
    assert np.all(np.exp(preds.top_logprob).sum(axis=1) <= 1 + 1e-6)


def test_the_top_k_never_exceeds_the_vocabulary():
    preds = predict(make_model("gru"), sequence_ids(TOKENIZER, SHORT), k=50)
    assert preds.top_ids.shape[1] == TOKENIZER.vocab_size
    assert np.all(preds.rank <= TOKENIZER.vocab_size)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("embed", [4, 0])
def test_probe_states_are_the_forward_pass_states(cell, embed):
    model = make_model(cell, embed)
    ids = sequence_ids(TOKENIZER, DOCUMENT, as_line=False)
    preds, states = probe(model, ids)
    n, L, H = len(ids) - 1, 2, 8
    assert states.hidden.shape == (L, n + 1, H)
    top, final, _ = model.forward(ids[:, None], model.zero_state(1))
    np.testing.assert_allclose(states.hidden[-1], top, atol=1e-5)
    np.testing.assert_allclose(states.hidden[:, -1], final[:, 0, 0], atol=1e-5)
    if cell == "lstm":
        assert states.cells.shape == (L, n + 1, H)
        np.testing.assert_allclose(states.cells[:, -1], final[:, 1, 0], atol=1e-5)
    else:
        assert states.cells is None
    expected = predict(model, ids)
    np.testing.assert_allclose(preds.logprob, expected.logprob, atol=1e-5)
    np.testing.assert_array_equal(preds.top_ids, expected.top_ids)
