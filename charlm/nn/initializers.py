"""Initial weights as the literature recommends for recurrent language models.

Two schemes (`--init`):

- "uniform" (default): PyTorch's own for nn.LSTM/GRU/RNN: every recurrent weight and bias
  uniform(-1/sqrt(H), 1/sqrt(H)) (small uniform recurrent weights).
- "orthogonal": recurrent weights orthogonal, one (H, H) block per gate (Saxe et al. 2014),
  which keeps the repeated product h W_hh^T from shrinking or exploding over long spans;
  biases zero except the LSTM forget gate, 1 (Jozefowicz et al. 2015), split so that
  bias_ih + bias_hh = 1 for f.

In both, input weights and the decoder are uniform(-1/sqrt(H), 1/sqrt(H)) (PyTorch's default)
and the embedding N(0, 1) (nn.Embedding's default) — except with --tie, where the one matrix
is also the decoder: N(0, 1) there makes the first logits so large (std ~ sqrt(H)/2) that the
first loss is far above ln(V) (10.98 against 9.21 on Penn Treebank). Tied, it is uniform(-0.1,
0.1), as in PyTorch's word_language_model example and Zaremba et al. 2014.

The leaky unit's recurrent weights are the RNN's; a learned leak rate starts at --leak (0.5 by
default) in every unit, stored as its logit `rnn.leak_logit_l{layer}` (a = sigmoid(logit)).
The echo state network's recurrent layers are a fixed random reservoir: charlm.nn.reservoir.
"""

from __future__ import annotations

import numpy as np

from charlm.config import ModelConfig
from charlm.nn.cells import get_cell
from charlm.nn.reservoir import reservoir_layer


def orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random (n, n) orthogonal matrix (QR of a Gaussian, signs fixed so it is uniform)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


TIED_RANGE = 0.1  # the tied embedding/decoder matrix: uniform(-0.1, 0.1)


def init_params(cfg: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Fresh float32 parameters named like a PyTorch state_dict."""
    H, G, V = cfg.hidden, cfg.gates, cfg.vocab_size
    bound = 1.0 / np.sqrt(H)
    params: dict[str, np.ndarray] = {}
    if cfg.embed > 0:
        params["embedding.weight"] = _embedding_rows(cfg, rng, V)
    for layer in range(cfg.layers):
        n_in = cfg.input_size(layer)
        if cfg.reservoir:
            frozen = reservoir_layer(rng, n_in, H, cfg.radius, one_hot=layer == 0 and cfg.embed == 0)
            params.update({f"rnn.{name}_l{layer}": w for name, w in frozen.items()})
            continue
        params[f"rnn.weight_ih_l{layer}"] = _input_weights(rng, bound, G * H, n_in)
        w_hh, bias_ih, bias_hh = _recurrent(cfg, rng, bound)
        params[f"rnn.weight_hh_l{layer}"] = w_hh
        params[f"rnn.bias_ih_l{layer}"] = bias_ih
        params[f"rnn.bias_hh_l{layer}"] = bias_hh
        if cfg.learn_leak:
            a = cfg.leak_rate
            params[f"rnn.leak_logit_l{layer}"] = np.full(H, np.log(a / (1.0 - a)))
    if cfg.tie:
        params["decoder.weight"] = params["embedding.weight"]
    else:
        params["decoder.weight"] = _decoder_rows(rng, bound, V, H)
    params["decoder.bias"] = np.zeros(V)
    return _unshared(params)


def new_token_params(cfg: ModelConfig, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """float32 parameters of n tokens appended to a vocabulary, drawn as init_params draws
    them at creation: rows of embedding.weight (n, E) and decoder.weight (n, H), decoder.bias
    (n,) zeros, and with one-hot input (embed 0) the columns of rnn.weight_ih_l0 (G*H, n).
    Tied, the embedding rows are also the decoder's: decoder.weight is not returned."""
    H, G = cfg.hidden, cfg.gates
    bound = 1.0 / np.sqrt(H)
    new: dict[str, np.ndarray] = {}
    if cfg.embed > 0:
        new["embedding.weight"] = _embedding_rows(cfg, rng, n)
    else:
        new["rnn.weight_ih_l0"] = _input_weights(rng, bound, G * H, n)
    if not cfg.tie:
        new["decoder.weight"] = _decoder_rows(rng, bound, n, H)
    new["decoder.bias"] = np.zeros(n)
    return {name: p.astype(np.float32) for name, p in new.items()}


def _embedding_rows(cfg: ModelConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, E): N(0, 1), or uniform(-0.1, 0.1) when tied to the decoder."""
    if cfg.tie:
        return rng.uniform(-TIED_RANGE, TIED_RANGE, (n, cfg.embed))
    return rng.standard_normal((n, cfg.embed))


def _input_weights(rng: np.random.Generator, bound: float, rows: int, columns: int) -> np.ndarray:
    return rng.uniform(-bound, bound, (rows, columns))


def _decoder_rows(rng: np.random.Generator, bound: float, n: int, H: int) -> np.ndarray:
    return rng.uniform(-bound, bound, (n, H))


def _recurrent(cfg: ModelConfig, rng: np.random.Generator, bound: float):
    """(W_hh (G*H, H), bias_ih, bias_hh) of one layer under cfg.init."""
    H, G = cfg.hidden, cfg.gates
    if cfg.init == "uniform":
        return (rng.uniform(-bound, bound, (G * H, H)), rng.uniform(-bound, bound, G * H),
                rng.uniform(-bound, bound, G * H))
    w_hh = np.concatenate([orthogonal(rng, H) for _ in range(G)])
    bias_ih, bias_hh = np.zeros(G * H), np.zeros(G * H)
    forget = get_cell(cfg.cell).forget_gate
    if forget is not None:  # b_ih + b_hh = 1
        bias_ih[forget * H : (forget + 1) * H] = 0.5
        bias_hh[forget * H : (forget + 1) * H] = 0.5
    return w_hh, bias_ih, bias_hh


def _unshared(params: dict) -> dict:
    """Cast each distinct array once, so tied names still share one float32 array."""
    cast: dict[int, np.ndarray] = {}
    out = {}
    for name, p in params.items():
        if id(p) not in cast:
            cast[id(p)] = np.ascontiguousarray(p, dtype=np.float32)
        out[name] = cast[id(p)]
    return out
