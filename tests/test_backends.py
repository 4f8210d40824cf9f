"""Every fast backend against the reference: ref = reference, comp = backend, same input.

A backend joins this suite by registering itself in fastrnn.backends. Results agree by
conftest.assert_agree: float64 entry by entry, float32 (on float32 copies of the problem)
to RTOL[float32] of each tensor's largest entry.

The axes that select other compiled code are crossed: backend, BLAS or plain loops,
dtype, cell and input kind (dense or token ids). The others are varied one at a time:
the loss selects a loss kernel of its own (crossed with backend and dtype, which are
what its compiled code depends on; the cell never reaches it), the reduction only
scales that kernel's result, one sequence and one step are the loops' and products'
edge cases (a single row goes to GEMV), and a missing h0 is zeros made before dispatch.
"""
import numpy as np
import pytest

import fastrnn

from conftest import DTYPES, as64, assert_agree, make_problem

FAST = [b for b in fastrnn.available_backends() if b != "reference"]
pytestmark = pytest.mark.skipif(not FAST, reason="no compiled backend available")
CELLS = ["tanh", "sigmoid", "relu"]


@pytest.fixture(params=FAST)
def fast_backend(request):
    return request.param


# Each compiled path of the time loop: Numba's plain loops and its BLAS calls, chosen by
# size, each forced here whatever the size; Cython's has BLAS only.
PATHS = [(b, blas) for b in FAST for blas in ((False, True) if b == "numba" else (None,))]


@pytest.fixture(params=PATHS, ids=[b if blas is None else f"{b}-{'blas' if blas else 'loops'}"
                                   for b, blas in PATHS])
def path(request, monkeypatch):
    """A compiled backend, its time loop forced through plain loops or BLAS."""
    backend, blas = request.param
    if blas is not None:
        monkeypatch.setattr(fastrnn.backends.get(backend), "BLAS_MIN_WORK",
                            0 if blas else 2**62)
    return backend


def run(backend, params, x, y, h0, loss, reduction):
    """Everything a training step produces, copied out of the workspace."""
    o, _ = fastrnn.forward(params, x, h0, backend=backend)
    L, grads, h_T = fastrnn.loss_and_grad(params, x, y, h0, loss=loss, reduction=reduction,
                                          backend=backend)
    T, B = x.shape[:2]
    ws = fastrnn.get_workspace(params, T, B)
    out = {name: view.copy() for name, view in grads.items()}
    out.update(loss=np.array(L), o=o, h_T=h_T.copy(), dh0=grads.h0.copy(),
               kappa=ws.cells[0].kappa.copy())
    return out


def check(backend, *, T, B, dtype, cell="tanh", loss="cross_entropy", reduction="sum",
          tokens=False, with_h0=True):
    params, x, y, h0 = make_problem(T=T, B=B, D=6, H=8, O=5, cell=cell, loss=loss,
                                    tokens=tokens, with_h0=with_h0, dtype=dtype, seed=B + T)
    ref = run("reference", params.astype(np.float64), *as64(x, y, h0), loss, reduction)
    comp = run(backend, params, x, y, h0, loss, reduction)
    assert_agree(comp, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("tokens", [True, False], ids=["ids", "dense"])
def test_backend_matches_reference(path, dtype, cell, tokens):
    check(path, T=25, B=4, dtype=dtype, cell=cell, tokens=tokens)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_losses_match_reference(fast_backend, dtype, loss, reduction):
    check(fast_backend, T=25, B=4, dtype=dtype, loss=loss, reduction=reduction)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, T", [(1, 1), (1, 25), (4, 1), (32, 25)])
def test_backend_matches_reference_at_the_edges(path, dtype, B, T):
    check(path, T=T, B=B, dtype=dtype)


def test_a_missing_h0_is_a_zero_state(fast_backend):
    check(fast_backend, T=25, B=4, dtype=np.float64, with_h0=False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [
    dict(T=25, B=1, D=65, H=100, O=65, tokens=True),
    dict(T=20, B=32, D=64, H=256, O=64, tokens=False),
], ids=["S", "M"])
def test_backend_matches_reference_at_benchmark_sizes(fast_backend, dtype, size):
    """Gradients agree at the benchmark sizes, through whichever path the size picks."""
    params, x, y, h0 = make_problem(cell="tanh", dtype=dtype, seed=5, **size)
    ref = run("reference", params.astype(np.float64), *as64(x, y, h0), "cross_entropy",
              "sum")
    comp = run(fast_backend, params, x, y, h0, "cross_entropy", "sum")
    assert_agree(comp, ref, dtype)


def test_workspace_is_reused_and_grads_can_be_owned(fast_backend):
    params, x, y, h0 = make_problem(T=6, B=3)
    _, g1, h1 = fastrnn.loss_and_grad(params, x, y, h0, backend=fast_backend)
    mine = fastrnn.Grads(params, 3)
    _, g2, h2 = fastrnn.loss_and_grad(params, x, y, h0, backend=fast_backend, grads=mine)
    assert g2 is mine and g1 is not mine
    np.testing.assert_array_equal(mine.data, g1.data)
    np.testing.assert_array_equal(mine.h0, g1.h0)
    assert h1 is not h2 and np.shares_memory(h1, h2)


def test_carrying_the_returned_state_is_safe(fast_backend):
    """h_T is a view into the workspace; passing it back as h0 must read it first."""
    params, x, y, h0 = make_problem(T=5, B=2)
    _, _, h_mid = fastrnn.loss_and_grad(params, x[:2], y[:2], h0, backend=fast_backend)
    expected = fastrnn.forward(params, x[2:], h_mid.copy(), backend="reference")[0]
    o = fastrnn.forward(params, x[2:], h_mid, backend=fast_backend)[0]
    np.testing.assert_allclose(o, expected, rtol=1e-12)


def test_auto_prefers_a_compiled_backend(monkeypatch):
    monkeypatch.delenv("FASTRNN_BACKEND", raising=False)
    assert fastrnn.backends.resolve("auto") == FAST[0]
    monkeypatch.setenv("FASTRNN_BACKEND", "reference")
    assert fastrnn.backends.resolve("auto") == "reference"


def test_fastrnn_backend_auto_means_no_override(monkeypatch):
    monkeypatch.setenv("FASTRNN_BACKEND", "auto")
    assert fastrnn.backends.resolve("auto") == FAST[0]


@pytest.mark.filterwarnings("ignore:overflow encountered in subtract")   # p = exp(-inf)
@pytest.mark.parametrize("loss, target", [("cross_entropy", 1), ("mse", -3e38)])
def test_float32_losses_at_float32s_range_agree_with_the_reference(fast_backend, loss,
                                                                   target):
    """Every backend sums the loss in float64: logits of +-3e38 (a term of 6e38) and
    squared errors whose float32 sum would overflow give the reference's loss."""
    params = fastrnn.init_params(3, 4, 2, dtype=np.float32, seed=0)
    params.V[...] = 0.0
    params.c[...] = (3e38, -3e38) if loss == "cross_entropy" else (0.0, 0.0)
    x = np.zeros((4, 2, 3), np.float32)
    if loss == "cross_entropy":
        y = np.full((4, 2), target)
    else:
        y = np.full((4, 2, 2), np.float32(target / 3e19), np.float32)   # (1e19)^2 = 1e38
    ref = fastrnn.loss_and_grad(params, x, y, loss=loss, backend="reference")[0]
    fast = fastrnn.loss_and_grad(params, x, y, loss=loss, backend=fast_backend)[0]
    assert np.isfinite(ref) and ref > float(np.finfo(np.float32).max)
    np.testing.assert_allclose(fast, ref, rtol=1e-6)


def test_auto_steps_a_stack_on_cython_and_the_derivations_network_on_numba(monkeypatch):
    """The step kinds' orders (measured, see fastrnn.backends) reach the step calls."""
    monkeypatch.delenv("FASTRNN_BACKEND", raising=False)
    order = {"step of a stack": ("cython", "numba"), "step": ("numba", "cython")}
    for kind, params in (("step of a stack", fastrnn.init_params(3, 4, 2, cell="lstm")),
                         ("step of a stack", fastrnn.init_params(3, 4, 2, num_layers=2)),
                         ("step", fastrnn.init_params(3, 4, 2))):
        expected = next(b for b in order[kind] if b in FAST)
        assert fastrnn.backends.step_kind(params) == kind
        assert fastrnn.backends.resolve("auto", kind) == expected
        stream = fastrnn.Stream(params)
        assert stream._kernels is fastrnn.backends.get(expected)
