"""LSTM and GRU through the compiled backends (Numba, Cython) against the reference.

comp = ``fastrnn.loss_and_grad`` on a compiled backend in the tested dtype, ref = the
same on the reference backend in float64 (float64 copies of the problem). Every
workspace buffer starts as NaN, so an entry a kernel forgets to write shows. Results
agree by conftest.assert_agree (float64 entry by entry, float32 to RTOL[float32] of
each tensor's largest entry).

H = 13: 2H, 3H and H are no multiple of the vector width, so every loop has a tail; the
Numba backend runs both ways through the recurrent products (plain loops and BLAS).
"""
import numpy as np
import pytest

import fastrnn
from fastrnn._numba import kernels as numba_kernels

from conftest import DTYPES, assert_agree
from test_gated_reference import make_gated_problem

COMPILED = [b for b in fastrnn.available_backends() if b != "reference"]
# (backend, Numba's recurrent products: "loops", "blas"; Cython always calls BLAS)
MODES = [(b, m) for b in COMPILED for m in (("loops", "blas") if b == "numba" else ("blas",))]


def as_params(cell, arrays, dtype):
    """Params holding the problem's weights, and its initial state."""
    (G, D), H, O = arrays["U"].shape, arrays["W"].shape[1], arrays["V"].shape[0]
    params = fastrnn.Params(D, H, O, cell=cell, dtype=dtype)
    for name in params.names:
        getattr(params, name)[...] = arrays[name]
    state = (arrays["h0"], arrays["c0"]) if cell == "lstm" else arrays["h0"]
    return params, state


def run(backend, params, x, y, state, loss):
    """A training step; every result as a float64 array, kappa included."""
    T, B = x.shape[:2]
    fastrnn.get_workspace(params, T, B).arena.fill(np.nan)
    L, grads, final = fastrnn.loss_and_grad(params, x, y, state, loss=loss, backend=backend)
    ws = fastrnn.get_workspace(params, T, B)
    out = dict(loss=np.array(L), o=ws.o, h0=grads.h0, kappa=ws.cells[0].kappa,
               **{"d" + name: view for name, view in grads.items()})
    for i, part in enumerate(final if isinstance(final, tuple) else (final,)):
        out[f"final{i}"] = part
    if grads.c0 is not None:
        out["c0"] = grads.c0
    return {name: np.array(value, dtype=np.float64) for name, value in out.items()}


def check(cell, backend, mode, dtype, tokens, loss, B, T, monkeypatch, D=7, H=13, O=5,
          seed=0):
    arrays, x, y = make_gated_problem(cell, T=T, B=B, D=D, H=H, O=O, loss=loss,
                                      tokens=tokens, dtype=dtype, seed=seed)
    monkeypatch.setattr(numba_kernels, "BLAS_MIN_WORK_GATED", 0 if mode == "blas" else 10**12)
    params, state = as_params(cell, arrays, dtype)
    comp = run(backend, params, x, y, state, loss)
    ref_params, ref_state = as_params(cell, arrays, np.float64)
    cast = (lambda a: a.astype(np.float64)) if dtype == np.float32 else (lambda a: a)
    ref_state = tuple(map(cast, ref_state)) if cell == "lstm" else cast(ref_state)
    ref = run("reference", ref_params, x if x.dtype.kind == "i" else cast(x),
              y if y.dtype.kind == "i" else cast(y), ref_state, loss)
    for name in comp:
        assert not np.isnan(comp[name]).any(), name
    assert_agree(comp, ref, dtype)


# Crossed: what selects other compiled code (backend and its path through the recurrent
# products, cell, dtype, input kind). The loss kernel depends on the backend and dtype
# only; one row and one step are the edge cases of each cell's loops.
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", [True, False], ids=["ids", "dense"])
@pytest.mark.parametrize("backend, mode", MODES)
def test_kernels_match_reference(cell, backend, mode, dtype, tokens, monkeypatch):
    check(cell, backend, mode, dtype, tokens, "cross_entropy", 4, 25, monkeypatch, seed=29)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", COMPILED)
def test_kernels_match_reference_on_squared_error(backend, dtype, monkeypatch):
    check("lstm", backend, "blas", dtype, False, "mse", 4, 25, monkeypatch, seed=29)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, T", [(1, 1), (1, 25), (4, 1), (32, 25)])
@pytest.mark.parametrize("backend, mode", MODES)
def test_kernels_match_reference_at_the_edges(cell, backend, mode, dtype, B, T, monkeypatch):
    check(cell, backend, mode, dtype, False, "cross_entropy", B, T, monkeypatch,
          seed=B + T)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("tokens", [True, False], ids=["ids", "dense"])
@pytest.mark.parametrize("backend, mode", MODES)
def test_kernels_match_reference_with_full_vectors(cell, backend, mode, dtype, tokens,
                                                   monkeypatch):
    """H = 40 runs the vectorised loop bodies (16 float32 lanes) as well as their tails."""
    check(cell, backend, mode, dtype, tokens, "cross_entropy", 8, 20, monkeypatch, D=16,
          H=40, O=11, seed=7)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("backend, mode", MODES)
def test_state_carried_in_the_same_buffers(cell, backend, mode, monkeypatch):
    """Passing back the final state, views into the workspace being written: each cell
    reads its initial state before anything writes the final one."""
    monkeypatch.setattr(numba_kernels, "BLAS_MIN_WORK_GATED", 0 if mode == "blas" else 10**12)
    T, B = 6, 3
    arrays, x, y = make_gated_problem(cell, T=2 * T, B=B, D=5, H=8, O=4)
    params, state = as_params(cell, arrays, np.float64)
    o_whole, final_whole = fastrnn.forward(params, x, state, backend=backend)
    _, _, mid = fastrnn.loss_and_grad(params, x[:T], y[:T], state, backend=backend)
    _, _, final = fastrnn.loss_and_grad(params, x[T:], y[T:], mid, backend=backend)
    _, _, mid = fastrnn.loss_and_grad(params, x[:T], y[:T], state, backend=backend)
    o, _ = fastrnn.forward(params, x[T:], mid, backend=backend)
    np.testing.assert_allclose(o, o_whole[T:], rtol=1e-13)
    for part, whole in zip(final if cell == "lstm" else (final,),
                           final_whole if cell == "lstm" else (final_whole,)):
        np.testing.assert_allclose(part, whole, rtol=1e-13)
