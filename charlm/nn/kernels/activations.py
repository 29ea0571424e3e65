"""Scalar activations for the recurrent kernels, dispatched on the argument's type.

Inside a Numba-compiled kernel, ``tanh(x)`` and ``sigmoid(x)`` resolve at compile time:

- float64: the exact functions (``math.tanh``, ``1 / (1 + exp(-x))``). The float64 kernels are
  what the finite-difference gradient checks run, so they must be exact.
- float32: a clamped rational approximation of tanh that LLVM can vectorize (without Intel's
  SVML, Numba's ``math.tanh``/``math.exp`` in a loop are scalar libm calls, several times slower).
  sigmoid(x) = 0.5 * tanh(0.5 * x) + 0.5.

  The approximation is the [13/6] odd/even rational minimax fit used by Eigen (and TensorFlow)
  for float tanh, input clamped to +-7.9053111 (where float32 tanh rounds to +-1).
  Measured over a dense grid of 4,000,001 float32 points on [-20, 20] against float64 numpy
  (tests/test_kernels.py::test_float32_activation_accuracy, which asserts < 5e-7):
  as compiled with FMA: max abs error of tanh 2.7e-7, of sigmoid 1.7e-7;
  evaluated without FMA (plain numpy float32): tanh 3.9e-7, sigmoid 2.3e-7 (worst near |x| = 5.8,
  a few float32 ulps of 1). tanh is exactly odd, |tanh| <= 1, sigmoid in [0, 1], NaN propagates;
  +-inf gives +-0.99999976 (the value at the clamp).

``exp(x)`` (for the softmax and sampling kernels): float64 ``math.exp``; float32 Cephes' expf (range reduction
x = n ln2 + r, |r| <= ln2/2, a degree-7 polynomial in r, 2^n built from its exponent bits),
which LLVM vectorizes. Input clamped to
[-87.3, 88.7]: exp of a very negative x is 1.2e-38 rather than 0, above 88.38 it is inf (float32
overflows at 88.72), NaN propagates. Max relative error 3.0e-7 over [-87, 88]
(tests/test_kernels.py::test_float32_exp_accuracy).

``dtanh(y)`` and ``dsigmoid(y)`` are the derivatives from the *outputs* (1 - y^2, y (1 - y)), as
the backward kernels compute them from stored activations.

Every constant is of the argument's type so that float32 code stays float32 (a Python float
literal would promote the whole expression to float64 and defeat vectorization).
The overloads compile with error_model="numpy": under Numba's default Python error model, the
division in the rational function gets a zero check that raises ZeroDivisionError, and that
branch alone stops LLVM from vectorizing the kernels' loops.

Caveat of Numba's cache: a cached kernel is not invalidated when only this file changes. After
editing it, delete charlm/nn/kernels/__pycache__ (or touch the kernel files).

The plain-Python definitions below are what you get outside Numba (exact, numpy-based); they are
also the names the overloads attach to.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from charlm.nn.kernels._numba import FASTMATH

__all__ = ["tanh", "sigmoid", "exp", "dtanh", "dsigmoid"]

_OVERLOAD_OPTIONS = dict(
    jit_options=dict(fastmath=set(FASTMATH), nogil=True, error_model="numpy"), inline="never"
)

# float32 rational approximation of tanh (Eigen's generic_fast_tanh_float coefficients).
_F = np.float32
_CLAMP = _F(7.90531110763549805)
_A1 = _F(4.89352455891786e-03)
_A3 = _F(6.37261928875436e-04)
_A5 = _F(1.48572235717979e-05)
_A7 = _F(5.12229709037114e-08)
_A9 = _F(-8.60467152213735e-11)
_A11 = _F(2.00018790482477e-13)
_A13 = _F(-2.76076847742355e-16)
_B0 = _F(4.89352518554385e-03)
_B2 = _F(2.26843463243900e-03)
_B4 = _F(1.18534705686654e-04)
_B6 = _F(1.19825839466702e-06)
_HALF32 = _F(0.5)
_ONE32 = _F(1.0)

# float32 exp (Cephes expf): clamp, x = n ln2 + r with ln2 split in two for an exact product.
_EXP_HI = _F(88.7)
_EXP_LO = _F(-87.3)
_LOG2E = _F(1.44269504088896341)
_LN2_HI = _F(0.693359375)
_LN2_LO = _F(-2.12194440e-4)
_P0 = _F(1.9875691500e-4)
_P1 = _F(1.3981999507e-3)
_P2 = _F(8.3334519073e-3)
_P3 = _F(4.1665795894e-2)
_P4 = _F(1.6666665459e-1)
_P5 = _F(5.0000001201e-1)


# --- Python-level definitions (exact) --------------------------------------------------------


def tanh(x):
    """tanh(x); in a float32 Numba kernel, the rational approximation (see module docstring)."""
    return np.tanh(x)


def sigmoid(x):
    """1 / (1 + exp(-x)); in a float32 Numba kernel, 0.5 * tanh_approx(0.5 x) + 0.5."""
    return 1.0 / (1.0 + np.exp(-x))


def exp(x):
    """exp(x); in a float32 Numba kernel, Cephes' expf (see module docstring)."""
    return np.exp(x)


def dtanh(y):
    """Derivative of tanh given its output y: 1 - y^2."""
    return 1 - y * y


def dsigmoid(y):
    """Derivative of the sigmoid given its output y: y (1 - y)."""
    return y * (1 - y)


# --- Numba implementations -------------------------------------------------------------------


def _tanh32(x):
    # Written as selects (not min/max) so that NaN propagates: comparisons with NaN are false.
    x = _CLAMP if x > _CLAMP else x
    x = -_CLAMP if x < -_CLAMP else x
    x2 = x * x
    p = _A13
    p = p * x2 + _A11
    p = p * x2 + _A9
    p = p * x2 + _A7
    p = p * x2 + _A5
    p = p * x2 + _A3
    p = p * x2 + _A1
    p = p * x
    q = _B6
    q = q * x2 + _B4
    q = q * x2 + _B2
    q = q * x2 + _B0
    return p / q


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE-754 bit pattern is the low 32 bits of the integer `bits`."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        low = builder.trunc(args[0], ir.IntType(32)) if bits.bitwidth > 32 else args[0]
        return builder.bitcast(low, ir.FloatType())

    return types.float32(bits), codegen


def _exp32(x):
    x = _EXP_HI if x > _EXP_HI else x  # selects, not min/max: NaN propagates
    x = _EXP_LO if x < _EXP_LO else x
    n = np.floor(x * _LOG2E + _HALF32)
    r = x - n * _LN2_HI - n * _LN2_LO
    p = _P0
    p = p * r + _P1
    p = p * r + _P2
    p = p * r + _P3
    p = p * r + _P4
    p = p * r + _P5
    p = p * r * r + r + _ONE32
    return p * _float32_from_bits((np.int32(n) + 127) << 23)  # p * 2^n, n in [-126, 128]


@overload(tanh, **_OVERLOAD_OPTIONS)
def _ov_tanh(x):
    if x == types.float32:
        return _tanh32
    if x == types.float64:
        return lambda x: math.tanh(x)
    return None


@overload(sigmoid, **_OVERLOAD_OPTIONS)
def _ov_sigmoid(x):
    if x == types.float32:

        def impl(x):
            return _HALF32 * tanh(_HALF32 * x) + _HALF32

        return impl
    if x == types.float64:
        return lambda x: 1.0 / (1.0 + math.exp(-x))
    return None


@overload(exp, **_OVERLOAD_OPTIONS)
def _ov_exp(x):
    if x == types.float32:
        return _exp32
    if x == types.float64:
        return lambda x: math.exp(x)
    return None


@overload(dtanh, **_OVERLOAD_OPTIONS)
def _ov_dtanh(y):
    if y == types.float32:
        return lambda y: _ONE32 - y * y
    if y == types.float64:
        return lambda y: 1.0 - y * y
    return None


@overload(dsigmoid, **_OVERLOAD_OPTIONS)
def _ov_dsigmoid(y):
    if y == types.float32:
        return lambda y: y * (_ONE32 - y)
    if y == types.float64:
        return lambda y: y * (1.0 - y)
    return None
