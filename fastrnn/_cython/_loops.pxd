# Flat loops shared by the Cython kernels (rnn.pyx, stack.pyx), inline: over n elements
# or (N, K) row-major blocks given as pointers, with the arithmetic of the Numba kernels.
# Where those mix a float64 literal into float32 values (1.0 - s * s), C promotes the
# same way.

from libc.math cimport isfinite

from cython cimport floating

from ._blas cimport BLAS_Trans, NoTrans, Trans, gemm, gemv
from ._vecmath cimport sigmoid, tanh

# The cell codes the kernels branch on: those of fastrnn._contract (the stack module
# exposes them as CELL_CODES, and tests/test_cython_contract.py compares the two).
cdef enum:
    TANH = 0
    SIGMOID = 1
    RELU = 2
    LSTM = 3
    GRU = 4


cdef inline void activate(int act, const floating* a, floating* s, Py_ssize_t n) noexcept nogil:
    """s = f(a); a, s (n,)."""
    cdef Py_ssize_t i
    if act == TANH:
        for i in range(n):
            s[i] = tanh(a[i])
    elif act == SIGMOID:
        for i in range(n):
            s[i] = sigmoid(a[i])
    else:
        for i in range(n):
            s[i] = 0 if a[i] < 0 else a[i]        # max(a, 0) with NaN kept


cdef inline void delta(int act, const floating* a, const floating* s, const floating* kappa,
                       floating* da, Py_ssize_t n) noexcept nogil:
    """da = f'(a) * kappa, with f' written through s = f(a); all (n,)."""
    cdef Py_ssize_t i
    if act == TANH:
        for i in range(n):
            da[i] = (1.0 - s[i] * s[i]) * kappa[i]
    elif act == SIGMOID:
        for i in range(n):
            da[i] = s[i] * (1.0 - s[i]) * kappa[i]
    else:
        for i in range(n):
            da[i] = kappa[i] if a[i] > 0 else 0


cdef inline bint all_finite(const floating* v, Py_ssize_t n) noexcept nogil:
    """Whether every one of the n elements is finite (exact: no fast-math here)."""
    cdef Py_ssize_t i
    for i in range(n):
        if not isfinite(v[i]):
            return False
    return True


cdef inline void copy(const floating* src, floating* dst, Py_ssize_t n) noexcept nogil:
    """dst = src; a loop, so that src may be dst itself."""
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = src[i]


cdef inline void add_product(floating* a, const floating* b, const floating* c,
                             Py_ssize_t n) noexcept nogil:
    """a += b * c over n elements."""
    cdef Py_ssize_t k
    for k in range(n):
        a[k] += b[k] * c[k]


cdef inline void reverse_time(floating* a, Py_ssize_t T, Py_ssize_t row) noexcept nogil:
    """Reverse a (T, row) block along its first axis, in place."""
    cdef Py_ssize_t t, k
    cdef floating* u
    cdef floating* v
    cdef floating tmp
    for t in range(T // 2):
        u, v = a + t * row, a + (T - 1 - t) * row
        for k in range(row):
            tmp = u[k]
            u[k] = v[k]
            v[k] = tmp


cdef inline void fill_rows(floating* M, Py_ssize_t N, const floating* v,
                           Py_ssize_t K) noexcept nogil:
    """M[r] = v for every row: the bias that a GEMM then accumulates onto. M (N, K)."""
    cdef Py_ssize_t r, k
    for r in range(N):
        for k in range(K):
            M[r * K + k] = v[k]


cdef inline void sum_rows(const floating* M, Py_ssize_t N, Py_ssize_t K,
                          floating* v) noexcept nogil:
    """v = sum_r M[r]; M (N, K), v (K,)."""
    cdef Py_ssize_t r, k
    for k in range(K):
        v[k] = 0
    for r in range(N):
        for k in range(K):
            v[k] += M[r * K + k]


cdef inline void add_rows_times(const floating* X, int B, int N, const floating* M,
                                BLAS_Trans tm, int K, floating* Y) noexcept nogil:
    """Y += X op(M) through BLAS; X (B, N), op(M) (N, K), Y (B, K), M row-major.

    A single row is a matrix-vector product, for which GEMV is the cheaper call.
    """
    cdef int ldm = K if tm == NoTrans else N
    if B == 1:
        gemv(Trans if tm == NoTrans else NoTrans,
             N if tm == NoTrans else K, K if tm == NoTrans else N, 1, M, ldm, X, 1, Y)
    else:
        gemm(NoTrans, tm, B, K, N, 1, X, N, M, ldm, 1, Y, K)
