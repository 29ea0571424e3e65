"""Adam's update fused into one pass over a parameter (charlm.train.optim).

numpy's version makes about ten passes over each array and allocates temporaries; a model with
a large vocabulary has millions of parameters, and the update then costs as much as a tenth
of a training step. Here each element is read and written once. No fastmath: every float32
operation rounds as numpy's element-wise steps do, in the same order, so the result has the
same bits as those steps.
"""

import numpy as np
from numba import njit


@njit(nogil=True, cache=True, error_model="numpy")
def _adam_update(p, g, m, v, b1, c1, b2, c2, inv_sqrt_bc2, eps, step_size, lo, hi):
    """For i in [lo, hi) of the 1-D float32 arrays p, g, m, v and float32 scalars:
        m = m b1 + c1 g;  v = v b2 + c2 g^2          (c1 = 1 - b1, c2 = 1 - b2)
        p -= m / (sqrt(v) inv_sqrt_bc2 + eps) * step_size
    with inv_sqrt_bc2 = 1 / sqrt(1 - b2^t) and step_size = lr / (1 - b1^t). g is only read.

    The loop runs over slices from 0: an index that might be negative (range(lo, hi)) keeps
    Numba's wraparound check in the loop, and LLVM then does not vectorize it (10x slower)."""
    p, g, m, v = p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi]
    for i in range(p.shape[0]):
        gi = g[i]
        mi = m[i] * b1 + c1 * gi
        vi = v[i] * b2 + c2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        p[i] -= (mi / (np.sqrt(vi) * inv_sqrt_bc2 + eps)) * step_size
