"""Stacks in Cython: LSTM, GRU and vanilla cells, several layers, two directions.

Legend: T time steps, B batch, D input size, H hidden size, O output size, G gate rows
(H, 4H for the LSTM, 3H for the GRU), n cells, cell i = k * dirs + d.

The algorithm is that of ``fastrnn._numba.stack`` and ``fastrnn._numba.gated`` on the
buffers of a ``Workspace`` (the equations are in ``fastrnn.reference.stack``,
``lstm`` and ``gru``): every product but the recurrence is one GEMM over all T * B rows;
a reverse cell runs in its reading order, its projection and dL/da reversed in time in
place; BPTT runs from the top layer down. As in ``rnn.pyx``, BLAS accumulates (beta = 1)
where the Numba kernels need a second pass: onto the bias rows, a_t += W h_{t-1},
kappa_t += W^T dL/da_{t+1}, and the two directions' dL/dx into one buffer.

The pieces are in their own files: the ``Cells`` table of a stack's per-cell arrays
(``_cells``, which the kernels take with a few memoryviews), one cell's time loop
(``_recurrence.pxd``), the gated cells' row kernels (``_gated.pxd``) and the products
split over a parallel pass's threads (``_parallel.pxd``). Here are the passes through
the layers and the public kernels. Nothing here allocates an array.

A large float32 LSTM or GRU pass runs on several threads (``pass_threads``; the time
loops as ``_recurrence.pxd`` says, the other products split by rows of their results);
asv's ``bench_gated.GatedCythonThreads`` measures it against one thread, and the README
quotes the figures.
"""
from libc.stdint cimport int64_t

from cython cimport floating

from . cimport _cells
from ._blas cimport NoTrans, Trans
from ._cells cimport (F_AUX, F_B, F_BHH, F_DA, F_DAH, F_DB, F_DBHH, F_DU, F_DW, F_DY,
                      F_GATES, F_H, F_KAPPA, F_U, F_W, F_WT, F_Y, at)
from ._loops cimport (GRU, LSTM, add_rows_times, all_finite, copy, fill_rows, reverse_time,
                      sum_rows)
from ._parallel cimport (FRNN_MAX_THREADS, FRNN_PANEL, FRNN_PARALLEL, threaded_gemm,
                         threaded_sum_rows)
from ._recurrence cimport cell_backward, cell_forward

import operator

import numpy as np

from fastrnn import _contract

from ._cells import CELL_CODES, Cells        # the names kernels.py finds here

cdef int STEP_OK = _contract.STEP_OK
cdef int STEP_BAD_INPUT = _contract.STEP_BAD_INPUT
cdef int STEP_BAD_OUTPUT = _contract.STEP_BAD_OUTPUT

cdef int _threads = 1                            # set_threads

# A parallel loop pays for starting its threads (tens of microseconds) and for a
# barrier per step (about a microsecond): below these sizes (B H G multiply-adds per
# step, T B H G in all) one thread with BLAS is as fast.
cdef double PARALLEL_MIN_STEP = 1 << 16
cdef double PARALLEL_MIN_LOOP = 1 << 22


def pass_threads(_cells.Cells cells, int T, int B):
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


cdef int _max_threads(_cells.Cells cells):
    """The most threads a pass of ``cells`` can run on: 1 unless this build has parallel
    loops and the stack is a float32 LSTM or GRU with H a multiple of 16; then one per
    16 hidden units, at most FRNN_MAX_THREADS."""
    cdef int H = cells.arrays["W"][0].shape[1]
    if not FRNN_PARALLEL or cells.dtype != np.float32 \
            or (cells.cell != LSTM and cells.cell != GRU) or H % FRNN_PANEL != 0:
        return 1
    return min(H // FRNN_PANEL, FRNN_MAX_THREADS)


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
    threaded_gemm(threads, NoTrans, Trans, N, G, D, 1, x, D, U, D, 1, gates, G, b)


cdef void _gather(const floating* U, const floating* b, const int64_t* ids, int N, int D,
                  floating* gates, int G) noexcept nogil:
    """gates = b + U e_{ids[r]} for N rows: U x_t for one-hot x_t is column ids[r] of U."""
    cdef Py_ssize_t r, j, col
    for r in range(N):
        col = ids[r]
        for j in range(G):
            gates[r * G + j] = b[j] + U[j * D + col]


cdef void _layers_forward(_cells.Cells cells, floating probe, const floating* h0,
                          const floating* c0, const floating* V, const floating* c,
                          floating* o, floating* h_T, floating* c_T, int T, int B, int H,
                          int O, int threads) noexcept nogil:
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
        gates = at(cells, F_GATES, i, probe)
        h = at(cells, F_H, i, probe)
        if k > 0:                                # layer k reads layer k - 1's states
            _project(at(cells, F_U, i, probe), at(cells, F_B, i, probe),
                     at(cells, F_Y, k - 1, probe), T * B, K, gates, G, threads)
            if d == 1:
                reverse_time(gates, T, B * G)
        cell_forward(cells.cell, at(cells, F_W, i, probe), at(cells, F_BHH, i, probe),
                     h0 + i * BH, c0 + i * BH, gates, at(cells, F_AUX, i, probe), h,
                     at(cells, F_WT, i, probe), T, B, H, G, threads)
        copy(h + T * BH, h_T + i * BH, BH)
        if cells.cell == LSTM:
            copy(at(cells, F_AUX, i, probe) + T * BH, c_T + i * BH, BH)
        if dirs == 2:                            # Y[t, :, dH:(d+1)H], back in time order
            Y = at(cells, F_Y, k, probe)
            for t in range(T):
                for r in range(B):
                    copy(h + ((t + 1) if d == 0 else (T - t)) * BH + r * H,
                         Y + (t * B + r) * K + d * H, H)
    threaded_gemm(threads, NoTrans, Trans, T * B, O, K, 1,
                  at(cells, F_Y, n // dirs - 1, probe), K, V, K, 1, o, O, c)


cdef void _layers_backward(_cells.Cells cells, floating probe, const floating* V,
                           const floating* do, floating* dV, floating* dc, floating* dh0,
                           floating* dc0, int T, int B, int H, int O,
                           int threads) noexcept nogil:
    """BPTT from the output layer down; layer 0's dU and db are left to the caller."""
    cdef int i, k, d, r, t, dirs = cells.dirs, n = cells.n, K = dirs * H
    cdef int L = n // dirs, N = T * B
    cdef int G = H * (4 if cells.cell == LSTM else 3 if cells.cell == GRU else 1)
    cdef Py_ssize_t BH = B * H
    cdef floating* kappa
    cdef floating* da
    cdef floating* dY
    cdef const floating* Y_top = at(cells, F_Y, L - 1, probe)
    threaded_gemm(threads, NoTrans, NoTrans, N, K, O, 1, do, O, V, K, 0,
                  at(cells, F_DY, L - 1, probe), K)
    threaded_gemm(threads, Trans, NoTrans, O, K, N, 1, do, O, Y_top, K, 0, dV, K)
    sum_rows(do, N, O, dc)
    for i in range(n - 1, -1, -1):
        k, d = i // dirs, i % dirs
        kappa = at(cells, F_KAPPA, i, probe)
        da = at(cells, F_DA, i, probe)
        if dirs == 2:                            # this direction's part, in reading order
            dY = at(cells, F_DY, k, probe)
            for t in range(T):
                for r in range(B):
                    copy(dY + (((t if d == 0 else T - 1 - t) * B + r) * K) + d * H,
                         kappa + t * BH + r * H, H)
        cell_backward(cells.cell, at(cells, F_W, i, probe), at(cells, F_GATES, i, probe),
                      at(cells, F_AUX, i, probe), at(cells, F_H, i, probe), kappa, da,
                      at(cells, F_DAH, i, probe), at(cells, F_DW, i, probe),
                      at(cells, F_DBHH, i, probe), dh0 + i * BH, dc0 + i * BH,
                      at(cells, F_WT, i, probe), T, B, H, G, threads)
        if d == 1:
            reverse_time(da, T, B * G)           # into time order, for dU and dL/dx
        if k > 0:                                # dU, db and dL/dY of the layer below
            threaded_gemm(threads, Trans, NoTrans, G, K, N, 1, da, G,
                          at(cells, F_Y, k - 1, probe), K, 0, at(cells, F_DU, i, probe), K)
            threaded_sum_rows(threads, da, N, G, at(cells, F_DB, i, probe))
            threaded_gemm(threads, NoTrans, NoTrans, N, K, G, 1, da, G,
                          at(cells, F_U, i, probe), K, 0 if d == dirs - 1 else 1,
                          at(cells, F_DY, k - 1, probe), K)


# ---------------------------------------------------------------------- public kernels

cdef void _project_input(_cells.Cells cells, floating probe, object x, bint step, int d,
                         int G, int threads) except *:
    """Cell d's gates = b + U x_t for every row of layer 0's input x: one GEMM for dense
    x, a gather of U's columns for token ids. x is (T, B, D) or ids (T, B) for a
    sequence, (B, D) or ids (B,) for a ``step``."""
    cdef const floating[:, :, ::1] x3
    cdef const floating[:, ::1] x2
    cdef const int64_t[:, ::1] ids2
    cdef const int64_t[::1] ids1
    cdef const floating* dense = NULL
    cdef const int64_t* ids = NULL
    cdef int D = cells.arrays["U"][d].shape[1], N
    if x.ndim == (1 if step else 2):
        if step:
            ids1 = x
            ids, N = &ids1[0], ids1.shape[0]
        else:
            ids2 = x
            ids, N = &ids2[0, 0], ids2.shape[0] * ids2.shape[1]
        with nogil:
            _gather(at(cells, F_U, d, probe), at(cells, F_B, d, probe), ids, N, D,
                    at(cells, F_GATES, d, probe), G)
        return
    if step:
        x2 = x
        dense, N = &x2[0, 0], x2.shape[0]
    else:
        x3 = x
        dense, N = &x3[0, 0, 0], x3.shape[0] * x3.shape[1]
    with nogil:
        _project(at(cells, F_U, d, probe), at(cells, F_B, d, probe), dense, N, D,
                 at(cells, F_GATES, d, probe), G, threads)


cdef void _input_grads(_cells.Cells cells, floating probe, object x, int d, int G,
                       int threads) except *:
    """Cell d's dU and db from its dL/da_t, in time order, and layer 0's input x: one
    GEMM for dense x, a scatter-add into dU's columns for token ids (dL/da_t e_i^T adds
    dL/da_t to column i)."""
    cdef const floating[:, :, ::1] dense
    cdef const int64_t[:, ::1] ids
    cdef int D = cells.arrays["U"][d].shape[1], N = x.shape[0] * x.shape[1], r
    cdef Py_ssize_t col, j
    cdef floating* da = at(cells, F_DA, d, probe)
    cdef floating* dU = at(cells, F_DU, d, probe)
    cdef const int64_t* cols
    if x.ndim == 2:
        ids = x
        cols = &ids[0, 0]
        with nogil:
            for j in range(<Py_ssize_t>G * D):
                dU[j] = 0
            for r in range(N):
                col = cols[r]
                for j in range(G):
                    dU[j * D + col] += da[r * G + j]
    else:
        dense = x
        with nogil:
            threaded_gemm(threads, Trans, NoTrans, G, D, N, 1, da, G, &dense[0, 0, 0], D,
                          0, dU, D)
    with nogil:
        threaded_sum_rows(threads, da, N, G, at(cells, F_DB, d, probe))


def stack_forward(_cells.Cells cells,
                  x,                                  # IN  (T, B, D), or (T, B) token ids
                  const floating[:, :, ::1] h0,       # IN  (n, B, H), may be h_T
                  const floating[:, :, ::1] c0,       # IN  (n, B, H), LSTM; may be c_T
                  const floating[:, ::1] V,           # IN  (O, dirs H)
                  const floating[::1] c,              # IN  (O,)
                  floating[:, :, ::1] o,              # OUT (T, B, O)
                  floating[:, :, ::1] h_T,            # OUT (n, B, H)
                  floating[:, :, ::1] c_T,            # OUT (n, B, H), LSTM
                  int threads=1):
    """Forward pass of a stack; the buffers of ``cells`` are filled.

    ``threads``: as ``pass_threads`` says (more than one only with BLAS limited to one
    thread for the call)."""
    cdef int T = x.shape[0], B = x.shape[1], H = h0.shape[2]
    cdef int O = V.shape[0], d, G = cells.arrays["W"][0].shape[0]
    cdef floating probe = 0
    _check(cells, sizeof(floating), threads)
    for d in range(cells.dirs):
        _project_input(cells, probe, x, False, d, G, threads)
        if d == 1:
            reverse_time(at(cells, F_GATES, d, probe), T, B * G)
    with nogil:
        _layers_forward(cells, probe, &h0[0, 0, 0], &c0[0, 0, 0], &V[0, 0], &c[0],
                        &o[0, 0, 0], &h_T[0, 0, 0], &c_T[0, 0, 0], T, B, H, O, threads)


def stack_backward(_cells.Cells cells,
                   x,                                 # IN  (T, B, D), or (T, B) token ids
                   const floating[:, ::1] V,          # IN  (O, dirs H)
                   const floating[:, :, ::1] do,      # IN  (T, B, O)
                   floating[:, ::1] dV,               # OUT (O, dirs H)
                   floating[::1] dc,                  # OUT (O,)
                   floating[:, :, ::1] dh0,           # OUT (n, B, H)
                   floating[:, :, ::1] dc0,           # OUT (n, B, H), LSTM
                   int threads=1):
    """BPTT through a stack, after its forward pass and the loss; ``threads`` as for
    ``stack_forward``."""
    cdef int T = x.shape[0], B = x.shape[1], H = dh0.shape[2]
    cdef int O = V.shape[0], d, G = cells.arrays["W"][0].shape[0]
    cdef floating probe = 0
    _check(cells, sizeof(floating), threads)
    with nogil:
        _layers_backward(cells, probe, &V[0, 0], &do[0, 0, 0], &dV[0, 0], &dc[0],
                         &dh0[0, 0, 0], &dc0[0, 0, 0], T, B, H, O, threads)
    for d in range(cells.dirs):
        _input_grads(cells, probe, x, d, G, threads)


def stack_step(_cells.Cells cells,
               x_t,                                   # IN  (B, D), or (B,) token ids
               const floating[:, :, ::1] h0,          # IN  (n, B, H), may be h_out
               const floating[:, :, ::1] c0,          # IN  (n, B, H), LSTM; may be c_out
               const floating[:, ::1] V,              # IN  (O, H)
               const floating[::1] c,                 # IN  (O,)
               floating[:, ::1] o_out,                # OUT (B, O)
               floating[:, :, ::1] h_out,             # OUT (n, B, H)
               floating[:, :, ::1] c_out):            # OUT (n, B, H), LSTM
    """One streaming step of a one-direction stack: its forward pass over x_t.

    As ``stack_forward`` with T = 1, on the buffers of a workspace for T = 1, but the
    outputs go straight to o_out, h_out and c_out, which may be h0 and c0 (each cell
    copies its h0 and c0 before it writes). Returns STEP_OK, STEP_BAD_INPUT when a dense
    x_t is not finite (nothing is written), or STEP_BAD_OUTPUT.
    """
    cdef int B = x_t.shape[0], H = h0.shape[2], O = V.shape[0]
    cdef int G = cells.arrays["W"][0].shape[0]
    cdef const floating[:, ::1] dense
    cdef floating probe = 0
    _check_step(cells, sizeof(floating))
    if x_t.ndim == 2:
        dense = x_t
        if not all_finite(&dense[0, 0], B * dense.shape[1]):
            return STEP_BAD_INPUT
    _project_input(cells, probe, x_t, True, 0, G, 1)
    with nogil:
        _layers_forward(cells, probe, &h0[0, 0, 0], &c0[0, 0, 0], &V[0, 0], &c[0],
                        &o_out[0, 0], &h_out[0, 0, 0], &c_out[0, 0, 0], 1, B, H, O, 1)
    return STEP_OK if all_finite(&o_out[0, 0], B * O) else STEP_BAD_OUTPUT


def _check(_cells.Cells cells, size_t itemsize, int threads=1):
    """The kernels read ``cells``' addresses as the dtype of their memoryviews, and run
    on a number of threads that the stack allows (see ``_max_threads``)."""
    if cells.dtype.itemsize != itemsize:
        raise TypeError(f"cells: expected arrays of {itemsize}-byte floats, got "
                        f"{cells.dtype}")
    if threads < 1 or threads > _max_threads(cells):
        raise ValueError(f"threads: expected 1 to {_max_threads(cells)} for this stack, "
                         f"got {threads}")


def _check_step(_cells.Cells cells, size_t itemsize):
    """As ``_check``, and a step runs one direction (a reverse one needs the sequence)."""
    _check(cells, itemsize)
    if cells.dirs != 1:
        raise ValueError("cells: a streaming step runs a one-direction stack, got a "
                         "bidirectional one")
