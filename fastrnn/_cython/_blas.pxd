# BLAS for C-contiguous (row-major) arrays, over float32 and float64.
#
# scipy.linalg.cython_blas is Fortran BLAS: column-major. The mapping to row-major is
# made here, once, as in scikit-learn's sklearn/utils/_cython_blas.pyx; callers describe
# products of row-major arrays and never think about the other order.

from cython cimport floating


cpdef enum BLAS_Trans:
    NoTrans = 110    # 'n'
    Trans = 116      # 't'


cdef void gemm(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
               floating alpha, const floating* A, int lda,
               const floating* B, int ldb,
               floating beta, floating* C, int ldc) noexcept nogil

cdef void gemv(BLAS_Trans ta, int m, int n,
               floating alpha, const floating* A, int lda,
               const floating* x, floating beta, floating* y) noexcept nogil
