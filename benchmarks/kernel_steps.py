"""Time the recurrent kernels alone, on one BLAS thread: `python -m benchmarks.kernel_steps`.

Prints the best of 5 runs of `lstm_forward` / `lstm_backward` and `gru_forward` over T steps of
a (B, H) batch, float32, in milliseconds. Run it from two checkouts to compare kernel changes
(one after the other on the same machine).
"""

from __future__ import annotations

import time

import numpy as np

from charlm.nn.kernels.gru import gru_forward
from charlm.nn.kernels.lstm import lstm_backward, lstm_forward
from charlm.nn.kernels.packed import pack_panels, tail_buffer
from charlm.nn.kernels.threads import sequential_blas

SHAPES = ((100, 64, 384), (100, 32, 512), (35, 20, 200), (35, 20, 400))  # (T, B, H)


def best_ms(run, prepare, repeats: int = 5) -> float:
    """Best time of run() in ms, prepare() (restoring the inputs it overwrites) not counted."""
    prepare()
    run()
    best = float("inf")
    for _ in range(repeats):
        prepare()
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def time_lstm(T: int, B: int, H: int, rng) -> tuple[float, float]:
    xw0 = rng.standard_normal((T, B, 4 * H)).astype(np.float32)
    w_hh = (rng.standard_normal((4 * H, H)) * 0.05).astype(np.float32)
    w_hh_p, w_hh_t_p, b_hh = pack_panels(w_hh), pack_panels(w_hh.T), np.zeros(4 * H, np.float32)
    h0, c0 = np.zeros((B, H), np.float32), np.zeros((B, H), np.float32)
    hs, cs = np.empty((T, B, H), np.float32), np.empty((T, B, H), np.float32)
    gh, tail = np.empty((B, 4 * H), np.float32), tail_buffer(B, np.float32)
    xw = np.empty_like(xw0)
    forward = best_ms(lambda: lstm_forward(xw, w_hh_p, b_hh, h0, c0, hs, cs, gh, tail, True),
                      lambda: np.copyto(xw, xw0))
    gates = xw.copy()  # the activations the forward left
    dhs = rng.standard_normal((T, B, H)).astype(np.float32)
    dh, dc = np.zeros((B, H), np.float32), np.zeros((B, H), np.float32)

    def reset():
        np.copyto(xw, gates)
        dh.fill(0)
        dc.fill(0)

    backward = best_ms(lambda: lstm_backward(xw, cs, c0, w_hh_t_p, dhs, dh, dc, tail), reset)
    return forward, backward


def time_gru_forward(T: int, B: int, H: int, rng) -> float:
    xw0 = rng.standard_normal((T, B, 3 * H)).astype(np.float32)
    w_hh = (rng.standard_normal((3 * H, H)) * 0.05).astype(np.float32)
    b_hh, h0 = np.zeros(3 * H, np.float32), np.zeros((B, H), np.float32)
    hs, ghn = np.empty((T, B, H), np.float32), np.empty((T, B, H), np.float32)
    gh, w_hh_p = np.empty((B, 3 * H), np.float32), pack_panels(w_hh)
    xw = np.empty_like(xw0)
    return best_ms(lambda: gru_forward(xw, w_hh_p, b_hh, h0, hs, ghn, gh, tail_buffer(B, np.float32), True),
                   lambda: np.copyto(xw, xw0))


def main() -> None:
    rng = np.random.default_rng(0)
    print("T, B, H | lstm forward ms | lstm backward ms | gru forward ms")
    with sequential_blas():  # loads SciPy's BLAS first, so that its thread count can be set
        for T, B, H in SHAPES:
            forward, backward = time_lstm(T, B, H, rng)
            print(f"{T}, {B}, {H} | {forward:.1f} | {backward:.1f} | {time_gru_forward(T, B, H, rng):.1f}")


if __name__ == "__main__":
    main()
