"""The compiled sampler against a plain-numpy twin built on Model.forward."""

import numpy as np
import pytest

from charlm.config import ModelConfig
from charlm.model import Model
from charlm.sample import _SamplerWeights, generate, next_token_distribution
from charlm.kernels.sampling import _sample_tokens
from charlm.tokenizer import Tokenizer

VOCAB = ["<unk>", "<eos>"] + list("abcdefghij")


def make_model(cell: str, embed: int, seed: int = 0) -> Model:
    cfg = ModelConfig(cell=cell, vocab_size=len(VOCAB), embed=embed, hidden=12, layers=2, dropout=0.0)
    model = Model.create(cfg, seed=seed)
    rng = np.random.default_rng(seed + 1)
    model.params["decoder.weight"] *= 8.0  # sharpen the distribution so sampling is not uniform
    model.params["decoder.bias"][:] = rng.normal(0, 1, len(VOCAB))
    return model


def numpy_twin(model: Model, start: int, uniforms, temp: float, top_k: int, banned: int):
    """Tokens drawn one at a time with Model.forward and next_token_distribution."""
    state, token, out = model.zero_state(1), start, []
    for u in uniforms:
        top, state, _ = model.forward(np.array([[token]], np.int32), state)
        probs = next_token_distribution(model.logits(top)[0], temp, top_k, banned)
        cdf = np.cumsum(probs)
        token = int(np.searchsorted(cdf, u * cdf[-1], side="right"))
        out.append(token)
    return out


def compiled(model: Model, start: int, uniforms, temp: float, top_k: int, banned: int):
    """Tokens the compiled loop draws for one stream, or for several: uniforms (n,) or (n, K)."""
    uniforms = np.asarray(uniforms)
    columns = uniforms.reshape(len(uniforms), -1)
    K = columns.shape[1]
    out = np.empty(columns.shape, np.int64)
    n = _sample_tokens(*_SamplerWeights(model, K).args(), model.zero_state(K), np.full(K, start, np.int64),
                       np.ascontiguousarray(columns), float(temp), top_k, banned, 1, False, out,
                       np.ones(K, np.bool_))
    return out[:n, 0].tolist() if uniforms.ndim == 1 else out[:n].T.tolist()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "leaky", "esn"])
@pytest.mark.parametrize("embed", [5, 0])
@pytest.mark.parametrize("temp,top_k", [(1.0, 0), (0.7, 0), (1.3, 4), (0.0, 0)])
def test_compiled_sampler_draws_what_the_numpy_twin_draws(cell, embed, temp, top_k):
    model = make_model(cell, embed)
    uniforms = np.random.default_rng(7).random(40)
    expected = numpy_twin(model, 1, uniforms, temp, top_k, banned=0)
    assert compiled(model, 1, uniforms, temp, top_k, banned=0) == expected


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "leaky", "esn"])
@pytest.mark.parametrize("embed", [5, 0])
def test_streams_drawn_together_draw_what_each_draws_alone(cell, embed):
    model = make_model(cell, embed)
    uniforms = np.random.default_rng(11).random((30, 4))
    together = compiled(model, 1, uniforms, 0.9, 0, banned=0)
    assert together == [numpy_twin(model, 1, uniforms[:, k], 0.9, 0, banned=0) for k in range(4)]
    assert len({tuple(t) for t in together}) > 1  # the streams do differ


def test_samples_end_at_eos_one_by_one_and_come_out_in_order():
    from charlm.sample import generate_samples

    model = make_model("gru", 5)
    model.params["decoder.bias"][1] = 3.0  # EOS likely: lines end soon, at different steps
    tok = Tokenizer("char", VOCAB)
    run = lambda num: list(generate_samples(model, tok, num=num, length=300, temp=1.0, until_eos=True,  # noqa: E731
                                            rng=np.random.default_rng(4)))
    pieces = run(5)
    assert pieces == run(5)
    order = [i for i, _ in pieces]
    assert order == sorted(order) and set(order) == set(range(5))  # sample by sample
    texts = ["".join(p for i, p in pieces if i == k) for k in range(5)]
    assert all(t.endswith("\n") and "\n" not in t[:-1] for t in texts)
    assert len(set(texts)) > 1


def test_banned_token_is_never_drawn_even_when_it_dominates():
    model = make_model("lstm", 5)
    model.params["decoder.bias"][0] = 50.0  # UNK would take all the mass
    tokens = compiled(model, 1, np.random.default_rng(0).random(200), 1.0, 0, banned=0)
    assert 0 not in tokens and len(tokens) == 200


def test_top_k_one_is_greedy():
    model = make_model("gru", 5)
    uniforms = np.random.default_rng(3).random(30)
    assert compiled(model, 1, uniforms, 1.0, 1, 0) == compiled(model, 1, uniforms, 0.0, 0, 0)


def test_generate_streams_text_stops_at_eos_and_repeats_with_a_seed():
    model = make_model("lstm", 5)
    model.params["decoder.bias"][1] = 4.0  # EOS likely: lines end soon
    tok = Tokenizer("char", VOCAB)
    run = lambda: list(generate(model, tok, length=500, temp=1.0, prime="ab", until_eos=True,  # noqa: E731
                                rng=np.random.default_rng(5)))
    pieces = run()
    assert pieces == run()
    assert pieces[-1] == "\n" and "\n" not in "".join(pieces[:-1])
    assert all(len(p) == 1 for p in pieces)
    long = list(generate(model, tok, length=150, temp=1.0, rng=np.random.default_rng(1)))
    assert len(long) == 150 and "\ufffd" not in "".join(long)


def test_fast_shifted_exp_is_accurate_and_zero_for_minus_infinity():
    from charlm.kernels.sampling import _exp_shifted_

    x = np.linspace(-200.0, 0.0, 200_001).astype(np.float32)
    x[::1000] = -np.inf
    out = x.copy()
    total = _exp_shifted_(out, np.float32(0.0), 1.0, np.empty(len(x), np.int32))
    exact = np.where(np.isneginf(x), 0.0, np.exp(x.astype(np.float64)))
    assert (out[np.isneginf(x)] == 0).all()
    big = exact > 1e-30
    assert (np.abs(out[big] - exact[big]) / exact[big]).max() < 5e-6
    assert total == pytest.approx(exact.sum(), rel=1e-5)
