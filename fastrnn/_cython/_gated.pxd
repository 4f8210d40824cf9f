# The row kernels of the gated cells, for the time loops of _recurrence.pxd: one row of
# the batch, hidden units [0, units) of H, the gates' activations and the recurrence of
# one step (the equations are in fastrnn.reference.lstm and gru, the algorithm that of
# fastrnn._numba.gated). Inline, so that each build of stack.pyx compiles them with its
# own flags; g points at the row's first gate, whose others lie H, 2H (and 3H) further.

from cython cimport floating

from ._vecmath cimport sigmoid, tanh


cdef inline void lstm_forward_row(floating* g, const floating* c_prev, floating* c_next,
                                  floating* h_next, Py_ssize_t units,
                                  Py_ssize_t H) noexcept nogil:
    """One row, units [0, units) of H: g's i, f, g, og (at 0, H, 2H, 3H) a_t ->
    activations; c_t = f c_{t-1} + i g; h_t = og tanh(c_t)."""
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


cdef inline void lstm_backward_row(const floating* g, const floating* c_prev,
                                   const floating* c, const floating* kappa,
                                   floating* dcell, floating* da,
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


cdef inline void gru_forward_row(floating* g, const floating* ah_n, const floating* h_prev,
                                 floating* h_next, Py_ssize_t units,
                                 Py_ssize_t H) noexcept nogil:
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


cdef inline void gru_backward_row(const floating* g, const floating* ah_n,
                                  const floating* h_prev, const floating* kappa,
                                  floating* dah, floating* dax_n, Py_ssize_t units,
                                  Py_ssize_t H) noexcept nogil:
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
