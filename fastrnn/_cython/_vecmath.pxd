# tanh, exp and sigmoid for the Cython kernels: the formulas of fastrnn._numba.vecmath
# (derivations and error bounds are in its docstring), as C-level inline functions.
#
# They are plain arithmetic, comparisons and a bit cast, so that loops over them can be
# vectorised, and NaN propagates (the clamps compare, they do not call fmax). The clamps
# are conditional expressions rather than if statements, which GCC does not if-convert. Each
# operation is done in the type of x, in the order the Numba versions use; built without
# floating-point contraction (see setup.py) the float32 and float64 results are those of
# the Numba backend.

from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

from cython cimport floating


cdef inline floating tanh(floating x) noexcept nogil:
    """tanh(x): a rational function in float32, Lambert's fraction and five doublings in
    float64."""
    cdef float u32, p32, q32
    cdef double y, z, n, d
    cdef int i
    if floating is float:
        x = <float>9.0 if x > <float>9.0 else x
        x = <float>-9.0 if x < <float>-9.0 else x
        u32 = x * <float>(1.0 / 81.0) * x
        p32 = (((((<float>-0.04270818 * u32 + <float>1.31920288) * u32
                  + <float>14.89774681) * u32 + <float>25.38831552) * u32
                + <float>11.08154065) * u32 + <float>1.0)
        q32 = ((((<float>55.49295972 * u32 + <float>209.43237696) * u32
                 + <float>178.79001815) * u32 + <float>38.08153965) * u32 + <float>1.0)
        return x * p32 / q32
    else:
        x = 19.5 if x > 19.5 else x
        x = -19.5 if x < -19.5 else x
        y = x * 0.03125
        z = y * y
        n = y * (((1.776001776001776e-05 * z + 1.0 / 292.5) * z + 2.0 / 15.0) * z + 1.0)
        d = ((((4.9333382666716e-07 * z + 0.0003108003108003108) * z + 1.0 / 39.0) * z
              + 7.0 / 15.0) * z + 1.0)
        for i in range(5):                  # t = n / d  ->  2 t / (1 + t^2)
            n, d = 2.0 * n * d, d * d + n * n
        return n / d


cdef inline double _from_bits64(uint64_t bits) noexcept nogil:
    cdef double v
    memcpy(&v, &bits, sizeof(v))
    return v


cdef inline float _from_bits32(uint32_t bits) noexcept nogil:
    cdef float v
    memcpy(&v, &bits, sizeof(v))
    return v


cdef inline floating exp(floating x) noexcept nogil:
    """exp(x) = 2^k exp(r), r = x - k ln 2; exp(r) a Taylor polynomial, 2^k from its bits.

    k = floor(x / ln 2 + 1/2) as in the Numba version, but in floating point: C's floor
    is a library call on baseline x86-64, and float-to-int conversions and 64-bit shifts
    are missing from or slow in baseline SIMD; either keeps the loops from vectorising.
    """
    cdef float t32, k32, k1_32, r32, p32
    cdef double t, kd, k1d, r, p
    if floating is float:
        x = <float>89.0 if x > <float>89.0 else x
        x = <float>-104.0 if x < <float>-104.0 else x
        t32 = x * <float>1.4426950408889634 + <float>0.5
        k32 = _floor32(t32)
        r32 = (x - k32 * <float>0.693145751953125) - k32 * <float>1.4286068203094173e-06
        p32 = (<float>1.0 + r32 * (<float>1.0 + r32 * (<float>(1.0 / 2) + r32 * (
            <float>(1.0 / 6) + r32 * (<float>(1.0 / 24) + r32 * (<float>(1.0 / 120) + r32 * (
                <float>(1.0 / 720) + r32 * <float>(1.0 / 5040))))))))
        k1_32 = _floor32(k32 * <float>0.5)  # k >> 1
        p32 = p32 * _pow2_32(k1_32)
        return p32 * _pow2_32(k32 - k1_32)
    else:
        x = 710.0 if x > 710.0 else x
        x = -746.0 if x < -746.0 else x
        t = x * 1.4426950408889634 + 0.5
        kd = _floor64(t)
        r = (x - kd * 0.6931471805598903) - kd * 5.497923018708371e-14
        p = 1.0 + r * (1.0 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (
            1.0 / 120 + r * (1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (
                1.0 / 362880 + r * (1.0 / 3628800 + r * (1.0 / 39916800 + r * (
                    1.0 / 479001600 + r * (1.0 / 6227020800.0)))))))))))))
        k1d = _floor64(kd * 0.5)            # k >> 1
        p = p * _pow2_64(k1d)
        return p * _pow2_64(kd - k1d)


# floor(t) for |t| < 2^51 (float64) or 2^22 (float32): adding and removing 1.5 * 2^52
# (1.5 * 2^23) rounds t to an integer, the sum lying where the floats are the integers.

cdef inline double _floor64(double t) noexcept nogil:
    cdef double f = (t + 6755399441055744.0) - 6755399441055744.0
    return f - (f > t)


cdef inline float _floor32(float t) noexcept nogil:
    cdef float f = (t + <float>12582912.0) - <float>12582912.0
    return f - (f > t)


# 2^k for an integer k in the normal range, from its bits: k + 2^52 + 1023 holds k + 1023
# in its low mantissa bits, and shifted left by 52 they are the exponent field of 2^k
# (the bits above shift out). Likewise in float32 with 2^23, 127 and 23.

cdef inline double _pow2_64(double k) noexcept nogil:
    cdef double v = k + (4503599627370496.0 + 1023.0)
    cdef uint64_t bits
    memcpy(&bits, &v, sizeof(v))
    return _from_bits64(bits << 52)


cdef inline float _pow2_32(float k) noexcept nogil:
    cdef float v = k + <float>(8388608.0 + 127.0)
    cdef uint32_t bits
    memcpy(&bits, &v, sizeof(v))
    return _from_bits32(bits << 23)


cdef inline floating sigmoid(floating x) noexcept nogil:
    """1 / (1 + exp(-x)) in the type of x."""
    return <floating>1.0 / (<floating>1.0 + exp(-x))
