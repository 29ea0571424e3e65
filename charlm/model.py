"""The language model: embedding -> stacked recurrent layers -> linear decoder -> softmax.

Parameters are float32 arrays named like the state_dict of a PyTorch module made of
`embedding = nn.Embedding`, `rnn = nn.LSTM/GRU/RNN` and `decoder = nn.Linear`. The recurrent
loops run in Numba kernels (charlm.recurrent); every product over all B*T rows at once (input
projections, decoder, weight gradients) is one BLAS GEMM here.

Shapes: T time steps, B streams, H hidden, E embedding, V vocabulary, G gates, L layers,
N = T*B rows. Tokens are time-major (T, B). The recurrent state is one array (L, S, B, H) with
S = 2 for the LSTM (h, c) and 1 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import ModelConfig
from .initializers import init_params
from .losses import fused_softmax_xent_, fused_target_logprobs

# The Numba kernels are imported where they are first used, not here: loading a model to score
# a short line (charlm.quick) then never pays Numba's start-up.


@dataclass
class _Trace:
    """What the forward pass keeps for the backward pass."""

    tokens: np.ndarray  # (T, B) int32
    inputs: list = field(default_factory=list)  # per layer: its input (T, B, I) after dropout, or None (one-hot)
    caches: list = field(default_factory=list)  # per layer: the recurrent cache
    masks: list = field(default_factory=list)  # dropout masks: [embedding, layer 0, ..., layer L-1] or None
    top: np.ndarray | None = None  # (N, H) decoder input


class Model:
    def __init__(self, config: ModelConfig, params: dict[str, np.ndarray]):
        self.config = config
        self.params = params

    @classmethod
    def create(cls, config: ModelConfig, seed: int = 0) -> "Model":
        return cls(config, init_params(config, np.random.default_rng(seed)))

    # ---- bookkeeping -------------------------------------------------------------------
    @property
    def state_slots(self) -> int:
        return 2 if self.config.cell == "lstm" else 1

    def zero_state(self, batch: int) -> np.ndarray:
        cfg = self.config
        dtype = self.params["decoder.bias"].dtype  # float32; float64 in gradient checks
        return np.zeros((cfg.layers, self.state_slots, batch, cfg.hidden), dtype)

    def trainable_names(self) -> list[str]:
        """Parameter names with distinct arrays (a tied decoder.weight is embedding.weight)."""
        return [n for n in self.params if not (self.config.tie and n == "decoder.weight")]

    def num_parameters(self) -> int:
        return sum(self.params[n].size for n in self.trainable_names())

    def _p(self, name: str, layer: int) -> np.ndarray:
        return self.params[f"rnn.{name}_l{layer}"]

    # ---- forward ------------------------------------------------------------------------
    def forward(self, tokens, state, dropout_rng=None, keep=False):
        """Run the stack over tokens (T, B) from state (L, S, B, H).

        Returns (top (N, H), new_state, trace). Dropout is applied only when dropout_rng is
        given (training). keep=True stores what backward needs in the trace.
        """
        from .recurrent import recurrent_start, recurrent_steps
        from .stack import chunk_bounds, run_wavefront

        cfg = self.config
        tokens = np.ascontiguousarray(tokens, dtype=np.int32)
        T, B = tokens.shape
        L, H = cfg.layers, cfg.hidden
        trace = _Trace(tokens)
        x = None
        if cfg.embed > 0:
            x = self._dropout(self.params["embedding.weight"][tokens], dropout_rng, trace)
        else:
            trace.masks.append(None)
        for _ in range(L):  # masks of each layer's output, drawn in layer order
            trace.masks.append(self._dropout_mask((T, B, H), dropout_rng))
        # Layer 0's input projection is one GEMM over all rows; the upper layers' are made chunk
        # by chunk inside the wavefront, as their input appears.
        # layer l's input after dropout (a buffer), or None when it is the layer below's output
        inputs = [x] + [None if trace.masks[layer] is None else np.empty((T, B, H), state.dtype)
                        for layer in range(1, L)]
        caches = []
        for layer in range(L):
            xw = (self._input_projection(0, x, tokens) if layer == 0
                  else np.empty((T, B, cfg.gates * H), state.dtype))
            c0 = state[layer, 1] if self.state_slots == 2 else None
            caches.append(recurrent_start(cfg.cell, xw, self._p("weight_hh", layer),
                                          self._p("bias_hh", layer), state[layer, 0], c0, keep))
        chunks = chunk_bounds(T)

        def project(layer: int, a: int, b: int) -> None:
            self._upper_projection(layer, caches[layer - 1].hs, trace.masks[layer],
                                   inputs[layer], caches[layer].xw, a, b)

        def task(layer: int, chunk: int) -> None:
            a, b = chunks[chunk]
            if layer > 0 and not _sender_hands_off(chunk):
                project(layer, a, b)
            recurrent_steps(caches[layer], a, b)
            if layer + 1 < L and _sender_hands_off(chunk):
                project(layer + 1, a, b)

        run_wavefront(L, len(chunks), task)
        new_state = np.empty_like(state)
        for layer, cache in enumerate(caches):
            new_state[layer, 0] = cache.h_last
            if self.state_slots == 2:
                new_state[layer, 1] = cache.c_last
        if keep:
            trace.inputs = [inputs[0]] + [
                inputs[layer] if inputs[layer] is not None else caches[layer - 1].hs
                for layer in range(1, L)
            ]
            trace.caches = caches
        top = _apply_mask(caches[-1].hs, trace.masks[L])
        trace.top = top.reshape(T * B, H)
        return trace.top, new_state, trace

    def _upper_projection(self, layer, below_hs, mask, x_buf, xw, a, b) -> None:
        """xw[a:b] = dropout(below_hs[a:b]) W_ih^T + b_ih, for a layer above the first."""
        from .kernels.linalg import matmul

        x = below_hs[a:b]
        if mask is not None:
            np.multiply(x, mask[a:b], out=x_buf[a:b])
            x = x_buf[a:b]
        out = xw[a:b].reshape(-1, xw.shape[2])
        matmul(x.reshape(-1, x.shape[2]), self._p("weight_ih", layer).T, out=out)
        out += self._p("bias_ih", layer)

    def _input_projection(self, layer: int, x, tokens) -> np.ndarray:
        """xw = x W_ih^T + b_ih, (T, B, G*H); a row gather for one-hot input."""
        from .kernels.linalg import matmul

        w_ih, b_ih = self._p("weight_ih", layer), self._p("bias_ih", layer)
        if x is None:  # one-hot input: x W_ih^T selects columns of W_ih
            return np.ascontiguousarray(w_ih.T[tokens]) + b_ih
        T, B, n_in = x.shape
        xw = matmul(x.reshape(T * B, n_in), w_ih.T)
        xw += b_ih
        return xw.reshape(T, B, -1)

    def _dropout(self, x: np.ndarray, rng, trace: _Trace) -> np.ndarray:
        mask = self._dropout_mask(x.shape, rng)
        trace.masks.append(mask)
        return _apply_mask(x, mask)

    def _dropout_mask(self, shape: tuple, rng) -> np.ndarray | None:
        """Inverted dropout mask (0 or 1/(1-p)) of shape (T, B, n), or None when not training
        or p = 0, as a read-only view: locked dropout draws one (1, B, n) mask and the view
        repeats it over the T steps. Every use of a mask multiplies through numpy."""
        p = self.config.dropout
        if rng is None or p <= 0.0:
            return None
        dtype = self.params["decoder.bias"].dtype
        drawn = (1, *shape[1:]) if self.config.locked_dropout else shape
        mask = (rng.random(drawn, dtype=np.float32) >= p).astype(dtype)
        mask *= 1.0 / (1.0 - p)  # inverted dropout: nothing to rescale at evaluation
        return np.broadcast_to(mask, shape)

    def logits(self, top: np.ndarray) -> np.ndarray:
        """Decoder: (N, H) -> (N, V)."""
        from .kernels.linalg import matmul

        out = matmul(top, self.params["decoder.weight"].T)
        out += self.params["decoder.bias"]
        return out

    # ---- training step -----------------------------------------------------------------
    def loss_and_grads(self, tokens, targets, state, dropout_rng=None):
        """Mean cross-entropy over the window and gradients of every trainable parameter.

        tokens, targets (T, B); state (L, S, B, H) is the carried state (truncated BPTT: no
        gradient flows into it). Returns (loss, grads, new_state).
        """
        top, new_state, trace = self.forward(tokens, state, dropout_rng, keep=True)
        targets = np.ascontiguousarray(targets, dtype=np.int32).reshape(-1)
        loss, dlogits, dbias = fused_softmax_xent_(self.logits(top), targets)
        grads = self.backward(dlogits, trace, dbias)
        return loss, grads, new_state

    def backward(self, dlogits: np.ndarray, trace: _Trace, dbias=None) -> dict[str, np.ndarray]:
        """Backpropagation through the decoder, the layers (through time) and the embedding.

        dbias: dlogits.sum(axis=0) when the loss already computed it."""
        from .kernels.embedding import _scatter_add_rows
        from .kernels.linalg import matmul
        from .recurrent import (recurrent_backward_finish, recurrent_backward_start,
                                recurrent_backward_steps)
        from .stack import chunk_bounds, run_wavefront

        cfg, p = self.config, self.params
        T, B = trace.tokens.shape
        L, H = cfg.layers, cfg.hidden
        grads = {
            "decoder.weight": matmul(dlogits.T, trace.top),  # (V, H)
            "decoder.bias": dlogits.sum(axis=0) if dbias is None else dbias,
        }
        dx_top = matmul(dlogits, p["decoder.weight"]).reshape(T, B, H)
        # dhs[l] (T,B,H): dLoss/d(output of layer l); the layers above the first fill the one
        # below chunk by chunk inside the wavefront.
        dhs = [np.empty((T, B, H), dlogits.dtype) for _ in range(L - 1)]
        dhs.append(_apply_mask(dx_top, trace.masks[L]))
        for cache in trace.caches:
            recurrent_backward_start(cache)
        chunks = chunk_bounds(T)

        def send_down(layer: int, a: int, b: int) -> None:
            """dLoss/d(input of layer) of steps [a, b), through dropout, into dhs[layer - 1]."""
            dxw = trace.caches[layer].xw[a:b]  # dL/dxw by now
            out = dhs[layer - 1][a:b]
            matmul(dxw.reshape(-1, dxw.shape[2]), self._p("weight_ih", layer), out=out.reshape(-1, H))
            mask = trace.masks[layer]
            if mask is not None:
                out *= mask[a:b]  # (steps, B, H): a locked mask broadcasts without a copy

        def task(layer: int, chunk: int) -> None:
            a, b = chunks[chunk]
            if layer + 1 < L and not _sender_hands_off(chunk):
                send_down(layer + 1, a, b)
            recurrent_backward_steps(trace.caches[layer], dhs[layer], a, b)
            if layer > 0 and _sender_hands_off(chunk):
                send_down(layer, a, b)

        run_wavefront(L, len(chunks), task, reverse=True)
        dx = None
        for layer in reversed(range(L)):
            g = recurrent_backward_finish(trace.caches[layer])
            dxw = g.dxw.reshape(T * B, -1)
            grads[f"rnn.weight_hh_l{layer}"] = g.dw_hh
            grads[f"rnn.bias_hh_l{layer}"] = g.db_hh
            grads[f"rnn.bias_ih_l{layer}"] = dxw.sum(axis=0)
            x = trace.inputs[layer]
            if x is None:  # one-hot input (layer 0): dW_ih^T gathers rows by token
                dw_t = np.zeros((cfg.vocab_size, dxw.shape[1]), dxw.dtype)
                _scatter_add_rows(dw_t, trace.tokens.reshape(-1), dxw)
                grads[f"rnn.weight_ih_l{layer}"] = np.ascontiguousarray(dw_t.T)
            else:
                grads[f"rnn.weight_ih_l{layer}"] = matmul(dxw.T, x.reshape(T * B, -1))
                if layer == 0:
                    dx = matmul(dxw, self._p("weight_ih", 0)).reshape(T, B, -1)
        if cfg.embed > 0:
            demb = _apply_mask(dx, trace.masks[0]).reshape(T * B, cfg.embed)
            dE = grads.pop("decoder.weight") if cfg.tie else np.zeros_like(p["embedding.weight"])
            _scatter_add_rows(dE, trace.tokens.reshape(-1), np.ascontiguousarray(demb))
            grads["embedding.weight"] = dE
        return grads

    # ---- evaluation -------------------------------------------------------------------
    def target_logprobs(self, tokens, targets, state):
        """Log-probability of each target (T, B) given tokens (T, B) from state: no dropout.

        Returns (logp (T, B) float64, new_state).
        """
        top, new_state, _ = self.forward(tokens, state)
        targets = np.ascontiguousarray(targets, dtype=np.int64).reshape(-1)
        logp = fused_target_logprobs(self.logits(top), targets)
        return logp.reshape(np.shape(tokens)), new_state


def _sender_hands_off(chunk: int) -> bool:
    """Between two layers in the wavefront, which task makes a chunk's hand-off GEMM (forward:
    the projection into the upper layer; backward: the gradient sent down): the sending
    layer's task (the one that runs first) on even chunks, the receiving layer's on odd ones,
    so that the two tasks running side by side carry equal work."""
    return chunk % 2 == 0


def _apply_mask(dx: np.ndarray, mask) -> np.ndarray:
    return dx if mask is None else dx * mask
