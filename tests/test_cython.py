"""What is specific to the optional Cython extension: the Cython kernels against the
Numba kernels (ref = numba, comp = cython, same input), its inline tanh and exp against
Numba's, and bad input reaching the public entry points with backend="cython".

The generic suites (test_backends, test_streaming, test_allocation) check the backend
against the reference through the registry; this file is skipped when the extension is
not built.
"""
import numpy as np
import pytest

import fastrnn

from conftest import DTYPES, make_problem

pytestmark = pytest.mark.skipif("cython" not in fastrnn.available_backends(),
                                reason="the Cython extension is not built")

# Both backends run the same algorithm in the same order except inside BLAS (a GEMM that
# accumulates onto a bias sums in another order than a GEMM followed by an add), so they
# agree to a few ulp of each tensor's scale.
RTOL = {np.float64: 1e-12, np.float32: 1e-5}
ATOL_SCALE = {np.float64: 1e-14, np.float32: 1e-6}


def run(backend, params, x, y, h0, loss, reduction):
    """Everything a training step produces, copied out of the workspace."""
    o, h_fwd = fastrnn.forward(params, x, h0, backend=backend)
    L, grads, h_T = fastrnn.loss_and_grad(params, x, y, h0, loss=loss, reduction=reduction,
                                          backend=backend)
    out = {name: view.copy() for name, view in grads.items()}
    out.update(loss=np.array(L), o=o, h_forward=h_fwd, h_T=h_T.copy(), dh0=grads.h0.copy())
    return out


def assert_agree(comp, ref, dtype):
    assert comp.keys() == ref.keys()
    for name in ref:
        assert comp[name].dtype == ref[name].dtype, name
        scale = max(np.abs(ref[name]).max(), 1e-30)
        np.testing.assert_allclose(comp[name], ref[name], rtol=RTOL[dtype],
                                   atol=ATOL_SCALE[dtype] * scale, err_msg=name)


def check(*, T, B, dtype, cell="tanh", loss="cross_entropy", tokens=False):
    params, x, y, h0 = make_problem(T=T, B=B, D=6, H=8, O=5, cell=cell, loss=loss,
                                    tokens=tokens, dtype=dtype, seed=B + T)
    for reduction in ("sum", "mean"):
        ref = run("numba", params, x, y, h0, loss, reduction)
        comp = run("cython", params, x, y, h0, loss, reduction)
        assert_agree(comp, ref, dtype)


# Both backends against the reference, over every axis, are in test_backends; here the
# loss kernels and a size where BLAS blocks.
@pytest.mark.parametrize("dtype", DTYPES)
def test_cython_matches_numba_on_squared_error(dtype):
    check(T=25, B=4, dtype=dtype, loss="mse")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cython_matches_numba_at_a_blocked_size(dtype):
    """Sizes where BLAS blocks the products and the loops have remainders (H % 4 != 0)."""
    params, x, y, h0 = make_problem(T=7, B=33, D=70, H=131, O=67, dtype=dtype, seed=3)
    ref = run("numba", params, x, y, h0, "cross_entropy", "mean")
    comp = run("cython", params, x, y, h0, "cross_entropy", "mean")
    assert_agree(comp, ref, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("tokens", [True, False], ids=["ids", "dense"])
def test_streaming_matches_numba(dtype, tokens):
    params, x, _, h0 = make_problem(T=5, B=3, D=7, H=9, O=6, tokens=tokens, dtype=dtype)
    states = {}
    for backend in ("numba", "cython"):
        h = h0.copy()
        o = np.empty((5, 3, params.output_size), dtype=dtype)
        for t in range(5):
            fastrnn.step(params, x[t], h, out=(o[t], h), backend=backend)
        states[backend] = o, h
    for ref, comp in zip(states["numba"], states["cython"]):
        np.testing.assert_allclose(comp, ref, rtol=RTOL[dtype] * 10,
                                   atol=ATOL_SCALE[dtype] * 10 * np.abs(ref).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_inline_tanh_and_exp_are_numbas(dtype):
    """The C inline functions compute the Numba formulas operation for operation: equal
    bits, over the whole range, at the clamps and for NaN and +-Inf."""
    numba = pytest.importorskip("numba")
    from fastrnn._cython import kernels, rnn
    from fastrnn._numba.vecmath import exp, tanh

    @numba.njit
    def apply_tanh(x, out):
        for i in range(x.size):
            out[i] = tanh(x[i])

    @numba.njit
    def apply_exp(x, out):
        for i in range(x.size):
            out[i] = exp(x[i])

    rng = np.random.default_rng(0)
    special = [np.nan, np.inf, -np.inf, 0.0, -0.0, 9.0, -9.0, 19.5, -19.5, 88.7, 89.5,
               -103.9, -104.5, 709.9, 710.5, -745.5, -746.5, 0.5 * np.log(2.0)]
    x = np.concatenate([rng.standard_normal(20000) * 4, rng.uniform(-800, 800, 20000),
                        special]).astype(dtype)
    for module in {rnn, kernels.rnn}:           # the baseline build and the one in use
        for numba_fn, cython_fn in ((apply_tanh, module.tanh_array),
                                    (apply_exp, module.exp_array)):
            ref, comp = np.empty_like(x), np.empty_like(x)
            with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                numba_fn(x, ref)
                cython_fn(x, comp)
            np.testing.assert_array_equal(comp, ref, err_msg=cython_fn.__name__)


def test_baseline_and_avx2_builds_give_the_same_bits(monkeypatch):
    """rnn and stack and their AVX2 builds come from one source with value-preserving
    flags only."""
    from fastrnn._cython import kernels, rnn, stack

    if not rnn.cpu_has_avx2():
        pytest.skip("this CPU has no AVX2")
    avx2 = pytest.importorskip("fastrnn._cython.rnn_avx2")
    stack_avx2 = pytest.importorskip("fastrnn._cython.stack_avx2")
    assert kernels.rnn is avx2 and kernels.stack is stack_avx2 and kernels.ISA == "avx2"
    for dtype in (np.float64, np.float32):
        for tokens, loss in ((True, "cross_entropy"), (False, "mse")):
            for H in (8, 37, 64):              # the loops, their remainders, and BLAS
                params, x, y, h0 = make_problem(T=9, B=3, D=6, H=H, O=11, cell="sigmoid",
                                                loss=loss, tokens=tokens, dtype=dtype)
                results = {}
                for module, passes in ((rnn, stack), (avx2, stack_avx2)):
                    monkeypatch.setattr(kernels, "rnn", module)
                    monkeypatch.setattr(kernels, "stack", passes)
                    results[module] = run("cython", params, x, y, h0, loss, "mean")
                for name, value in results[avx2].items():
                    np.testing.assert_array_equal(value, results[rnn][name], err_msg=name)


def test_cached_tables_follow_their_arrays():
    """The adapter makes a cells table once per workspace, and again for new params or
    grads (even ones that reuse a dead object's id)."""
    for seed in range(3):
        params, x, y, h0 = make_problem(T=4, B=2, D=5, H=6, O=3, seed=seed)
        ref = run("numba", params, x, y, h0, "cross_entropy", "sum")
        assert_agree(run("cython", params, x, y, h0, "cross_entropy", "sum"), ref,
                     np.float64)
        del params


# Bad input with backend="cython": validation is shared and happens before dispatch, so
# each case must raise what it raises for every backend, naming the argument.

T, B, D, H, O = 4, 3, 5, 6, 2


def fortran(a):
    return np.asfortranarray(a)


def strided(a):
    """The same values in a non-contiguous view."""
    big = np.repeat(a[..., None], 2, axis=-1)
    return big[..., 0]


BAD_INPUT = [
    ("x-float32", lambda k: k.update(x=k["x"].astype(np.float32)), TypeError, "x"),
    ("x-int-3d", lambda k: k.update(x=np.zeros((T, B, D), np.int64)), ValueError, "x"),
    ("x-D", lambda k: k.update(x=k["x"][..., :D - 1]), ValueError, "x"),
    ("x-T0", lambda k: k.update(x=k["x"][:0], y=k["y"][:0]), ValueError, "x"),
    ("x-ids-high", lambda k: k.update(x=np.full((T, B), D)), ValueError, "x"),
    ("x-ids-negative", lambda k: k.update(x=np.full((T, B), -1)), ValueError, "x"),
    ("x-nan", lambda k: k.update(x=np.full((T, B, D), np.nan)), ValueError, "x"),
    ("h0-shape", lambda k: k.update(h0=np.zeros((B, H + 1))), ValueError, "h0"),
    ("h0-float32", lambda k: k.update(h0=k["h0"].astype(np.float32)), TypeError, "h0"),
    ("y-shape", lambda k: k.update(y=k["y"][:T - 1]), ValueError, "y"),
    ("y-float-for-ce", lambda k: k.update(y=k["y"].astype(np.float64)), TypeError, "y"),
    ("y-ids-high", lambda k: k.update(y=np.full((T, B), O)), ValueError, "y"),
    ("params-type", lambda k: k.update(params=np.zeros(3)), TypeError, "params"),
]


def good_call():
    params, x, y, h0 = make_problem(T=T, B=B, D=D, H=H, O=O, seed=1)
    return dict(params=params, x=x, y=y, h0=h0)


@pytest.mark.parametrize("change, exc, argument", [c[1:] for c in BAD_INPUT],
                         ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_rejected_before_the_kernels(change, exc, argument):
    for backend in ("numba", "cython"):
        kwargs = good_call()
        change(kwargs)
        with pytest.raises(exc, match=rf"^{argument}: ") as caught:
            fastrnn.loss_and_grad(**kwargs, backend=backend)
        if backend == "numba":
            expected = str(caught.value)
        else:
            assert str(caught.value) == expected


@pytest.mark.parametrize("layout", [fortran, strided], ids=["fortran", "strided"])
@pytest.mark.parametrize("tokens", [True, False], ids=["ids", "dense"])
def test_non_contiguous_input_is_prepared_not_passed_through(layout, tokens):
    """Fortran-ordered and strided x, y and h0 give the results of contiguous copies."""
    params, x, y, h0 = make_problem(T=T, B=B, D=D, H=H, O=O, tokens=tokens, seed=2)
    ref = run("cython", params, x, y, h0, "cross_entropy", "sum")
    comp = run("cython", params, layout(x), layout(y), layout(h0), "cross_entropy", "sum")
    assert_agree(comp, ref, np.float64)


def test_bad_streaming_input_is_rejected():
    params, _, _, _ = make_problem(T=1, B=2, D=D, H=H, O=O)
    h = np.zeros((2, H))
    cases = [(np.ones((2, D), np.float32), TypeError, "x_t"),
             (np.ones((2, D + 1)), ValueError, "x_t"),
             (np.array([D, 0]), ValueError, "x_t"),
             (np.full((2, D), np.inf), ValueError, "x_t")]
    for x_t, exc, argument in cases:
        with pytest.raises(exc, match=rf"^{argument}: "):
            fastrnn.step(params, x_t, h, backend="cython")
        with pytest.raises(exc, match=rf"^{argument}: "):
            fastrnn.Stream(params, batch_size=2, backend="cython")(x_t)
    o_bad = (np.zeros((2, O), order="F")[:, ::-1], np.zeros((2, H)))
    with pytest.raises(ValueError, match=r"^out: "):
        fastrnn.step(params, np.ones((2, D)), h, out=o_bad, backend="cython")
    o_f32 = (np.zeros((2, O), np.float32), np.zeros((2, H)))
    with pytest.raises(ValueError, match=r"^out: "):
        fastrnn.step(params, np.ones((2, D)), h, out=o_f32, backend="cython")


def test_fortran_ordered_streaming_input_is_prepared():
    params, x, _, h0 = make_problem(T=1, B=3, D=D, H=H, O=O, seed=4)
    ref = fastrnn.step(params, x[0], h0, backend="cython")
    comp = fastrnn.step(params, fortran(x[0]), fortran(h0), backend="cython")
    for r, c in zip(ref, comp):
        np.testing.assert_array_equal(c, r)


def test_the_kernels_reject_what_skipped_validation_would_pass():
    """Called directly, the compiled kernels still refuse the wrong dtype or layout:
    typed memoryviews check the buffer, so a bug upstream raises instead of corrupting."""
    from fastrnn._cython import rnn

    o = np.zeros((2, 3, 4))
    do = np.zeros_like(o)
    y = np.zeros((2, 3), np.int64)
    with pytest.raises(ValueError, match="contiguous"):
        rnn.cross_entropy(np.asfortranarray(o), y, 1.0, do)
    with pytest.raises(ValueError, match="dtype mismatch"):
        rnn.cross_entropy(o, y.astype(np.int32), 1.0, do)
    with pytest.raises(ValueError, match="dtype mismatch"):
        rnn.cross_entropy(o, y, 1.0, do.astype(np.float32))
    with pytest.raises(ValueError, match="read-only"):
        rnn.cross_entropy(o, y, 1.0, np.broadcast_to(do, do.shape))


def test_the_stack_step_kernel_refuses_a_bidirectional_stack():
    """The public step refuses one first; the kernel itself does too, instead of reading
    the reverse cell's gates unfilled."""
    from fastrnn._cython import kernels

    params = fastrnn.init_params(3, 4, 2, cell="gru", bidirectional=True, seed=0)
    ws = fastrnn.get_workspace(params, 1, 1)
    h = np.zeros((2, 1, 4))
    with pytest.raises(ValueError, match=r"^cells: a streaming step runs a one-direction"):
        kernels.stack.stack_step(kernels.cells(params, ws, ws.grads), np.zeros((1, 3)),
                                 h, h, params.V, params.c, np.zeros((1, 2)), h.copy(),
                                 h.copy())
