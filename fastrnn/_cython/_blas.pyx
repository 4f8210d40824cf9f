"""Row-major GEMM and GEMV over scipy's BLAS (declarations and the why in _blas.pxd).

A row-major matrix M (r, c) with row stride ld is, read column-major, M^T (c, r) with
leading dimension ld. So the row-major product C = op(A) op(B) is the column-major
product C^T = op(B)^T op(A)^T: the same buffers, operands swapped, flags unchanged.
"""
from scipy.linalg.cython_blas cimport dgemm, dgemv, sgemm, sgemv


cdef void gemm(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
               floating alpha, const floating* A, int lda,
               const floating* B, int ldb,
               floating beta, floating* C, int ldc) noexcept nogil:
    """C = alpha op(A) op(B) + beta C, row-major; C (m, n), op(A) (m, k), op(B) (k, n).

    lda, ldb, ldc are row strides in elements. beta = 1 accumulates into C, beta = 0
    overwrites it (C is then not read, so it may hold anything, NaN included).
    """
    cdef char transa = ta, transb = tb
    if floating is double:
        dgemm(&transb, &transa, &n, &m, &k, &alpha, <double*>B, &ldb, <double*>A, &lda,
              &beta, C, &ldc)
    else:
        sgemm(&transb, &transa, &n, &m, &k, &alpha, <float*>B, &ldb, <float*>A, &lda,
              &beta, C, &ldc)


cdef void gemv(BLAS_Trans ta, int m, int n,
               floating alpha, const floating* A, int lda,
               const floating* x, floating beta, floating* y) noexcept nogil:
    """y = alpha op(A) x + beta y, with A (m, n) row-major and contiguous x and y.

    For ta = NoTrans, x has n entries and y m; for Trans, x has m and y n.
    """
    cdef char trans = Trans if ta == NoTrans else NoTrans
    cdef int inc = 1
    if floating is double:
        dgemv(&trans, &n, &m, &alpha, <double*>A, &lda, <double*>x, &inc, &beta, y, &inc)
    else:
        sgemv(&trans, &n, &m, &alpha, <float*>A, &lda, <float*>x, &inc, &beta, y, &inc)
