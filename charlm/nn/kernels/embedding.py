"""Row gather/scatter for the embedding and one-hot input (and their gradients)."""

from numba import njit

from charlm.nn.kernels._numba import JIT_OPTIONS


@njit(**JIT_OPTIONS)
def _scatter_add_rows(out, idx, src):
    """out[idx[n], :] += src[n, :] for every n.  out (V, D), idx (N,), src (N, D).

    A serial loop: rows that repeat (common tokens) accumulate in order, so the result is
    deterministic, unlike a parallel scatter.
    """
    n_rows, width = src.shape
    for n in range(n_rows):
        row = idx[n]
        for d in range(width):
            out[row, d] += src[n, d]


@njit(**JIT_OPTIONS)
def _gather_rows(src, idx, out):
    """out[n, :] = src[idx[n], :] for every n.  src (V, D), idx (N,), out (N, D)."""
    width = src.shape[1]
    for n in range(idx.shape[0]):
        row = idx[n]
        for d in range(width):
            out[n, d] = src[row, d]
