"""LSTM and GRU cells compiled with Numba: one layer in one direction, the pieces that
``fastrnn._numba.stack`` runs for every cell of a network.

Legend: T time steps, B batch, D input size, H hidden size, O output size.
G is the height of the stacked gate weights: 4H for the LSTM, 3H for the GRU.

The equations, gate orders and array names are those of ``fastrnn.reference.lstm`` and
``fastrnn.reference.gru``; tests/test_gated_kernels.py checks them against those entry by
entry. As in ``fastrnn._numba.rnn``, every kernel is a pure function of IN arrays that
writes OUT arrays and allocates nothing, and only the recurrence through W is sequential:

    forward   A = X U^T + b (``rnn.project_dense``, or a gather), into ``gates``
              for t: gates_t += W h_{t-1}; the cell's update    (lstm/gru_recurrence)
    backward  kappa holds dL/dh_t from outside the recurrence (V^T dL/do_t, or the
              layer above's) on entry;
              for t = T .. 1: kappa_t += W^T da_{t+1} (+ the GRU's direct path);
                              the cell's elementwise backward      (lstm/gru_layer_bptt)
              dW = dA^T H_prev, dU = dA^T X, dV = dO^T H (one GEMM each, or a scatter)

Arrays (time is 0-based, as in the references: ``gates[t]`` holds step t + 1, the
states keep the derivation's index, ``h[t]`` = h_t):

    LSTM                                   GRU
    U (4H, D)  W (4H, H)  b (4H,)          U (3H, D)  W (3H, H)  b (3H,)  b_hh (3H,)
    gate order i, f, g, og                 gate order r, z, n
    gates (T, B, 4H) i, f, g, og           gates (T, B, 3H) r, z, n
    cell  (T + 1, B, H), cell[0] = c0      ah_n  (T, B, H) = W_n h_{t-1} + b_hn
    h     (T + 1, B, H), h[0] = h0         h     (T + 1, B, H), h[0] = h0
    kappa (T, B, H) = dL/dh_t              kappa (T, B, H) = dL/dh_t
    da    (T, B, 4H) = dL/da_t             da    (T, B, 3H) = dL/dax_t (input side)
    dcell (B, H) scratch                   dah_n (T, B, H) = dL/dah_n = r_t * dL/dax_n

Every float array is of one dtype (float32 or float64; Numba compiles one specialisation
per dtype) and C-contiguous; token ids are an integer (T, B) array. h0 may be h[T] and c0
cell[T] of the same buffers (carrying the state over), because they are copied first.

The products inside the time loop go through BLAS when ``blas`` is true and through
plain loops otherwise; the caller picks (``fastrnn._numba.kernels``: in a float32
training step at T = 25, D = O = 64 on the development machine the loops won up to
B * H * H of about 4,096 and BLAS from about 16,384 on). Numba's np.dot cannot
accumulate into its output, so the forward product W h_{t-1} goes through scratch of
B * G entries and the backward product W^T da_{t+1} through the first B * H entries of
da[t] (free until the step writes it). The looped products add rows of a matrix
(``_add_matvec_rows``), which vectorises: the backward ones rows of W, the forward ones
rows of W^T, which the recurrences write into their WT (H, G) scratch.
"""
import numpy as np

from .._config import jit
from .._vec import flat as _flat
from .rnn import _add, _add_matvec_rows, _copy, _sum_rows, _transpose
from .vecmath import sigmoid, tanh

__all__ = ["lstm_recurrence", "lstm_layer_bptt", "gru_recurrence", "gru_layer_bptt",
           "recurrent_grad", "output_grads", "input_grads_dense", "input_grads_ids"]


# ------------------------------------------------------------------ shared pieces
# Inner loops run over 1-D views: LLVM vectorises those. Each loop touches few arrays,
# so that the runtime alias checks LLVM needs before vectorising stay few.

@jit
def _add_sum(a, b, c):
    """a += b + c, elementwise over 1-D arrays of one size."""
    for k in range(a.size):
        a[k] += b[k] + c[k]


@jit
def _set_sum(a, b, out):
    """out = a + b, elementwise over 1-D arrays of one size."""
    for k in range(out.size):
        out[k] = a[k] + b[k]


@jit
def _add_product(a, b, c):
    """a += b * c, elementwise over 1-D arrays of one size."""
    for k in range(a.size):
        a[k] += b[k] * c[k]


@jit
def _scatter(x, da, dU):
    """dU = sum_t dL/da_t e_{x_t}^T: every row of da adds to column x[t, r] of dU.

    x (T, B) ids, da (T, B, G), dU (G, D).
    """
    T, B = x.shape
    G = dU.shape[0]
    dU[:] = 0.0
    for t in range(T):
        for r in range(B):
            row, col = da[t, r], x[t, r]
            for i in range(G):
                dU[i, col] += row[i]


@jit
def _row_scratch(a, B, H):
    """The first B * H entries of a C-contiguous array, as a (B, H) view."""
    return _flat(a)[:B * H].reshape(B, H)


@jit
def recurrent_grad(da, h, dW):
    """dW = dA^T H_prev = sum_t dL/da_t h_{t-1}^T, one GEMM; h (T + 1, B, H)."""
    T, B, G = da.shape
    H = h.shape[2]
    np.dot(da.reshape(T * B, G).T, h[:T].reshape(T * B, H), dW)


@jit
def output_grads(do, states, dV, dc):
    """dV = dO^T S and dc = sum_t dL/do_t; states (T, B, K) are h_1 .. h_T."""
    T, B, O = do.shape
    do2 = do.reshape(T * B, O)
    np.dot(do2.T, states.reshape(T * B, states.shape[2]), dV)
    _sum_rows(do2, dc)


@jit
def input_grads_dense(x, da, dU, db):
    """dU = dA^T X (one GEMM) and db = sum_t dL/da_t."""
    T, B, D = x.shape
    G = da.shape[2]
    da2 = da.reshape(T * B, G)
    np.dot(da2.T, x.reshape(T * B, D), dU)
    _sum_rows(da2, db)


@jit
def input_grads_ids(x, da, dU, db):
    """dU by a scatter of dA into the columns x_t, and db = sum_t dL/da_t."""
    T, B = x.shape
    _scatter(x, da, dU)
    _sum_rows(da.reshape(T * B, da.shape[2]), db)


# ------------------------------------------------------------------------------ LSTM

@jit
def _lstm_cell_forward(g, c_prev, c_next, h_next):
    """One row of one step: the gates, c_t and h_t.

    g (4H,) IN a_t, OUT i_t, f_t, g_t, og_t; c_prev (H,) IN c_{t-1};
    c_next, h_next (H,) OUT c_t = f_t * c_{t-1} + i_t * g_t, h_t = og_t * tanh(c_t).
    """
    H = c_prev.size
    gif = g[:2 * H]
    for k in range(2 * H):
        gif[k] = sigmoid(gif[k])                        # i_t, f_t
    gg = g[2 * H:3 * H]
    for k in range(H):
        gg[k] = tanh(gg[k])                             # g_t
    og = g[3 * H:]
    for k in range(H):
        og[k] = sigmoid(og[k])                          # og_t
    i, f = g[:H], g[H:2 * H]
    for k in range(H):
        c_next[k] = f[k] * c_prev[k] + i[k] * gg[k]
    for k in range(H):
        h_next[k] = og[k] * tanh(c_next[k])


@jit
def lstm_recurrence(W, h0, c0, gates, cell, h, scratch, blas, WT):
    """for t: a_t = gates_t + W h_{t-1}; the gates, c_t and h_t.

    gates (T, B, 4H) holds b + U x_t on entry and the activated gates on exit. scratch
    holds at least B * 4H entries: W h_{t-1} goes there through BLAS (blas true), and
    WT (H, 4H) receives W^T for the looped product (blas false).
    """
    T, B, G = gates.shape
    _copy(h0, h[0])                              # h0 may be h[T], c0 cell[T]: copy first
    _copy(c0, cell[0])
    if not blas:
        _transpose(W, WT)
    for t in range(T):
        if blas:
            product = _row_scratch(scratch, B, G)
            np.dot(h[t], W.T, product)
            _add(gates[t], product)
        else:
            _add_matvec_rows(WT, h[t], gates[t])
        for r in range(B):
            _lstm_cell_forward(gates[t, r], cell[t, r], cell[t + 1, r], h[t + 1, r])


@jit
def _lstm_cell_backward(g, c_prev, c, kappa, dcell, da):
    """One row of one step of BPTT through c_t, h_t and the gates.

    IN  g (4H,) i_t, f_t, g_t, og_t; c_prev, c (H,) c_{t-1}, c_t; kappa (H,) dL/dh_t.
    IN/OUT dcell (H,): f_{t+1} * dL/dc_{t+1} on entry, f_t * dL/dc_t on exit.
    OUT da (4H,) dL/da_t.
    """
    H = c.size
    one = g.dtype.type(1.0)                              # keeps float32 math in float32
    i, f, gg, og = g[:H], g[H:2 * H], g[2 * H:3 * H], g[3 * H:]
    da_i, da_f, da_g, da_o = da[:H], da[H:2 * H], da[2 * H:3 * H], da[3 * H:]
    for k in range(H):
        da_o[k] = tanh(c[k])                             # tanh(c_t), kept here a moment
    for k in range(H):                                   # dL/dc_t
        dcell[k] = kappa[k] * og[k] * (one - da_o[k] * da_o[k]) + dcell[k]
    for k in range(H):                                   # sigmoid'(a_o) kappa_t tanh(c_t)
        da_o[k] = og[k] * (one - og[k]) * (kappa[k] * da_o[k])
    for k in range(H):                                   # sigmoid'(a_i) * dL/dc_t g_t
        da_i[k] = i[k] * (one - i[k]) * (dcell[k] * gg[k])
    for k in range(H):                                   # sigmoid'(a_f) * dL/dc_t c_{t-1}
        da_f[k] = f[k] * (one - f[k]) * (dcell[k] * c_prev[k])
    for k in range(H):                                   # tanh'(a_g) * dL/dc_t i_t
        da_g[k] = (one - gg[k] * gg[k]) * (dcell[k] * i[k])
    for k in range(H):                                   # f_t * dL/dc_t, to step t - 1
        dcell[k] *= f[k]


@jit
def lstm_layer_bptt(W, gates, cell, h, kappa, da, dcell, dh0, dc0, blas):
    """BPTT through one LSTM layer, given the gradient that reaches its states.

    IN/OUT kappa (T, B, H): dL/dh_t from outside the recurrence (V^T dL/do_t, or the
    layer above's) on entry, the whole kappa_t on exit. OUT da (T, B, 4H) = dL/da_t,
    dh0 and dc0 (B, H). Scratch dcell (B, H).
    """
    T, B, G = gates.shape
    H = G // 4
    dcell[:] = 0.0                               # nothing comes back from step T + 1
    for t in range(T - 1, -1, -1):
        if t < T - 1:                            # kappa_t += W^T dL/da_{t+1}
            if blas:
                scratch = _row_scratch(da[t], B, H)   # free until the step writes da[t]
                np.dot(da[t + 1], W, scratch)
                _add(kappa[t], scratch)
            else:
                _add_matvec_rows(W, da[t + 1], kappa[t])
        for r in range(B):
            _lstm_cell_backward(gates[t, r], cell[t, r], cell[t + 1, r], kappa[t, r],
                                dcell[r], da[t, r])
    np.dot(da[0], W, dh0)                        # dL/dh_0 = W^T dL/da_1
    _copy(dcell, dc0)                            # dL/dc_0 = f_1 * dL/dc_1


# ------------------------------------------------------------------------------- GRU

@jit
def _gru_cell_forward(g, ah_n, h_prev, h_next):
    """One row of one step: the gates and h_t.

    g (3H,) IN [ax_r + ah_r, ax_z + ah_z, ax_n], OUT r_t, z_t, n_t; ah_n (H,) IN
    W_n h_{t-1} + b_hn; h_prev (H,) IN h_{t-1}; h_next (H,) OUT
    h_t = (1 - z_t) n_t + z_t h_{t-1}.
    """
    H = h_prev.size
    grz = g[:2 * H]
    for k in range(2 * H):
        grz[k] = sigmoid(grz[k])                        # r_t, z_t
    r, z, n = g[:H], g[H:2 * H], g[2 * H:]
    one = g.dtype.type(1.0)                             # keeps float32 math in float32
    for k in range(H):
        n[k] = tanh(n[k] + r[k] * ah_n[k])              # n_t = tanh(ax_n + r_t * ah_n)
    for k in range(H):
        h_next[k] = (one - z[k]) * n[k] + z[k] * h_prev[k]


@jit
def gru_recurrence(W, b_hh, h0, gates, ah_n, h, scratch, blas, WT):
    """for t: the hidden side ah_t = b_hh + W h_{t-1}; the gates and h_t.

    gates (T, B, 3H) holds the input side b + U x_t on entry and r, z, n on exit; the r
    and z blocks of ah_t are added into it, the n block goes to ah_n (T, B, H). As in
    ``lstm_recurrence``, W h_{t-1} goes through scratch (B * 3H entries) with BLAS, and
    WT (H, 3H) receives W_rz^T (H, 2H) and then W_n^T (H, H), each contiguous, for the
    looped product.
    """
    T, B, G = gates.shape
    H = G // 3
    _copy(h0, h[0])                              # h0 may be h[T]: copy first
    brz, bn = b_hh[:2 * H], b_hh[2 * H:]
    WT_rz = _flat(WT)[:2 * H * H].reshape(H, 2 * H)
    WT_n = _flat(WT)[2 * H * H:].reshape(H, H)
    if not blas:
        _transpose(W[:2 * H], WT_rz)
        _transpose(W[2 * H:], WT_n)
    for t in range(T):
        if blas:
            product = _row_scratch(scratch, B, G)
            np.dot(h[t], W.T, product)
            for r in range(B):                   # ax + (W h + b_hh), as the reference
                row = product[r]
                _add_sum(gates[t, r, :2 * H], row[:2 * H], brz)
                _set_sum(row[2 * H:], bn, ah_n[t, r])
        else:
            for r in range(B):
                grz = gates[t, r, :2 * H]
                _add(grz, brz)
                _add_matvec_rows(WT_rz, h[t, r:r + 1], grz.reshape(1, 2 * H))
                _copy(bn, ah_n[t, r])
            _add_matvec_rows(WT_n, h[t], ah_n[t])
        for r in range(B):
            _gru_cell_forward(gates[t, r], ah_n[t, r], h[t, r], h[t + 1, r])


@jit
def _gru_cell_backward(g, ah_n, h_prev, kappa, dah, dax_n):
    """One row of one step of BPTT through h_t and the gates.

    IN  g (3H,) r_t, z_t, n_t; ah_n (H,); h_prev (H,) h_{t-1}; kappa (H,) dL/dh_t.
    OUT dah (3H,) the hidden side dL/dah_t = [dL/dax_r, dL/dax_z, r_t * dL/dax_n];
        dax_n (H,) dL/dax_n.
    """
    H = h_prev.size
    one = g.dtype.type(1.0)                      # keeps float32 math in float32
    r, z, n = g[:H], g[H:2 * H], g[2 * H:]
    da_r, da_z, da_n = dah[:H], dah[H:2 * H], dah[2 * H:]
    for k in range(H):                           # dL/dn_t * tanh'(.)
        dax_n[k] = kappa[k] * (one - z[k]) * (one - n[k] * n[k])
    for k in range(H):                           # dL/dr_t = dL/dax_n * ah_n, * sigmoid'
        da_r[k] = dax_n[k] * ah_n[k] * r[k] * (one - r[k])
    for k in range(H):                           # dL/dz_t = kappa_t (h_{t-1} - n_t), *sig'
        da_z[k] = kappa[k] * (h_prev[k] - n[k]) * z[k] * (one - z[k])
    for k in range(H):                           # ah_n enters scaled by r_t
        da_n[k] = r[k] * dax_n[k]


@jit
def _gru_carry(kappa, z_next, kappa_next, from_w):
    """kappa += z_{t+1} * kappa_{t+1} + W^T dah_{t+1}, in the reference's order."""
    for k in range(kappa.size):
        kappa[k] += z_next[k] * kappa_next[k] + from_w[k]


@jit
def _swap(a, b):
    """Exchange the contents of two 1-D arrays of one size."""
    for k in range(a.size):
        a[k], b[k] = b[k], a[k]


@jit
def gru_layer_bptt(W, gates, ah_n, h, kappa, da, dah_n, dW, db_hh, dh0, blas):
    """BPTT through one GRU layer, given the gradient that reaches its states.

    IN/OUT kappa (T, B, H): dL/dh_t from outside the recurrence (V^T dL/do_t, or the
    layer above's) on entry, the whole kappa_t on exit. OUT da (T, B, 3H) = dL/dax_t,
    the input side; dah_n (T, B, H) = dL/dah_n; dW (3H, H), db_hh (3H,), dh0 (B, H).
    """
    T, B, G = gates.shape
    H = G // 3
    # In the time loop da holds the hidden side dL/dah_t (what W^T and dW need) and
    # dah_n holds dL/dax_n; the n blocks are exchanged after the loop.
    for t in range(T - 1, -1, -1):
        if t < T - 1:                 # kappa_t += z_{t+1} kappa_{t+1} + W^T dah_{t+1}
            if blas:
                scratch = _row_scratch(da[t], B, H)   # free until the step writes da[t]
                np.dot(da[t + 1], W, scratch)
                for r in range(B):
                    _gru_carry(kappa[t, r], gates[t + 1, r, H:2 * H], kappa[t + 1, r],
                               scratch[r])
            else:
                for r in range(B):
                    _add_product(kappa[t, r], gates[t + 1, r, H:2 * H], kappa[t + 1, r])
                _add_matvec_rows(W, da[t + 1], kappa[t])
        for r in range(B):
            _gru_cell_backward(gates[t, r], ah_n[t, r], h[t, r], kappa[t, r], da[t, r],
                               dah_n[t, r])
    np.dot(da[0], W, dh0)                        # dL/dh_0 = z_1 * kappa_1 + W^T dah_1
    for r in range(B):
        _add_product(dh0[r], gates[0, r, H:2 * H], kappa[0, r])
    recurrent_grad(da, h, dW)                    # dW = dAh^T H_prev
    _sum_rows(da.reshape(T * B, G), db_hh)
    for t in range(T):                           # da becomes dL/dax, dah_n dL/dah_n
        for r in range(B):
            _swap(da[t, r, 2 * H:], dah_n[t, r])
