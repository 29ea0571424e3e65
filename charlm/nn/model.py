"""The language model: embedding -> stacked recurrent layers -> linear decoder -> softmax.

Parameters are float32 arrays named like the state_dict of a PyTorch module made of
`embedding = nn.Embedding`, `rnn = nn.LSTM/GRU/RNN` and `decoder = nn.Linear`. The recurrent
loops run in Numba kernels (charlm.nn.recurrent); the products over many rows at once (input
projections, decoder, weight gradients) are BLAS GEMMs here: over all B*T rows, or over each
whole block's rows for a one-layer model (charlm.nn.stack.whole_blocks).

Shapes: T time steps, B streams, H hidden, E embedding, V vocabulary, G gates, L layers,
N = T*B rows. Tokens are time-major (T, B). The recurrent state is one array (L, S, B, H) with
S the cell's state slots (charlm.nn.cells): 2 for the LSTM (h, c), 1 otherwise.

The leaky unit (cell "leaky") is nn.RNN's layer with a leak rate a per unit (the config's, or
learned as `rnn.leak_logit_l{layer}`, a = sigmoid(logit)). The echo state network (cell "esn")
runs the same steps through a frozen random reservoir (charlm.nn.reservoir): only the decoder is
trained, so its training step is the forward pass and the decoder's gradient, with no
backpropagation through time; with learn_embedding the embedding learns too, its gradient
backpropagated through the frozen reservoir.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np

from charlm.nn.blocks import BlockLayout
from charlm.config import ModelConfig
from charlm.nn.cells import Cell, get_cell
from charlm.nn.initializers import init_params
from charlm.nn.losses import fused_softmax_xent_, fused_target_logprobs
from charlm.nn.stack import run_alone, whole_blocks

# Evaluation computes the (N, V) logits this many elements at a time (4 x 2^22 bytes in float32): a batch
# of many lines over a large vocabulary would otherwise hold N x V floats at once.
LOGIT_ELEMENTS = 1 << 22

# The Numba kernels are imported where they are first used, not here: loading a model to score
# a short line (charlm.nn.quick) then never pays Numba's start-up.


@dataclass
class _Trace:
    """What the forward pass keeps for the backward pass. Per-row arrays are (N, F) in
    block-major order (charlm.nn.blocks)."""

    tokens: np.ndarray  # (T, B) int32
    layout: BlockLayout
    rows: np.ndarray  # (N,) int32: the tokens in block-major order
    masks: list = field(default_factory=list)  # dropout masks as drawn, (T, B, n), or None: [embedding, layer 0, ..., layer L-1]
    row_masks: list = field(default_factory=list)  # the same masks, block-major (N, n), or None
    inputs: list = field(default_factory=list)  # per layer: its input (N, I) after dropout, or None (one-hot)
    xws: list = field(default_factory=list)  # per layer: (N, G*H) input projection; the backward turns it into dL/dxw
    hs: list = field(default_factory=list)  # per layer: (N, H) outputs
    caches: list = field(default_factory=list)  # [block][layer]: the recurrent caches (keep only)
    state: np.ndarray | None = None  # (L, S, B, H) the state the window started from
    new_state: np.ndarray | None = None  # (L, S, B, H) the state it ended in
    top: np.ndarray | None = None  # (N, H) decoder input
    # layer 0's input projection gathered by token from the table E W_ih^T + b_ih (V, G*H), the
    # embedded input x = E[token] never formed (no embedding dropout, V <= N: the table is cheaper)
    folded: bool = False


class Model:
    def __init__(self, config: ModelConfig, params: dict[str, np.ndarray]):
        self.config = config
        self.params = params

    @classmethod
    def create(cls, config: ModelConfig, seed: int = 0) -> "Model":
        return cls(config, init_params(config, np.random.default_rng(seed)))

    # ---- bookkeeping -------------------------------------------------------------------
    @property
    def cell(self) -> Cell:
        return get_cell(self.config.cell)

    @property
    def state_slots(self) -> int:
        return self.cell.state_slots

    def zero_state(self, batch: int) -> np.ndarray:
        cfg = self.config
        dtype = self.params["decoder.bias"].dtype  # float32; float64 in gradient checks
        return np.zeros((cfg.layers, self.state_slots, batch, cfg.hidden), dtype)

    def trainable_names(self) -> list[str]:
        """Parameter names with distinct arrays (a tied decoder.weight is embedding.weight) that
        training updates: for an echo state network the decoder alone (and the embedding with
        learn_embedding)."""
        if self.config.reservoir:
            learned = ["embedding.weight"] if self.config.learn_embedding else []
            return learned + ["decoder.weight", "decoder.bias"]
        return [n for n in self.params if not (self.config.tie and n == "decoder.weight")]

    def frozen_names(self) -> list[str]:
        """The parameters training never changes: an echo state network's reservoir (and its
        embedding unless learn_embedding)."""
        trained = set(self.trainable_names())
        return [n for n in self.params if n not in trained and not (self.config.tie and n == "decoder.weight")]

    def leak_rates(self, layer: int) -> np.ndarray | None:
        """(H,) the leak rates a of a leaky cell's layer, in the parameters' dtype; None for the
        other cells."""
        cfg = self.config
        if not self.cell.leaky:
            return None
        dtype = self.params["decoder.bias"].dtype
        if cfg.learn_leak:
            logit = self._p("leak_logit", layer)
            return (1 / (1 + np.exp(-logit.astype(np.float64)))).astype(dtype)
        return np.full(cfg.hidden, cfg.leak_rate, dtype)

    def num_parameters(self) -> int:
        return sum(self.params[n].size for n in self.trainable_names())

    def _p(self, name: str, layer: int) -> np.ndarray:
        return self.params[f"rnn.{name}_l{layer}"]

    # ---- forward ------------------------------------------------------------------------
    def forward(self, tokens, state, dropout_rng=None, keep=False):
        """Run the stack over tokens (T, B) from state (L, S, B, H).

        Returns (top (T*B, H) time-major, new_state, trace). Dropout is applied only when
        dropout_rng is given (training). keep=True stores what backward needs in the trace.
        """
        trace = self._forward(tokens, state, dropout_rng, keep)
        top = trace.layout.from_blocks(trace.top).reshape(trace.layout.rows, -1)
        return top, trace.new_state, trace

    def _forward(self, tokens, state, dropout_rng, keep, streams=None, masks=None, packed=None) -> _Trace:
        """The forward pass over stream blocks (charlm.nn.stack): layer 0's input projection is one
        GEMM over all rows, or rows of a token table gathered chunk by chunk (one-hot or folded
        input); each block's layers then run as a wavefront over time chunks, the upper layers'
        projections made chunk by chunk as their input appears.

        streams (s0, s1): run only those streams of the batch tokens (T, B) (state holds just
        them), with the dropout masks the whole batch would draw: a share of the batch computes
        what its streams compute in the whole (charlm.train.distributed). masks: the whole
        batch's masks as _dropout_masks draws them (then dropout_rng is not used). packed: the
        layers' W_hh as _packed_weights() gives them, when the caller shares them between calls."""
        from charlm.nn.kernels.embedding import _gather_rows
        from charlm.nn.recurrent import recurrent_start, recurrent_steps
        from charlm.nn.stack import chunk_bounds, run_wavefront, stream_blocks

        cfg = self.config
        tokens = np.ascontiguousarray(tokens, dtype=np.int32)
        T, B = tokens.shape
        L, H = cfg.layers, cfg.hidden
        s0, s1 = streams or (0, B)
        if masks is None:
            masks = self._dropout_masks(T, B, dropout_rng)
        tokens = np.ascontiguousarray(tokens[:, s0:s1])
        B = s1 - s0
        N, dtype = T * B, state.dtype
        layout = BlockLayout(T, tuple(stream_blocks(B, L)))
        trace = _Trace(tokens, layout, layout.to_blocks(tokens), state=state)
        trace.masks = [None if m is None else m[:, s0:s1] for m in masks]
        masks = trace.row_masks = [None if m is None else layout.to_blocks(m) for m in trace.masks]
        leaks = [self.leak_rates(layer) for layer in range(L)]
        x = None
        trace.folded = self._folds_embedding(masks[0], N)
        if cfg.embed > 0 and not trace.folded:
            x = _apply_mask(self.params["embedding.weight"][trace.rows], masks[0])
        # layer l's input after dropout (a buffer), or None when it is the layer below's output
        inputs = [x] + [None if masks[layer] is None else np.empty((N, H), dtype) for layer in range(1, L)]
        trace.hs = [np.empty((N, H), dtype) for _ in range(L)]
        # one-hot or folded input: layer 0's rows are gathered from a (V, G*H) table chunk by
        # chunk, inside the wavefront, just before its steps read them
        table = self._input_table(trace.folded) if x is None else None
        trace.xws = [self._input_projection(x) if table is None else np.empty((N, cfg.gates * H), dtype)]
        trace.xws += [np.empty((N, cfg.gates * H), dtype) for _ in range(1, L)]
        packed = packed or self._packed_weights()  # one for all blocks
        caches = [[recurrent_start(cfg.cell, layout.view(trace.xws[layer], k), self._p("weight_hh", layer),
                                   self._p("bias_hh", layer), state[layer, 0, b0:b1],
                                   state[layer, 1, b0:b1] if self.state_slots == 2 else None, keep,
                                   hs=layout.view(trace.hs[layer], k), leak=leaks[layer],
                                   w_hh_p=packed[layer])
                   for layer in range(L)] for k, (b0, b1) in enumerate(layout.bounds)]
        chunks = chunk_bounds(T, L)

        def project(k: int, layer: int, a: int, b: int) -> None:
            rows = layout.step_rows(k, a, b)
            self._upper_projection(layer, trace.hs[layer - 1][rows], masks[layer],
                                   None if inputs[layer] is None else inputs[layer][rows],
                                   trace.xws[layer][rows], rows)

        def task(k: int, stage: int, chunk: int) -> None:
            """Stage 2l: layer l's steps; stage 2l+1: the projection of its outputs into layer l+1."""
            a, b = chunks[chunk]
            layer, hand_off = divmod(stage, 2)
            if hand_off:
                project(k, layer + 1, a, b)
                return
            if layer == 0 and table is not None:
                rows = layout.step_rows(k, a, b)
                _gather_rows(table, trace.rows[rows], trace.xws[0][rows])
            recurrent_steps(caches[k][layer], a, b)

        run_wavefront(len(layout), 2 * L - 1, len(chunks), task)
        trace.new_state = self._final_state(state, layout, caches)
        if keep:
            trace.inputs = [x] + [inputs[layer] if inputs[layer] is not None else trace.hs[layer - 1]
                                  for layer in range(1, L)]
            trace.caches = caches
        trace.top = _apply_mask(trace.hs[-1], masks[L])
        return trace

    def _final_state(self, state, layout: BlockLayout, caches) -> np.ndarray:
        """(L, S, B, H): every block's last h (and c) of every layer."""
        new_state = np.empty_like(state)
        for (b0, b1), block in zip(layout.bounds, caches):
            for layer, cache in enumerate(block):
                new_state[layer, 0, b0:b1] = cache.h_last
                if self.state_slots == 2:
                    new_state[layer, 1, b0:b1] = cache.c_last
        return new_state

    def _upper_projection(self, layer, below, mask, x_buf, xw, rows) -> None:
        """xw = dropout(below) W_ih^T + b_ih for some rows of a layer above the first: below
        (n, H), xw (n, G*H) views of those rows; mask (N, H) or None; x_buf (n, H) where the
        input after dropout goes (None without dropout)."""
        from charlm.nn.kernels.linalg import matmul

        if mask is not None:
            np.multiply(below, mask[rows], out=x_buf)
            below = x_buf
        matmul(below, self._p("weight_ih", layer).T, out=xw)
        xw += self._p("bias_ih", layer)

    def _folds_embedding(self, embedding_mask, rows: int) -> bool:
        """Whether layer 0's input projection of `rows` rows comes from the table E W_ih^T
        (V, G*H) by token: with an embedding, no dropout on it, and no more tokens in the
        vocabulary than rows (making the table costs V/N of the product over all rows, and its
        gradient is a scatter of dL/dxw plus two products of V rows)."""
        return self.config.embed > 0 and embedding_mask is None and self.config.vocab_size <= rows

    def _input_projection(self, x) -> np.ndarray:
        """Layer 0: xw = x W_ih^T + b_ih, (N, G*H) from x (N, E)."""
        from charlm.nn.kernels.linalg import matmul

        xw = matmul(x, self._p("weight_ih", 0).T)
        xw += self._p("bias_ih", 0)
        return xw

    def _input_table(self, folded: bool) -> np.ndarray:
        """(V, G*H): layer 0's input projection of each token, W_ih^T + b_ih for one-hot input,
        E W_ih^T + b_ih when folded (x = E[token])."""
        from charlm.nn.kernels.linalg import matmul

        w_ih = self._p("weight_ih", 0)
        table = matmul(self.params["embedding.weight"], w_ih.T) if folded else w_ih.T.copy()
        table += self._p("bias_ih", 0)
        return table

    def _dropout_masks(self, T: int, B: int, rng) -> list:
        """The masks of one window (T, B) in the order drawn: [embedding, layer 0, ..., layer L-1]."""
        cfg = self.config
        masks = [self._dropout_mask((T, B, cfg.embed), rng) if cfg.embed > 0 else None]
        return masks + [self._dropout_mask((T, B, cfg.hidden), rng) for _ in range(cfg.layers)]

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
        from charlm.nn.kernels.linalg import matmul

        out = matmul(top, self.params["decoder.weight"].T)
        out += self.params["decoder.bias"]
        return out

    # ---- training step -----------------------------------------------------------------
    def loss_and_grads(self, tokens, targets, state, dropout_rng=None, streams=None):
        """Mean cross-entropy over the window and gradients of every trainable parameter.

        tokens, targets (T, B); state (L, S, B, H) is the carried state (truncated BPTT: no
        gradient flows into it). Returns (loss, grads, new_state).
        streams (s0, s1): compute only those streams' part (state holds just them): the loss
        and gradients are then their share of the whole batch's mean, which the shares sum to.

        When the streams make several blocks (charlm.nn.stack.whole_blocks), each block runs
        its whole step (forward, loss, backward, its share of every gradient) as one task on
        one thread, the tasks side by side, and the shares are summed in block order.
        """
        T, B = np.shape(tokens)
        s0, s1 = streams or (0, B)
        masks = self._dropout_masks(T, B, dropout_rng)
        blocks = whole_blocks(s1 - s0, self.config.layers)
        if len(blocks) == 1 or self.config.read_out_only:
            return self._share_loss_and_grads(tokens, targets, state, masks, (s0, s1))
        packs = self._packed_weights(), self._packed_weights(transposed=True)
        results = run_alone([partial(self._share_loss_and_grads, tokens, targets, state[:, :, b0:b1], masks,
                                     (s0 + b0, s0 + b1), packs) for b0, b1 in blocks])
        loss = sum(r[0] for r in results)  # in block order
        grads = results[0][1]
        for _, more, _ in results[1:]:
            for name, g in more.items():
                grads[name] += g
        return loss, grads, np.concatenate([r[2] for r in results], axis=2)

    def _share_loss_and_grads(self, tokens, targets, state, masks, streams, packs=(None, None)):
        """loss_and_grads of streams (s0, s1) of the batch, with the batch's dropout masks;
        packs: (_packed_weights(), _packed_weights(transposed=True)) or Nones."""
        T, B = np.shape(tokens)
        s0, s1 = streams
        read_out_only = self.config.read_out_only  # nothing to backpropagate through: keep nothing
        trace = self._forward(tokens, state, None, keep=not read_out_only, streams=(s0, s1), masks=masks,
                              packed=packs[0])
        targets = trace.layout.to_blocks(np.ascontiguousarray(np.asarray(targets)[:, s0:s1], dtype=np.int32))
        loss, dlogits, dbias = fused_softmax_xent_(self.logits(trace.top), targets, rows=T * B)
        if read_out_only:
            return loss, self._decoder_grads(dlogits, trace, dbias), trace.new_state
        grads = self.backward(dlogits, trace, dbias, packs[1])
        if self.config.reservoir:  # the frozen layers' gradients are computed on the way, and dropped
            grads = {name: grads[name] for name in self.trainable_names()}
        return loss, grads, trace.new_state

    def _decoder_grads(self, dlogits: np.ndarray, trace: _Trace, dbias=None) -> dict[str, np.ndarray]:
        """The decoder's weight (V, H) and bias (V,) gradients from dlogits (N, V) block-major."""
        from charlm.nn.kernels.linalg import matmul

        return {
            "decoder.weight": matmul(dlogits.T, trace.top),
            "decoder.bias": dlogits.sum(axis=0) if dbias is None else dbias,
        }

    def _packed_weights(self, transposed: bool = False) -> list[np.ndarray]:
        """Every layer's W_hh (W_hh^T when transposed) packed for the step products
        (charlm.nn.kernels.packed): once per window, shared by the stream blocks."""
        from charlm.nn.kernels.packed import pack_panels

        weights = [self._p("weight_hh", layer) for layer in range(self.config.layers)]
        return [pack_panels(w.T if transposed else w) for w in weights]

    def backward(self, dlogits: np.ndarray, trace: _Trace, dbias=None, packed_t=None) -> dict[str, np.ndarray]:
        """Backpropagation through the decoder, the layers (through time) and the embedding.

        dlogits (N, V) block-major, like trace.top. dbias: dlogits.sum(axis=0) when the loss
        already computed it. Each block runs its layers back through time as a wavefront; every
        weight gradient is then one product over all rows."""
        from charlm.nn.kernels.linalg import matmul
        from charlm.nn.recurrent import recurrent_backward_start, recurrent_backward_steps
        from charlm.nn.stack import chunk_bounds, run_wavefront

        cfg, p, layout = self.config, self.params, trace.layout
        N, L, H = layout.rows, cfg.layers, cfg.hidden
        masks = trace.row_masks
        grads = self._decoder_grads(dlogits, trace, dbias)
        # dhs[l] (N, H): dLoss/d(output of layer l); the layers above the first fill the one
        # below chunk by chunk inside the wavefront.
        dhs = [np.empty((N, H), dlogits.dtype) for _ in range(L - 1)]
        dhs.append(_apply_mask(matmul(dlogits, p["decoder.weight"]), masks[L]))
        # dL/d(h W_hh^T + b_hh) (N, G*H) per layer, for the cells whose backward writes it apart
        apart = self.cell.hidden_grad_apart
        dghs = [np.empty((N, cfg.gates * H), dlogits.dtype) if apart else None for _ in range(L)]
        packed = packed_t or self._packed_weights(transposed=True)  # one for all blocks
        for k, block in enumerate(trace.caches):
            for layer, cache in enumerate(block):
                recurrent_backward_start(cache, dgh=None if dghs[layer] is None else layout.view(dghs[layer], k),
                                         w_hh_t_p=packed[layer])
        chunks = chunk_bounds(layout.steps, L)

        def send_down(k: int, layer: int, a: int, b: int) -> None:
            """dLoss/d(input of layer) of steps [a, b) of block k, through dropout, into dhs[layer - 1]."""
            rows = layout.step_rows(k, a, b)
            out = dhs[layer - 1][rows]
            matmul(trace.xws[layer][rows], self._p("weight_ih", layer), out=out)  # dL/dxw by now
            if masks[layer] is not None:
                out *= masks[layer][rows]

        def task(k: int, stage: int, chunk: int) -> None:
            """Stage 2l: layer l's steps back; stage 2l+1: the gradient layer l+1 sends down to l."""
            a, b = chunks[chunk]
            layer, hand_off = divmod(stage, 2)
            if hand_off:
                send_down(k, layer + 1, a, b)
            else:
                recurrent_backward_steps(trace.caches[k][layer], layout.view(dhs[layer], k), a, b)

        run_wavefront(len(layout), 2 * L - 1, len(chunks), task, reverse=True)
        self._layer_grads(trace, dghs, grads)
        return grads

    def _layer_grads(self, trace: _Trace, dghs: list, grads: dict) -> None:
        """Add to grads the weight gradients of every layer and of the embedding, each one
        product (or sum, or scatter) over all N rows in block-major order, once the backward
        has run. A tied decoder's gradient becomes the embedding's."""
        from charlm.nn.kernels.embedding import _scatter_add_rows
        from charlm.nn.kernels.linalg import matmul
        from charlm.nn.recurrent import recurrent_backward_finish

        cfg = self.config
        dx = None
        for layer in reversed(range(cfg.layers)):
            finished = [recurrent_backward_finish(block[layer], hidden_grads=False)
                        for block in trace.caches]
            if cfg.learn_leak:  # dL/dlogit = dL/da * a (1 - a), summed over the blocks in order
                a = self.leak_rates(layer)
                grads[f"rnn.leak_logit_l{layer}"] = sum(g.dleak for g in finished) * (a * (1 - a))
            dxw = trace.xws[layer]  # (N, G*H): dL/dxw by now
            dgh = dxw if dghs[layer] is None else dghs[layer]  # dL/d(h_{t-1} W_hh^T + b_hh)
            grads[f"rnn.weight_hh_l{layer}"] = matmul(dgh.T, self._previous_states(trace, layer))
            grads[f"rnn.bias_hh_l{layer}"] = dgh.sum(axis=0)
            grads[f"rnn.bias_ih_l{layer}"] = dxw.sum(axis=0)
            x = trace.inputs[layer]
            if x is None:  # one-hot input (layer 0): dW_ih^T gathers rows by token
                dw_t = np.zeros((cfg.vocab_size, dxw.shape[1]), dxw.dtype)
                _scatter_add_rows(dw_t, trace.rows, dxw)
                if trace.folded:  # the table E W_ih^T: dW_ih = dtable^T E, dE = dtable W_ih
                    grads[f"rnn.weight_ih_l{layer}"] = matmul(dw_t.T, self.params["embedding.weight"])
                    d_table_e = matmul(dw_t, self._p("weight_ih", 0))
                else:
                    grads[f"rnn.weight_ih_l{layer}"] = np.ascontiguousarray(dw_t.T)
            else:
                grads[f"rnn.weight_ih_l{layer}"] = matmul(dxw.T, x)
                if layer == 0:
                    dx = matmul(dxw, self._p("weight_ih", 0))
        if cfg.embed > 0:
            dE = grads.pop("decoder.weight") if cfg.tie else np.zeros_like(self.params["embedding.weight"])
            if trace.folded:
                dE += d_table_e
            else:
                _scatter_add_rows(dE, trace.rows, np.ascontiguousarray(_apply_mask(dx, trace.row_masks[0])))
            grads["embedding.weight"] = dE

    def _previous_states(self, trace: _Trace, layer: int) -> np.ndarray:
        """(N, H): h_{t-1} of every row of `layer` (the window's starting state for t = 0)."""
        layout = trace.layout
        prev = np.empty_like(trace.hs[layer])
        for k, (b0, b1) in enumerate(layout.bounds):
            block, hs = layout.view(prev, k), layout.view(trace.hs[layer], k)
            block[0] = trace.state[layer, 0, b0:b1]
            block[1:] = hs[:-1]
        return prev

    # ---- evaluation -------------------------------------------------------------------
    def target_logprobs(self, tokens, targets, state, valid=None):
        """Log-probability of each target (T, B) given tokens (T, B) from state: no dropout.

        valid (T, B) bool, optional: the positions whose log-probability is wanted (e.g. not
        the padding after a short line); the decoder and softmax skip the others, whose logp
        is 0. Returns (logp (T, B) float64, new_state). Whole blocks of streams run side by
        side, as in loss_and_grads.
        """
        tokens = np.asarray(tokens)
        targets = np.asarray(targets)
        blocks = whole_blocks(tokens.shape[1], self.config.layers)
        if len(blocks) == 1:
            return self._share_logprobs(tokens, targets, state, valid)
        packed = self._packed_weights()
        results = run_alone([partial(self._share_logprobs, tokens[:, b0:b1], targets[:, b0:b1], state[:, :, b0:b1],
                                     None if valid is None else np.asarray(valid)[:, b0:b1], packed)
                             for b0, b1 in blocks])
        return (np.concatenate([r[0] for r in results], axis=1),
                np.concatenate([r[1] for r in results], axis=2))

    def _share_logprobs(self, tokens, targets, state, valid, packed=None):
        """target_logprobs of some streams (tokens, targets (T, Bk), state (L, S, Bk, H));
        packed: _packed_weights() or None."""
        trace = self._forward(tokens, state, None, keep=False, packed=packed)
        layout = trace.layout
        targets = layout.to_blocks(np.ascontiguousarray(targets, dtype=np.int64))
        top = trace.top
        wanted = None
        if valid is not None:
            wanted = np.flatnonzero(layout.to_blocks(np.asarray(valid, dtype=bool)))
            top, targets = top[wanted], targets[wanted]
        logp = np.empty(len(targets), np.float64)
        rows = max(64, LOGIT_ELEMENTS // self.config.vocab_size)  # rows of logits at a time
        for r0 in range(0, len(targets), rows):
            part = slice(r0, r0 + rows)
            logp[part] = fused_target_logprobs(self.logits(top[part]), targets[part])
        if wanted is not None:
            every = np.zeros(layout.rows, np.float64)
            every[wanted] = logp
            logp = every
        return layout.from_blocks(logp), trace.new_state


def _apply_mask(dx: np.ndarray, mask) -> np.ndarray:
    return dx if mask is None else dx * mask
