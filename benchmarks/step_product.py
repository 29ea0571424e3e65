"""The recurrent step's product on one thread: `python -m benchmarks.step_product`.

out (B, N) = a (B, K) @ W^T at the shapes of the models' steps (forward: K = H, N = G*H;
backward: K = G*H, N = H), through charlm's packed micro-kernel (charlm.nn.kernels.packed,
weights packed once) and through one BLAS GEMM per step (numpy's np.dot inside Numba, SciPy's
OpenBLAS). Prints GFLOP/s, the best of 5 runs of a few thousand products each.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from charlm.nn.kernels.packed import pack_panels, packed_product, tail_buffer
from charlm.nn.kernels.threads import sequential_blas

# (B, K, N): char-small's LSTM 1x128 forward and backward, the 2x512 LSTM's, word-small's
SHAPES = ((16, 128, 512), (16, 512, 128), (32, 512, 2048), (32, 2048, 512), (20, 200, 800), (20, 800, 200))


@njit(nogil=True)
def _packed(a, wp, out, tail, repeats):
    for _ in range(repeats):
        packed_product(a, wp, out, tail)


@njit(nogil=True)
def _blas(a, w, out, repeats):
    for _ in range(repeats):
        np.dot(a, w.T, out)


def gflops(run, flops: float, repeats: int) -> float:
    run(repeats)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        run(repeats)
        best = min(best, time.perf_counter() - start)
    return flops * repeats / best / 1e9


def main() -> None:
    rng = np.random.default_rng(0)
    print("B, K, N | packed GFLOP/s | BLAS GFLOP/s | ratio")
    with sequential_blas():  # loads SciPy's BLAS first, so that its thread count can be set
        for B, K, N in SHAPES:
            a = rng.standard_normal((B, K)).astype(np.float32)
            w = rng.standard_normal((N, K)).astype(np.float32)
            out = np.empty((B, N), np.float32)
            flops = 2.0 * B * K * N
            repeats = max(1, int(4e8 / flops))
            wp = pack_panels(w)
            tail = tail_buffer(B, np.float32)
            packed = gflops(lambda n: _packed(a, wp, out, tail, n), flops, repeats)
            blas = gflops(lambda n: _blas(a, w, out, n), flops, repeats)
            print(f"{B}, {K}, {N} | {packed:.1f} | {blas:.1f} | {packed / blas:.2f}x")


if __name__ == "__main__":
    main()
