"""tanh for the compiled kernels: libm's in float64, a vectorisable rational in float32.

libm's tanhf is a call per element that LLVM cannot vectorise; in the float32 kernels it
costs more than the matrix products around it. The float32 version here is
tanh(x) ~ x P(u) / Q(u) with u = (x / 9)^2 and |x| clamped to 9 (where tanh(x) rounds to
one in float32), P of degree 5 and Q of degree 4, fitted by iteratively reweighted least
squares to a relative error of 1.3e-9; evaluated in float32 it is within 7 ulp (4e-7
relative) of the true tanh. NaN propagates (the clamp compares, it does not call max).
Float64 keeps libm's tanh, so that float64 results agree with the reference to rounding.
"""
import math

import numpy as np
from numba import types
from numba.extending import overload

_CLAMP = 9.0
_P = (1.0, 11.08154065, 25.38831552, 14.89774681, 1.31920288, -0.04270818)
_Q = (1.0, 38.08153965, 178.79001815, 209.43237696, 55.49295972)


def tanh(x):
    """tanh(x); inside compiled code, the float32 rational or libm (see module docs)."""
    return math.tanh(x)


@overload(tanh, jit_options=dict(fastmath=False))
def _tanh(x):
    if x != types.float32:
        return lambda x: math.tanh(x)
    clamp = np.float32(_CLAMP)
    scale = np.float32(1.0 / _CLAMP**2)
    p0, p1, p2, p3, p4, p5 = (np.float32(v) for v in _P)
    q0, q1, q2, q3, q4 = (np.float32(v) for v in _Q)

    def tanh32(x):
        if x > clamp:
            x = clamp
        elif x < -clamp:
            x = -clamp
        u = x * scale * x
        p = ((((p5 * u + p4) * u + p3) * u + p2) * u + p1) * u + p0
        q = (((q4 * u + q3) * u + q2) * u + q1) * u + q0
        return x * p / q

    return tanh32
