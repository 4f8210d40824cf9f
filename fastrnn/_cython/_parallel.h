/* Several threads through one time loop: what stack.pyx's parallel recurrences need.
 *
 * The time loop of a gated cell is a chain of small products, one per step, each
 * waiting for the last. BLAS splits each over its threads and packs W afresh at every
 * step (a fifth of a training step's time went to packing). Here each thread owns a
 * slice of the hidden units for the whole loop: it packs its slice of W once, keeps it
 * in its own core's cache, computes its units' gates, activations and gradients, and
 * meets the other threads once per step, at a barrier.
 *
 * - frnn_pack:    a (K, N) block of a row-major matrix into panels of 16 columns;
 * - frnn_gemm:    C (M, N) += A (M, K) times a packed (K, N), float32, AVX2 and FMA;
 * - frnn_barrier: a spinning barrier for the threads of one loop;
 * - frnn_run:     runs fn(ctx, id) for id in [0, n) on n threads, the caller's among
 *                 them, and joins them. The threads live for one call: nothing is left
 *                 behind across a fork().
 *
 * FRNN_PARALLEL is 1 where all of it is compiled (x86-64 with AVX2 and FMA, POSIX
 * threads); elsewhere it is 0 and the functions are stubs that the caller never reaches.
 * Every output element of frnn_gemm is its C entry plus the products over k in order of
 * k, one fused multiply-add each, whatever M, N and the blocking: the result does not
 * depend on the number of threads or on the batch.
 */
#ifndef FASTRNN_PARALLEL_H
#define FASTRNN_PARALLEL_H

#include <stddef.h>

#define FRNN_PANEL 16

#if defined(__AVX2__) && defined(__FMA__) && defined(__unix__) && \
    !defined(__STDC_NO_ATOMICS__)
#define FRNN_PARALLEL 1

#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

/* out[(j K + k) 16 + c] = B(k, 16 j + c), where B(k, n) = src[k sk + n sn]; N % 16 == 0. */
static void frnn_pack(const float *src, ptrdiff_t sk, ptrdiff_t sn, int K, int N,
                      float *out)
{
    for (int j = 0; j < N / FRNN_PANEL; j++)
        for (int k = 0; k < K; k++)
            for (int c = 0; c < FRNN_PANEL; c++)
                out[((ptrdiff_t)j * K + k) * FRNN_PANEL + c] =
                    src[k * sk + (ptrdiff_t)(FRNN_PANEL * j + c) * sn];
}

/* Four rows by one panel: C[0:4, 0:16] += A[0:4, :] P, P (K, 16). */
static inline void frnn_kernel_4x16(int K, const float *A, int lda, const float *P,
                                    float *C, int ldc)
{
    __m256 c00 = _mm256_loadu_ps(C), c01 = _mm256_loadu_ps(C + 8);
    __m256 c10 = _mm256_loadu_ps(C + ldc), c11 = _mm256_loadu_ps(C + ldc + 8);
    __m256 c20 = _mm256_loadu_ps(C + 2 * ldc), c21 = _mm256_loadu_ps(C + 2 * ldc + 8);
    __m256 c30 = _mm256_loadu_ps(C + 3 * ldc), c31 = _mm256_loadu_ps(C + 3 * ldc + 8);
    for (int k = 0; k < K; k++) {
        __m256 p0 = _mm256_loadu_ps(P + k * FRNN_PANEL);
        __m256 p1 = _mm256_loadu_ps(P + k * FRNN_PANEL + 8);
        __m256 a = _mm256_broadcast_ss(A + k);
        c00 = _mm256_fmadd_ps(a, p0, c00);
        c01 = _mm256_fmadd_ps(a, p1, c01);
        a = _mm256_broadcast_ss(A + lda + k);
        c10 = _mm256_fmadd_ps(a, p0, c10);
        c11 = _mm256_fmadd_ps(a, p1, c11);
        a = _mm256_broadcast_ss(A + 2 * lda + k);
        c20 = _mm256_fmadd_ps(a, p0, c20);
        c21 = _mm256_fmadd_ps(a, p1, c21);
        a = _mm256_broadcast_ss(A + 3 * lda + k);
        c30 = _mm256_fmadd_ps(a, p0, c30);
        c31 = _mm256_fmadd_ps(a, p1, c31);
    }
    _mm256_storeu_ps(C, c00);
    _mm256_storeu_ps(C + 8, c01);
    _mm256_storeu_ps(C + ldc, c10);
    _mm256_storeu_ps(C + ldc + 8, c11);
    _mm256_storeu_ps(C + 2 * ldc, c20);
    _mm256_storeu_ps(C + 2 * ldc + 8, c21);
    _mm256_storeu_ps(C + 3 * ldc, c30);
    _mm256_storeu_ps(C + 3 * ldc + 8, c31);
}

/* One row by four panels (eight independent sums, as many as 4x16 has). */
static inline void frnn_kernel_1x64(int K, const float *A, const float *P, float *C)
{
    const ptrdiff_t step = (ptrdiff_t)K * FRNN_PANEL;
    __m256 c[8];
    for (int v = 0; v < 8; v++)
        c[v] = _mm256_loadu_ps(C + 8 * v);
    for (int k = 0; k < K; k++) {
        __m256 a = _mm256_broadcast_ss(A + k);
        for (int v = 0; v < 8; v++)
            c[v] = _mm256_fmadd_ps(a, _mm256_loadu_ps(P + (v / 2) * step + k * FRNN_PANEL
                                                      + (v % 2) * 8), c[v]);
    }
    for (int v = 0; v < 8; v++)
        _mm256_storeu_ps(C + 8 * v, c[v]);
}

static inline void frnn_kernel_1x16(int K, const float *A, const float *P, float *C)
{
    __m256 c0 = _mm256_loadu_ps(C), c1 = _mm256_loadu_ps(C + 8);
    for (int k = 0; k < K; k++) {
        __m256 a = _mm256_broadcast_ss(A + k);
        c0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(P + k * FRNN_PANEL), c0);
        c1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(P + k * FRNN_PANEL + 8), c1);
    }
    _mm256_storeu_ps(C, c0);
    _mm256_storeu_ps(C + 8, c1);
}

/* C (M, N) += A (M, K) B, B packed by frnn_pack; row strides lda, ldc; N % 16 == 0. */
static void frnn_gemm(int M, int N, int K, const float *A, int lda, const float *Bp,
                      float *C, int ldc)
{
    const ptrdiff_t step = (ptrdiff_t)K * FRNN_PANEL;
    int m4 = M - M % 4, j = 0;
    for (j = 0; j < N / FRNN_PANEL; j++)
        for (int m = 0; m < m4; m += 4)
            frnn_kernel_4x16(K, A + (ptrdiff_t)m * lda, lda, Bp + j * step,
                             C + (ptrdiff_t)m * ldc + FRNN_PANEL * j, ldc);
    for (int m = m4; m < M; m++) {
        const float *a = A + (ptrdiff_t)m * lda;
        float *c = C + (ptrdiff_t)m * ldc;
        for (j = 0; j + 4 <= N / FRNN_PANEL; j += 4)
            frnn_kernel_1x64(K, a, Bp + j * step, c + FRNN_PANEL * j);
        for (; j < N / FRNN_PANEL; j++)
            frnn_kernel_1x16(K, a, Bp + j * step, c + FRNN_PANEL * j);
    }
}

typedef struct {
    atomic_int waiting;
    atomic_int phase;
    int n;
} frnn_barrier;

static void frnn_barrier_init(frnn_barrier *b, int n)
{
    atomic_init(&b->waiting, 0);
    atomic_init(&b->phase, 0);
    b->n = n;
}

/* Spin while the others are near (a step takes microseconds); past some thousands of
 * rounds, yield the core on every round, so that an oversubscribed machine still moves. */
static void frnn_barrier_wait(frnn_barrier *b)
{
    int phase = atomic_load_explicit(&b->phase, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->waiting, 1, memory_order_acq_rel) == b->n - 1) {
        atomic_store_explicit(&b->waiting, 0, memory_order_relaxed);
        atomic_store_explicit(&b->phase, phase + 1, memory_order_release);
        return;
    }
    for (long spins = 0;
         atomic_load_explicit(&b->phase, memory_order_acquire) == phase; spins++) {
        if (spins < 4000)
            _mm_pause();
        else
            sched_yield();
    }
}

typedef void (*frnn_task)(void *ctx, int id) ;

#define FRNN_MAX_THREADS 64

typedef struct {
    frnn_task fn;
    void *ctx;
    int id;
    atomic_int *go;         /* 0 wait, 1 run, -1 give up */
} frnn_start;

static void *frnn_thread(void *arg)
{
    frnn_start *s = (frnn_start *)arg;
    int go;
    while ((go = atomic_load_explicit(s->go, memory_order_acquire)) == 0)
        sched_yield();
    if (go == 1)
        s->fn(s->ctx, s->id);
    return NULL;
}

/* fn(ctx, id) for id in [0, n), concurrently; 0 when done, -1 (nothing run) when a
 * thread could not be started. The threads start together, so that fn may wait at a
 * barrier for all n. */
static int frnn_run(int n, frnn_task fn, void *ctx)
{
    pthread_t threads[FRNN_MAX_THREADS];
    frnn_start starts[FRNN_MAX_THREADS];
    atomic_int go;
    int started = 0;
    if (n < 1 || n > FRNN_MAX_THREADS)
        return -1;
    atomic_init(&go, 0);
    for (int i = 1; i < n; i++) {
        starts[i].fn = fn;
        starts[i].ctx = ctx;
        starts[i].id = i;
        starts[i].go = &go;
        if (pthread_create(&threads[i], NULL, frnn_thread, &starts[i]) != 0)
            break;
        started = i;
    }
    atomic_store_explicit(&go, started == n - 1 ? 1 : -1, memory_order_release);
    if (started == n - 1)
        fn(ctx, 0);
    for (int i = 1; i <= started; i++)
        pthread_join(threads[i], NULL);
    return started == n - 1 ? 0 : -1;
}

#else
#define FRNN_PARALLEL 0

typedef struct { int n; } frnn_barrier;
typedef void (*frnn_task)(void *ctx, int id);
static void frnn_pack(const float *src, ptrdiff_t sk, ptrdiff_t sn, int K, int N,
                      float *out) {}
static void frnn_gemm(int M, int N, int K, const float *A, int lda, const float *Bp,
                      float *C, int ldc) {}
static void frnn_barrier_init(frnn_barrier *b, int n) {}
static void frnn_barrier_wait(frnn_barrier *b) {}
static int frnn_run(int n, frnn_task fn, void *ctx) { return -1; }
#endif

#endif
