"""The fused Numba LSTM and GRU kernels against the references (fastrnn._numba.gated).

ref = fastrnn.reference.lstm / gru with reference.rnn.loss_and_output_grad, computed in
float64 on float64 copies of the problem; comp = the kernels in the tested dtype, their
loss through the vanilla RNN's loss kernels. Every buffer the kernels write starts as
NaN, so an entry they forget to write shows. Float64 must agree to RTOL[float64] entry
by entry; in float32 every entry must lie within RTOL[float32] times the largest entry
of that tensor (the convention of test_backends.py).
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastrnn._numba import gated, rnn
from fastrnn.reference.gru import gru_bptt, gru_forward
from fastrnn.reference.lstm import lstm_bptt, lstm_forward
from fastrnn.reference.rnn import loss_and_output_grad

from conftest import RTOL
from test_gated_reference import make_gated_problem

GATES = {"lstm": 4, "gru": 3}


def buffers(cell, T, B, D, H, O, dtype):
    """Every array the kernels write, filled with NaN."""
    G = GATES[cell] * H

    def nan(*shape):
        return np.full(shape, np.nan, dtype=dtype)

    ws = dict(gates=nan(T, B, G), h=nan(T + 1, B, H), o=nan(T, B, O), do=nan(T, B, O),
              kappa=nan(T, B, H), da=nan(T, B, G), dU=nan(G, D), dW=nan(G, H), db=nan(G),
              dV=nan(O, H), dc=nan(O), dh0=nan(B, H))
    if cell == "lstm":
        ws.update(cell=nan(T + 1, B, H), dcell=nan(B, H), dc0=nan(B, H))
    else:
        ws.update(ah_n=nan(T, B, H), dah_n=nan(T, B, H), db_hh=nan(G))
    return ws


def forward(cell, p, x, ws, blas, WT=None):
    """The forward kernel; WT (H, G) scratch is passed only when given."""
    kind = "ids" if x.ndim == 2 else "dense"
    if cell == "lstm":
        args = (p["U"], p["W"], p["b"], p["V"], p["c"], x, p["h0"], p["c0"],
                ws["gates"], ws["cell"], ws["h"], ws["o"], blas)
    else:
        args = (p["U"], p["W"], p["b"], p["b_hh"], p["V"], p["c"], x, p["h0"],
                ws["gates"], ws["ah_n"], ws["h"], ws["o"], blas)
    kernel = getattr(gated, f"{cell}_forward_{kind}")
    if WT is None:
        kernel(*args)
    else:
        kernel(*args, WT)


def backward(cell, p, x, ws, blas):
    kind = "ids" if x.ndim == 2 else "dense"
    if cell == "lstm":
        getattr(gated, "lstm_backward_" + kind)(
            p["U"], p["W"], p["V"], x, ws["gates"], ws["cell"], ws["h"], ws["do"],
            ws["kappa"], ws["da"], ws["dcell"], ws["dU"], ws["dW"], ws["db"], ws["dV"],
            ws["dc"], ws["dh0"], ws["dc0"], blas)
    else:
        getattr(gated, "gru_backward_" + kind)(
            p["U"], p["W"], p["V"], x, ws["gates"], ws["ah_n"], ws["h"], ws["do"],
            ws["kappa"], ws["da"], ws["dah_n"], ws["dU"], ws["dW"], ws["db"], ws["db_hh"],
            ws["dV"], ws["dc"], ws["dh0"], blas)


def run_kernels(cell, p, x, y, loss, mode):
    """A training step through the kernels: forward, loss, backward; the results.

    mode: "loops" (blas false, no WT), "loops-WT" (blas false, WT given) or "blas".
    """
    T, B = x.shape[:2]
    (G, D), H, O = p["U"].shape, p["W"].shape[1], p["V"].shape[0]
    ws = buffers(cell, T, B, D, H, O, p["W"].dtype)
    blas = mode == "blas"
    WT = np.full((H, G), np.nan, dtype=p["W"].dtype) if mode == "loops-WT" else None
    forward(cell, p, x, ws, blas, WT)
    kernel = rnn.cross_entropy if loss == "cross_entropy" else rnn.squared_error
    L = kernel(ws["o"], y, 1.0, ws["do"])
    backward(cell, p, x, ws, blas)
    out = dict(loss=np.array(L), o=ws["o"], gates=ws["gates"], h=ws["h"], h_T=ws["h"][-1],
               kappa=ws["kappa"], dU=ws["dU"], dW=ws["dW"], db=ws["db"], dV=ws["dV"],
               dc=ws["dc"], dh0=ws["dh0"])
    # da (and the GRU's dah_n) as documented: the gradients they sum to.
    da, h_prev = ws["da"].astype(np.float64), ws["h"][:-1].astype(np.float64)
    hidden_side = da
    if cell == "lstm":
        out.update(cell=ws["cell"], c_T=ws["cell"][-1], dc0=ws["dc0"])
    else:
        hidden_side = np.concatenate([da[..., :2 * H], ws["dah_n"]], axis=-1)
        out.update(ah_n=ws["ah_n"], db_hh=ws["db_hh"],
                   da_sum_hidden=hidden_side.sum(axis=(0, 1)))
    out.update(da_sum=da.sum(axis=(0, 1)),
               da_h_prev=np.einsum("tbg,tbh->gh", hidden_side, h_prev))
    return out


def run_reference(cell, p, x, y, loss):
    """The same results from the reference, in float64."""
    p = {name: a.astype(np.float64) for name, a in p.items()}
    if x.dtype.kind == "f":
        x = x.astype(np.float64)
    if y.dtype.kind == "f":
        y = y.astype(np.float64)
    if cell == "lstm":
        cache = lstm_forward(p["U"], p["W"], p["b"], p["V"], p["c"], x, p["h0"], p["c0"])
    else:
        cache = gru_forward(p["U"], p["W"], p["b"], p["b_hh"], p["V"], p["c"], x, p["h0"])
    L, do = loss_and_output_grad(cache["o"], y, loss)
    bptt = lstm_bptt if cell == "lstm" else gru_bptt
    g = bptt(p["U"], p["W"], p["V"], x, cache, do)
    out = dict(loss=np.array(L), o=cache["o"], gates=cache["gates"], h=cache["h"],
               h_T=cache["h"][-1], kappa=g["kappa"], dU=g["dU"], dW=g["dW"], db=g["db"],
               dV=g["dV"], dc=g["dc"], dh0=g["dh0"], da_sum=g["db"], da_h_prev=g["dW"])
    if cell == "lstm":
        out.update(cell=cache["c"], c_T=cache["c"][-1], dc0=g["dc0"])
    else:
        out.update(ah_n=cache["ah_n"], db_hh=g["db_hh"], da_sum_hidden=g["db_hh"])
    return out


def assert_agree(comp, ref, dtype):
    """The largest difference, relative to each tensor's largest entry, after asserting."""
    assert comp.keys() == ref.keys()
    worst = 0.0
    for name in ref:
        assert not np.isnan(comp[name]).any(), name
        scale = max(np.abs(ref[name]).max(), 1e-30)
        if dtype == np.float64:
            np.testing.assert_allclose(comp[name], ref[name], rtol=RTOL[dtype], atol=1e-13,
                                       err_msg=name)
        else:
            np.testing.assert_allclose(comp[name], ref[name], rtol=0,
                                       atol=RTOL[dtype] * scale, err_msg=name)
        worst = max(worst, float(np.abs(comp[name] - ref[name]).max() / scale))
    return worst


def check(cell, dtype, tokens, loss, B, T, mode, D=7, H=13, O=5, seed=0):
    arrays, x, y = make_gated_problem(cell, T=T, B=B, D=D, H=H, O=O, loss=loss,
                                      tokens=tokens, dtype=dtype, seed=seed)
    comp = run_kernels(cell, arrays, x, y, loss, mode)
    for name in ("o", "gates", "h", "kappa", "dU", "dW", "dh0"):
        assert comp[name].dtype == dtype, name
    return assert_agree(comp, run_reference(cell, arrays, x, y, loss), dtype)


MODES = ["loops", "loops-WT", "blas"]


# H = 13: 2H, 3H and H are no multiple of the vector width, so every loop has a tail.
# With O = 5, T = 1 sends the forward product through h[t + 1] one gate block at a time
# (o is too small to hold it) and T = 25 through o in one GEMM.
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("tokens", [True, False], ids=["ids", "dense"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("B", [1, 4, 32])
@pytest.mark.parametrize("T", [1, 25])
@pytest.mark.parametrize("mode", MODES)
def test_kernels_match_reference(cell, dtype, tokens, loss, B, T, mode):
    check(cell, dtype, tokens, loss, B, T, mode, seed=B + T)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("tokens", [True, False], ids=["ids", "dense"])
@pytest.mark.parametrize("mode", MODES)
def test_kernels_match_reference_with_full_vectors(cell, dtype, tokens, mode):
    """H = 40 runs the vectorised loop bodies (16 float32 lanes) as well as their tails."""
    check(cell, dtype, tokens, "cross_entropy", 8, 20, mode, D=16, H=40, O=11, seed=7)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("blas", [False, True], ids=["loops", "blas"])
def test_state_carried_in_the_same_buffers(cell, blas):
    """h0 = h[T] (and c0 = cell[T]) of the buffers being written: they are read first."""
    T, B, D, H, O = 6, 3, 5, 8, 4
    arrays, x, _ = make_gated_problem(cell, T=2 * T, B=B, D=D, H=H, O=O)
    whole = buffers(cell, 2 * T, B, D, H, O, np.float64)
    forward(cell, arrays, x, whole, blas)
    ws = buffers(cell, T, B, D, H, O, np.float64)
    forward(cell, arrays, x[:T], ws, blas)
    carried = dict(arrays, h0=ws["h"][T])
    if cell == "lstm":
        carried["c0"] = ws["cell"][T]
    forward(cell, carried, x[T:], ws, blas)
    np.testing.assert_allclose(ws["o"], whole["o"][T:], rtol=1e-13)
    np.testing.assert_allclose(ws["h"][T], whole["h"][2 * T], rtol=1e-13)


NRT_SCRIPT = textwrap.dedent("""
    import numba
    import numpy as np
    from numba.core.runtime import rtsys
    from fastrnn._numba import gated, rnn

    # A compiled driver calls the kernels n times. Passing arrays into compiled code
    # costs one NRT record per array, once per driver call; if the kernels allocated,
    # the count would grow with n. One driver per cell keeps the compile time down: it
    # runs the token-id kernels without WT (the looped forward's dot products) and the
    # dense kernels with WT (its axpy form), which share everything else.
    @numba.njit
    def train_lstm(n, p, ws, g, x_ids, y_ids, x, y, WT, blas):
        U, W, b, V, c, h0, c0 = p
        gates, cell, h, o, do, kappa, da, dcell = ws
        dU, dW, db, dV, dc, dh0, dc0 = g
        for _ in range(n):
            gated.lstm_forward_ids(U, W, b, V, c, x_ids, h0, c0, gates, cell, h, o, blas)
            rnn.cross_entropy(o, y_ids, 1.0, do)
            gated.lstm_backward_ids(U, W, V, x_ids, gates, cell, h, do, kappa, da, dcell,
                                    dU, dW, db, dV, dc, dh0, dc0, blas)
            gated.lstm_forward_dense(U, W, b, V, c, x, h0, c0, gates, cell, h, o, blas,
                                     WT)
            rnn.squared_error(o, y, 1.0, do)
            gated.lstm_backward_dense(U, W, V, x, gates, cell, h, do, kappa, da, dcell,
                                      dU, dW, db, dV, dc, dh0, dc0, blas)

    @numba.njit
    def train_gru(n, p, ws, g, x_ids, y_ids, x, y, WT, blas):
        U, W, b, b_hh, V, c, h0 = p
        gates, ah_n, h, o, do, kappa, da, dah_n = ws
        dU, dW, db, db_hh, dV, dc, dh0 = g
        for _ in range(n):
            gated.gru_forward_ids(U, W, b, b_hh, V, c, x_ids, h0, gates, ah_n, h, o, blas)
            rnn.cross_entropy(o, y_ids, 1.0, do)
            gated.gru_backward_ids(U, W, V, x_ids, gates, ah_n, h, do, kappa, da, dah_n,
                                   dU, dW, db, db_hh, dV, dc, dh0, blas)
            gated.gru_forward_dense(U, W, b, b_hh, V, c, x, h0, gates, ah_n, h, o, blas,
                                    WT)
            rnn.squared_error(o, y, 1.0, do)
            gated.gru_backward_dense(U, W, V, x, gates, ah_n, h, do, kappa, da, dah_n,
                                     dU, dW, db, db_hh, dV, dc, dh0, blas)

    def allocations(fn, n, *args):
        before = rtsys.get_allocation_stats().alloc
        fn(n, *args)
        return rtsys.get_allocation_stats().alloc - before

    # float32 only: no code path depends on the dtype, and every dtype would compile
    # the drivers again. T = 10 sends the forward product through h[t + 1] one gate
    # block at a time (T * O < 3H), T = 20 through o in one GEMM (T * O >= 4H).
    B, D, H, O = 4, 16, 24, 6
    rng = np.random.default_rng(0)

    def arr(*shape):
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    for cell, G, train in (("lstm", 4 * H, train_lstm), ("gru", 3 * H, train_gru)):
        for T in (10, 20):
            if cell == "lstm":
                p = (arr(G, D), arr(G, H), arr(G), arr(O, H), arr(O), arr(B, H), arr(B, H))
                ws = (arr(T, B, G), arr(T + 1, B, H), arr(T + 1, B, H), arr(T, B, O),
                      arr(T, B, O), arr(T, B, H), arr(T, B, G), arr(B, H))
                g = (arr(G, D), arr(G, H), arr(G), arr(O, H), arr(O), arr(B, H), arr(B, H))
            else:
                p = (arr(G, D), arr(G, H), arr(G), arr(G), arr(O, H), arr(O), arr(B, H))
                ws = (arr(T, B, G), arr(T, B, H), arr(T + 1, B, H), arr(T, B, O),
                      arr(T, B, O), arr(T, B, H), arr(T, B, G), arr(T, B, H))
                g = (arr(G, D), arr(G, H), arr(G), arr(G), arr(O, H), arr(O), arr(B, H))
            data = (rng.integers(0, D, (T, B)), rng.integers(0, O, (T, B)),
                    arr(T, B, D), arr(T, B, O))
            for blas in (False, True):
                args = (p, ws, g) + data + (arr(H, G), blas)
                train(1, *args)
                assert allocations(train, 1, *args) == allocations(train, 20, *args), \
                    (cell, T, blas)
                assert all(np.isfinite(a).all() for a in g), (cell, T, blas)
    print("ok")
""")


def test_kernels_allocate_nothing_per_call():
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    proc = subprocess.run([sys.executable, "-c", NRT_SCRIPT], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
