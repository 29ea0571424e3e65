"""The compiled sampler against a plain-numpy twin built on Model.forward."""

import numpy as np
import pytest

from charlm.config import CELLS, ModelConfig
from charlm.nn.model import Model
from charlm.sample import _SamplerWeights, generate
from charlm.nn.kernels.sampling import sample_tokens
from charlm.data.tokenizer import Tokenizer

from sampling_reference import next_token_distribution

VOCAB = ["<unk>", "<eos>"] + list("abcdefghij")


def make_model(cell: str, embed: int, seed: int = 0) -> Model:
    cfg = ModelConfig(cell=cell, vocab_size=len(VOCAB), embed=embed, hidden=12, layers=2, dropout=0.0)
    model = Model.create(cfg, seed=seed)
    rng = np.random.default_rng(seed + 1)
    model.params["decoder.weight"] *= 8.0  # sharpen the distribution so sampling is not uniform
    model.params["decoder.bias"][:] = rng.normal(0, 1, len(VOCAB))
    return model


def numpy_twin(model: Model, start: int, uniforms, temp: float, top_k: int, banned: int, top_p: float = 1.0):
    """Tokens drawn one at a time with Model.forward and next_token_distribution."""
    state, token, out = model.zero_state(1), start, []
    for u in uniforms:
        top, state, _ = model.forward(np.array([[token]], np.int32), state)
        probs = next_token_distribution(model.logits(top)[0], temp, top_k, banned, top_p)
        cdf = np.cumsum(probs)
        token = int(np.searchsorted(cdf, u * cdf[-1], side="right"))
        out.append(token)
    return out


def compiled(model: Model, start: int, uniforms, temp: float, top_k: int, banned: int,
             top_p: float = 1.0, with_probs: bool = False):
    """Tokens the compiled loop draws for one stream, or for several: uniforms (n,) or (n, K).
    with_probs: (tokens, their probabilities) of one stream."""
    uniforms = np.asarray(uniforms)
    columns = uniforms.reshape(len(uniforms), -1)
    K = columns.shape[1]
    out = np.empty(columns.shape, np.int64)
    probs = np.empty(columns.shape, np.float64)
    n = sample_tokens(*_SamplerWeights(model, K).args(), model.zero_state(K), np.full(K, start, np.int64),
                       np.ascontiguousarray(columns), float(temp), top_k, float(top_p), banned, 1, False,
                       out, probs, np.ones(K, np.bool_))
    if with_probs:
        return out[:n, 0].tolist(), probs[:n, 0]
    return out[:n, 0].tolist() if uniforms.ndim == 1 else out[:n].T.tolist()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("embed", [5, 0])
@pytest.mark.parametrize("temp,top_k,top_p", [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.3, 4, 1.0), (0.0, 0, 1.0),
                                               (1.0, 0, 0.8), (1.3, 5, 0.6), (0.8, 0, 0.3)])
def test_compiled_sampler_draws_what_the_numpy_twin_draws(cell, embed, temp, top_k, top_p):
    model = make_model(cell, embed)
    uniforms = np.random.default_rng(7).random(40)
    expected = numpy_twin(model, 1, uniforms, temp, top_k, banned=0, top_p=top_p)
    assert compiled(model, 1, uniforms, temp, top_k, banned=0, top_p=top_p) == expected


@pytest.mark.parametrize("cell", CELLS)
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
    order = [i for i, _, _ in pieces]
    assert order == sorted(order) and set(order) == set(range(5))  # sample by sample
    texts = ["".join(p for i, p, _ in pieces if i == k) for k in range(5)]
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
    other_seed = list(generate(model, tok, length=500, temp=1.0, prime="ab", until_eos=True,
                               rng=np.random.default_rng(6)))
    assert other_seed != pieces  # the seed, not a constant, decides the text
    assert pieces[-1] == "\n" and "\n" not in "".join(pieces[:-1])
    assert all(len(p) == 1 for p in pieces)
    long = list(generate(model, tok, length=150, temp=1.0, rng=np.random.default_rng(1)))
    assert len(long) == 150 and "\ufffd" not in "".join(long)


def test_fast_shifted_exp_is_accurate_and_zero_for_minus_infinity():
    from charlm.nn.kernels.sampling import _exp_shifted_

    x = np.linspace(-200.0, 0.0, 200_001).astype(np.float32)
    x[::1000] = -np.inf
    out = x.copy()
    total = _exp_shifted_(out, np.float32(0.0), 1.0)
    exact = np.where(np.isneginf(x), 0.0, np.exp(x.astype(np.float64)))
    assert (out[np.isneginf(x)] == 0).all()
    big = exact > 1e-30
    assert (np.abs(out[big] - exact[big]) / exact[big]).max() < 5e-6
    assert total == pytest.approx(exact.sum(), rel=1e-5)


def reference_top_p(logits: np.ndarray, temp: float, top_k: int, top_p: float) -> np.ndarray:
    """The textbook recipe, token by token: top-k logits, softmax at temp, then the most likely
    tokens added one at a time until their mass reaches top_p, renormalized (UNK id 0 banned)."""
    z = np.asarray(logits, np.float64).copy()
    z[0] = -np.inf
    if top_k:
        z[np.argsort(-z, kind="stable")[top_k:]] = -np.inf
    p = np.exp((z - z.max()) / temp)
    p /= p.sum()
    kept, mass = [], 0.0
    for v in sorted(range(len(p)), key=lambda v: (-p[v], v)):
        if mass >= top_p:
            break
        kept.append(v)
        mass += p[v]
    out = np.zeros_like(p)
    out[kept] = p[kept] / p[kept].sum()
    return out


@pytest.mark.parametrize("temp,top_k,top_p", [(1.0, 0, 0.5), (0.7, 0, 0.9), (1.5, 6, 0.75), (1.0, 8, 0.9)])
def test_top_p_keeps_the_nucleus_of_the_renormalized_distribution(temp, top_k, top_p):
    logits = np.random.default_rng(2).normal(0, 2, 40).astype(np.float32)
    got = next_token_distribution(logits, temp, top_k, 0, top_p)
    expected = reference_top_p(logits, temp, top_k, top_p)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    kept = np.count_nonzero(got)
    assert 1 <= kept < (top_k or 39)  # the nucleus is smaller than what top-k left
    assert got.sum() == pytest.approx(1.0)


def test_top_p_one_changes_nothing_and_a_tiny_top_p_is_greedy():
    logits = np.random.default_rng(3).normal(0, 1, 30).astype(np.float32)
    np.testing.assert_array_equal(next_token_distribution(logits, 0.9, 0, 0, 1.0),
                                  next_token_distribution(logits, 0.9, 0, 0))
    greedy = next_token_distribution(logits, 0.9, 0, 0, 1e-9)
    assert greedy[int(np.argmax(logits[1:])) + 1] == 1.0


def test_compiled_sampler_reports_each_drawn_token_probability():
    model = make_model("gru", 5)
    uniforms = np.random.default_rng(9).random(25)
    tokens, probs = compiled(model, 1, uniforms, 0.8, 0, 0, top_p=0.9, with_probs=True)
    state, token = model.zero_state(1), 1
    for drawn, prob in zip(tokens, probs):
        top, state, _ = model.forward(np.array([[token]], np.int32), state)
        dist = next_token_distribution(model.logits(top)[0], 0.8, 0, 0, 0.9)
        assert prob == pytest.approx(dist[drawn], rel=1e-4)
        token = drawn
    assert 0 < probs.min() < probs.max() <= 1.0


def test_a_sample_without_prime_starts_from_eos_at_the_beginning_of_a_line():
    from charlm.sample import generate_samples

    model = make_model("lstm", 5)
    tok = Tokenizer("char", VOCAB)
    pieces = list(generate_samples(model, tok, num=1, length=30, temp=1.0, rng=np.random.default_rng(6)))
    uniforms = np.random.default_rng(6).random((30, 1))[:, 0]  # the draws generate_samples makes
    from_eos = numpy_twin(model, tok.eos_id, uniforms, 1.0, 0, tok.unk_id)
    assert [p for _, p, _ in pieces] == [tok.token_text(t) for t in from_eos]

    def first_distribution(start: int) -> np.ndarray:
        top, _, _ = model.forward(np.array([[start]], np.int32), model.zero_state(1))
        return next_token_distribution(model.logits(top)[0], 1.0, 0, tok.unk_id)

    first = from_eos[0]
    assert pieces[0][2] == pytest.approx(first_distribution(tok.eos_id)[first], rel=1e-4)
    assert abs(first_distribution(2)[first] - first_distribution(tok.eos_id)[first]) > 1e-3


def test_a_large_decoder_samples_the_same_tokens_on_any_thread_count():
    """A decoder of THREADED_DECODER weights or more runs its products on every BLAS thread;
    the tokens drawn with a seed stay the same."""
    import charlm.nn.stack as stack
    from charlm.sample import THREADED_DECODER

    V, H = 6000, 200
    assert V * H >= THREADED_DECODER
    model = Model.create(ModelConfig(cell="lstm", vocab_size=V, embed=32, hidden=H, layers=1, dropout=0.0), seed=3)
    tokenizer = Tokenizer("char", ["<unk>", "<eos>"] + [chr(0x4E00 + i) for i in range(V - 2)])
    drawn = []
    for threads in (1, 2):
        stack.set_threads(threads)
        try:
            drawn.append(list(generate(model, tokenizer, length=300, temp=1.0, rng=np.random.default_rng(0))))
        finally:
            stack.set_threads(None)
    assert drawn[0] == drawn[1]
