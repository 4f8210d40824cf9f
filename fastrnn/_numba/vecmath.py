"""tanh and exp for the compiled kernels, written so that LLVM can vectorise them.

libm's functions are a call per element that LLVM cannot vectorise; in the kernels tanh
cost more than the matrix products around it (40% of the min-char-rnn-sized forward
pass) and exp half as much as the GEMMs of the output layer. The versions here are plain
arithmetic, comparisons and a bit cast, so loops over them vectorise, and NaN propagates
(the clamps compare, they do not call max). Their accuracy is tested against NumPy.

tanh
----
float64: |x| is clamped to 19.5 (tanh rounds to one beyond), scaled by 1/32, and tanh of
the small argument y is the Pade approximant from Lambert's continued fraction,
y P(y^2) / Q(y^2) with P of degree 3 and Q of degree 4 (relative error 3.4e-16 for
|y| <= 0.62); five doublings tanh(2y) = 2 tanh(y) / (1 + tanh(y)^2) undo the scaling,
carried out on numerator and denominator so that only one division remains (they stay
below 1e3, far from overflow). A doubling does not amplify a relative error, so the
result is within 8 ulp (median 1) of the true tanh (tested). NumPy's tanh is not exact
either (within an ulp, by an implementation that depends on the CPU NumPy dispatches to,
and not libm's), so the two differ by a few ulp: 1e-15 relative in s_t, but near
saturation the derivative 1 - s_t^2 inherits it as an absolute error of about 1e-16,
which is a large relative one (tests/test_numerics.py states the resulting tolerance).
No tanh short of NumPy's own bits would remove that difference.

float32: tanh(x) ~ x P(u) / Q(u) with u = (x / 9)^2 and |x| clamped to 9 (where tanh
rounds to one in float32), P of degree 5 and Q of degree 4, fitted by iteratively
reweighted least squares to a relative error of 1.3e-9; evaluated in float32 it is within
7 ulp (4e-7 relative) of the true tanh.

exp
---
exp(x) = 2^k exp(r) with k = round(x / ln 2) and r = x - k ln 2 (ln 2 split in two parts,
the first with enough trailing zero bits that k times it is exact), |r| <= ln(2) / 2;
exp(r) is its Taylor polynomial (degree 13 in float64, 7 in float32, truncation error
2e-16 and 7e-9), and 2^k is built from its bits. Within 2 ulp of the true exp where that is a normal
number (tested); it underflows to subnormals and 0 and overflows to inf as libm's does.
"""
import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

_CLAMP = 9.0
_P = (1.0, 11.08154065, 25.38831552, 14.89774681, 1.31920288, -0.04270818)
_Q = (1.0, 38.08153965, 178.79001815, 209.43237696, 55.49295972)

# Lambert's continued fraction for tanh truncated after 15 = 2 * 7 + 1, as polynomials.
_CLAMP64 = 19.5
_P64 = (1.0, 2.0 / 15.0, 1.0 / 292.5, 1.776001776001776e-05)
_Q64 = (1.0, 7.0 / 15.0, 1.0 / 39.0, 0.0003108003108003108, 4.9333382666716e-07)


def tanh(x):
    """tanh(x); inside compiled code, the float32 rational or libm (see module docs)."""
    return math.tanh(x)


@overload(tanh, jit_options=dict(fastmath=False))
def _tanh(x):
    if x == types.float64:
        return _tanh64()
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


def _tanh64():
    clamp = _CLAMP64
    p0, p1, p2, p3 = _P64
    q0, q1, q2, q3, q4 = _Q64

    def tanh64(x):
        if x > clamp:
            x = clamp
        elif x < -clamp:
            x = -clamp
        y = x * 0.03125
        z = y * y
        n = y * (((p3 * z + p2) * z + p1) * z + p0)
        d = (((q4 * z + q3) * z + q2) * z + q1) * z + q0
        for _ in range(5):                   # t = n / d  ->  2 t / (1 + t^2)
            n, d = 2.0 * n * d, d * d + n * n
        return n / d

    return tanh64


# ------------------------------------------------------------------------------ exp

_LOG2E = 1.4426950408889634
_LN2 = {types.float64: (0.6931471805598903, 5.497923018708371e-14),
        types.float32: (0.693145751953125, 1.4286068203094173e-06)}
# Arguments are clamped to a range a little wider than where exp is a nonzero finite
# number: beyond it the product 2^k1 2^k2 p overflows to inf or underflows to 0 anyway.
_RANGE = {types.float64: (-746.0, 710.0), types.float32: (-104.0, 89.0)}
_BITS = {types.float64: (types.int64, 1023, 52), types.float32: (types.int32, 127, 23)}


@intrinsic
def _float_from_bits(typingctx, bits):
    """Reinterpret the bits of an int64 (int32) as a float64 (float32)."""
    target = {types.int64: types.float64, types.int32: types.float32}.get(bits)
    if target is None:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(signature.return_type))

    return target(bits), codegen


def exp(x):
    """exp(x); inside compiled code, the vectorisable version (see module docs)."""
    return math.exp(x)


_C = [1.0 / math.factorial(n) for n in range(14)]
_C64 = tuple(_C)
_C32 = tuple(np.float32(c) for c in _C[:8])


@njit(inline="always", error_model="numpy")
def _taylor64(r):
    """sum_{n <= 13} r^n / n!, in float64."""
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13 = _C64
    return c0 + r * (c1 + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * (
        c7 + r * (c8 + r * (c9 + r * (c10 + r * (c11 + r * (c12 + r * c13))))))))))))


@njit(inline="always", error_model="numpy")
def _taylor32(r):
    """sum_{n <= 7} r^n / n!, in float32."""
    c0, c1, c2, c3, c4, c5, c6, c7 = _C32
    return c0 + r * (c1 + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * c7))))))


@overload(exp, jit_options=dict(fastmath=False), inline="always")
def _exp(x):
    if x not in _LN2:
        return lambda x: math.exp(x)
    f64 = x == types.float64
    ftype, itype = (np.float64, np.int64) if f64 else (np.float32, np.int32)
    taylor = _taylor64 if f64 else _taylor32
    ln2_hi, ln2_lo = (ftype(v) for v in _LN2[x])
    lo, hi = (ftype(v) for v in _RANGE[x])
    log2e, half = ftype(_LOG2E), ftype(0.5)
    _, bias, shift = _BITS[x]
    bias, shift = itype(bias), itype(shift)

    def exp_impl(x):
        if x > hi:
            x = hi
        elif x < lo:
            x = lo
        k = np.floor(x * log2e + half)
        p = taylor((x - k * ln2_hi) - k * ln2_lo)
        # 2^k in two factors, each a normal number over the whole clamped range; only
        # the last product rounds, into the subnormals or to inf where exp does.
        k1 = itype(k) >> 1
        k2 = itype(itype(k) - k1)
        p = p * _float_from_bits(itype((k1 + bias) << shift))
        return p * _float_from_bits(itype((k2 + bias) << shift))

    return exp_impl


# -------------------------------------------------------------------------- sigmoid

def sigmoid(x):
    """1 / (1 + exp(-x)) in the type of x."""
    return 1.0 / (1.0 + math.exp(-x))


@overload(sigmoid, jit_options=dict(fastmath=False), inline="always")
def _sigmoid(x):
    if not isinstance(x, types.Float):
        return None
    one = np.float64(1.0) if x == types.float64 else np.float32(1.0)
    return lambda x: one / (one + exp(-x))
