"""The loss kernels of the Cython backend, over float32 and float64 (fused ``floating``).

Legend: T time steps, B batch, O output size.

The algorithm is that of ``fastrnn._numba.rnn``'s loss kernels: every term is summed in
float64 with compensation, the cross-entropy written as (m - o_y) + log z. The network's
passes are in ``stack.pyx``. This module also answers, from the baseline build, whether
the CPU runs the AVX2 build (``cpu_has_avx2``).

The public kernels take typed memoryviews (C-contiguous, the shapes in their comments)
and run without the GIL. The arrays have been validated by ``fastrnn.functional`` before
they get here; the memoryviews still check dtype and layout, so a bug upstream raises
instead of corrupting memory. No kernel allocates an array. Compiler directives (no
bounds checks unless FASTRNN_CYTHON_DEBUG=1) and flags are set once for the build in
setup.py.
"""
from libc.math cimport fabs, isfinite, log
from libc.stdint cimport int64_t

from cython cimport floating

from ._vecmath cimport exp, tanh


# --------------------------------------------------------------------------- losses

cdef floating _max(const floating* v, Py_ssize_t n) noexcept nogil:
    """max(v) over n >= 1 elements, with four running maxima to hide the latency."""
    cdef floating m0 = v[0], m1 = v[0], m2 = v[0], m3 = v[0]
    cdef Py_ssize_t k, n4 = n - n % 4
    for k in range(0, n4, 4):
        m0 = v[k] if v[k] > m0 else m0
        m1 = v[k + 1] if v[k + 1] > m1 else m1
        m2 = v[k + 2] if v[k + 2] > m2 else m2
        m3 = v[k + 3] if v[k + 3] > m3 else m3
    for k in range(n4, n):
        m0 = v[k] if v[k] > m0 else m0
    m0 = m1 if m1 > m0 else m0
    m2 = m3 if m3 > m2 else m2
    return m2 if m2 > m0 else m0


cdef double _sum(const floating* v, Py_ssize_t n) noexcept nogil:
    """sum(v) in float64 over n elements, in four running sums to hide the latency."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t k, n4 = n - n % 4
    for k in range(0, n4, 4):
        s0 += v[k]
        s1 += v[k + 1]
        s2 += v[k + 2]
        s3 += v[k + 3]
    for k in range(n4, n):
        s0 += v[k]
    return (s0 + s1) + (s2 + s3)


cdef inline void _add_compensated(double* total, double* comp, double term) noexcept nogil:
    """total += term with Neumaier's compensation: comp gathers the rounding error of each
    addition, and the sum so far is total + comp (as ``fastrnn._numba.rnn``'s)."""
    cdef double summed = total[0] + term
    if fabs(total[0]) >= fabs(term):
        comp[0] += (total[0] - summed) + term
    else:
        comp[0] += (term - summed) + total[0]
    total[0] = summed


cdef inline double _sum_so_far(double total, double comp) noexcept nogil:
    """total + comp; total itself once it is inf or NaN, where comp has become NaN (an
    overflowing loss must come out inf, not NaN)."""
    return total + comp if isfinite(total) else total


def cross_entropy(const floating[:, :, ::1] o,     # IN  (T, B, O) logits
                  const int64_t[:, ::1] y,         # IN  (T, B) class ids in [0, O)
                  double scale,
                  floating[:, :, ::1] do):         # OUT (T, B, O)
    """Fused log-softmax, cross-entropy and dL/do = scale * (p - onehot(y)).

    Returns scale * sum of -log p[y]. Each term is (m - o[y]) + log(z) in double, and the
    terms are added with compensation, as in ``fastrnn._numba.rnn.cross_entropy`` (which
    says why).
    """
    cdef Py_ssize_t T = o.shape[0], B = o.shape[1], O = o.shape[2]
    cdef Py_ssize_t t, r, k, target
    cdef const floating* logits
    cdef floating* grad
    cdef floating m
    cdef double z, inv, total = 0, comp = 0
    with nogil:
        for t in range(T):
            for r in range(B):
                logits, grad = &o[t, r, 0], &do[t, r, 0]
                m = _max(logits, O)
                for k in range(O):
                    grad[k] = exp(logits[k] - m)
                z = _sum(grad, O)
                target = y[t, r]
                _add_compensated(&total, &comp, (<double>m - logits[target]) + log(z))
                inv = scale / z
                for k in range(O):
                    grad[k] = grad[k] * inv
                grad[target] = grad[target] - scale
    return _sum_so_far(total, comp) * scale


def squared_error(const floating[:, :, ::1] o,     # IN  (T, B, O)
                  const floating[:, :, ::1] y,     # IN  (T, B, O) targets
                  double scale,
                  floating[:, :, ::1] do):         # OUT (T, B, O)
    """L = scale * sum ||o_t - y_t||^2 and dL/do = 2 scale (o - y).

    Each row's O terms are summed in double, the rows' sums with compensation.
    """
    cdef Py_ssize_t N = o.shape[0] * o.shape[1], O = o.shape[2], i, k
    cdef const floating* po = &o[0, 0, 0]
    cdef const floating* py = &y[0, 0, 0]
    cdef floating* pdo = &do[0, 0, 0]
    cdef floating diff
    cdef double row, total = 0, comp = 0
    with nogil:
        for i in range(N):
            row = 0
            for k in range(i * O, (i + 1) * O):
                diff = po[k] - py[k]
                row += diff * diff
                pdo[k] = 2.0 * scale * diff
            _add_compensated(&total, &comp, row)
    return _sum_so_far(total, comp) * scale


# ------------------------------------------------------------------ for the tests

def tanh_array(const floating[::1] x, floating[::1] out):
    """out = tanh(x) through the kernels' inline tanh; x, out (n,)."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            out[i] = tanh(x[i])


def exp_array(const floating[::1] x, floating[::1] out):
    """out = exp(x) through the kernels' inline exp; x, out (n,)."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            out[i] = exp(x[i])


# ---------------------------------------------------------------------- dispatch
# This module is compiled twice (see setup.py): for the baseline of the platform as
# ``rnn`` and, on x86-64, with AVX2 as ``rnn_avx2``. The baseline build answers whether
# the CPU, and the operating system, run the other.

cdef extern from *:
    """
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    static int fastrnn_cpu_has_avx2(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    #else
    static int fastrnn_cpu_has_avx2(void) { return 0; }
    #endif
    """
    int fastrnn_cpu_has_avx2() noexcept nogil


def cpu_has_avx2():
    """Whether this machine runs AVX2 and FMA code, so that ``rnn_avx2`` may be imported."""
    return fastrnn_cpu_has_avx2() != 0


# ------------------------------------------------------------------ cached views
# A typed memoryview argument made from an ndarray is a new small object per argument
# per call; one made once by these functions and passed again is used as it is.

def view3(floating[:, :, ::1] A):
    """A (t, n, k) as a typed memoryview object, for passing to the kernels repeatedly."""
    return A
