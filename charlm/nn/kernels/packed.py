"""The recurrent step's product with weights packed once per window: out = a @ w^T.

Every step of a recurrent layer multiplies the same weights (W_hh forward, W_hh^T backward) by a
few rows (a stream block's h_{t-1} or gate gradients). A BLAS GEMM packs the whole weight matrix
again at every call, which at these shapes costs as much as the arithmetic. Here the weights are
packed once, by pack_panels, into panels of W output columns:

    wp (P, K, W), P = ceil(N / W):  wp[p, k, j] = w[W p + j, k]  (0 past row N-1 of w)

with W the machine's float32 vector width (PANEL: 16 with AVX-512, else 8), and each step's
product runs through a micro-kernel written in LLVM IR (a Numba intrinsic): R rows x 2 panels
held in 2R vector accumulators over the whole inner dimension, one fused multiply-add per row,
panel and k, the weights streamed from the caches once per R rows. R is 8 where the machine has
32 vector registers (AVX-512), else 4, so that the accumulators stay in registers; the rows
left over go 4, then 1 at a time.

Every output element is the same sequence of fused multiply-adds over k = 0..K-1, whichever
kernel variant (8, 4 or 1 rows, 2 or 1 panels) computes it: the result does not depend on how
rows are grouped into stream blocks or threads. float64 (the gradient checks) runs a plain loop.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils, config
from numba.core.codegen import get_host_cpu_features
from numba.extending import intrinsic, overload

from charlm.nn.kernels._numba import FASTMATH, JIT_OPTIONS


def _vector_width() -> int:
    """float32 lanes of the vectors the micro-kernel computes with: 16 where Numba compiles for
    AVX-512 (32 registers of 16 lanes), else 8 (AVX2's 16 registers of 8; two NEON registers).
    Numba's target is the host's CPU unless NUMBA_CPU_NAME / NUMBA_CPU_FEATURES say otherwise."""
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return 16 if "+avx512f" in features.split(",") else 8


PANEL = _vector_width()  # output columns per panel
# Rows of the main variant: 8 rows x 2 panels = 16 accumulators in AVX-512's 32 registers;
# 4 x 2 = 8 accumulators of two registers each in AVX2's 16.
_BIG_ROWS = 8 if PANEL == 16 else 4
_F32 = ir.FloatType()
_I64 = ir.IntType(64)
_VEC = ir.VectorType(_F32, PANEL)


def panels_shape(N: int, K: int) -> tuple[int, int, int]:
    """The shape of pack_panels(w) for w (N, K): (ceil(N/W), K, W)."""
    return -(-N // PANEL), K, PANEL


def pack_panels(w: np.ndarray) -> np.ndarray:
    """w (N, K) -> wp (ceil(N/W), K, W) C-contiguous, zero-padded past row N-1 (see above).
    w may be C- or F-contiguous (e.g. W_hh.T)."""
    wp = np.empty(panels_shape(*w.shape), w.dtype)
    _pack_into(w, wp)
    return wp


@njit(**JIT_OPTIONS)
def _pack_into(w, wp):
    """wp[p, k, j] = w[W p + j, k], 0 past row N-1. For an F-contiguous w (W_hh.T) the inner
    loop reads W consecutive floats; for a C-contiguous one, W rows side by side."""
    N, K = w.shape
    P, _, W = wp.shape
    for p in range(P):
        n_here = min(W, N - W * p)
        for k in range(K):
            for j in range(W):
                wp[p, k, j] = w[W * p + j, k] if j < n_here else 0.0


def _micro_kernel(rows: int, panels: int):
    """An intrinsic f(a, a_off, lda, wp, w_off, K, out, out_off, ldo) that writes
    out[r, W c + j] = sum_k a[r, k] * wp[c, k, j] for r < rows, c < panels, j < W (PANEL), with
    every array addressed from its data pointer plus an element offset (rows lda / ldo elements
    apart, panels K * W apart). float32 arrays whose last axis is contiguous."""

    @intrinsic
    def kernel(typingctx, a, a_off, lda, wp, w_off, K, out, out_off, ldo):
        i64 = types.int64
        sig = types.void(a, i64, i64, wp, i64, i64, out, i64, i64)

        def codegen(context, builder, signature, args):
            a_arr, a_off, lda, wp_arr, w_off, K, out_arr, out_off, ldo = args
            data = [context.make_array(signature.args[i])(context, builder, arr).data
                    for i, arr in ((0, a_arr), (3, wp_arr), (6, out_arr))]
            a_ptr, w_ptr, out_ptr = (builder.gep(p, [off]) for p, off in zip(data, (a_off, w_off, out_off)))
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC] * 3),
                                                 f"llvm.fma.v{PANEL}f32")
            const = lambda n: ir.Constant(_I64, n)  # noqa: E731
            zero = ir.Constant(_VEC, [0.0] * PANEL)
            broadcast = ir.Constant(ir.VectorType(ir.IntType(32), PANEL), [0] * PANEL)
            entry = builder.block
            loop = builder.append_basic_block("panel.k")
            done = builder.append_basic_block("panel.done")
            builder.cbranch(builder.icmp_signed(">", K, const(0)), loop, done)

            builder.position_at_end(loop)
            k = builder.phi(_I64)
            k.add_incoming(const(0), entry)
            acc = [builder.phi(_VEC) for _ in range(rows * panels)]
            for phi in acc:
                phi.add_incoming(zero, entry)
            panel_size = builder.mul(K, const(PANEL))
            w_rows = []
            for c in range(panels):
                at = builder.add(builder.mul(k, const(PANEL)), builder.mul(panel_size, const(c)))
                w_rows.append(builder.load(builder.bitcast(builder.gep(w_ptr, [at]), _VEC.as_pointer()), align=4))
            summed = []
            for r in range(rows):
                x = builder.load(builder.gep(a_ptr, [builder.add(builder.mul(const(r), lda), k)]))
                x = builder.insert_element(ir.Constant(_VEC, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
                x = builder.shuffle_vector(x, ir.Constant(_VEC, ir.Undefined), broadcast)
                summed.extend(builder.call(fma, [x, w_rows[c], acc[r * panels + c]]) for c in range(panels))
            k_next = builder.add(k, const(1))
            last = builder.block
            k.add_incoming(k_next, last)
            for phi, value in zip(acc, summed):
                phi.add_incoming(value, last)
            builder.cbranch(builder.icmp_signed("<", k_next, K), loop, done)

            builder.position_at_end(done)
            results = []
            for value in summed:
                phi = builder.phi(_VEC)
                phi.add_incoming(zero, entry)
                phi.add_incoming(value, last)
                results.append(phi)
            for r in range(rows):
                for c in range(panels):
                    at = builder.add(builder.mul(const(r), ldo), const(c * PANEL))
                    builder.store(results[r * panels + c], builder.bitcast(builder.gep(out_ptr, [at]), _VEC.as_pointer()),
                                  align=4)
            return context.get_dummy_value()

        return sig, codegen

    return kernel


_big_x2, _4x2, _1x2 = (_micro_kernel(rows, 2) for rows in (_BIG_ROWS, 4, 1))
_big_x1, _4x1, _1x1 = (_micro_kernel(rows, 1) for rows in (_BIG_ROWS, 4, 1))


@njit(**JIT_OPTIONS)
def _columns(a, wp, out, p, pair, lda, ldo, out_col):
    """Columns [W p, W p + 2W) of out (W p + W without pair), starting at its column out_col,
    from panel p (and p + 1): rows in groups of _BIG_ROWS, then 4, then 1."""
    M, K = a.shape
    w_off = p * K * PANEL
    r = 0
    while r + _BIG_ROWS <= M:
        if pair:
            _big_x2(a, r * lda, lda, wp, w_off, K, out, r * ldo + out_col, ldo)
        else:
            _big_x1(a, r * lda, lda, wp, w_off, K, out, r * ldo + out_col, ldo)
        r += _BIG_ROWS
    while r + 4 <= M:
        if pair:
            _4x2(a, r * lda, lda, wp, w_off, K, out, r * ldo + out_col, ldo)
        else:
            _4x1(a, r * lda, lda, wp, w_off, K, out, r * ldo + out_col, ldo)
        r += 4
    while r < M:
        if pair:
            _1x2(a, r * lda, lda, wp, w_off, K, out, r * ldo + out_col, ldo)
        else:
            _1x1(a, r * lda, lda, wp, w_off, K, out, r * ldo + out_col, ldo)
        r += 1


@njit(**JIT_OPTIONS)
def _product_f32(a, wp, out, tail):
    M = a.shape[0]
    N = out.shape[1]
    lda = a.strides[0] // 4
    ldo = out.strides[0] // 4
    whole = N // PANEL  # panels that lie inside out
    p = 0
    while p + 2 <= whole:
        _columns(a, wp, out, p, True, lda, ldo, p * PANEL)
        p += 2
    if p < whole:
        _columns(a, wp, out, p, False, lda, ldo, p * PANEL)
        p += 1
    if p < wp.shape[0]:  # the last panel, cut by out's edge: through the tail rows
        _columns(a, wp, tail, p, False, lda, tail.strides[0] // 4, 0)
        for m in range(M):
            for j in range(N - p * PANEL):
                out[m, p * PANEL + j] = tail[m, j]


@njit(**JIT_OPTIONS)
def _product_any(a, wp, out, tail):
    M, K = a.shape
    N = out.shape[1]
    for m in range(M):
        for n in range(N):
            p, j = n // PANEL, n % PANEL
            s = 0.0
            for k in range(K):
                s += a[m, k] * wp[p, k, j]
            out[m, n] = s


def packed_product(a: np.ndarray, wp: np.ndarray, out: np.ndarray, tail: np.ndarray) -> None:
    """out (M, N) = a (M, K) @ w^T for wp = pack_panels(w), w (N, K). The rows of a and out must
    be contiguous (any row stride). tail (>= M, W): scratch for the last panel when W does not
    divide N (tail_buffer), so that no step allocates. Called from compiled kernels; in Python,
    numpy computes it."""
    N = out.shape[1]
    w = wp.transpose(0, 2, 1).reshape(-1, wp.shape[1])[:N]
    out[...] = a @ w.T


@overload(packed_product, jit_options=dict(fastmath=set(FASTMATH), nogil=True, error_model="numpy"))
def _packed_product(a, wp, out, tail):
    if a.dtype == types.float32 and wp.dtype == types.float32 and out.dtype == types.float32:
        return lambda a, wp, out, tail: _product_f32(a, wp, out, tail)
    return lambda a, wp, out, tail: _product_any(a, wp, out, tail)


def tail_buffer(rows: int, dtype) -> np.ndarray:
    """packed_product's tail scratch for products of up to `rows` rows."""
    return np.empty((rows, PANEL), dtype)
