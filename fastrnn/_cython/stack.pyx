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
"""
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t, intptr_t

from cython cimport floating

from ._blas cimport NoTrans, Trans, gemm
from ._loops cimport (activate, add_rows_times, all_finite, copy, delta, fill_rows,
                      sum_rows)
from ._vecmath cimport sigmoid, tanh

import numpy as np

from fastrnn import backends

cdef enum:
    LSTM = 3
    GRU = 4

CELLS = {"tanh": 0, "sigmoid": 1, "relu": 2, "lstm": LSTM, "gru": GRU}

cdef int STEP_OK = backends.STEP_OK
cdef int STEP_BAD_INPUT = backends.STEP_BAD_INPUT
cdef int STEP_BAD_OUTPUT = backends.STEP_BAD_OUTPUT

# Per-cell fields of a Cells object, in its address table; Y and dY are per layer.
FIELDS = ("U", "W", "b", "b_hh", "gates", "aux", "h", "kappa", "da", "dah",
          "dU", "dW", "db", "db_hh", "Y", "dY")
cdef enum Field:
    F_U, F_W, F_B, F_BHH, F_GATES, F_AUX, F_H, F_KAPPA, F_DA, F_DAH, F_DU, F_DW, F_DB, \
        F_DBHH, F_Y, F_DY, NFIELDS


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
        self.cell = CELLS[cell]
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
                             floating* h_next, Py_ssize_t H) noexcept nogil:
    """One row: g (4H) a_t -> i, f, g, og; c_t = f c_{t-1} + i g; h_t = og tanh(c_t)."""
    cdef Py_ssize_t k
    for k in range(2 * H):
        g[k] = sigmoid(g[k])
    for k in range(2 * H, 3 * H):
        g[k] = tanh(g[k])
    for k in range(3 * H, 4 * H):
        g[k] = sigmoid(g[k])
    for k in range(H):
        c_next[k] = g[H + k] * c_prev[k] + g[k] * g[2 * H + k]
    for k in range(H):
        h_next[k] = g[3 * H + k] * tanh(c_next[k])


cdef void _lstm_cell_backward(const floating* g, const floating* c_prev, const floating* c,
                              const floating* kappa, floating* dcell, floating* da,
                              Py_ssize_t H) noexcept nogil:
    """One row of BPTT; dcell: f_{t+1} dL/dc_{t+1} on entry, f_t dL/dc_t on exit."""
    cdef Py_ssize_t k
    cdef floating one = 1
    cdef const floating* i = g
    cdef const floating* f = g + H
    cdef const floating* gg = g + 2 * H
    cdef const floating* og = g + 3 * H
    for k in range(H):
        da[3 * H + k] = tanh(c[k])
    for k in range(H):
        dcell[k] = kappa[k] * og[k] * (one - da[3 * H + k] * da[3 * H + k]) + dcell[k]
    for k in range(H):
        da[3 * H + k] = og[k] * (one - og[k]) * (kappa[k] * da[3 * H + k])
    for k in range(H):
        da[k] = i[k] * (one - i[k]) * (dcell[k] * gg[k])
    for k in range(H):
        da[H + k] = f[k] * (one - f[k]) * (dcell[k] * c_prev[k])
    for k in range(H):
        da[2 * H + k] = (one - gg[k] * gg[k]) * (dcell[k] * i[k])
    for k in range(H):
        dcell[k] = dcell[k] * f[k]


cdef void _gru_cell_forward(floating* g, const floating* ah_n, const floating* h_prev,
                            floating* h_next, Py_ssize_t H) noexcept nogil:
    """One row: g (3H) pre-activations -> r, z, n; h_t = (1 - z) n + z h_{t-1}."""
    cdef Py_ssize_t k
    cdef floating one = 1
    for k in range(2 * H):
        g[k] = sigmoid(g[k])
    for k in range(H):
        g[2 * H + k] = tanh(g[2 * H + k] + g[k] * ah_n[k])
    for k in range(H):
        h_next[k] = (one - g[H + k]) * g[2 * H + k] + g[H + k] * h_prev[k]


cdef void _gru_cell_backward(const floating* g, const floating* ah_n, const floating* h_prev,
                             const floating* kappa, floating* dah, floating* dax_n,
                             Py_ssize_t H) noexcept nogil:
    """One row of BPTT: dah (3H) the hidden side, dax_n (H) the candidate's input side."""
    cdef Py_ssize_t k
    cdef floating one = 1
    cdef const floating* r = g
    cdef const floating* z = g + H
    cdef const floating* n = g + 2 * H
    for k in range(H):
        dax_n[k] = kappa[k] * (one - z[k]) * (one - n[k] * n[k])
    for k in range(H):
        dah[k] = dax_n[k] * ah_n[k] * r[k] * (one - r[k])
    for k in range(H):
        dah[H + k] = kappa[k] * (h_prev[k] - n[k]) * z[k] * (one - z[k])
    for k in range(H):
        dah[2 * H + k] = r[k] * dax_n[k]


# ------------------------------------------------------------------------- one cell

cdef void _cell_forward(int cell, const floating* W, const floating* b_hh,
                        const floating* h0, const floating* c0, floating* gates,
                        floating* aux, floating* h, int T, int B, int H,
                        int G) noexcept nogil:
    """The time loop of one cell; gates (T, B, G) holds b + U x_t on entry."""
    cdef Py_ssize_t t, r, k, BH = B * H, BG = B * G
    cdef floating* g
    copy(h0, h, BH)                              # h0 may be h_T: copied first
    if cell == LSTM:
        copy(c0, aux, BH)
    for t in range(T):
        g = gates + t * BG
        if cell == GRU:                          # ah_t = b_hh + W h_{t-1}, r z into gates
            for r in range(B):
                for k in range(2 * H):
                    g[r * G + k] += b_hh[k]
            gemm(NoTrans, Trans, B, 2 * H, H, 1, h + t * BH, H, W, H, 1, g, G)
            fill_rows(aux + t * BH, B, b_hh + 2 * H, H)
            add_rows_times(h + t * BH, B, H, W + 2 * H * H, Trans, H, aux + t * BH)
            for r in range(B):
                _gru_cell_forward(g + r * G, aux + t * BH + r * H, h + t * BH + r * H,
                                  h + (t + 1) * BH + r * H, H)
        else:
            add_rows_times(h + t * BH, B, H, W, Trans, G, g)
            if cell == LSTM:
                for r in range(B):
                    _lstm_cell_forward(g + r * G, aux + t * BH + r * H,
                                       aux + (t + 1) * BH + r * H,
                                       h + (t + 1) * BH + r * H, H)
            else:
                activate(cell, g, h + (t + 1) * BH, BH)


cdef void _cell_backward(int cell, const floating* W, const floating* gates,
                         const floating* aux, const floating* h, floating* kappa,
                         floating* da, floating* dah, floating* dW, floating* db_hh,
                         floating* dh0, floating* dc0, int T, int B, int H,
                         int G) noexcept nogil:
    """BPTT through one cell, kappa (T, B, H) holding dL/dh_t from above on entry.

    Leaves dL/da_t (for the GRU the input side) in da, in reading order; fills dW, dh0
    and the GRU's db_hh or the LSTM's dc0 (whose dL/dc_t runs through dah's first rows).
    """
    cdef Py_ssize_t t, r, k, BH = B * H, BG = B * G
    cdef floating tmp
    if cell == LSTM:
        for k in range(BH):
            dah[k] = 0
    for t in range(T - 1, -1, -1):
        if t < T - 1:                            # kappa_t += W^T dL/da_{t+1} (+ GRU's z)
            if cell == GRU:
                for r in range(B):
                    _add_product(kappa + t * BH + r * H, gates + (t + 1) * BG + r * G + H,
                                 kappa + (t + 1) * BH + r * H, H)
            add_rows_times(da + (t + 1) * BG, B, G, W, NoTrans, H, kappa + t * BH)
        if cell == LSTM:
            for r in range(B):
                _lstm_cell_backward(gates + t * BG + r * G, aux + t * BH + r * H,
                                    aux + (t + 1) * BH + r * H, kappa + t * BH + r * H,
                                    dah + r * H, da + t * BG + r * G, H)
        elif cell == GRU:
            for r in range(B):
                _gru_cell_backward(gates + t * BG + r * G, aux + t * BH + r * H,
                                   h + t * BH + r * H, kappa + t * BH + r * H,
                                   da + t * BG + r * G, dah + t * BH + r * H, H)
        else:
            delta(cell, gates + t * BG, h + (t + 1) * BH, kappa + t * BH, da + t * BG, BH)
    gemm(NoTrans, NoTrans, B, H, G, 1, da, G, W, H, 0, dh0, H)    # W^T dL/da_1
    if cell == GRU:                              # + z_1 kappa_1
        for r in range(B):
            _add_product(dh0 + r * H, gates + r * G + H, kappa + r * H, H)
    elif cell == LSTM:
        copy(dah, dc0, BH)                       # f_1 dL/dc_1
    gemm(Trans, NoTrans, G, H, T * B, 1, da, G, h, H, 0, dW, H)   # sum_t da_t h_{t-1}^T
    if cell == GRU:
        sum_rows(da, T * B, G, db_hh)
        for t in range(T):                       # da becomes the input side dL/dax
            for r in range(B):
                for k in range(H):
                    tmp = da[t * BG + r * G + 2 * H + k]
                    da[t * BG + r * G + 2 * H + k] = dah[t * BH + r * H + k]
                    dah[t * BH + r * H + k] = tmp


# --------------------------------------------------------------------------- stacks

cdef void _project(const floating* U, const floating* b, const floating* x, int N, int D,
                   floating* gates, int G) noexcept nogil:
    """gates = X U^T + b for N rows: the bias rows, then one GEMM onto them."""
    fill_rows(gates, N, b, G)
    gemm(NoTrans, Trans, N, G, D, 1, x, D, U, D, 1, gates, G)


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
                          int H, int O) noexcept nogil:
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
                     _at(cells, F_Y, k - 1, probe), T * B, K, gates, G)
            if d == 1:
                _reverse_time(gates, T, B * G)
        _cell_forward(cells.cell, _at(cells, F_W, i, probe), _at(cells, F_BHH, i, probe),
                      h0 + i * BH, c0 + i * BH, gates, _at(cells, F_AUX, i, probe), h, T,
                      B, H, G)
        copy(h + T * BH, h_T + i * BH, BH)
        if cells.cell == LSTM:
            copy(_at(cells, F_AUX, i, probe) + T * BH, c_T + i * BH, BH)
        if dirs == 2:                            # Y[t, :, dH:(d+1)H], back in time order
            Y = _at(cells, F_Y, k, probe)
            for t in range(T):
                for r in range(B):
                    copy(h + ((t + 1) if d == 0 else (T - t)) * BH + r * H,
                         Y + (t * B + r) * K + d * H, H)
    fill_rows(o, T * B, c, O)
    gemm(NoTrans, Trans, T * B, O, K, 1, _at(cells, F_Y, n // dirs - 1, probe), K, V, K, 1,
         o, O)


cdef void _layers_backward(Cells cells, floating probe, const floating* V,
                           const floating* do, floating* dV, floating* dc, floating* dh0,
                           floating* dc0, int T, int B, int D, int H,
                           int O) noexcept nogil:
    """BPTT from the output layer down; layer 0's dU and db are left to the caller."""
    cdef int i, k, d, r, t, dirs = cells.dirs, n = cells.n, K = dirs * H
    cdef int L = n // dirs, N = T * B
    cdef int G = H * (4 if cells.cell == LSTM else 3 if cells.cell == GRU else 1)
    cdef Py_ssize_t BH = B * H
    cdef floating* kappa
    cdef floating* da
    cdef floating* dY
    cdef const floating* Y_top = _at(cells, F_Y, L - 1, probe)
    gemm(NoTrans, NoTrans, N, K, O, 1, do, O, V, K, 0, _at(cells, F_DY, L - 1, probe), K)
    gemm(Trans, NoTrans, O, K, N, 1, do, O, Y_top, K, 0, dV, K)
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
                       _at(cells, F_DBHH, i, probe), dh0 + i * BH, dc0 + i * BH, T, B, H, G)
        if d == 1:
            _reverse_time(da, T, B * G)          # into time order, for dU and dL/dx
        if k > 0:                                # dU, db and dL/dY of the layer below
            gemm(Trans, NoTrans, G, K, N, 1, da, G, _at(cells, F_Y, k - 1, probe), K, 0,
                 _at(cells, F_DU, i, probe), K)
            sum_rows(da, N, G, _at(cells, F_DB, i, probe))
            gemm(NoTrans, NoTrans, N, K, G, 1, da, G, _at(cells, F_U, i, probe), K,
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
                        floating[:, :, ::1] c_T):         # OUT (n, B, H), LSTM
    """Forward pass of a stack for dense inputs; the buffers of ``cells`` are filled."""
    cdef int T = x.shape[0], B = x.shape[1], D = x.shape[2], H = h0.shape[2]
    cdef int O = V.shape[0], d, G = cells.arrays["W"][0].shape[0]
    cdef floating probe = 0
    _check(cells, sizeof(floating))
    with nogil:
        for d in range(cells.dirs):
            _project(_at(cells, F_U, d, probe), _at(cells, F_B, d, probe), &x[0, 0, 0],
                     T * B, D, _at(cells, F_GATES, d, probe), G)
            if d == 1:
                _reverse_time(_at(cells, F_GATES, d, probe), T, B * G)
        _layers_forward(cells, probe, &h0[0, 0, 0], &c0[0, 0, 0], &V[0, 0], &c[0],
                        &o[0, 0, 0], &h_T[0, 0, 0], &c_T[0, 0, 0], T, B, D, H, O)


def stack_forward_ids(Cells cells,
                      const int64_t[:, ::1] x,            # IN  (T, B) token ids in [0, D)
                      const floating[:, :, ::1] h0,
                      const floating[:, :, ::1] c0,
                      const floating[:, ::1] V,
                      const floating[::1] c,
                      floating[:, :, ::1] o,
                      floating[:, :, ::1] h_T,
                      floating[:, :, ::1] c_T):
    """Forward pass of a stack for token ids: U x_t is column x_t of U, gathered."""
    cdef int T = x.shape[0], B = x.shape[1], H = h0.shape[2], O = V.shape[0]
    cdef int D = cells.arrays["U"][0].shape[1], G = cells.arrays["W"][0].shape[0]
    cdef int d
    cdef floating probe = 0
    _check(cells, sizeof(floating))
    with nogil:
        for d in range(cells.dirs):
            _gather(_at(cells, F_U, d, probe), _at(cells, F_B, d, probe), &x[0, 0], T * B,
                    D, _at(cells, F_GATES, d, probe), G)
            if d == 1:
                _reverse_time(_at(cells, F_GATES, d, probe), T, B * G)
        _layers_forward(cells, probe, &h0[0, 0, 0], &c0[0, 0, 0], &V[0, 0], &c[0],
                        &o[0, 0, 0], &h_T[0, 0, 0], &c_T[0, 0, 0], T, B, D, H, O)


def stack_backward_dense(Cells cells,
                         const floating[:, :, ::1] x,     # IN  (T, B, D)
                         const floating[:, ::1] V,        # IN  (O, dirs H)
                         const floating[:, :, ::1] do,    # IN  (T, B, O)
                         floating[:, ::1] dV,             # OUT (O, dirs H)
                         floating[::1] dc,                # OUT (O,)
                         floating[:, :, ::1] dh0,         # OUT (n, B, H)
                         floating[:, :, ::1] dc0):        # OUT (n, B, H), LSTM
    """BPTT through a stack for dense inputs, after its forward pass and the loss."""
    cdef int T = x.shape[0], B = x.shape[1], D = x.shape[2], H = dh0.shape[2]
    cdef int O = V.shape[0], d, G = cells.arrays["W"][0].shape[0]
    cdef floating probe = 0
    cdef floating* da
    _check(cells, sizeof(floating))
    with nogil:
        _layers_backward(cells, probe, &V[0, 0], &do[0, 0, 0], &dV[0, 0], &dc[0],
                         &dh0[0, 0, 0], &dc0[0, 0, 0], T, B, D, H, O)
        for d in range(cells.dirs):
            da = _at(cells, F_DA, d, probe)
            gemm(Trans, NoTrans, G, D, T * B, 1, da, G, &x[0, 0, 0], D, 0,
                 _at(cells, F_DU, d, probe), D)
            sum_rows(da, T * B, G, _at(cells, F_DB, d, probe))


def stack_backward_ids(Cells cells,
                       const int64_t[:, ::1] x,           # IN  (T, B) token ids in [0, D)
                       const floating[:, ::1] V,
                       const floating[:, :, ::1] do,
                       floating[:, ::1] dV,
                       floating[::1] dc,
                       floating[:, :, ::1] dh0,
                       floating[:, :, ::1] dc0):
    """BPTT for token ids: dL/da_t e_i^T adds da_t to column i of dU (a scatter)."""
    cdef int T = x.shape[0], B = x.shape[1], H = dh0.shape[2], O = V.shape[0]
    cdef int D = cells.arrays["U"][0].shape[1], G = cells.arrays["W"][0].shape[0]
    cdef int d, t, r, j
    cdef Py_ssize_t col
    cdef floating probe = 0
    cdef floating* da
    cdef floating* dU
    _check(cells, sizeof(floating))
    with nogil:
        _layers_backward(cells, probe, &V[0, 0], &do[0, 0, 0], &dV[0, 0], &dc[0],
                         &dh0[0, 0, 0], &dc0[0, 0, 0], T, B, D, H, O)
        for d in range(cells.dirs):
            da, dU = _at(cells, F_DA, d, probe), _at(cells, F_DU, d, probe)
            for j in range(G * D):
                dU[j] = 0
            for t in range(T):
                for r in range(B):
                    col = x[t, r]
                    for j in range(G):
                        dU[j * D + col] += da[(t * B + r) * G + j]
            sum_rows(da, T * B, G, _at(cells, F_DB, d, probe))


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
    _layers_forward(cells, probe, h0, c0, V, c, o_out, h_out, c_out, 1, B, D, H, O)
    return STEP_OK if all_finite(o_out, B * O) else STEP_BAD_OUTPUT


def _check(Cells cells, size_t itemsize):
    """The kernels read ``cells``' addresses as the dtype of their memoryviews."""
    if cells.dtype.itemsize != itemsize:
        raise TypeError(f"cells: expected arrays of {itemsize}-byte floats, got "
                        f"{cells.dtype}")


def _check_step(Cells cells, size_t itemsize):
    """As ``_check``, and a step runs one direction (a reverse one needs the sequence)."""
    _check(cells, itemsize)
    if cells.dirs != 1:
        raise ValueError("cells: a streaming step runs a one-direction stack, got a "
                         "bidirectional one")
