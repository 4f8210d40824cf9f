"""The vanilla cell, the loss kernels and the streaming step of one vanilla cell,
compiled with Numba.

Legend: T time steps, B batch, D input size, H hidden size, O output size.

The equations are those of ``fastrnn.reference.rnn``. The vanilla cell's time loops
(``_recurrence``, ``_bptt``) run inside the stack kernels of ``stack.py``, which hand them
a cell's buffers of the ``Workspace``: a = gates (T, B, H), s = h (T + 1, B, H), kappa
and da (T, B, H). Every kernel is a pure function of IN arrays that writes OUT arrays
and allocates nothing. Only the recurrence through W is sequential; everything else is
done for all T * B rows at once by the stack kernels:

    forward   A = X U^T + b (one GEMM, or a gather for token ids)
              for t: a_t += W s_{t-1}; s_t = f(a_t)      (the only loop over time)
              O = S V^T + c (one GEMM)
    backward  K = dO V (one GEMM: the V^T dL/do_t term of every kappa_t)
              for t = T .. 1: kappa_t += W^T da_{t+1}; da_t = f'(a_t) * kappa_t
              dW = dA^T S_prev, dV = dO^T S, dU = dA^T X (one GEMM each, or a scatter)

The products inside the time loop go through BLAS when ``blas`` is true and through
plain loops otherwise; for small B * H the loops win (see ``fastrnn._numba.kernels``).
``WT`` (H, H) is scratch that receives W^T so that the looped forward product streams
through memory in order.
"""
import math

import numpy as np

from .._config import jit, jit_stream
from .._contract import SIGMOID, STEP_BAD_INPUT, STEP_BAD_OUTPUT, STEP_OK, TANH
from .._vec import all_finite as _all_finite
from .._vec import flat as _flat
from .vecmath import exp, sigmoid, tanh


# ------------------------------------------------------------------ elementwise pieces
# Inner loops run over 1-D views (``_flat``).

@jit
def _activate(act, a, s):
    """s = f(a), elementwise over arrays of one shape."""
    a, s = _flat(a), _flat(s)
    if act == TANH:
        for i in range(a.size):
            s[i] = tanh(a[i])
    elif act == SIGMOID:
        for i in range(a.size):
            s[i] = sigmoid(a[i])
    else:
        for i in range(a.size):
            s[i] = max(a[i], 0.0)


@jit
def _delta(act, a, s, kappa, da):
    """da = f'(a) * kappa, with f' written through s = f(a); arrays of one shape."""
    a, s, kappa, da = _flat(a), _flat(s), _flat(kappa), _flat(da)
    if act == TANH:
        for i in range(a.size):
            da[i] = (1.0 - s[i] * s[i]) * kappa[i]
    elif act == SIGMOID:
        for i in range(a.size):
            da[i] = s[i] * (1.0 - s[i]) * kappa[i]
    else:
        for i in range(a.size):
            da[i] = kappa[i] if a[i] > 0.0 else 0.0


@jit
def _copy(src, dst):
    """dst = src elementwise; a loop, so that src may be dst itself (no temporary)."""
    src, dst = _flat(src), _flat(dst)
    for i in range(src.size):
        dst[i] = src[i]


@jit
def _add(a, b):
    """a += b, elementwise over arrays of one shape."""
    a, b = _flat(a), _flat(b)
    for i in range(a.size):
        a[i] += b[i]


@jit
def _add_rows(M, v):
    """M[r] += v for every row; M (N, K), v (K,)."""
    for r in range(M.shape[0]):
        _add(M[r], v)


@jit
def _sum_rows(M, v):
    """v = sum_r M[r]; M (N, K), v (K,)."""
    v[:] = 0.0
    for r in range(M.shape[0]):
        _add(v, M[r])


@jit
def _transpose(M, MT):
    """MT = M^T; M (N, K), MT (K, N)."""
    N, K = M.shape
    for r in range(N):
        for k in range(K):
            MT[k, r] = M[r, k]


@jit
def _add_matvec_rows(M, rows, out):
    """out[r] += sum_n rows[r, n] M[n] for every r: out += rows @ M, looping.

    rows (B, N), M (N, K), out (B, K). Each term adds a contiguous row of M, so the inner
    loop is a vectorisable axpy with no reduction; four rows of M are added per pass over
    out[r], which quarters the loads and stores of out[r].
    """
    B, N = rows.shape
    K = M.shape[1]
    N4 = N - N % 4
    for r in range(B):
        o, x = out[r], rows[r]
        for n in range(0, N4, 4):
            c0, c1, c2, c3 = x[n], x[n + 1], x[n + 2], x[n + 3]
            m0, m1, m2, m3 = M[n], M[n + 1], M[n + 2], M[n + 3]
            for k in range(K):
                o[k] += c0 * m0[k] + c1 * m1[k] + c2 * m2[k] + c3 * m3[k]
        for n in range(N4, N):
            c, m = x[n], M[n]
            for k in range(K):
                o[k] += c * m[k]


# ------------------------------------------------------------------------- forward

@jit
def _recurrence(act, W, WT, h0, a, s, blas):
    """for t: a_t += W s_{t-1}; s_t = f(a_t).  a (T, B, H) holds b + U x_t on entry."""
    T = a.shape[0]
    _copy(h0, s[0])                              # h0 may be s[0] or s[T] of this workspace
    if not blas:
        _transpose(W, WT)
    for t in range(T):
        if blas:
            np.dot(s[t], W.T, s[t + 1])          # s[t + 1] is free until f writes it
            _add(a[t], s[t + 1])
        else:
            _add_matvec_rows(WT, s[t], a[t])
        _activate(act, a[t], s[t + 1])


@jit
def _output(V, c, states, o):
    """O = S V^T + c for all T * B rows at once; states (T, B, K) are s_1 .. s_T."""
    T, B, O = o.shape
    K = states.shape[2]
    o2 = o.reshape(T * B, O)
    np.dot(states.reshape(T * B, K), V.T, o2)
    _add_rows(o2, c)


@jit
def project_dense(U, b, x, a):
    """a = X U^T + b for all T * B rows at once, one GEMM.

    U (G, D), b (G,), x (T, B, D), a (T, B, G); G is H, or a multiple for gated cells.
    """
    T, B, D = x.shape
    a2 = a.reshape(T * B, U.shape[0])
    np.dot(x.reshape(T * B, D), U.T, a2)
    _add_rows(a2, b)


@jit
def project_ids(U, b, x, a):
    """a[t, r] = b + U[:, x[t, r]]: U x_t for token ids is a column of U, gathered.

    U (G, D), b (G,), x (T, B) ids, a (T, B, G).
    """
    T, B = x.shape
    G = U.shape[0]
    for t in range(T):
        for r in range(B):
            row, col = a[t, r], x[t, r]
            for i in range(G):
                row[i] = b[i] + U[i, col]


@jit
def _max(v):
    """max(v) over a 1-D array, with four running maxima to hide the latency."""
    m0 = m1 = m2 = m3 = v[0]
    n4 = v.size - v.size % 4
    for k in range(0, n4, 4):
        m0, m1 = max(m0, v[k]), max(m1, v[k + 1])
        m2, m3 = max(m2, v[k + 2]), max(m3, v[k + 3])
    for k in range(n4, v.size):
        m0 = max(m0, v[k])
    return max(max(m0, m1), max(m2, m3))


@jit
def _sum(v):
    """sum(v) in float64 over a 1-D array, in four running sums to hide the latency."""
    s0 = s1 = s2 = s3 = 0.0
    n4 = v.size - v.size % 4
    for k in range(0, n4, 4):
        s0 += v[k]
        s1 += v[k + 1]
        s2 += v[k + 2]
        s3 += v[k + 3]
    for k in range(n4, v.size):
        s0 += v[k]
    return (s0 + s1) + (s2 + s3)


@jit
def _add_compensated(total, comp, term):
    """Neumaier's compensated sum, one term at a time: returns total + term rounded and
    comp plus the rounding error of that addition. The sum so far is total + comp, which
    does not drift with the number of terms as a plain running sum does (``_sum_so_far``
    reads it)."""
    summed = total + term
    if abs(total) >= abs(term):
        comp += (total - summed) + term
    else:
        comp += (term - summed) + total
    return summed, comp


@jit
def _sum_so_far(total, comp):
    """total + comp; total itself once it is inf or NaN, where comp has become NaN (an
    overflowing loss must come out inf, not NaN)."""
    return total + comp if math.isfinite(total) else total


@jit
def cross_entropy(o, y, scale, do):
    """Fused log-softmax, cross-entropy and dL/do = scale * (p - onehot(y)).

    o, do (T, B, O); y (T, B) class ids. Returns scale * sum of -log p[y].

    Each term -log p[y] = (m - o[y]) + log(sum exp(o - m)) is a sum of two non-negative
    numbers taken in float64, so neither cancels the other; written as m + log(z) - o[y],
    a large max m would absorb log(z) (the loss of two equal logits of 1e17 came out 0).
    The terms are added up with compensation, as np.sum's pairwise sum in the reference
    nearly is: a plain running sum of 20,000 of them was off by 2e-13.
    """
    T, B, O = o.shape
    total = comp = 0.0
    for t in range(T):
        for r in range(B):
            logits, grad = o[t, r], do[t, r]
            m = _max(logits)
            for k in range(O):
                grad[k] = exp(logits[k] - m)
            z = _sum(grad)
            target = y[t, r]
            total, comp = _add_compensated(
                total, comp, (np.float64(m) - logits[target]) + math.log(z))
            inv = scale / z
            for k in range(O):
                grad[k] *= inv
            grad[target] -= scale
    return _sum_so_far(total, comp) * scale


@jit
def squared_error(o, y, scale, do):
    """L = scale * sum ||o_t - y_t||^2 and dL/do = 2 scale (o - y); o, y, do (T, B, O).

    Each row's O terms are summed in float64, the rows' sums with compensation (see
    ``cross_entropy``).
    """
    T, B, O = o.shape
    total = comp = 0.0
    for t in range(T):
        for r in range(B):
            out, target, grad = o[t, r], y[t, r], do[t, r]
            row = 0.0
            for k in range(O):
                diff = out[k] - target[k]
                row += diff * diff
                grad[k] = 2.0 * scale * diff
            total, comp = _add_compensated(total, comp, row)
    return _sum_so_far(total, comp) * scale


# ------------------------------------------------------------------------ backward

@jit
def _bptt(act, W, a, s, kappa, da, dh0, blas):
    """kappa_t = V^T dL/do_t + W^T da_{t+1}; da_t = f'(a_t) * kappa_t, for t = T .. 1.

    kappa (T, B, H) holds the V^T dL/do_t terms on entry. dh0 (B, H) = W^T da_1.
    """
    T = a.shape[0]
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            if blas:
                np.dot(da[t + 1], W, da[t])      # da[t] is free until the delta writes it
                _add(kappa[t], da[t])
            else:
                _add_matvec_rows(W, da[t + 1], kappa[t])
        _delta(act, a[t], s[t + 1], kappa[t], da[t])
    np.dot(da[0], W, dh0)


# ----------------------------------------------------------------------- streaming
# One step of online inference at small sizes is dominated by matrix-vector products
# that are row dot products here. ``_dot`` is compiled with reassociation allowed (and
# nothing else of fastmath), so that the reduction vectorises; it computes no gradient.
# The finiteness checks are compiled strictly, in ``fastrnn._vec.all_finite``.


@jit_stream
def _dot(u, v):
    """u . v for 1-D arrays of one size >= 1, accumulated in their dtype."""
    acc = u[0] * v[0]
    for k in range(1, u.size):
        acc += u[k] * v[k]
    return acc


@jit
def step(act, U, W, b, V, c, x_t, h, a, o_out, h_out):
    """One step: a = b + U x_t + W h; h_out = f(a); o_out = c + V h_out.

    x_t (B, D), or token ids (B,) whose U x_t is a column of U; h, a, h_out (1, B, H),
    the state and scratch of a one-cell stack (h_out may be h); o_out (B, O). Returns
    STEP_OK, STEP_BAD_INPUT when a dense x_t is not finite (nothing is written), or
    STEP_BAD_OUTPUT. Numba compiles only the branch of x_t's kind.
    """
    h, a, h_out = h[0], a[0], h_out[0]
    B, H = h.shape
    O = V.shape[0]
    if x_t.ndim == 1:
        for r in range(B):
            col = x_t[r]
            for i in range(H):
                a[r, i] = b[i] + U[i, col]
    else:
        if not _all_finite(x_t):
            return STEP_BAD_INPUT
        for r in range(B):
            for i in range(H):
                a[r, i] = b[i] + _dot(U[i], x_t[r])
    for r in range(B):
        for i in range(H):
            a[r, i] += _dot(W[i], h[r])
    _activate(act, a, h_out)
    for r in range(B):
        for k in range(O):
            o_out[r, k] = c[k] + _dot(V[k], h_out[r])
    return STEP_OK if _all_finite(o_out) else STEP_BAD_OUTPUT
