# One cell's time loop, forward and BPTT (the recurrence; every other product of a pass
# is one GEMM over all T * B rows, in stack.pyx). Legend as in stack.pyx: T time steps,
# B batch, H hidden size, G gate rows (H, 4H for the LSTM, 3H for the GRU).
#
# The loop runs on one thread, its products by BLAS, or for a large enough float32 LSTM
# or GRU on several (see _parallel.h): each thread owns a block of hidden units, packs
# its rows of W (forward) or columns of W (BPTT) into the cell's WT scratch, and runs
# the loop below over its units, waiting at a barrier after each step, as step t + 1
# reads every unit of step t. Inline, so that each build of stack.pyx compiles it with
# its own flags.

from cython cimport floating

from ._blas cimport NoTrans, Trans, gemm
from ._gated cimport gru_backward_row, gru_forward_row, lstm_backward_row, lstm_forward_row
from ._loops cimport GRU, LSTM, activate, add_product, add_rows_times, copy, delta
from ._parallel cimport (FRNN_PANEL, frnn_barrier, frnn_barrier_init, frnn_barrier_wait,
                         frnn_gemm, frnn_pack, frnn_run, threaded_gemm, threaded_sum_rows)


cdef inline void _forward_loop(int cell, const floating* W, const floating* b_hh,
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
                gru_forward_row(g + r * G + u0, ah + r * H + u0, h + t * BH + r * H + u0,
                                h + (t + 1) * BH + r * H + u0, n, H)
        elif cell == LSTM:
            for r in range(B):
                lstm_forward_row(g + r * G + u0, aux + t * BH + r * H + u0,
                                 aux + (t + 1) * BH + r * H + u0,
                                 h + (t + 1) * BH + r * H + u0, n, H)
        else:
            activate(cell, g, h + (t + 1) * BH, BH)
        if barrier != NULL:
            frnn_barrier_wait(barrier)


cdef inline void _backward_loop(int cell, const floating* W, const float* Wp,
                                const floating* gates, const floating* aux,
                                const floating* h, floating* kappa, floating* da,
                                floating* dah, int T, int B, int H, int G, int u0, int u1,
                                frnn_barrier* barrier) noexcept nogil:
    """BPTT's steps T..1 for hidden units [u0, u1), as ``_forward_loop``; Wp holds this
    thread's packed columns of W."""
    cdef Py_ssize_t t, r, n = u1 - u0, BH = B * H, BG = B * G
    for t in range(T - 1, -1, -1):
        if t < T - 1:                            # kappa_t += W^T dL/da_{t+1} (+ GRU's z)
            if cell == GRU:
                for r in range(B):
                    add_product(kappa + t * BH + r * H + u0,
                                gates + (t + 1) * BG + r * G + H + u0,
                                kappa + (t + 1) * BH + r * H + u0, n)
            if Wp == NULL:
                add_rows_times(da + (t + 1) * BG, B, G, W, NoTrans, H, kappa + t * BH)
            elif floating is float:
                frnn_gemm(B, n, G, da + (t + 1) * BG, G, Wp, kappa + t * BH + u0, H)
        if cell == LSTM:
            for r in range(B):
                lstm_backward_row(gates + t * BG + r * G + u0, aux + t * BH + r * H + u0,
                                  aux + (t + 1) * BH + r * H + u0,
                                  kappa + t * BH + r * H + u0, dah + r * H + u0,
                                  da + t * BG + r * G + u0, n, H)
        elif cell == GRU:
            for r in range(B):
                gru_backward_row(gates + t * BG + r * G + u0, aux + t * BH + r * H + u0,
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


cdef inline void _loop_task(void* ctx, int id) noexcept nogil:
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


cdef inline bint _run_parallel(_Loop* loop) noexcept nogil:
    """Run a loop on loop.threads threads; false (nothing done) if they did not start."""
    frnn_barrier_init(&loop.barrier, loop.threads)
    return frnn_run(loop.threads, _loop_task, loop) == 0


cdef inline void cell_forward(int cell, const floating* W, const floating* b_hh,
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


cdef inline void cell_backward(int cell, const floating* W, const floating* gates,
                               const floating* aux, const floating* h, floating* kappa,
                               floating* da, floating* dah, floating* dW, floating* db_hh,
                               floating* dh0, floating* dc0, floating* WT, int T, int B,
                               int H, int G, int threads) noexcept nogil:
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
            add_product(dh0 + r * H, gates + r * G + H, kappa + r * H, H)
    elif cell == LSTM:
        copy(dah, dc0, BH)                       # f_1 dL/dc_1
    # sum_t da_t h_{t-1}^T
    threaded_gemm(threads, Trans, NoTrans, G, H, T * B, 1, da, G, h, H, 0, dW, H)
    if cell == GRU:
        threaded_sum_rows(threads, da, T * B, G, db_hh)
        for t in range(T):                       # da becomes the input side dL/dax
            for r in range(B):
                for k in range(H):
                    tmp = da[t * BG + r * G + 2 * H + k]
                    da[t * BG + r * G + 2 * H + k] = dah[t * BH + r * H + k]
                    dah[t * BH + r * H + k] = tmp
