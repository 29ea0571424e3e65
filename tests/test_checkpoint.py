"""Model files and training states: round trips, validation errors, PyTorch interoperability."""

from __future__ import annotations

import json

import numpy as np
import pytest

from charlm.checkpoint import (
    FORMAT_VERSION,
    expected_shapes,
    load_model,
    load_training_state,
    save_model,
    save_training_state,
)
from charlm.config import ModelConfig, TokenizerConfig
from charlm.errors import ModelFileError
from charlm.model import Model
from charlm.score import score_text
from charlm.tensorfile import load_tensors, save_tensors
from charlm.tokenizer import Tokenizer

TEXT = "the quick brown fox\njumps over the lazy dog\nÄpfel & Birnen!\n"


def make(cell="lstm", tie=False, embed=6, hidden=8, layers=2, seed=0, text=TEXT):
    tok = Tokenizer.build(text, TokenizerConfig())
    if tie:
        embed = hidden
    cfg = ModelConfig(cell=cell, vocab_size=tok.vocab_size, embed=embed, hidden=hidden,
                      layers=layers, dropout=0.1, tie=tie)
    return Model.create(cfg, seed=seed), tok


def rewrite(src, dst, tensors=None, header=None):
    """Copy a model file, changing its tensors and/or its charlm header."""
    t, meta = load_tensors(src)
    h = json.loads(meta["charlm"])
    if tensors is not None:
        tensors(t)
    if header is not None:
        header(h)
    save_tensors(dst, t, {"charlm": json.dumps(h)})


@pytest.fixture
def saved(tmp_path):
    model, tok = make()
    path = tmp_path / "m.safetensors"
    save_model(path, model, tok, extra={"summary": {"steps": 3}, "corpus": "x.txt"})
    return path, model, tok


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("embed", [6, 0])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_round_trip(tmp_path, cell, embed):
    model, tok = make(cell, embed=embed)
    path = tmp_path / "m.safetensors"
    save_model(path, model, tok, extra={"summary": {"steps": 3, "best": 1.5}, "corpus": "x.txt"})
    loaded, tok2, header = load_model(path)
    assert loaded.config == model.config
    assert list(loaded.params) == list(model.params)
    for name, p in model.params.items():
        q = loaded.params[name]
        assert q.dtype == np.float32 and q.flags.c_contiguous and q.flags.writeable
        np.testing.assert_array_equal(q, p, err_msg=name)
        assert q.tobytes() == p.tobytes()  # bit-identical
    assert tok2.level == tok.level and tok2.tokens == tok.tokens
    np.testing.assert_array_equal(tok2.encode(TEXT + "zZ"), tok.encode(TEXT + "zZ"))
    assert header["summary"] == {"steps": 3, "best": 1.5} and header["corpus"] == "x.txt"
    assert header["format"] == "charlm" and header["format_version"] == FORMAT_VERSION
    # the loaded model computes the same thing
    tokens = np.array([[1, 2], [3, 4], [5, 1]])
    a, sa = model.target_logprobs(tokens, tokens[::-1], model.zero_state(2))
    b, sb = loaded.target_logprobs(tokens, tokens[::-1], loaded.zero_state(2))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)


def test_tied_model_loads_tied(tmp_path):
    model, tok = make("gru", tie=True)
    path = tmp_path / "tied.safetensors"
    save_model(path, model, tok)
    loaded, _, _ = load_model(path)
    assert loaded.config.tie
    assert loaded.params["decoder.weight"] is loaded.params["embedding.weight"]
    assert loaded.trainable_names() == model.trainable_names()
    np.testing.assert_array_equal(loaded.params["embedding.weight"], model.params["embedding.weight"])
    # still tied after a training step
    tokens = np.array([[1, 2], [3, 4]])
    _, grads, _ = loaded.loss_and_grads(tokens, tokens, loaded.zero_state(2))
    loaded.params["embedding.weight"] -= 0.1 * grads["embedding.weight"]
    assert np.array_equal(loaded.params["decoder.weight"], loaded.params["embedding.weight"])


def test_save_overwrites_and_keeps_file_loadable(saved):
    path, model, tok = saved
    model.params["decoder.bias"] += 1.0
    save_model(path, model, tok)
    loaded, _, header = load_model(path)
    np.testing.assert_array_equal(loaded.params["decoder.bias"], model.params["decoder.bias"])
    assert "summary" not in header
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


# --- errors ----------------------------------------------------------------------------------------


def test_wrong_shape(saved, tmp_path):
    path, _, _ = saved
    bad = tmp_path / "bad.safetensors"
    def cut(t):
        t["rnn.weight_hh_l1"] = t["rnn.weight_hh_l1"][:, :-1].copy()

    rewrite(path, bad, tensors=cut)
    with pytest.raises(ModelFileError, match=r"rnn\.weight_hh_l1.*\(32, 7\).*\(32, 8\)") as e:
        load_model(bad)
    assert str(bad) in str(e.value) and "retrain" in str(e.value)


def test_missing_tensor(saved, tmp_path):
    path, _, _ = saved
    bad = tmp_path / "bad.safetensors"
    rewrite(path, bad, tensors=lambda t: t.pop("rnn.bias_ih_l0"))
    with pytest.raises(ModelFileError, match=r"rnn\.bias_ih_l0.*missing") as e:
        load_model(bad)
    assert str(bad) in str(e.value)


def test_newer_format_version(saved, tmp_path):
    path, _, _ = saved
    bad = tmp_path / "new.safetensors"
    rewrite(path, bad, header=lambda h: h.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ModelFileError, match=r"newer charlm.*upgrade") as e:
        load_model(bad)
    assert str(bad) in str(e.value)


def test_plain_safetensors_without_charlm_header(saved, tmp_path):
    path, model, _ = saved
    plain = tmp_path / "plain.safetensors"
    save_tensors(plain, dict(model.params), {})
    with pytest.raises(ModelFileError, match="not a charlm model"):
        load_model(plain)
    other = tmp_path / "other.safetensors"
    save_tensors(other, dict(model.params), {"format": "pt"})
    with pytest.raises(ModelFileError, match="not a charlm model"):
        load_model(other)


@pytest.mark.parametrize(
    "change",
    [
        lambda h: h.update(model=["lstm"]),  # not an object
        lambda h: h["model"].update(hidden="8"),  # wrong type
        lambda h: h["model"].update(vocab_size=3),  # disagrees with the tokenizer
        lambda h: h["model"].update(cell="transformer"),
        lambda h: h.pop("tokenizer"),
        lambda h: h["tokenizer"].update(tokens=["a", "b"]),
    ],
    ids=["model-list", "hidden-str", "vocab", "cell", "no-tokenizer", "bad-tokenizer"],
)
def test_damaged_header(saved, tmp_path, change):
    path, _, _ = saved
    bad = tmp_path / "bad.safetensors"
    rewrite(path, bad, header=change)
    with pytest.raises(ModelFileError):
        load_model(bad)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no model at"):
        load_model(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_parameter_refused(saved, value):
    path, model, tok = saved
    before = path.read_bytes()
    model.params["rnn.weight_hh_l0"][3, 2] = value
    with pytest.raises(ModelFileError, match=r"rnn\.weight_hh_l0.*NaN"):
        save_model(path, model, tok)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    load_model(path)


# --- training states ---------------------------------------------------------------------------------


def test_training_state_round_trip(tmp_path):
    model, tok = make("lstm", tie=True)
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((2, 2, 3, 8)).astype(np.float32)
    moment = rng.standard_normal((32, 8)).astype(np.float32)
    arrays = {"hidden": hidden, "opt.m.rnn.weight_hh_l0": moment}
    info = {"progress": {"step": 7, "tokens": 700}, "rng": np.random.default_rng(3).bit_generator.state,
            "optimizer": {"kind": "adam", "lr": 0.002, "t": 7}}
    path = tmp_path / "m.state.safetensors"
    save_training_state(path, model, tok, arrays, info)
    m2, tok2, arrays2, info2 = load_training_state(path)
    assert m2.config == model.config and tok2.tokens == tok.tokens
    assert m2.params["decoder.weight"] is m2.params["embedding.weight"]
    for name, p in model.params.items():
        assert m2.params[name].tobytes() == p.tobytes(), name
    assert set(arrays2) == set(arrays)
    for k, v in arrays.items():
        assert arrays2[k].dtype == v.dtype and arrays2[k].tobytes() == v.tobytes(), k
    assert info2 == json.loads(json.dumps(info))
    g = np.random.default_rng(0)
    g.bit_generator.state = info2["rng"]
    assert g.random() == np.random.default_rng(3).random()


def test_training_state_errors(saved, tmp_path):
    path, _, _ = saved
    with pytest.raises(ModelFileError, match="no training state"):
        load_training_state(tmp_path / "none.state.safetensors")
    with pytest.raises(ModelFileError, match="not a charlm training state"):
        load_training_state(path)  # a model file


# --- interoperability ------------------------------------------------------------------------------


def _torch_reference():
    pytest.importorskip("torch")
    try:
        from tests import torch_reference as tref
    except ImportError:  # tests/ is not a package: pytest puts it on sys.path
        import torch_reference as tref
    return tref


@pytest.mark.parametrize("tie,embed", [(False, 6), (True, 8), (False, 0)])
def test_loads_with_safetensors_into_torch(tmp_path, tie, embed):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    torch = pytest.importorskip("torch")
    tref = _torch_reference()
    from safetensors import safe_open
    from safetensors.torch import load_file

    model, tok = make("lstm", tie=tie, embed=embed)
    path = tmp_path / "m.safetensors"
    save_model(path, model, tok)
    arrays = safetensors_numpy.load_file(str(path))
    assert set(arrays) == set(expected_shapes(model.config))
    for name, a in arrays.items():
        assert a.dtype == np.float32 and a.tobytes() == model.params[name].tobytes(), name
    with safe_open(str(path), framework="numpy") as f:
        header = json.loads(f.metadata()["charlm"])
    assert header["model"]["cell"] == "lstm"

    net = tref.TorchLM(model.config)
    net.load_state_dict(load_file(str(path)), strict=True)
    net.eval()
    tokens = np.array([[1, 2, 3], [4, 5, 6], [7, 1, 2]])
    state = model.zero_state(3)
    logp, _ = model.target_logprobs(tokens, tokens[::-1], state)
    with torch.no_grad():
        logits, _ = net(torch.tensor(tokens, dtype=torch.long), tref.torch_state(model, state))
        targets = torch.tensor(tokens[::-1].copy())[..., None]
        tlogp = torch.log_softmax(logits, -1).gather(-1, targets)[..., 0]
    np.testing.assert_allclose(logp, tlogp.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_score_text_equals_torch_line_logprob(tmp_path, cell):
    """The promise: a line's log-prob is the torch module's sum over [EOS]+line+[EOS] from [EOS]+line."""
    torch = pytest.importorskip("torch")
    tref = _torch_reference()
    model, tok = make(cell, embed=8, hidden=16, seed=2)
    rng = np.random.default_rng(0)
    for name in model.trainable_names():  # sharper than a fresh model's near-uniform output
        model.params[name] += rng.standard_normal(model.params[name].shape).astype(np.float32) * 0.3
    path = tmp_path / "m.safetensors"
    save_model(path, model, tok)
    loaded, tok2, _ = load_model(path)
    net = tref.torch_module(loaded)
    eos = tok2.eos_id
    lines = ["the lazy fox", "", "Äpfel unknown€", "x" * 3 + TEXT.replace("\n", " ") * 30]
    for line in lines:
        s = score_text(loaded, tok2, line)
        ids = [eos, *tok2.encode_line(line).tolist(), eos]
        x = torch.tensor(ids[:-1], dtype=torch.long)[:, None]
        y = torch.tensor(ids[1:], dtype=torch.long)
        with torch.no_grad():
            logits, _ = net(x)  # zero initial state
            expected = torch.log_softmax(logits[:, 0].double(), -1).gather(-1, y[:, None]).sum().item()
        assert s.tokens == len(ids) - 1
        assert s.unk == sum(i == tok2.unk_id for i in ids[1:])
        assert s.logprob == pytest.approx(expected, rel=1e-4), line[:20]
