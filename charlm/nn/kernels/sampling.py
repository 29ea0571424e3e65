"""Token-by-token generation in one compiled loop: no Python per token.

Each step embeds the previous token, runs every layer one step (the one-row product h W_hh^T
here, then the cell's row step), applies the decoder, shapes the distribution (banned token
removed, top-k, temperature, then top-p on the renormalized distribution) and draws the next
token by inverse CDF from a given uniform number.

The loop, sample_loop, takes the cell's row step as its first argument and is inlined (Numba
IR inlining) into each cell's `sample_tokens` in its kernel file, which is compiled and cached
there: one specialised loop per cell, with a direct call to its step. (A jitted function passed
from Python as an argument would make the loop uncacheable.) Numba's cache does not notice
edits in another file: after changing this loop, delete the kernels' __pycache__ *.nbi/*.nbc.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from charlm.nn.cells import get_cell
from charlm.nn.kernels._numba import JIT_OPTIONS
from charlm.nn.kernels.activations import exp


@njit(**JIT_OPTIONS)
def _exp_shifted_(logits, peak, inv_temp):
    """logits[v] <- exp((logits[v] - peak) * inv_temp), in place; returns their sum.

    The kernels' exp (charlm.nn.kernels.activations: vectorizable in float32); a logit of -inf
    (a removed token) gives exactly 0.
    """
    c = np.float32(inv_temp)
    total = 0.0
    for v in range(logits.shape[0]):
        e = exp((logits[v] - peak) * c)
        logits[v] = e if logits[v] > np.float32(-3.0e38) else np.float32(0.0)
        total += logits[v]
    return total


@njit(**JIT_OPTIONS)
def _draw(logits, temp, top_k, top_p, banned, u):
    """(index, its probability) drawn from softmax(logits / temp) restricted to the top_k, without
    `banned`, then to its nucleus when top_p < 1 (_nucleus_). The probability is the drawn
    token's in that final distribution. temp == 0 is argmax (probability 1). logits (V,)
    float32 is used as scratch."""
    V = logits.shape[0]
    logits[banned] = -np.inf
    if top_k > 0 and top_k < V:
        kth = np.partition(logits, V - top_k)[V - top_k]
        for v in range(V):
            if logits[v] < kth:
                logits[v] = -np.inf
    best = 0
    for v in range(V):
        if logits[v] > logits[best]:
            best = v
    if temp == 0.0:
        return best, 1.0
    total = _exp_shifted_(logits, logits[best], 1.0 / temp)
    if top_p < 1.0:
        total = _nucleus_(logits, total, top_p)
    target = u * total
    acc = 0.0
    for v in range(V):
        acc += logits[v]
        if acc > target and logits[v] > 0.0:
            return v, logits[v] / total
    return best, logits[best] / total


@njit(**JIT_OPTIONS)
def _nucleus_(weights, total, top_p):
    """Keep the nucleus of weights (V,) >= 0 summing to `total`, in place: the fewest most likely
    tokens (ties in id order) whose weights reach top_p x total; the others become 0. Returns
    the kept weights' sum."""
    order = np.argsort(-weights, kind="mergesort")
    target = top_p * total
    acc = 0.0
    n = weights.shape[0]
    for i in range(weights.shape[0]):
        acc += weights[order[i]]
        if acc >= target:
            n = i + 1
            break
    kept = 0.0
    for i in range(weights.shape[0]):
        if i < n:
            kept += weights[order[i]]
        else:
            weights[order[i]] = 0.0
    return kept


def sample_tokens(cell: str, *args) -> int:
    """Run the compiled sampling loop of `cell` (its kernel file's sample_tokens) with
    sample_loop's arguments after the step; returns the number of steps run."""
    return get_cell(cell).kernels().sample_tokens(args)


@njit(inline="always", **JIT_OPTIONS)
def sample_loop(row_step, args):
    """Advance K streams together, one token each per step; returns the number of steps run.

    row_step: the cell's compiled row step (charlm.nn.kernels.rnn.row_step states its contract).
    args = (emb, w_ih0, w_ih, b_ih, w_hh_t, b_hh, leak, retain, dec_w, dec_b, state, tokens,
    uniforms, temp, top_k, top_p, banned, eos, stop_at_eos, out, probs, active):
    emb (V, E), or (0, 0) for one-hot input. The input and decoder weights come as the
    products want them: for one stream (K = 1), as in the model, each step's product a
    matrix-vector one: w_ih0 (G*H, I0) layer 0's input weights, w_ih (max(L-1, 1), G*H, H)
    those of layers 1.., dec_w (V, H); for several, transposed, (K, I) x (I, G*H) products:
    w_ih0 (I0, G*H), w_ih (max(L-1, 1), H, G*H), dec_w (H, V). b_ih, b_hh (L, G*H); w_hh_t
    (L, H, G*H) = W_hh^T per layer; leak, retain (L, H): the leaky cells' rates a and 1 - a
    (ones and zeros for the others); dec_b (V,); all C-contiguous. state (L, S, K, H) is updated
    in place. tokens (K,): each stream's last token, updated. uniforms (n, K) in [0, 1), one per
    token. out (n, K): the tokens drawn, -1 once a stream has stopped; probs (n, K) float64: each
    drawn token's probability in the distribution it was drawn from. active (K,): streams
    still drawing; a stream stops at EOS when stop_at_eos. The run ends early when none is.
    Each step is one product (K rows) per weight matrix: K samples cost little more than one.
    """
    (emb, w_ih0, w_ih, b_ih, w_hh_t, b_hh, leak, retain, dec_w, dec_b, state, tokens, uniforms, temp,
     top_k, top_p, banned, eos, stop_at_eos, out, probs, active) = args
    L = state.shape[0]
    two_slots = state.shape[1] == 2
    K = state.shape[2]
    H = state.shape[3]
    GH = b_hh.shape[1]
    one_hot = emb.shape[0] == 0
    dtype = state.dtype
    x0 = np.empty((K, max(emb.shape[1], 1)), dtype)  # layer 0's input rows (embeddings)
    xw = np.empty((K, GH), dtype)  # buffers reused by every step and layer
    gh = np.empty((K, GH), dtype)
    work = np.empty((3, H), dtype)  # the row step's scratch; work[2] is the c of one-slot cells
    logits = np.empty((K, dec_b.shape[0]), dtype)
    for step in range(out.shape[0]):
        for layer in range(L):
            if layer == 0 and one_hot:  # x W_ih^T for a one-hot x is a column of W_ih
                for k in range(K):
                    if K == 1:
                        xw[k] = w_ih0[:, tokens[k]]
                    else:
                        xw[k] = w_ih0[tokens[k]]
            elif layer == 0:
                for k in range(K):
                    x0[k] = emb[tokens[k]]
                if K == 1:
                    np.dot(w_ih0, x0[0], xw[0])
                else:
                    np.dot(x0, w_ih0, xw)
            elif K == 1:
                np.dot(w_ih[layer - 1], state[layer - 1, 0, 0], xw[0])
            else:
                np.dot(state[layer - 1, 0], w_ih[layer - 1], xw)
            for k in range(K):
                xw[k] += b_ih[layer]
            np.dot(state[layer, 0], w_hh_t[layer], gh)
            for k in range(K):
                row_step(xw[k], gh[k], b_hh[layer], leak[layer], retain[layer], state[layer, 0, k],
                         state[layer, 1, k] if two_slots else work[2], work)
        if K == 1:
            np.dot(dec_w, state[L - 1, 0, 0], logits[0])
        else:
            np.dot(state[L - 1, 0], dec_w, logits)
        running = 0
        for k in range(K):
            if not active[k]:
                out[step, k] = -1
                probs[step, k] = 0.0
                continue
            logits[k] += dec_b
            token, prob = _draw(logits[k], temp, top_k, top_p, banned, uniforms[step, k])
            out[step, k] = token
            probs[step, k] = prob
            tokens[k] = token
            if stop_at_eos and token == eos:
                active[k] = False
            else:
                running += 1
        if running == 0:
            return step + 1
    return out.shape[0]
