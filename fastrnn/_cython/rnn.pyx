"""Fused vanilla-RNN kernels in Cython, over float32 and float64 (fused ``floating``).

Legend: T time steps, B batch, D input size, H hidden size, O output size.

The algorithm is that of ``fastrnn._numba.rnn``, kernel for kernel, on the arrays of a
``Workspace`` (a (T, B, H), s (T + 1, B, H), o and do (T, B, O), kappa and da (T, B, H)):

    forward   A = X U^T + b (one GEMM, or a gather for token ids)
              for t: a_t += W s_{t-1}; s_t = f(a_t)      (the only loop over time)
              O = S V^T + c (one GEMM)
    backward  K = dO V (one GEMM: the V^T dL/do_t term of every kappa_t)
              for t = T .. 1: kappa_t += W^T da_{t+1}; da_t = f'(a_t) * kappa_t
              dW = dA^T S_prev, dV = dO^T S, dU = dA^T X (one GEMM each, or a scatter)

Where the Numba kernels add a product into a buffer in a second pass, these let BLAS
accumulate (beta = 1): the biases are written first and the GEMM adds onto them, and
a_t += W s_{t-1} and kappa_t += W^T da_{t+1} are single GEMM calls.

The public kernels take typed memoryviews (C-contiguous, the shapes in their comments)
and run without the GIL; the helpers below them work on raw pointers and element counts,
so that a (T, B, H) block is one flat loop. The arrays have been validated by
``fastrnn.functional`` (shapes, dtype, contiguity, token ids in range) before they get here;
the memoryviews still check dtype and layout, so a bug upstream raises instead of
corrupting memory. No kernel allocates an array. Compiler directives (no bounds checks
unless FASTRNN_CYTHON_DEBUG=1) and flags are set once for the build in setup.py.
"""
from libc.math cimport fabs, isfinite, log
from libc.stdint cimport int64_t

from cython cimport floating

from ._blas cimport BLAS_Trans, NoTrans, Trans, gemm, gemv
from ._loops cimport all_finite as _all_finite
from ._loops cimport activate as _activate
from ._loops cimport add_rows_times as _add_rows_times
from ._loops cimport copy as _copy
from ._loops cimport delta as _delta
from ._loops cimport fill_rows as _fill_rows
from ._loops cimport sum_rows as _sum_rows
from ._vecmath cimport exp, tanh

from fastrnn import _contract

cdef int STEP_OK = _contract.STEP_OK
cdef int STEP_BAD_INPUT = _contract.STEP_BAD_INPUT
cdef int STEP_BAD_OUTPUT = _contract.STEP_BAD_OUTPUT


# ------------------------------------------------------------------ elementwise pieces
# Flat loops over n elements live in _loops.pxd (shared with stack.pyx).

cdef void _transpose(const floating* M, Py_ssize_t N, Py_ssize_t K,
                     floating* MT) noexcept nogil:
    """MT = M^T; M (N, K), MT (K, N)."""
    cdef Py_ssize_t r, k
    for r in range(N):
        for k in range(K):
            MT[k * N + r] = M[r * K + k]


cdef void _add_matvec_rows(const floating* M, Py_ssize_t N, Py_ssize_t K,
                           const floating* rows, Py_ssize_t B,
                           floating* out) noexcept nogil:
    """out += rows @ M by plain loops; M (N, K), rows (B, N), out (B, K).

    Each term adds a contiguous row of M, so the inner loop is a vectorisable axpy with
    no reduction; four rows of M are added per pass over out[r], which quarters the
    loads and stores of out[r].
    """
    cdef Py_ssize_t r, n, k, N4 = N - N % 4
    cdef floating c0, c1, c2, c3
    cdef const floating* m0
    cdef const floating* m1
    cdef const floating* m2
    cdef const floating* m3
    cdef const floating* x
    cdef floating* o
    for r in range(B):
        o = out + r * K
        x = rows + r * N
        for n in range(0, N4, 4):
            c0, c1, c2, c3 = x[n], x[n + 1], x[n + 2], x[n + 3]
            m0, m1, m2, m3 = M + n * K, M + (n + 1) * K, M + (n + 2) * K, M + (n + 3) * K
            for k in range(K):
                o[k] += c0 * m0[k] + c1 * m1[k] + c2 * m2[k] + c3 * m3[k]
        for n in range(N4, N):
            c0 = x[n]
            m0 = M + n * K
            for k in range(K):
                o[k] += c0 * m0[k]


# ------------------------------------------------------------------------- forward

cdef void _recurrence(int act, const floating* W, floating* WT, const floating* h0,
                      floating* a, floating* s, Py_ssize_t T, Py_ssize_t B, Py_ssize_t H,
                      bint blas) noexcept nogil:
    """for t: a_t += W s_{t-1}; s_t = f(a_t).  a (T, B, H) holds b + U x_t on entry.

    W, WT (H, H); h0 (B, H), which may be s[0] or s[T] of this workspace: it is copied
    into s[0] before anything else writes s.
    """
    cdef Py_ssize_t t, BH = B * H
    _copy(h0, s, BH)
    if not blas:
        _transpose(W, H, H, WT)
    for t in range(T):
        if blas:
            _add_rows_times(s + t * BH, <int>B, <int>H, W, Trans, <int>H, a + t * BH)
        else:
            _add_matvec_rows(WT, H, H, s + t * BH, B, a + t * BH)
        _activate(act, a + t * BH, s + (t + 1) * BH, BH)


cdef void _output(const floating* V, const floating* c, const floating* S,
                  floating* o, int N, int H, int O) noexcept nogil:
    """o = S V^T + c for all N = T * B rows at once; S (N, H) is s[1:], V (O, H), o (N, O)."""
    _fill_rows(o, N, c, O)
    gemm(NoTrans, Trans, N, O, H, 1, S, H, V, H, 1, o, O)


def forward_dense(int act,
                  const floating[:, ::1] U,        # IN  (H, D)
                  const floating[:, ::1] W,        # IN  (H, H)
                  const floating[::1] b,           # IN  (H,)
                  const floating[:, ::1] V,        # IN  (O, H)
                  const floating[::1] c,           # IN  (O,)
                  const floating[:, :, ::1] x,     # IN  (T, B, D)
                  const floating[:, ::1] h0,       # IN  (B, H), may be s[0] or s[T]
                  floating[:, :, ::1] a,           # OUT (T, B, H)
                  floating[:, :, ::1] s,           # OUT (T + 1, B, H)
                  floating[:, :, ::1] o,           # OUT (T, B, O)
                  floating[:, ::1] WT,             # scratch (H, H)
                  bint blas):
    """Forward pass for dense inputs: a = b + U x_t (one GEMM onto the bias), then the
    recurrence and the output layer."""
    cdef int T = x.shape[0], B = x.shape[1], D = x.shape[2]
    cdef int H = W.shape[0], O = V.shape[0]
    with nogil:
        _fill_rows(&a[0, 0, 0], T * B, &b[0], H)
        gemm(NoTrans, Trans, T * B, H, D, 1, &x[0, 0, 0], D, &U[0, 0], D, 1, &a[0, 0, 0], H)
        _recurrence(act, &W[0, 0], &WT[0, 0], &h0[0, 0], &a[0, 0, 0], &s[0, 0, 0], T, B, H,
                    blas)
        _output(&V[0, 0], &c[0], &s[1, 0, 0], &o[0, 0, 0], T * B, H, O)


def forward_ids(int act,
                const floating[:, ::1] U,          # IN  (H, D)
                const floating[:, ::1] W,          # IN  (H, H)
                const floating[::1] b,             # IN  (H,)
                const floating[:, ::1] V,          # IN  (O, H)
                const floating[::1] c,             # IN  (O,)
                const int64_t[:, ::1] x,           # IN  (T, B) token ids in [0, D)
                const floating[:, ::1] h0,         # IN  (B, H), may be s[0] or s[T]
                floating[:, :, ::1] a,             # OUT (T, B, H)
                floating[:, :, ::1] s,             # OUT (T + 1, B, H)
                floating[:, :, ::1] o,             # OUT (T, B, O)
                floating[:, ::1] WT,               # scratch (H, H)
                bint blas):
    """Forward pass for token ids: U x_t is column x_t of U, gathered."""
    cdef int T = x.shape[0], B = x.shape[1], H = W.shape[0], O = V.shape[0]
    cdef Py_ssize_t t, r, i, col
    with nogil:
        for t in range(T):
            for r in range(B):
                col = x[t, r]
                for i in range(H):
                    a[t, r, i] = b[i] + U[i, col]
        _recurrence(act, &W[0, 0], &WT[0, 0], &h0[0, 0], &a[0, 0, 0], &s[0, 0, 0], T, B, H,
                    blas)
        _output(&V[0, 0], &c[0], &s[1, 0, 0], &o[0, 0, 0], T * B, H, O)


# --------------------------------------------------------------------------- losses

cdef floating _max(const floating* v, Py_ssize_t n) noexcept nogil:
    """max(v) over n >= 1 elements, with four running maxima to hide the latency."""
    cdef floating m0 = v[0], m1 = v[0], m2 = v[0], m3 = v[0]
    cdef Py_ssize_t k, n4 = n - n % 4
    for k in range(0, n4, 4):
        m0 = v[k] if v[k] > m0 else m0
        m1 = v[k + 1] if v[k + 1] > m1 else m1
        m2 = v[k + 2] if v[k + 2] > m2 else m2
        m3 = v[k + 3] if v[k + 3] > m3 else m3
    for k in range(n4, n):
        m0 = v[k] if v[k] > m0 else m0
    m0 = m1 if m1 > m0 else m0
    m2 = m3 if m3 > m2 else m2
    return m2 if m2 > m0 else m0


cdef double _sum(const floating* v, Py_ssize_t n) noexcept nogil:
    """sum(v) in float64 over n elements, in four running sums to hide the latency."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t k, n4 = n - n % 4
    for k in range(0, n4, 4):
        s0 += v[k]
        s1 += v[k + 1]
        s2 += v[k + 2]
        s3 += v[k + 3]
    for k in range(n4, n):
        s0 += v[k]
    return (s0 + s1) + (s2 + s3)


cdef inline void _add_compensated(double* total, double* comp, double term) noexcept nogil:
    """total += term with Neumaier's compensation: comp gathers the rounding error of each
    addition, and the sum so far is total + comp (as ``fastrnn._numba.rnn``'s)."""
    cdef double summed = total[0] + term
    if fabs(total[0]) >= fabs(term):
        comp[0] += (total[0] - summed) + term
    else:
        comp[0] += (term - summed) + total[0]
    total[0] = summed


cdef inline double _sum_so_far(double total, double comp) noexcept nogil:
    """total + comp; total itself once it is inf or NaN, where comp has become NaN (an
    overflowing loss must come out inf, not NaN)."""
    return total + comp if isfinite(total) else total


def cross_entropy(const floating[:, :, ::1] o,     # IN  (T, B, O) logits
                  const int64_t[:, ::1] y,         # IN  (T, B) class ids in [0, O)
                  double scale,
                  floating[:, :, ::1] do):         # OUT (T, B, O)
    """Fused log-softmax, cross-entropy and dL/do = scale * (p - onehot(y)).

    Returns scale * sum of -log p[y]. Each term is (m - o[y]) + log(z) in double, and the
    terms are added with compensation, as in ``fastrnn._numba.rnn.cross_entropy`` (which
    says why).
    """
    cdef Py_ssize_t T = o.shape[0], B = o.shape[1], O = o.shape[2]
    cdef Py_ssize_t t, r, k, target
    cdef const floating* logits
    cdef floating* grad
    cdef floating m
    cdef double z, inv, total = 0, comp = 0
    with nogil:
        for t in range(T):
            for r in range(B):
                logits, grad = &o[t, r, 0], &do[t, r, 0]
                m = _max(logits, O)
                for k in range(O):
                    grad[k] = exp(logits[k] - m)
                z = _sum(grad, O)
                target = y[t, r]
                _add_compensated(&total, &comp, (<double>m - logits[target]) + log(z))
                inv = scale / z
                for k in range(O):
                    grad[k] = grad[k] * inv
                grad[target] = grad[target] - scale
    return _sum_so_far(total, comp) * scale


def squared_error(const floating[:, :, ::1] o,     # IN  (T, B, O)
                  const floating[:, :, ::1] y,     # IN  (T, B, O) targets
                  double scale,
                  floating[:, :, ::1] do):         # OUT (T, B, O)
    """L = scale * sum ||o_t - y_t||^2 and dL/do = 2 scale (o - y).

    Each row's O terms are summed in double, the rows' sums with compensation.
    """
    cdef Py_ssize_t N = o.shape[0] * o.shape[1], O = o.shape[2], i, k
    cdef const floating* po = &o[0, 0, 0]
    cdef const floating* py = &y[0, 0, 0]
    cdef floating* pdo = &do[0, 0, 0]
    cdef floating diff
    cdef double row, total = 0, comp = 0
    with nogil:
        for i in range(N):
            row = 0
            for k in range(i * O, (i + 1) * O):
                diff = po[k] - py[k]
                row += diff * diff
                pdo[k] = 2.0 * scale * diff
            _add_compensated(&total, &comp, row)
    return _sum_so_far(total, comp) * scale


# ------------------------------------------------------------------------ backward

cdef void _bptt(int act, const floating* W, const floating* a, const floating* s,
                floating* kappa, floating* da, floating* dh0, Py_ssize_t T, Py_ssize_t B,
                Py_ssize_t H, bint blas) noexcept nogil:
    """kappa_t = V^T dL/do_t + W^T da_{t+1}; da_t = f'(a_t) * kappa_t, for t = T .. 1.

    a, kappa, da (T, B, H); s (T + 1, B, H); W (H, H). kappa holds the V^T dL/do_t terms
    on entry. dh0 (B, H) = W^T da_1.
    """
    cdef Py_ssize_t t, BH = B * H
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            if blas:
                _add_rows_times(da + (t + 1) * BH, <int>B, <int>H, W, NoTrans, <int>H,
                                kappa + t * BH)
            else:
                _add_matvec_rows(W, H, H, da + (t + 1) * BH, B, kappa + t * BH)
        _delta(act, a + t * BH, s + (t + 1) * BH, kappa + t * BH, da + t * BH, BH)
    gemm(NoTrans, NoTrans, <int>B, <int>H, <int>H, 1, da, <int>H, W, <int>H, 0, dh0, <int>H)


cdef void _backward_common(int act, const floating* W, const floating* V, const floating* a,
                           const floating* s, const floating* do, floating* kappa,
                           floating* da, floating* dW, floating* db, floating* dV,
                           floating* dc, floating* dh0, int T, int B, int H, int O,
                           bint blas) noexcept nogil:
    """Everything but dU. W (H, H), V (O, H), a, kappa, da (T, B, H), s (T + 1, B, H),
    do (T, B, O); dW (H, H), db (H,), dV (O, H), dc (O,), dh0 (B, H)."""
    cdef int N = T * B
    gemm(NoTrans, NoTrans, N, H, O, 1, do, O, V, H, 0, kappa, H)
    _bptt(act, W, a, s, kappa, da, dh0, T, B, H, blas)
    gemm(Trans, NoTrans, H, H, N, 1, da, H, s, H, 0, dW, H)
    _sum_rows(da, N, H, db)
    gemm(Trans, NoTrans, O, H, N, 1, do, O, s + B * H, H, 0, dV, H)
    _sum_rows(do, N, O, dc)


def backward_dense(int act,
                   const floating[:, ::1] W,       # IN  (H, H)
                   const floating[:, ::1] V,       # IN  (O, H)
                   const floating[:, :, ::1] x,    # IN  (T, B, D)
                   const floating[:, :, ::1] a,    # IN  (T, B, H)
                   const floating[:, :, ::1] s,    # IN  (T + 1, B, H)
                   const floating[:, :, ::1] do,   # IN  (T, B, O)
                   floating[:, :, ::1] kappa,      # OUT (T, B, H)
                   floating[:, :, ::1] da,         # OUT (T, B, H)
                   floating[:, ::1] dU,            # OUT (H, D)
                   floating[:, ::1] dW,            # OUT (H, H)
                   floating[::1] db,               # OUT (H,)
                   floating[:, ::1] dV,            # OUT (O, H)
                   floating[::1] dc,               # OUT (O,)
                   floating[:, ::1] dh0,           # OUT (B, H)
                   bint blas):
    """BPTT for dense inputs; dU = dA^T X is one more GEMM."""
    cdef int T = x.shape[0], B = x.shape[1], D = x.shape[2]
    cdef int H = W.shape[0], O = V.shape[0]
    with nogil:
        _backward_common(act, &W[0, 0], &V[0, 0], &a[0, 0, 0], &s[0, 0, 0], &do[0, 0, 0],
                         &kappa[0, 0, 0], &da[0, 0, 0], &dW[0, 0], &db[0], &dV[0, 0], &dc[0],
                         &dh0[0, 0], T, B, H, O, blas)
        gemm(Trans, NoTrans, H, D, T * B, 1, &da[0, 0, 0], H, &x[0, 0, 0], D, 0, &dU[0, 0], D)


def backward_ids(int act,
                 const floating[:, ::1] W,         # IN  (H, H)
                 const floating[:, ::1] V,         # IN  (O, H)
                 const int64_t[:, ::1] x,          # IN  (T, B) token ids in [0, D)
                 const floating[:, :, ::1] a,      # IN  (T, B, H)
                 const floating[:, :, ::1] s,      # IN  (T + 1, B, H)
                 const floating[:, :, ::1] do,     # IN  (T, B, O)
                 floating[:, :, ::1] kappa,        # OUT (T, B, H)
                 floating[:, :, ::1] da,           # OUT (T, B, H)
                 floating[:, ::1] dU,              # OUT (H, D)
                 floating[:, ::1] dW,              # OUT (H, H)
                 floating[::1] db,                 # OUT (H,)
                 floating[:, ::1] dV,              # OUT (O, H)
                 floating[::1] dc,                 # OUT (O,)
                 floating[:, ::1] dh0,             # OUT (B, H)
                 bint blas):
    """BPTT for token ids: dL/da_t e_i^T adds da_t to column i of dU (a scatter)."""
    cdef int T = x.shape[0], B = x.shape[1], H = W.shape[0], O = V.shape[0]
    cdef Py_ssize_t t, r, i, col, n = dU.shape[0] * dU.shape[1]
    cdef floating* pdU = &dU[0, 0]
    with nogil:
        _backward_common(act, &W[0, 0], &V[0, 0], &a[0, 0, 0], &s[0, 0, 0], &do[0, 0, 0],
                         &kappa[0, 0, 0], &da[0, 0, 0], &dW[0, 0], &db[0], &dV[0, 0], &dc[0],
                         &dh0[0, 0], T, B, H, O, blas)
        for i in range(n):
            pdU[i] = 0
        for t in range(T):
            for r in range(B):
                col = x[t, r]
                for i in range(H):
                    dU[i, col] += da[t, r, i]


# ----------------------------------------------------------------------- streaming
# One step of online inference at small sizes is dominated by matrix-vector products,
# done here as row dot products. The Numba kernel lets LLVM reassociate its one sum;
# this one is written as 16 running sums, which the compiler maps onto SIMD lanes and
# which, being independent, hide the latency of the additions, and they are added up
# pairwise (halving), not one after the other. The finiteness checks are exact.

cdef floating _dot(const floating* u, const floating* v, Py_ssize_t n) noexcept nogil:
    """u . v over n >= 1 elements, accumulated in their type."""
    cdef floating acc[16]
    cdef Py_ssize_t k, j, n16 = n - n % 16
    for j in range(16):
        acc[j] = 0
    for k in range(0, n16, 16):
        for j in range(16):
            acc[j] += u[k + j] * v[k + j]
    for j in range(n - n16):
        acc[j] += u[n16 + j] * v[n16 + j]
    for j in range(8):
        acc[j] += acc[j + 8]
    for j in range(4):
        acc[j] += acc[j + 4]
    return (acc[0] + acc[2]) + (acc[1] + acc[3])


cdef int _step_finish(int act, const floating[:, ::1] W, const floating[:, ::1] V,
                      const floating[::1] c, const floating[:, ::1] h, floating[:, ::1] a,
                      floating[:, ::1] o_out, floating[:, ::1] h_out) noexcept nogil:
    """a += W h; h_out = f(a); o_out = c + V h_out.  ``a`` is scratch: h_out may be h.

    Returns STEP_OK, or STEP_BAD_OUTPUT when o_out is not finite.
    """
    cdef Py_ssize_t B = h.shape[0], H = h.shape[1], O = V.shape[0], r, i, k
    for r in range(B):
        for i in range(H):
            a[r, i] += _dot(&W[i, 0], &h[r, 0], H)
    _activate(act, &a[0, 0], &h_out[0, 0], B * H)
    for r in range(B):
        for k in range(O):
            o_out[r, k] = c[k] + _dot(&V[k, 0], &h_out[r, 0], H)
    return STEP_OK if _all_finite(&o_out[0, 0], B * O) else STEP_BAD_OUTPUT


def step_dense(int act,
               const floating[:, ::1] U,           # IN  (H, D)
               const floating[:, ::1] W,           # IN  (H, H)
               const floating[::1] b,              # IN  (H,)
               const floating[:, ::1] V,           # IN  (O, H)
               const floating[::1] c,              # IN  (O,)
               const floating[:, ::1] x_t,         # IN  (B, D)
               const floating[:, ::1] h,           # IN  (B, H), may be h_out
               floating[:, ::1] a,                 # scratch (B, H)
               floating[:, ::1] o_out,             # OUT (B, O)
               floating[:, ::1] h_out):            # OUT (B, H)
    """One step: a = b + U x_t + W h; h_out = f(a); o_out = c + V h_out.

    Returns STEP_OK, STEP_BAD_INPUT when x_t is not finite (nothing is written), or
    STEP_BAD_OUTPUT.
    """
    cdef Py_ssize_t B = h.shape[0], H = h.shape[1], D = x_t.shape[1], r, i
    cdef int status
    with nogil:
        if not _all_finite(&x_t[0, 0], B * D):
            status = STEP_BAD_INPUT
        else:
            for r in range(B):
                for i in range(H):
                    a[r, i] = b[i] + _dot(&U[i, 0], &x_t[r, 0], D)
            status = _step_finish(act, W, V, c, h, a, o_out, h_out)
    return status


def step_ids(int act,
             const floating[:, ::1] U,             # IN  (H, D)
             const floating[:, ::1] W,             # IN  (H, H)
             const floating[::1] b,                # IN  (H,)
             const floating[:, ::1] V,             # IN  (O, H)
             const floating[::1] c,                # IN  (O,)
             const int64_t[::1] x_t,               # IN  (B,) token ids in [0, D)
             const floating[:, ::1] h,             # IN  (B, H), may be h_out
             floating[:, ::1] a,                   # scratch (B, H)
             floating[:, ::1] o_out,               # OUT (B, O)
             floating[:, ::1] h_out):              # OUT (B, H)
    """One step for token ids: a = b + U[:, x_t] + W h; see ``step_dense``."""
    cdef Py_ssize_t B = h.shape[0], H = h.shape[1], r, i, col
    cdef int status
    with nogil:
        for r in range(B):
            col = x_t[r]
            for i in range(H):
                a[r, i] = b[i] + U[i, col]
        status = _step_finish(act, W, V, c, h, a, o_out, h_out)
    return status


# ------------------------------------------------------------------ for the tests

def tanh_array(const floating[::1] x, floating[::1] out):
    """out = tanh(x) through the kernels' inline tanh; x, out (n,)."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            out[i] = tanh(x[i])


def exp_array(const floating[::1] x, floating[::1] out):
    """out = exp(x) through the kernels' inline exp; x, out (n,)."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            out[i] = exp(x[i])


# ---------------------------------------------------------------------- dispatch
# This module is compiled twice (see setup.py): for the baseline of the platform as
# ``rnn`` and, on x86-64, with AVX2 as ``rnn_avx2``. The baseline build answers whether
# the CPU, and the operating system, run the other.

cdef extern from *:
    """
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    static int fastrnn_cpu_has_avx2(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    #else
    static int fastrnn_cpu_has_avx2(void) { return 0; }
    #endif
    """
    int fastrnn_cpu_has_avx2() noexcept nogil


def cpu_has_avx2():
    """Whether this machine runs AVX2 and FMA code, so that ``rnn_avx2`` may be imported."""
    return fastrnn_cpu_has_avx2() != 0


# ------------------------------------------------------------------ cached views
# A typed memoryview argument made from an ndarray is a new small object per argument
# per call; one made once by these functions and passed again is used as it is.

def view1(floating[::1] v):
    """v (n,) as a typed memoryview object, for passing to the kernels repeatedly."""
    return v


def view2(floating[:, ::1] M):
    """M (n, k) as a typed memoryview object; see ``view1``."""
    return M


def view3(floating[:, :, ::1] A):
    """A (t, n, k) as a typed memoryview object; see ``view1``."""
    return A


def const_view1(const floating[::1] v):
    """v (n,) as a read-only typed memoryview object, for the kernels' IN arguments
    (which may then be read-only arrays); see ``view1``."""
    return v


def const_view2(const floating[:, ::1] M):
    """M (n, k) as a read-only typed memoryview object; see ``const_view1``."""
    return M
