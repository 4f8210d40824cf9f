# The parallel passes' threads: the declarations of _parallel.h (its pool, barrier and
# packed product; the pool runs only in the x86-64 AVX2 build, FRNN_PARALLEL) and the
# products outside the time loops, split by rows or columns over a pass's threads.
# Inline, so that each build of stack.pyx has its own (the baseline build's never start
# a thread).

from cython cimport floating

from ._blas cimport BLAS_Trans, NoTrans, Trans, gemm
from ._loops cimport fill_rows, sum_rows

cdef extern from "_parallel.h" nogil:
    int FRNN_PARALLEL
    int FRNN_PANEL
    int FRNN_MAX_THREADS
    ctypedef struct frnn_barrier:
        pass
    ctypedef void (*frnn_task)(void* ctx, int id) noexcept nogil
    void frnn_pack(const float* src, Py_ssize_t sk, Py_ssize_t sn, int K, int N,
                   float* out)
    void frnn_gemm(int M, int N, int K, const float* A, int lda, const float* Bp,
                   float* C, int ldc)
    void frnn_barrier_init(frnn_barrier* b, int n)
    void frnn_barrier_wait(frnn_barrier* b)
    int frnn_run(int n, frnn_task fn, void* ctx)


ctypedef struct _Gemm:
    int ta, tb, m, n, k, lda, ldb, ldc, threads, by_rows
    float alpha, beta
    const float* A
    const float* B
    const float* bias
    float* C


cdef inline void _gemm_task(void* ctx, int id) noexcept nogil:
    """Thread id's block of rows (or of columns) of C, by single-threaded BLAS, onto the
    bias rows when there are some."""
    cdef _Gemm* P = <_Gemm*>ctx
    cdef int size = P.m if P.by_rows else P.n
    cdef int i0 = size * id // P.threads, i1 = size * (id + 1) // P.threads
    cdef Py_ssize_t r, j
    cdef const float* A = P.A
    cdef const float* B = P.B
    cdef float* C = P.C
    if i1 == i0:
        return
    if P.by_rows:                                # rows i0..i1 of op(A) and of C
        A += i0 if P.ta == Trans else <Py_ssize_t>i0 * P.lda
        C += <Py_ssize_t>i0 * P.ldc
    else:                                        # columns i0..i1 of op(B) and of C
        B += i0 if P.tb == NoTrans else <Py_ssize_t>i0 * P.ldb
        C += i0
    if P.bias != NULL:
        for r in range(i1 - i0 if P.by_rows else P.m):
            for j in range(P.n if P.by_rows else i1 - i0):
                C[r * P.ldc + j] = P.bias[j if P.by_rows else i0 + j]
    gemm(<BLAS_Trans>P.ta, <BLAS_Trans>P.tb, i1 - i0 if P.by_rows else P.m,
         P.n if P.by_rows else i1 - i0, P.k, P.alpha, A, P.lda, B, P.ldb, P.beta, C, P.ldc)


cdef inline void threaded_gemm(int threads, BLAS_Trans ta, BLAS_Trans tb, int m, int n,
                               int k, floating alpha, const floating* A, int lda,
                               const floating* B, int ldb, floating beta, floating* C,
                               int ldc, const floating* bias=NULL) noexcept nogil:
    """``gemm``, C split over ``threads`` threads when that is more than one (a parallel
    pass, BLAS then single-threaded: see ``stack.pass_threads``). With ``bias`` (n,),
    C's rows (ldc = n) are set to it first and beta must be 1.

    Each thread packs the whole of the operand it shares with the others: C is split by
    rows when op(A) (m, k) is the larger operand, so that op(B) (k, n) is the one packed
    twice, else by columns (LSTM inference at T=150 B=1 D=H=256: U is 1 MB and x 150 kB,
    and each thread packs only its columns of U).
    """
    cdef _Gemm job
    if floating is float:
        if threads > 1 and (m if m >= n else n) >= 2 * threads:
            job.by_rows = m >= n
            job.ta, job.tb, job.m, job.n, job.k = ta, tb, m, n, k
            job.lda, job.ldb, job.ldc, job.threads = lda, ldb, ldc, threads
            job.alpha, job.beta, job.A, job.B, job.C, job.bias = alpha, beta, A, B, C, bias
            if frnn_run(threads, _gemm_task, &job) == 0:
                return
    if bias != NULL:
        fill_rows(C, m, bias, n)
    gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


ctypedef struct _SumRows:
    const float* M
    float* v
    int N, K, threads


cdef inline void _sum_rows_task(void* ctx, int id) noexcept nogil:
    """Thread id's block of columns of v = sum_r M[r], summed in the order of rows."""
    cdef _SumRows* P = <_SumRows*>ctx
    cdef Py_ssize_t r, j, j0 = P.K * id // P.threads, j1 = P.K * (id + 1) // P.threads
    for j in range(j0, j1):
        P.v[j] = 0
    for r in range(P.N):
        for j in range(j0, j1):
            P.v[j] += P.M[r * P.K + j]


cdef inline void threaded_sum_rows(int threads, const floating* M, int N, int K,
                                   floating* v) noexcept nogil:
    """``sum_rows``, its columns split over ``threads`` threads; the same bits."""
    cdef _SumRows job
    if floating is float:
        if threads > 1 and K >= 8 * threads:
            job.M, job.v, job.N, job.K, job.threads = M, v, N, K, threads
            if frnn_run(threads, _sum_rows_task, &job) == 0:
                return
    sum_rows(M, N, K, v)
