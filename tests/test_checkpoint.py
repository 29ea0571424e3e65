"""Model files and training states: round trips, validation errors, PyTorch interoperability."""

from __future__ import annotations

import json

import numpy as np
import pytest

from charlm.io.checkpoint import (
    FORMAT_VERSION,
    expected_shapes,
    load_model,
    load_training_state,
    save_model,
    save_training_state,
)
from charlm.config import CELLS, ModelConfig, TokenizerConfig
from charlm.errors import ModelFileError
from charlm.nn.model import Model
from charlm.score import score_text
from charlm.io.tensorfile import load_tensors, save_tensors

from vocabulary import build_tokenizer

TEXT = "the quick brown fox\njumps over the lazy dog\nÄpfel & Birnen!\n"


# A learned leak adds a tensor per layer; the echo state network's settings go to the header.
CELL_SETTINGS = {"leaky": dict(leak=0.4, learn_leak=True), "esn": dict(leak=0.8, spectral_radius=0.95)}


def make(cell="lstm", tie=False, embed=6, hidden=8, layers=2, seed=0, text=TEXT, locked=False):
    tok = build_tokenizer(text, TokenizerConfig())
    if tie:
        embed = hidden
    cfg = ModelConfig(cell=cell, vocab_size=tok.vocab_size, embed=embed, hidden=hidden,
                      layers=layers, dropout=0.1, tie=tie, locked_dropout=locked,
                      **CELL_SETTINGS.get(cell, {}))
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
@pytest.mark.parametrize("cell", CELLS)
def test_round_trip(tmp_path, cell, embed):
    model, tok = make(cell, embed=embed, locked=cell == "gru")
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


def test_model_files_without_the_leak_and_reservoir_settings_still_load(saved, tmp_path):
    """Files written before the leaky cells existed have no leak, learn_leak or
    spectral_radius in their header: they load with the defaults and compute the same."""
    path, model, _ = saved
    old = tmp_path / "old.safetensors"

    def drop_new_fields(h):
        for key in ("leak", "learn_leak", "spectral_radius"):
            del h["model"][key]

    rewrite(path, old, header=drop_new_fields)
    loaded, _, _ = load_model(old)
    assert loaded.config == model.config
    assert (loaded.config.leak, loaded.config.learn_leak, loaded.config.spectral_radius) == (None, False, None)


def test_a_learned_leak_needs_its_tensors_and_a_valid_rate(tmp_path):
    model, tok = make("leaky")
    path = tmp_path / "leaky.safetensors"
    save_model(path, model, tok)
    assert set(load_tensors(path)[0]) == set(expected_shapes(model.config))
    assert {"rnn.leak_logit_l0", "rnn.leak_logit_l1"} <= set(load_tensors(path)[0])
    rewrite(path, tmp_path / "missing.safetensors", tensors=lambda t: t.pop("rnn.leak_logit_l1"))
    with pytest.raises(ModelFileError, match="rnn.leak_logit_l1"):
        load_model(tmp_path / "missing.safetensors")
    for bad in (0.0, 1.5, "fast", True):
        def set_leak(h, bad=bad):
            h["model"]["leak"] = bad
        rewrite(path, tmp_path / "bad.safetensors", header=set_leak)
        with pytest.raises(ModelFileError, match="invalid model config"):
            load_model(tmp_path / "bad.safetensors")


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


def test_file_without_newer_config_keys_loads_with_their_defaults(saved, tmp_path):
    """A model file written before --locked-dropout existed has no such key: per-step masks."""
    path, model, _ = saved
    old = tmp_path / "old.safetensors"
    rewrite(path, old, header=lambda h: h["model"].pop("locked_dropout"))
    loaded, _, _ = load_model(old)
    assert loaded.config.locked_dropout is False
    assert loaded.config == model.config  # written with locked_dropout=False


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
        lambda h: h["model"].update(locked_dropout="yes"),
        lambda h: h.pop("tokenizer"),
        lambda h: h["tokenizer"].update(tokens=["a", "b"]),
    ],
    ids=["model-list", "hidden-str", "vocab", "cell", "locked-str", "no-tokenizer", "bad-tokenizer"],
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
            "optimizer": {"kind": "adam", "lr": 0.002, "t": 7}, "train": {"batch": 3, "seq_len": 5}}
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


# --- hostile files ---------------------------------------------------------------------------------

import tracemalloc  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from charlm.errors import CharlmError  # noqa: E402


def _peak_bytes(fn) -> int:
    """Peak Python/numpy memory allocated while fn() runs (it must raise ModelFileError)."""
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError):
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("change", [
    lambda h: h["model"].update(hidden=10**9),
    lambda h: h["model"].update(embed=10**12),
    lambda h: h["model"].update(layers=10**9),
    lambda h: h["model"].update(embed=0, hidden=10**9, layers=10**6),
], ids=["hidden", "embed", "layers", "all"])
def test_absurd_sizes_in_the_header_are_refused_without_allocating(saved, tmp_path, change):
    path, _, _ = saved
    bad = tmp_path / "bad.safetensors"
    rewrite(path, bad, header=change)
    assert _peak_bytes(lambda: load_model(bad)) < 2 * 2**20


def test_absurd_tensor_shape_is_refused_without_allocating(tmp_path):
    import struct
    header = {"__metadata__": {"charlm": "{}"},
              "w": {"dtype": "F32", "shape": [10**12, 10**12], "data_offsets": [0, 4 * 10**24]}}
    raw = json.dumps(header).encode()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(16))
    assert _peak_bytes(lambda: load_model(bad)) < 2**20


def test_integer_tensors_are_refused(saved, tmp_path):
    path, _, _ = saved
    bad = tmp_path / "bad.safetensors"
    rewrite(path, bad, tensors=lambda t: t.update({"decoder.bias": t["decoder.bias"].astype(np.int32)}))
    with pytest.raises(ModelFileError, match="decoder.bias.*floating point"):
        load_model(bad)


@pytest.mark.parametrize("value", [np.nan, -np.inf])
def test_non_finite_weights_in_a_file_are_refused(saved, tmp_path, value):
    path, _, _ = saved

    def poison(t):
        t["rnn.weight_ih_l0"][0, 0] = value

    bad = tmp_path / "bad.safetensors"
    rewrite(path, bad, tensors=poison)
    with pytest.raises(ModelFileError, match=r"rnn\.weight_ih_l0.*NaN"):
        load_model(bad)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real model file and training state from a few tiny training steps (and the corpus)."""
    from charlm import api
    from charlm.config import TrainConfig

    d = tmp_path_factory.mktemp("trained")
    corpus = d / "c.txt"
    corpus.write_text(TEXT * 40)
    trainer = api.prepare_training(
        str(corpus), output=str(d / "m.safetensors"), model_cfg=ModelConfig(embed=4, hidden=6, layers=2),
        cfg=TrainConfig(batch=2, seq_len=8, steps=3, valid_every=2, seed=1))
    for _ in trainer.run():
        pass
    return corpus, d / "m.safetensors", d / "m.state.safetensors"


def test_newer_state_format_is_refused(trained, tmp_path):
    _, _, state = trained
    bad = tmp_path / "new.state.safetensors"
    rewrite(state, bad, header=lambda h: h.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ModelFileError, match="newer charlm.*upgrade"):
        load_training_state(bad)


@pytest.mark.parametrize("change", [
    lambda s: s["train"].update(batch=10**9),
    lambda s: s["train"].update(batch="4"),
    lambda s: s["train"].update(new_option=1),
    lambda s: s["train"].update(optimizer="lion"),
    lambda s: s["train"].update(lr=-1),
    lambda s: s.pop("train"),
    lambda s: s.update(header="corpus"),
], ids=["batch-huge", "batch-str", "unknown", "optimizer", "lr", "no-train", "header-str"])
def test_damaged_training_settings_are_refused(trained, tmp_path, change):
    _, _, state = trained
    bad = tmp_path / "bad.state.safetensors"
    rewrite(state, bad, header=lambda h: change(h["train_state"]))
    with pytest.raises(ModelFileError, match="damaged training state.*without --resume"):
        load_training_state(bad)


@pytest.mark.parametrize("change", [
    lambda s: s["progress"].update(step="7"),
    lambda s: s["progress"].update(surprise=1),
    lambda s: s["optimizer"].update(t=-1),
    lambda s: s["optimizer"].update(kind="sgd"),
    lambda s: s["stream"].update(batch=0, n_tokens=5),
    lambda s: s["rng"].update(bit_generator="Nope"),
    lambda s: s.pop("stream"),
    lambda s: s["snapshot"].update(t=-3),
], ids=["step-str", "unknown", "t", "kind", "stream", "rng", "no-stream", "snapshot-t"])
def test_damaged_training_state_fails_resume_cleanly(trained, tmp_path, change):
    from charlm import api
    corpus, _, state = trained
    out = tmp_path / "m.safetensors"
    rewrite(state, tmp_path / "m.state.safetensors", header=lambda h: change(h["train_state"]))
    with pytest.raises(ModelFileError, match="damaged training state.*without --resume"):
        api.resume_training(str(corpus), output=str(out))


def test_optimizer_moments_of_the_wrong_shape_fail_resume_cleanly(trained, tmp_path):
    from charlm import api
    corpus, _, state = trained

    def cut(t):
        name = next(k for k in t if k.startswith("train.opt.m."))
        t[name] = t[name][:1].copy()

    rewrite(state, tmp_path / "m.state.safetensors", tensors=cut)
    with pytest.raises(ModelFileError, match="optimizer array"):
        api.resume_training(str(corpus), output=str(tmp_path / "m.safetensors"))


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 10**12) | st.floats() | st.text(max_size=4),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
    max_leaves=6,
)


def _mutate_json(data, doc):
    """Replace, delete or add one value somewhere in a JSON document (in place)."""
    node = doc
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = data.draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, (dict, list)) and child and data.draw(st.booleans()):
            node = child
            continue
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            node[key] = data.draw(_json)
        elif action == "delete":
            del node[key]
        elif isinstance(node, dict):
            node[data.draw(st.text(max_size=6))] = data.draw(_json)
        else:
            node.append(data.draw(_json))
        return


def _mutated_file(data, src, dst) -> None:
    raw = bytearray(src.read_bytes())
    how = data.draw(st.sampled_from(["flip", "truncate", "header", "header", "random"]))
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        dst.write_bytes(bytes(raw))
    elif how == "truncate":
        dst.write_bytes(bytes(raw[: data.draw(st.integers(0, len(raw) - 1))]))
    elif how == "random":
        dst.write_bytes(data.draw(st.binary(max_size=200)))
    else:
        tensors, meta = load_tensors(str(src))
        doc = json.loads(meta["charlm"])
        _mutate_json(data, doc)
        save_tensors(str(dst), tensors, {"charlm": json.dumps(doc)})


@given(data=st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzed_model_files_raise_only_model_file_error(trained, tmp_path, data):
    _, model, _ = trained
    bad = tmp_path / "fuzz.safetensors"
    _mutated_file(data, model, bad)
    try:
        m, tok, _ = load_model(bad)
    except ModelFileError:
        return
    # What loads is usable: it scores a line.
    score_text(m, tok, "the fox")


@given(data=st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzed_training_states_raise_only_model_file_error(trained, tmp_path, data):
    from charlm import api
    corpus, _, state = trained
    bad = tmp_path / "f.state.safetensors"
    _mutated_file(data, state, bad)
    try:
        load_training_state(bad)
    except ModelFileError:
        return
    try:  # what loads, resumes (one step) or fails with a one-line user error
        trainer = api.resume_training(str(corpus), output=str(tmp_path / "f.safetensors"),
                                      limits={"steps": None, "epochs": None, "time_budget": None})
        trainer.request_stop("fuzz")
        for _ in trainer.run():
            pass
    except CharlmError:
        pass


@pytest.mark.parametrize("cell", ["leaky", "esn"])
def test_leaky_cells_load_into_pytorch_as_the_readme_says(tmp_path, cell):
    """The README's recipe: nn.Embedding, nn.RNN and nn.Linear take the file's tensors (all but
    the learned leak's logits) with load_state_dict, and a step loop applies the leak:
    s = (1 - a) s + a tanh(x W_ih^T + b_ih + s W_hh^T + b_hh), a = sigmoid(rnn.leak_logit_l{l})
    when learned, else the header's leak."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    model, tok = make(cell, embed=8, hidden=16, seed=2)
    rng = np.random.default_rng(0)
    for name in model.trainable_names():
        model.params[name] += rng.standard_normal(model.params[name].shape).astype(np.float32) * 0.3
    path = tmp_path / "m.safetensors"
    save_model(path, model, tok)
    _, _, header = load_model(path)
    cfg = header["model"]

    tensors = load_file(str(path))
    leak_logits = {k: tensors.pop(k) for k in list(tensors) if k.startswith("rnn.leak_logit_")}
    net = torch.nn.ModuleDict(dict(
        embedding=torch.nn.Embedding(cfg["vocab_size"], cfg["embed"]),
        rnn=torch.nn.RNN(cfg["embed"], cfg["hidden"], num_layers=cfg["layers"]),
        decoder=torch.nn.Linear(cfg["hidden"], cfg["vocab_size"])))
    net.load_state_dict(tensors)  # strict: every other tensor has its PyTorch name and shape

    def leak(layer):
        if cfg["learn_leak"]:
            return torch.sigmoid(leak_logits[f"rnn.leak_logit_l{layer}"])
        return torch.tensor(cfg["leak"])

    ids = [tok.eos_id, *tok.encode_line("the lazy fox").tolist(), tok.eos_id]
    with torch.no_grad():
        x = net["embedding"](torch.tensor(ids[:-1]))
        for layer in range(cfg["layers"]):
            p = {n: getattr(net["rnn"], f"{n}_l{layer}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            s, out = torch.zeros(cfg["hidden"]), []
            for x_t in x:
                u = torch.tanh(x_t @ p["weight_ih"].T + p["bias_ih"] + s @ p["weight_hh"].T + p["bias_hh"])
                s = (1 - leak(layer)) * s + leak(layer) * u
                out.append(s)
            x = torch.stack(out)
        logp = torch.log_softmax(net["decoder"](x).double(), -1)
        expected = logp.gather(-1, torch.tensor(ids[1:])[:, None]).sum().item()
    assert score_text(model, tok, "the lazy fox").logprob == pytest.approx(expected, rel=1e-5)
