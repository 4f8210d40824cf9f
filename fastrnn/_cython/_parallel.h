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
 *                 them, and waits for them: a pool's threads, kept between calls (a
 *                 child process after fork() starts a new pool), or threads started
 *                 for the call when another caller has the pool.
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
#define FRNN_MAX_THREADS 64

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

/* The kernels keep their sums in named registers: GCC leaves an array of sums on the
 * stack under some of the flags Python builds extensions with. */
#define FRNN_ROW_LOAD(r) \
    __m256 c##r##0 = _mm256_loadu_ps(C + r * ldc), c##r##1 = _mm256_loadu_ps(C + r * ldc + 8)
#define FRNN_ROW_FMA(r)                                      \
    do {                                                     \
        __m256 a = _mm256_broadcast_ss(A + r * lda + k);     \
        c##r##0 = _mm256_fmadd_ps(a, p0, c##r##0);           \
        c##r##1 = _mm256_fmadd_ps(a, p1, c##r##1);           \
    } while (0)
#define FRNN_ROW_STORE(r) \
    (_mm256_storeu_ps(C + r * ldc, c##r##0), _mm256_storeu_ps(C + r * ldc + 8, c##r##1))

/* Six rows by one panel: C[0:6, 0:16] += A[0:6, :] P, P (K, 16). Twelve independent
 * sums: 7% faster than four rows (eight sums) on the development machine. */
static inline void frnn_kernel_6x16(int K, const float *A, int lda, const float *P,
                                    float *C, int ldc)
{
    FRNN_ROW_LOAD(0); FRNN_ROW_LOAD(1); FRNN_ROW_LOAD(2);
    FRNN_ROW_LOAD(3); FRNN_ROW_LOAD(4); FRNN_ROW_LOAD(5);
    for (int k = 0; k < K; k++) {
        __m256 p0 = _mm256_loadu_ps(P + k * FRNN_PANEL);
        __m256 p1 = _mm256_loadu_ps(P + k * FRNN_PANEL + 8);
        FRNN_ROW_FMA(0); FRNN_ROW_FMA(1); FRNN_ROW_FMA(2);
        FRNN_ROW_FMA(3); FRNN_ROW_FMA(4); FRNN_ROW_FMA(5);
    }
    FRNN_ROW_STORE(0); FRNN_ROW_STORE(1); FRNN_ROW_STORE(2);
    FRNN_ROW_STORE(3); FRNN_ROW_STORE(4); FRNN_ROW_STORE(5);
}

/* Four rows by one panel (eight sums), for the rows that blocks of six leave. */
static inline void frnn_kernel_4x16(int K, const float *A, int lda, const float *P,
                                    float *C, int ldc)
{
    FRNN_ROW_LOAD(0); FRNN_ROW_LOAD(1); FRNN_ROW_LOAD(2); FRNN_ROW_LOAD(3);
    for (int k = 0; k < K; k++) {
        __m256 p0 = _mm256_loadu_ps(P + k * FRNN_PANEL);
        __m256 p1 = _mm256_loadu_ps(P + k * FRNN_PANEL + 8);
        FRNN_ROW_FMA(0); FRNN_ROW_FMA(1); FRNN_ROW_FMA(2); FRNN_ROW_FMA(3);
    }
    FRNN_ROW_STORE(0); FRNN_ROW_STORE(1); FRNN_ROW_STORE(2); FRNN_ROW_STORE(3);
}

/* One row by four panels (eight independent sums). */
static inline void frnn_kernel_1x64(int K, const float *A, const float *P, float *C)
{
    const float *P1 = P + (ptrdiff_t)K * FRNN_PANEL, *P2 = P1 + (ptrdiff_t)K * FRNN_PANEL;
    const float *P3 = P2 + (ptrdiff_t)K * FRNN_PANEL;
    __m256 c0 = _mm256_loadu_ps(C), c1 = _mm256_loadu_ps(C + 8);
    __m256 c2 = _mm256_loadu_ps(C + 16), c3 = _mm256_loadu_ps(C + 24);
    __m256 c4 = _mm256_loadu_ps(C + 32), c5 = _mm256_loadu_ps(C + 40);
    __m256 c6 = _mm256_loadu_ps(C + 48), c7 = _mm256_loadu_ps(C + 56);
    for (int k = 0; k < K; k++) {
        __m256 a = _mm256_broadcast_ss(A + k);
        ptrdiff_t o = (ptrdiff_t)k * FRNN_PANEL;
        c0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(P + o), c0);
        c1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(P + o + 8), c1);
        c2 = _mm256_fmadd_ps(a, _mm256_loadu_ps(P1 + o), c2);
        c3 = _mm256_fmadd_ps(a, _mm256_loadu_ps(P1 + o + 8), c3);
        c4 = _mm256_fmadd_ps(a, _mm256_loadu_ps(P2 + o), c4);
        c5 = _mm256_fmadd_ps(a, _mm256_loadu_ps(P2 + o + 8), c5);
        c6 = _mm256_fmadd_ps(a, _mm256_loadu_ps(P3 + o), c6);
        c7 = _mm256_fmadd_ps(a, _mm256_loadu_ps(P3 + o + 8), c7);
    }
    _mm256_storeu_ps(C, c0);
    _mm256_storeu_ps(C + 8, c1);
    _mm256_storeu_ps(C + 16, c2);
    _mm256_storeu_ps(C + 24, c3);
    _mm256_storeu_ps(C + 32, c4);
    _mm256_storeu_ps(C + 40, c5);
    _mm256_storeu_ps(C + 48, c6);
    _mm256_storeu_ps(C + 56, c7);
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

/* C (M, N) += A (M, K) B, B packed by frnn_pack; row strides lda, ldc; N % 16 == 0.
 * Rows go in blocks of six, then up to two blocks of four (32 = 4 x 6 + 2 x 4), then
 * one at a time. */
static void frnn_gemm(int M, int N, int K, const float *A, int lda, const float *Bp,
                      float *C, int ldc)
{
    const ptrdiff_t step = (ptrdiff_t)K * FRNN_PANEL;
    int fours = 0, j, m;
    for (int f = 1; f <= 2 && 4 * f <= M; f++)
        if ((M - 4 * f) % 6 < (M - 4 * fours) % 6)
            fours = f;
    int m6 = M - 4 * fours - (M - 4 * fours) % 6, m4 = m6 + 4 * fours;
    for (j = 0; j < N / FRNN_PANEL; j++) {
        const float *P = Bp + j * step;
        for (m = 0; m < m6; m += 6)
            frnn_kernel_6x16(K, A + (ptrdiff_t)m * lda, lda, P,
                             C + (ptrdiff_t)m * ldc + FRNN_PANEL * j, ldc);
        for (; m < m4; m += 4)
            frnn_kernel_4x16(K, A + (ptrdiff_t)m * lda, lda, P,
                             C + (ptrdiff_t)m * ldc + FRNN_PANEL * j, ldc);
    }
    for (m = m4; m < M; m++) {
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

typedef void (*frnn_task)(void *ctx, int id);

/* Threads started for one call, when the pool is busy with another caller's job. */
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

static int frnn_run_fresh(int n, frnn_task fn, void *ctx)
{
    pthread_t threads[FRNN_MAX_THREADS];
    frnn_start starts[FRNN_MAX_THREADS];
    atomic_int go;
    int started = 0;
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

/* The pool: worker threads 1..size, started on first use, which run one job at a
 * time for whoever holds `busy`. Between jobs a worker spins for about FRNN_SPIN
 * pauses (tens of microseconds: a pass's next product follows within them), then
 * sleeps until the next job. Starting a thread costs 40-70 us on the development
 * machine, waking a sleeping one a few. In a child process after fork() the pool's
 * threads do not exist: the child starts with an empty pool. */
#define FRNN_SPIN 2000

static struct {
    pthread_mutex_t busy;
    pthread_mutex_t sleep_lock;
    pthread_cond_t wake;
    int size;
    int forks_handled;
    frnn_task fn;
    void *ctx;
    int n;
    atomic_int generation;
    atomic_int done;
    int born[FRNN_MAX_THREADS];     /* the generation each worker was started in */
} frnn_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
               PTHREAD_COND_INITIALIZER};

static void *frnn_worker(void *arg)
{
    int id = (int)(ptrdiff_t)arg;
    int seen = frnn_pool.born[id];      /* its first job is the next generation */
    for (;;) {
        int now;
        for (long spins = 0;
             (now = atomic_load_explicit(&frnn_pool.generation, memory_order_acquire))
             == seen; spins++) {
            if (spins < FRNN_SPIN) {
                _mm_pause();
                continue;
            }
            pthread_mutex_lock(&frnn_pool.sleep_lock);
            while (atomic_load_explicit(&frnn_pool.generation, memory_order_acquire)
                   == seen)
                pthread_cond_wait(&frnn_pool.wake, &frnn_pool.sleep_lock);
            pthread_mutex_unlock(&frnn_pool.sleep_lock);
        }
        seen = now;
        if (id < frnn_pool.n)
            frnn_pool.fn(frnn_pool.ctx, id);
        atomic_fetch_add_explicit(&frnn_pool.done, 1, memory_order_release);
    }
    return NULL;
}

static void frnn_pool_after_fork(void)
{
    pthread_mutex_init(&frnn_pool.busy, NULL);
    pthread_mutex_init(&frnn_pool.sleep_lock, NULL);
    pthread_cond_init(&frnn_pool.wake, NULL);
    frnn_pool.size = 0;
    atomic_store(&frnn_pool.generation, 0);
    atomic_store(&frnn_pool.done, 0);
}

/* Start workers up to size n - 1; false if a thread could not be started. */
static int frnn_pool_grow(int n)
{
    if (!frnn_pool.forks_handled) {
        if (pthread_atfork(NULL, NULL, frnn_pool_after_fork) != 0)
            return 0;
        frnn_pool.forks_handled = 1;
    }
    while (frnn_pool.size < n - 1) {
        pthread_t thread;
        pthread_attr_t attr;
        int failed;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        frnn_pool.born[frnn_pool.size + 1] =
            atomic_load_explicit(&frnn_pool.generation, memory_order_relaxed);
        failed = pthread_create(&thread, &attr, frnn_worker,
                                (void *)(ptrdiff_t)(frnn_pool.size + 1));
        pthread_attr_destroy(&attr);
        if (failed)
            return 0;
        frnn_pool.size++;
    }
    return 1;
}

/* fn(ctx, id) for id in [0, n), concurrently, the caller running id 0; 0 when done,
 * -1 (nothing run) when the threads could not be started. The n run together, so
 * that fn may wait at a barrier for all of them. */
static int frnn_run(int n, frnn_task fn, void *ctx)
{
    int workers;
    if (n < 1 || n > FRNN_MAX_THREADS)
        return -1;
    if (pthread_mutex_trylock(&frnn_pool.busy) != 0)
        return frnn_run_fresh(n, fn, ctx);
    if (!frnn_pool_grow(n)) {
        pthread_mutex_unlock(&frnn_pool.busy);
        return frnn_run_fresh(n, fn, ctx);
    }
    workers = frnn_pool.size;
    frnn_pool.fn = fn;
    frnn_pool.ctx = ctx;
    frnn_pool.n = n;
    atomic_store_explicit(&frnn_pool.done, 0, memory_order_relaxed);
    pthread_mutex_lock(&frnn_pool.sleep_lock);
    atomic_fetch_add_explicit(&frnn_pool.generation, 1, memory_order_release);
    pthread_cond_broadcast(&frnn_pool.wake);
    pthread_mutex_unlock(&frnn_pool.sleep_lock);
    fn(ctx, 0);
    for (long spins = 0;
         atomic_load_explicit(&frnn_pool.done, memory_order_acquire) < workers; spins++)
        if (spins < 4000)
            _mm_pause();
        else
            sched_yield();
    pthread_mutex_unlock(&frnn_pool.busy);
    return 0;
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
