"""Stacks in Cython: LSTM, GRU and vanilla cells, several layers, two directions.

Legend: T time steps, B batch, D input size, H hidden size, O output size, G gate rows
(H, 4H for the LSTM, 3H for the GRU), n cells, cell i = k * dirs + d.

The algorithm is that of ``fastrnn._numba.stack`` and ``fastrnn._numba.gated`` on the
buffers of a stack ``Workspace`` (the equations are in ``fastrnn.reference.stack``,
``lstm`` and ``gru``): every product but the recurrence is one GEMM over all T * B rows;
a reverse cell runs in its reading order, its projection and dL/da reversed in time in
place; BPTT runs from the top layer down. As in ``rnn.pyx``, BLAS accumulates (beta = 1)
where the Numba kernels need a second pass: onto the bias rows, a_t += W h_{t-1},
kappa_t += W^T dL/da_{t+1}, and the two directions' dL/dx into one buffer.

A ``Cells`` object holds the addresses of the per-cell arrays (weights, gradients and
workspace buffers) of one (params, grads, workspace) triple, checked once when it is
made and kept alive by it; the kernels then take it and a few memoryviews. Nothing here
allocates an array.

A large float32 LSTM or GRU pass runs on several threads (``pass_threads``; the time
loops below "one cell", the other products split by rows of their results). At T=100
B=32 D=64 H=256 O=64 on the 2-core development machine an LSTM training step took
41.7 ms on two threads against 51.8 ms on one, LSTM inference at T=150 B=1 H=256 1.87
against 3.11 ms (asv ``bench_gated.GatedCythonThreads``).
"""
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t, intptr_t

from cython cimport floating

from ._blas cimport BLAS_Trans, NoTrans, Trans, gemm
from ._loops cimport (GRU, LSTM, RELU, SIGMOID, TANH, activate, add_rows_times, all_finite,
                      copy, delta, fill_rows, sum_rows)
from ._vecmath cimport sigmoid, tanh

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

import operator

import numpy as np

from fastrnn import _contract

# The codes of _loops.pxd, which the kernels branch on, by cell name.
CELL_CODES = {"tanh": TANH, "sigmoid": SIGMOID, "relu": RELU, "lstm": LSTM, "gru": GRU}

cdef int STEP_OK = _contract.STEP_OK
cdef int STEP_BAD_INPUT = _contract.STEP_BAD_INPUT
cdef int STEP_BAD_OUTPUT = _contract.STEP_BAD_OUTPUT

# Per-cell fields of a Cells object, in its address table; Y and dY are per layer.
FIELDS = ("U", "W", "b", "b_hh", "gates", "aux", "h", "kappa", "da", "dah", "WT",
          "dU", "dW", "db", "db_hh", "Y", "dY")
cdef enum Field:
    F_U, F_W, F_B, F_BHH, F_GATES, F_AUX, F_H, F_KAPPA, F_DA, F_DAH, F_WT, F_DU, F_DW, \
        F_DB, F_DBHH, F_Y, F_DY, NFIELDS


cdef class Cells:
    """The addresses of every per-cell array of a stack, for the kernels of this module.

    ``arrays`` maps each name of ``FIELDS`` to a list of C-contiguous arrays of one
    float dtype: one per cell (Y and dY: one per layer). They are kept alive here.
    """
    cdef readonly object arrays, dtype
    cdef readonly int cell, n, dirs
    cdef intptr_t* table                 # NFIELDS rows of n addresses

    def __cinit__(self, str cell, int dirs, dict arrays):
        cdef int f, i
        self.cell = CELL_CODES[cell]
        self.dirs = dirs
        self.arrays = arrays
        self.n = len(arrays["W"])
        self.dtype = arrays["W"][0].dtype
        self.table = <intptr_t*>PyMem_Malloc(NFIELDS * self.n * sizeof(intptr_t))
        if self.table == NULL:
            raise MemoryError()
        for f, name in enumerate(FIELDS):
            for i, a in enumerate(arrays[name]):
                if a.dtype != self.dtype or not a.flags.c_contiguous:
                    raise ValueError(f"{name}[{i}]: expected a C-contiguous "
                                     f"{self.dtype} array, got {a.dtype}")
                self.table[f * self.n + i] = a.ctypes.data

    def __dealloc__(self):
        PyMem_Free(self.table)


cdef inline floating* _at(Cells cells, Field f, int i, floating probe) noexcept nogil:
    return <floating*>cells.table[<int>f * cells.n + i]


# ------------------------------------------------------------------ elementwise pieces

cdef void _reverse_time(floating* a, Py_ssize_t T, Py_ssize_t row) noexcept nogil:
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


cdef void _add_product(floating* a, const floating* b, const floating* c,
                       Py_ssize_t n) noexcept nogil:
    """a += b * c over n elements."""
    cdef Py_ssize_t k
    for k in range(n):
        a[k] += b[k] * c[k]


cdef void _lstm_cell_forward(floating* g, const floating* c_prev, floating* c_next,
                             floating* h_next, Py_ssize_t units, Py_ssize_t H) noexcept nogil:
    """One row, units [0, units) of H: g's i, f, g, og (at 0, H, 2H, 3H) a_t -> activations;
    c_t = f c_{t-1} + i g; h_t = og tanh(c_t)."""
    cdef Py_ssize_t k
    for k in range(units):
        g[k] = sigmoid(g[k])
    for k in range(units):
        g[H + k] = sigmoid(g[H + k])
    for k in range(units):
        g[2 * H + k] = tanh(g[2 * H + k])
    for k in range(units):
        g[3 * H + k] = sigmoid(g[3 * H + k])
    for k in range(units):
        c_next[k] = g[H + k] * c_prev[k] + g[k] * g[2 * H + k]
    for k in range(units):
        h_next[k] = g[3 * H + k] * tanh(c_next[k])


cdef void _lstm_cell_backward(const floating* g, const floating* c_prev, const floating* c,
                              const floating* kappa, floating* dcell, floating* da,
                              Py_ssize_t units, Py_ssize_t H) noexcept nogil:
    """One row of BPTT, units [0, units) of H (gates at 0, H, 2H, 3H); dcell: f_{t+1}
    dL/dc_{t+1} on entry, f_t dL/dc_t on exit."""
    cdef Py_ssize_t k
    cdef floating one = 1
    cdef const floating* i = g
    cdef const floating* f = g + H
    cdef const floating* gg = g + 2 * H
    cdef const floating* og = g + 3 * H
    for k in range(units):
        da[3 * H + k] = tanh(c[k])
    for k in range(units):
        dcell[k] = kappa[k] * og[k] * (one - da[3 * H + k] * da[3 * H + k]) + dcell[k]
    for k in range(units):
        da[3 * H + k] = og[k] * (one - og[k]) * (kappa[k] * da[3 * H + k])
    for k in range(units):
        da[k] = i[k] * (one - i[k]) * (dcell[k] * gg[k])
    for k in range(units):
        da[H + k] = f[k] * (one - f[k]) * (dcell[k] * c_prev[k])
    for k in range(units):
        da[2 * H + k] = (one - gg[k] * gg[k]) * (dcell[k] * i[k])
    for k in range(units):
        dcell[k] = dcell[k] * f[k]


cdef void _gru_cell_forward(floating* g, const floating* ah_n, const floating* h_prev,
                            floating* h_next, Py_ssize_t units, Py_ssize_t H) noexcept nogil:
    """One row, units [0, units) of H: g's r, z, n (at 0, H, 2H) pre-activations -> r, z,
    n; h_t = (1 - z) n + z h_{t-1}."""
    cdef Py_ssize_t k
    cdef floating one = 1
    for k in range(units):
        g[k] = sigmoid(g[k])
    for k in range(units):
        g[H + k] = sigmoid(g[H + k])
    for k in range(units):
        g[2 * H + k] = tanh(g[2 * H + k] + g[k] * ah_n[k])
    for k in range(units):
        h_next[k] = (one - g[H + k]) * g[2 * H + k] + g[H + k] * h_prev[k]


cdef void _gru_cell_backward(const floating* g, const floating* ah_n, const floating* h_prev,
                             const floating* kappa, floating* dah, floating* dax_n,
                             Py_ssize_t units, Py_ssize_t H) noexcept nogil:
    """One row of BPTT, units [0, units) of H: dah (r, z, n at 0, H, 2H) the hidden side,
    dax_n the candidate's input side."""
    cdef Py_ssize_t k
    cdef floating one = 1
    cdef const floating* r = g
    cdef const floating* z = g + H
    cdef const floating* n = g + 2 * H
    for k in range(units):
        dax_n[k] = kappa[k] * (one - z[k]) * (one - n[k] * n[k])
    for k in range(units):
        dah[k] = dax_n[k] * ah_n[k] * r[k] * (one - r[k])
    for k in range(units):
        dah[H + k] = kappa[k] * (h_prev[k] - n[k]) * z[k] * (one - z[k])
    for k in range(units):
        dah[2 * H + k] = r[k] * dax_n[k]


# ------------------------------------------------------------------------- one cell
# A cell's time loop runs on one thread, its products by BLAS, or for a large enough
# float32 LSTM or GRU on several (see _parallel.h): each thread owns a block of hidden
# units, packs its rows of W (forward) or columns of W (BPTT) into the cell's WT
# scratch, and runs the loop below over its units, waiting at a barrier after each
# step, as step t + 1 reads every unit of step t.

cdef void _forward_loop(int cell, const floating* W, const floating* b_hh,
                        const float* Wp, floating* gates, floating* aux, floating* h,
                        int T, int B, int H, int G, int u0, int u1,
                        frnn_barrier* barrier) noexcept nogil:
    """Steps 1..T for hidden units [u0, u1): all of them with Wp NULL (W h_{t-1} by
    BLAS), or one thread's share, Wp its packed rows of W (by gate, by unit)."""
    cdef Py_ssize_t t, r, k, q, n = u1 - u0, BH = B * H, BG = B * G
    cdef floating* g
    cdef floating* ah
    for t in range(T):
        g = gates + t * BG
        ah = aux + t * BH
        if cell == GRU:                          # ah_t = b_hh + W h_{t-1}, r z into gates
            for r in range(B):
                for k in range(u0, u1):
                    g[r * G + k] += b_hh[k]
                    g[r * G + H + k] += b_hh[H + k]
                    ah[r * H + k] = b_hh[2 * H + k]
        if Wp == NULL and cell == GRU:
            gemm(NoTrans, Trans, B, 2 * H, H, 1, h + t * BH, H, W, H, 1, g, G)
            add_rows_times(h + t * BH, B, H, W + 2 * H * H, Trans, H, ah)
        elif Wp == NULL:
            add_rows_times(h + t * BH, B, H, W, Trans, G, g)
        elif floating is float:
            for q in range(G // H):
                if cell == GRU and q == 2:
                    frnn_gemm(B, n, H, h + t * BH, H, Wp + q * n * H, ah + u0, H)
                else:
                    frnn_gemm(B, n, H, h + t * BH, H, Wp + q * n * H, g + q * H + u0, G)
        if cell == GRU:
            for r in range(B):
                _gru_cell_forward(g + r * G + u0, ah + r * H + u0, h + t * BH + r * H + u0,
                                  h + (t + 1) * BH + r * H + u0, n, H)
        elif cell == LSTM:
            for r in range(B):
                _lstm_cell_forward(g + r * G + u0, aux + t * BH + r * H + u0,
                                   aux + (t + 1) * BH + r * H + u0,
                                   h + (t + 1) * BH + r * H + u0, n, H)
        else:
            activate(cell, g, h + (t + 1) * BH, BH)
        if barrier != NULL:
            frnn_barrier_wait(barrier)


cdef void _backward_loop(int cell, const floating* W, const float* Wp,
                         const floating* gates, const floating* aux, const floating* h,
                         floating* kappa, floating* da, floating* dah, int T, int B, int H,
                         int G, int u0, int u1, frnn_barrier* barrier) noexcept nogil:
    """BPTT's steps T..1 for hidden units [u0, u1), as ``_forward_loop``; Wp holds this
    thread's packed columns of W."""
    cdef Py_ssize_t t, r, n = u1 - u0, BH = B * H, BG = B * G
    for t in range(T - 1, -1, -1):
        if t < T - 1:                            # kappa_t += W^T dL/da_{t+1} (+ GRU's z)
            if cell == GRU:
                for r in range(B):
                    _add_product(kappa + t * BH + r * H + u0,
                                 gates + (t + 1) * BG + r * G + H + u0,
                                 kappa + (t + 1) * BH + r * H + u0, n)
            if Wp == NULL:
                add_rows_times(da + (t + 1) * BG, B, G, W, NoTrans, H, kappa + t * BH)
            elif floating is float:
                frnn_gemm(B, n, G, da + (t + 1) * BG, G, Wp, kappa + t * BH + u0, H)
        if cell == LSTM:
            for r in range(B):
                _lstm_cell_backward(gates + t * BG + r * G + u0, aux + t * BH + r * H + u0,
                                    aux + (t + 1) * BH + r * H + u0,
                                    kappa + t * BH + r * H + u0, dah + r * H + u0,
                                    da + t * BG + r * G + u0, n, H)
        elif cell == GRU:
            for r in range(B):
                _gru_cell_backward(gates + t * BG + r * G + u0, aux + t * BH + r * H + u0,
                                   h + t * BH + r * H + u0, kappa + t * BH + r * H + u0,
                                   da + t * BG + r * G + u0, dah + t * BH + r * H + u0, n, H)
        else:
            delta(cell, gates + t * BG, h + (t + 1) * BH, kappa + t * BH, da + t * BG, BH)
        if barrier != NULL:
            frnn_barrier_wait(barrier)


ctypedef struct _Loop:
    int cell, T, B, H, G, threads, backward
    const float* W
    const float* b_hh
    float* packed
    float* gates
    float* aux
    float* h
    float* kappa
    float* da
    float* dah
    frnn_barrier barrier


cdef void _loop_task(void* ctx, int id) noexcept nogil:
    """Thread id's share of a cell's time loop: units [u0, u1), 16-unit blocks dealt
    out evenly; its packed W takes WT's elements [u0 G, u1 G)."""
    cdef _Loop* L = <_Loop*>ctx
    cdef int q, H = L.H, G = L.G, blocks = L.H // FRNN_PANEL
    cdef int u0 = FRNN_PANEL * (blocks * id // L.threads)
    cdef int u1 = FRNN_PANEL * (blocks * (id + 1) // L.threads), n = u1 - u0
    cdef float* Wp = L.packed + <Py_ssize_t>u0 * G
    if L.backward:                               # B(k, j) = W[k, u0 + j], (G, n)
        frnn_pack(L.W + u0, H, 1, G, n, Wp)
        _backward_loop(L.cell, L.W, Wp, L.gates, L.aux, L.h, L.kappa, L.da, L.dah, L.T,
                       L.B, H, G, u0, u1, &L.barrier)
    else:                                        # gate q: B(k, j) = W[qH + u0 + j, k]
        for q in range(G // H):
            frnn_pack(L.W + (<Py_ssize_t>q * H + u0) * H, 1, H, H, n,
                      Wp + <Py_ssize_t>q * n * H)
        _forward_loop(L.cell, L.W, L.b_hh, Wp, L.gates, L.aux, L.h, L.T, L.B, H, G, u0,
                      u1, &L.barrier)


cdef int _threads = 1                            # set_threads

# A parallel loop pays for starting its threads (tens of microseconds) and for a
# barrier per step (about a microsecond): below these sizes (B H G multiply-adds per
# step, T B H G in all) one thread with BLAS is as fast.
cdef double PARALLEL_MIN_STEP = 1 << 16
cdef double PARALLEL_MIN_LOOP = 1 << 22


def pass_threads(Cells cells, int T, int B):
    """How many threads a pass over (T, B) runs on: 1, or for a large enough float32
    LSTM or GRU stack up to ``set_threads``' number, when this build has parallel loops.

    The kernels take it as ``threads``. With more than one, the products outside the
    time loops are split over the threads too, each on single-threaded BLAS: the caller
    limits BLAS to one thread for the pass (fastrnn._cython.kernels does), as BLAS's own
    threads would otherwise compete with the pass's for the cores.
    """
    cdef int H = cells.arrays["W"][0].shape[1], G = cells.arrays["W"][0].shape[0]
    if <double>B * H * G < PARALLEL_MIN_STEP or <double>T * B * H * G < PARALLEL_MIN_LOOP:
        return 1
    return min(_threads, _max_threads(cells))


cdef int _max_threads(Cells cells):
    """The most threads a pass of ``cells`` can run on: 1 unless this build has parallel
    loops and the stack is a float32 LSTM or GRU with H a multiple of 16; then one per
    16 hidden units, at most FRNN_MAX_THREADS."""
    cdef int H = cells.arrays["W"][0].shape[1]
    if not FRNN_PARALLEL or cells.dtype != np.float32 \
            or (cells.cell != LSTM and cells.cell != GRU) or H % FRNN_PANEL != 0:
        return 1
    return min(H // FRNN_PANEL, FRNN_MAX_THREADS)


cdef bint _run_parallel(_Loop* loop) noexcept nogil:
    """Run a loop on loop.threads threads; false (nothing done) if they did not start."""
    frnn_barrier_init(&loop.barrier, loop.threads)
    return frnn_run(loop.threads, _loop_task, loop) == 0


cdef void _cell_forward(int cell, const floating* W, const floating* b_hh,
                        const floating* h0, const floating* c0, floating* gates,
                        floating* aux, floating* h, floating* WT, int T, int B, int H,
                        int G, int threads) noexcept nogil:
    """The time loop of one cell; gates (T, B, G) holds b + U x_t on entry."""
    cdef Py_ssize_t BH = B * H
    cdef _Loop loop
    copy(h0, h, BH)                              # h0 may be h_T: copied first
    if cell == LSTM:
        copy(c0, aux, BH)
    if floating is float:
        if threads > 1:
            loop.cell, loop.T, loop.B, loop.H, loop.G, loop.backward = cell, T, B, H, G, 0
            loop.threads = threads
            loop.W, loop.b_hh, loop.packed, loop.gates, loop.aux, loop.h = \
                W, b_hh, WT, gates, aux, h
            if _run_parallel(&loop):
                return
    _forward_loop(cell, W, b_hh, NULL, gates, aux, h, T, B, H, G, 0, H, NULL)


cdef void _cell_backward(int cell, const floating* W, const floating* gates,
                         const floating* aux, const floating* h, floating* kappa,
                         floating* da, floating* dah, floating* dW, floating* db_hh,
                         floating* dh0, floating* dc0, floating* WT, int T, int B, int H,
                         int G, int threads) noexcept nogil:
    """BPTT through one cell, kappa (T, B, H) holding dL/dh_t from above on entry.

    Leaves dL/da_t (for the GRU the input side) in da, in reading order; fills dW, dh0
    and the GRU's db_hh or the LSTM's dc0 (whose dL/dc_t runs through dah's first rows).
    """
    cdef Py_ssize_t t, r, k, BH = B * H, BG = B * G
    cdef floating tmp
    cdef _Loop loop
    cdef bint done = False
    if cell == LSTM:
        for k in range(BH):
            dah[k] = 0
    if floating is float:
        if threads > 1:
            loop.cell, loop.T, loop.B, loop.H, loop.G, loop.backward = cell, T, B, H, G, 1
            loop.threads = threads
            loop.W, loop.packed = W, WT            # the loop reads gates, aux and h:
            loop.gates, loop.aux, loop.h = <float*>gates, <float*>aux, <float*>h
            loop.kappa, loop.da, loop.dah = kappa, da, dah
            done = _run_parallel(&loop)
    if not done:
        _backward_loop(cell, W, NULL, gates, aux, h, kappa, da, dah, T, B, H, G, 0, H,
                       NULL)
    gemm(NoTrans, NoTrans, B, H, G, 1, da, G, W, H, 0, dh0, H)    # W^T dL/da_1
    if cell == GRU:                              # + z_1 kappa_1
        for r in range(B):
            _add_product(dh0 + r * H, gates + r * G + H, kappa + r * H, H)
    elif cell == LSTM:
        copy(dah, dc0, BH)                       # f_1 dL/dc_1
    _gemm(threads, Trans, NoTrans, G, H, T * B, 1, da, G, h, H, 0, dW, H)  # sum_t da_t h_{t-1}^T
    if cell == GRU:
        _sum_rows(threads, da, T * B, G, db_hh)
        for t in range(T):                       # da becomes the input side dL/dax
            for r in range(B):
                for k in range(H):
                    tmp = da[t * BG + r * G + 2 * H + k]
                    da[t * BG + r * G + 2 * H + k] = dah[t * BH + r * H + k]
                    dah[t * BH + r * H + k] = tmp


ctypedef struct _Gemm:
    int ta, tb, m, n, k, lda, ldb, ldc, threads, by_rows
    float alpha, beta
    const float* A
    const float* B
    const float* bias
    float* C


cdef void _gemm_task(void* ctx, int id) noexcept nogil:
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


cdef void _gemm(int threads, BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
                floating alpha, const floating* A, int lda, const floating* B, int ldb,
                floating beta, floating* C, int ldc,
                const floating* bias=NULL) noexcept nogil:
    """``gemm``, C split over ``threads`` threads when that is more than one (a parallel
    pass, BLAS then single-threaded: see ``pass_threads``). With ``bias`` (n,), C's rows
    (ldc = n) are set to it first and beta must be 1.

    Each thread packs the whole of the operand it shares with the others: C is split by
    rows when op(A) (m, k) is the larger operand, so that op(B) (k, n) is the one packed
    twice, else by columns (LSTM inference at T=150 B=1 D=H=256: U is 1 MB and x 150 kB;
    split by columns the pass took 1.73 ms against 1.80, medians of 4 alternating runs).
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


cdef void _sum_rows_task(void* ctx, int id) noexcept nogil:
    """Thread id's block of columns of v = sum_r M[r], summed in the order of rows."""
    cdef _SumRows* P = <_SumRows*>ctx
    cdef Py_ssize_t r, j, j0 = P.K * id // P.threads, j1 = P.K * (id + 1) // P.threads
    for j in range(j0, j1):
        P.v[j] = 0
    for r in range(P.N):
        for j in range(j0, j1):
            P.v[j] += P.M[r * P.K + j]


cdef void _sum_rows(int threads, const floating* M, int N, int K,
                    floating* v) noexcept nogil:
    """``sum_rows``, its columns split over ``threads`` threads; the same bits."""
    cdef _SumRows job
    if floating is float:
        if threads > 1 and K >= 8 * threads:
            job.M, job.v, job.N, job.K, job.threads = M, v, N, K, threads
            if frnn_run(threads, _sum_rows_task, &job) == 0:
                return
    sum_rows(M, N, K, v)


def set_threads(n):
    """Run large float32 LSTM and GRU passes on up to n threads (at most one per 16
    hidden units and FRNN_MAX_THREADS in all: a larger n is taken as FRNN_MAX_THREADS)."""
    global _threads
    n = operator.index(n)
    if n < 1:
        raise ValueError(f"n: expected a number of threads >= 1, got {n}")
    _threads = min(n, FRNN_MAX_THREADS)


def get_threads():
    """The number of threads set by ``set_threads``, at most FRNN_MAX_THREADS."""
    return _threads


def parallel_loops():
    """Whether this build runs time loops on several threads (x86-64 AVX2 build)."""
    return bool(FRNN_PARALLEL)


# --------------------------------------------------------------------------- stacks

cdef void _project(const floating* U, const floating* b, const floating* x, int N, int D,
                   floating* gates, int G, int threads) noexcept nogil:
    """gates = X U^T + b for N rows: the bias rows, then one GEMM onto them."""
    _gemm(threads, NoTrans, Trans, N, G, D, 1, x, D, U, D, 1, gates, G, b)


cdef void _gather(const floating* U, const floating* b, const int64_t* ids, int N, int D,
                  floating* gates, int G) noexcept nogil:
    """gates = b + U e_{ids[r]} for N rows: U x_t for one-hot x_t is column ids[r] of U."""
    cdef Py_ssize_t r, j, col
    for r in range(N):
        col = ids[r]
        for j in range(G):
            gates[r * G + j] = b[j] + U[j * D + col]


cdef void _layers_forward(Cells cells, floating probe, const floating* h0,
                          const floating* c0, const floating* V, const floating* c,
                          floating* o, floating* h_T, floating* c_T, int T, int B, int D,
                          int H, int O, int threads) noexcept nogil:
    """Every cell's time loop and the output layer; layer 0's gates already hold
    b + U x_t in each direction's reading order."""
    cdef int i, k, d, r, t, dirs = cells.dirs, n = cells.n, K = dirs * H
    cdef int G = H * (4 if cells.cell == LSTM else 3 if cells.cell == GRU else 1)
    cdef Py_ssize_t BH = B * H
    cdef floating* gates
    cdef floating* h
    cdef floating* Y
    for i in range(n):
        k, d = i // dirs, i % dirs
        gates = _at(cells, F_GATES, i, probe)
        h = _at(cells, F_H, i, probe)
        if k > 0:                                # layer k reads layer k - 1's states
            _project(_at(cells, F_U, i, probe), _at(cells, F_B, i, probe),
                     _at(cells, F_Y, k - 1, probe), T * B, K, gates, G, threads)
            if d == 1:
                _reverse_time(gates, T, B * G)
        _cell_forward(cells.cell, _at(cells, F_W, i, probe), _at(cells, F_BHH, i, probe),
                      h0 + i * BH, c0 + i * BH, gates, _at(cells, F_AUX, i, probe), h,
                      _at(cells, F_WT, i, probe), T, B, H, G, threads)
        copy(h + T * BH, h_T + i * BH, BH)
        if cells.cell == LSTM:
            copy(_at(cells, F_AUX, i, probe) + T * BH, c_T + i * BH, BH)
        if dirs == 2:                            # Y[t, :, dH:(d+1)H], back in time order
            Y = _at(cells, F_Y, k, probe)
            for t in range(T):
                for r in range(B):
                    copy(h + ((t + 1) if d == 0 else (T - t)) * BH + r * H,
                         Y + (t * B + r) * K + d * H, H)
    _gemm(threads, NoTrans, Trans, T * B, O, K, 1, _at(cells, F_Y, n // dirs - 1, probe), K,
          V, K, 1, o, O, c)


cdef void _layers_backward(Cells cells, floating probe, const floating* V,
                           const floating* do, floating* dV, floating* dc, floating* dh0,
                           floating* dc0, int T, int B, int D, int H, int O,
                           int threads) noexcept nogil:
    """BPTT from the output layer down; layer 0's dU and db are left to the caller."""
    cdef int i, k, d, r, t, dirs = cells.dirs, n = cells.n, K = dirs * H
    cdef int L = n // dirs, N = T * B
    cdef int G = H * (4 if cells.cell == LSTM else 3 if cells.cell == GRU else 1)
    cdef Py_ssize_t BH = B * H
    cdef floating* kappa
    cdef floating* da
    cdef floating* dY
    cdef const floating* Y_top = _at(cells, F_Y, L - 1, probe)
    _gemm(threads, NoTrans, NoTrans, N, K, O, 1, do, O, V, K, 0,
          _at(cells, F_DY, L - 1, probe), K)
    _gemm(threads, Trans, NoTrans, O, K, N, 1, do, O, Y_top, K, 0, dV, K)
    sum_rows(do, N, O, dc)
    for i in range(n - 1, -1, -1):
        k, d = i // dirs, i % dirs
        kappa = _at(cells, F_KAPPA, i, probe)
        da = _at(cells, F_DA, i, probe)
        if dirs == 2:                            # this direction's part, in reading order
            dY = _at(cells, F_DY, k, probe)
            for t in range(T):
                for r in range(B):
                    copy(dY + (((t if d == 0 else T - 1 - t) * B + r) * K) + d * H,
                         kappa + t * BH + r * H, H)
        _cell_backward(cells.cell, _at(cells, F_W, i, probe), _at(cells, F_GATES, i, probe),
                       _at(cells, F_AUX, i, probe), _at(cells, F_H, i, probe), kappa, da,
                       _at(cells, F_DAH, i, probe), _at(cells, F_DW, i, probe),
                       _at(cells, F_DBHH, i, probe), dh0 + i * BH, dc0 + i * BH,
                       _at(cells, F_WT, i, probe), T, B, H, G, threads)
        if d == 1:
            _reverse_time(da, T, B * G)          # into time order, for dU and dL/dx
        if k > 0:                                # dU, db and dL/dY of the layer below
            _gemm(threads, Trans, NoTrans, G, K, N, 1, da, G, _at(cells, F_Y, k - 1, probe),
                  K, 0, _at(cells, F_DU, i, probe), K)
            _sum_rows(threads, da, N, G, _at(cells, F_DB, i, probe))
            _gemm(threads, NoTrans, NoTrans, N, K, G, 1, da, G, _at(cells, F_U, i, probe), K,
                  0 if d == dirs - 1 else 1, _at(cells, F_DY, k - 1, probe), K)


# ---------------------------------------------------------------------- public kernels

def stack_forward_dense(Cells cells,
                        const floating[:, :, ::1] x,      # IN  (T, B, D)
                        const floating[:, :, ::1] h0,     # IN  (n, B, H), may be h_T
                        const floating[:, :, ::1] c0,     # IN  (n, B, H), LSTM; may be c_T
                        const floating[:, ::1] V,         # IN  (O, dirs H)
                        const floating[::1] c,            # IN  (O,)
                        floating[:, :, ::1] o,            # OUT (T, B, O)
                        floating[:, :, ::1] h_T,          # OUT (n, B, H)
                        floating[:, :, ::1] c_T,          # OUT (n, B, H), LSTM
                        int threads=1):
    """Forward pass of a stack for dense inputs; the buffers of ``cells`` are filled.

    ``threads``: as ``pass_threads`` says (more than one only with BLAS limited to one
    thread for the call)."""
    cdef int T = x.shape[0], B = x.shape[1], D = x.shape[2], H = h0.shape[2]
    cdef int O = V.shape[0], d, G = cells.arrays["W"][0].shape[0]
    cdef floating probe = 0
    _check(cells, sizeof(floating), threads)
    with nogil:
        for d in range(cells.dirs):
            _project(_at(cells, F_U, d, probe), _at(cells, F_B, d, probe), &x[0, 0, 0],
                     T * B, D, _at(cells, F_GATES, d, probe), G, threads)
            if d == 1:
                _reverse_time(_at(cells, F_GATES, d, probe), T, B * G)
        _layers_forward(cells, probe, &h0[0, 0, 0], &c0[0, 0, 0], &V[0, 0], &c[0],
                        &o[0, 0, 0], &h_T[0, 0, 0], &c_T[0, 0, 0], T, B, D, H, O,
                        threads)


def stack_forward_ids(Cells cells,
                      const int64_t[:, ::1] x,            # IN  (T, B) token ids in [0, D)
                      const floating[:, :, ::1] h0,
                      const floating[:, :, ::1] c0,
                      const floating[:, ::1] V,
                      const floating[::1] c,
                      floating[:, :, ::1] o,
                      floating[:, :, ::1] h_T,
                      floating[:, :, ::1] c_T,
                      int threads=1):
    """Forward pass of a stack for token ids: U x_t is column x_t of U, gathered."""
    cdef int T = x.shape[0], B = x.shape[1], H = h0.shape[2], O = V.shape[0]
    cdef int D = cells.arrays["U"][0].shape[1], G = cells.arrays["W"][0].shape[0]
    cdef int d
    cdef floating probe = 0
    _check(cells, sizeof(floating), threads)
    with nogil:
        for d in range(cells.dirs):
            _gather(_at(cells, F_U, d, probe), _at(cells, F_B, d, probe), &x[0, 0], T * B,
                    D, _at(cells, F_GATES, d, probe), G)
            if d == 1:
                _reverse_time(_at(cells, F_GATES, d, probe), T, B * G)
        _layers_forward(cells, probe, &h0[0, 0, 0], &c0[0, 0, 0], &V[0, 0], &c[0],
                        &o[0, 0, 0], &h_T[0, 0, 0], &c_T[0, 0, 0], T, B, D, H, O,
                        threads)


def stack_backward_dense(Cells cells,
                         const floating[:, :, ::1] x,     # IN  (T, B, D)
                         const floating[:, ::1] V,        # IN  (O, dirs H)
                         const floating[:, :, ::1] do,    # IN  (T, B, O)
                         floating[:, ::1] dV,             # OUT (O, dirs H)
                         floating[::1] dc,                # OUT (O,)
                         floating[:, :, ::1] dh0,         # OUT (n, B, H)
                         floating[:, :, ::1] dc0,         # OUT (n, B, H), LSTM
                         int threads=1):
    """BPTT through a stack for dense inputs, after its forward pass and the loss;
    ``threads`` as for ``stack_forward_dense``."""
    cdef int T = x.shape[0], B = x.shape[1], D = x.shape[2], H = dh0.shape[2]
    cdef int O = V.shape[0], d, G = cells.arrays["W"][0].shape[0]
    cdef floating probe = 0
    cdef floating* da
    _check(cells, sizeof(floating), threads)
    with nogil:
        _layers_backward(cells, probe, &V[0, 0], &do[0, 0, 0], &dV[0, 0], &dc[0],
                         &dh0[0, 0, 0], &dc0[0, 0, 0], T, B, D, H, O, threads)
        for d in range(cells.dirs):
            da = _at(cells, F_DA, d, probe)
            _gemm(threads, Trans, NoTrans, G, D, T * B, 1, da, G, &x[0, 0, 0], D, 0,
                  _at(cells, F_DU, d, probe), D)
            _sum_rows(threads, da, T * B, G, _at(cells, F_DB, d, probe))


def stack_backward_ids(Cells cells,
                       const int64_t[:, ::1] x,           # IN  (T, B) token ids in [0, D)
                       const floating[:, ::1] V,
                       const floating[:, :, ::1] do,
                       floating[:, ::1] dV,
                       floating[::1] dc,
                       floating[:, :, ::1] dh0,
                       floating[:, :, ::1] dc0,
                       int threads=1):
    """BPTT for token ids: dL/da_t e_i^T adds da_t to column i of dU (a scatter)."""
    cdef int T = x.shape[0], B = x.shape[1], H = dh0.shape[2], O = V.shape[0]
    cdef int D = cells.arrays["U"][0].shape[1], G = cells.arrays["W"][0].shape[0]
    cdef int d, t, r, j
    cdef Py_ssize_t col
    cdef floating probe = 0
    cdef floating* da
    cdef floating* dU
    _check(cells, sizeof(floating), threads)
    with nogil:
        _layers_backward(cells, probe, &V[0, 0], &do[0, 0, 0], &dV[0, 0], &dc[0],
                         &dh0[0, 0, 0], &dc0[0, 0, 0], T, B, D, H, O, threads)
        for d in range(cells.dirs):
            da, dU = _at(cells, F_DA, d, probe), _at(cells, F_DU, d, probe)
            for j in range(G * D):
                dU[j] = 0
            for t in range(T):
                for r in range(B):
                    col = x[t, r]
                    for j in range(G):
                        dU[j * D + col] += da[(t * B + r) * G + j]
            _sum_rows(threads, da, T * B, G, _at(cells, F_DB, d, probe))


def stack_step_dense(Cells cells,
                     const floating[:, ::1] x_t,          # IN  (B, D)
                     const floating[:, :, ::1] h0,        # IN  (n, B, H), may be h_out
                     const floating[:, :, ::1] c0,        # IN  (n, B, H), LSTM; may be c_out
                     const floating[:, ::1] V,            # IN  (O, H)
                     const floating[::1] c,               # IN  (O,)
                     floating[:, ::1] o_out,              # OUT (B, O)
                     floating[:, :, ::1] h_out,           # OUT (n, B, H)
                     floating[:, :, ::1] c_out):          # OUT (n, B, H), LSTM
    """One streaming step of a one-direction stack: its forward pass over x_t (B, D).

    As ``stack_forward_dense`` with T = 1, on the buffers of a workspace for T = 1, but
    the outputs go straight to o_out, h_out and c_out, which may be h0 and c0 (each
    cell copies its h0 and c0 before it writes). Returns STEP_OK, STEP_BAD_INPUT when
    x_t is not finite (nothing is written), or STEP_BAD_OUTPUT.
    """
    cdef int B = x_t.shape[0], D = x_t.shape[1], H = h0.shape[2], O = V.shape[0]
    cdef int G = cells.arrays["W"][0].shape[0], status
    cdef floating probe = 0
    _check_step(cells, sizeof(floating))
    with nogil:
        if not all_finite(&x_t[0, 0], B * D):
            status = STEP_BAD_INPUT
        else:
            fill_rows(_at(cells, F_GATES, 0, probe), B, _at(cells, F_B, 0, probe), G)
            add_rows_times(&x_t[0, 0], B, D, _at(cells, F_U, 0, probe), Trans, G,
                           _at(cells, F_GATES, 0, probe))
            status = _step_layers(cells, probe, &h0[0, 0, 0], &c0[0, 0, 0], &V[0, 0],
                                  &c[0], &o_out[0, 0], &h_out[0, 0, 0], &c_out[0, 0, 0], B,
                                  D, H, O)
    return status


def stack_step_ids(Cells cells,
                   const int64_t[::1] x_t,                # IN  (B,) token ids in [0, D)
                   const floating[:, :, ::1] h0,
                   const floating[:, :, ::1] c0,
                   const floating[:, ::1] V,
                   const floating[::1] c,
                   floating[:, ::1] o_out,
                   floating[:, :, ::1] h_out,
                   floating[:, :, ::1] c_out):
    """One streaming step for token ids x_t (B,); as ``stack_step_dense``."""
    cdef int B = x_t.shape[0], H = h0.shape[2], O = V.shape[0]
    cdef int D = cells.arrays["U"][0].shape[1], G = cells.arrays["W"][0].shape[0]
    cdef int status
    cdef floating probe = 0
    _check_step(cells, sizeof(floating))
    with nogil:
        _gather(_at(cells, F_U, 0, probe), _at(cells, F_B, 0, probe), &x_t[0], B, D,
                _at(cells, F_GATES, 0, probe), G)
        status = _step_layers(cells, probe, &h0[0, 0, 0], &c0[0, 0, 0], &V[0, 0], &c[0],
                              &o_out[0, 0], &h_out[0, 0, 0], &c_out[0, 0, 0], B, D, H, O)
    return status


cdef int _step_layers(Cells cells, floating probe, const floating* h0, const floating* c0,
                      const floating* V, const floating* c, floating* o_out,
                      floating* h_out, floating* c_out, int B, int D, int H,
                      int O) noexcept nogil:
    """A step's layers and output, layer 0's gates holding b + U x_t; returns STEP_OK
    or STEP_BAD_OUTPUT."""
    _layers_forward(cells, probe, h0, c0, V, c, o_out, h_out, c_out, 1, B, D, H, O, 1)
    return STEP_OK if all_finite(o_out, B * O) else STEP_BAD_OUTPUT


def _check(Cells cells, size_t itemsize, int threads=1):
    """The kernels read ``cells``' addresses as the dtype of their memoryviews, and run
    on a number of threads that the stack allows (see ``_max_threads``)."""
    if cells.dtype.itemsize != itemsize:
        raise TypeError(f"cells: expected arrays of {itemsize}-byte floats, got "
                        f"{cells.dtype}")
    if threads < 1 or threads > _max_threads(cells):
        raise ValueError(f"threads: expected 1 to {_max_threads(cells)} for this stack, "
                         f"got {threads}")


def _check_step(Cells cells, size_t itemsize):
    """As ``_check``, and a step runs one direction (a reverse one needs the sequence)."""
    _check(cells, itemsize)
    if cells.dirs != 1:
        raise ValueError("cells: a streaming step runs a one-direction stack, got a "
                         "bidirectional one")
