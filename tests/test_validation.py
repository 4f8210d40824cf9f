"""Bad input is rejected once, up front, with a message naming the argument."""
import numpy as np
import pytest

import fastrnn

from conftest import make_problem

T, B, D, H, O = 4, 2, 5, 3, 6


def problem(loss="cross_entropy", dtype=np.float64):
    params, x, y, h0 = make_problem(T=T, B=B, D=D, H=H, O=O, loss=loss, dtype=dtype)
    return dict(params=params, x=x, y=y, h0=h0, loss=loss)


def with_nan(a, value=np.nan):
    a = a.copy()
    a.flat[1] = value
    return a


# (id, change to the good call, exception, argument the message must start with)
CASES = [
    ("x-ndim", lambda k: k.update(x=k["x"][..., None]), ValueError, "x"),
    ("x-D", lambda k: k.update(x=k["x"][..., :D - 1]), ValueError, "x"),
    ("x-T0", lambda k: k.update(x=k["x"][:0], y=k["y"][:0]), ValueError, "x"),
    ("x-B0", lambda k: k.update(x=k["x"][:, :0], y=k["y"][:, :0]), ValueError, "x"),
    ("x-ids-ndim", lambda k: k.update(x=np.zeros((T, B, 1), dtype=np.int64)), ValueError, "x"),
    ("x-ids-high", lambda k: k.update(x=np.full((T, B), D)), ValueError, "x"),
    ("x-ids-negative", lambda k: k.update(x=np.full((T, B), -1)), ValueError, "x"),
    ("x-float32", lambda k: k.update(x=k["x"].astype(np.float32)), TypeError, "x"),
    ("x-bool", lambda k: k.update(x=k["x"] > 0), TypeError, "x"),
    ("x-nan", lambda k: k.update(x=with_nan(k["x"])), ValueError, "x"),
    ("x-inf", lambda k: k.update(x=with_nan(k["x"], np.inf)), ValueError, "x"),
    ("h0-shape", lambda k: k.update(h0=k["h0"][:, :H - 1]), ValueError, "h0"),
    ("h0-batch", lambda k: k.update(h0=np.zeros((B + 1, H))), ValueError, "h0"),
    ("h0-float32", lambda k: k.update(h0=k["h0"].astype(np.float32)), TypeError, "h0"),
    ("h0-inf", lambda k: k.update(h0=with_nan(k["h0"], -np.inf)), ValueError, "h0"),
    ("y-shape", lambda k: k.update(y=k["y"][:T - 1]), ValueError, "y"),
    ("y-float-for-ce", lambda k: k.update(y=k["y"].astype(np.float64)), TypeError, "y"),
    ("y-ids-high", lambda k: k.update(y=np.full((T, B), O)), ValueError, "y"),
    ("y-int-for-mse", lambda k: k.update(loss="mse"), TypeError, "y"),
    ("loss", lambda k: k.update(loss="hinge"), ValueError, "loss"),
    ("reduction", lambda k: k.update(reduction="max"), ValueError, "reduction"),
    ("backend", lambda k: k.update(backend="cuda"), ValueError, "backend"),
    ("params-type", lambda k: k.update(params={"U": 1}), TypeError, "params"),
    ("params-nan", lambda k: k["params"].W.__setitem__((0, 0), np.nan), ValueError, "params"),
    ("workspace", lambda k: k.update(workspace=fastrnn.Workspace(k["params"], T + 1, B)),
     ValueError, "workspace"),
]


@pytest.mark.parametrize("change, exc, argument", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_loss_and_grad_rejects(change, exc, argument):
    kwargs = problem()
    change(kwargs)
    with pytest.raises(exc, match=rf"^{argument}: "):
        fastrnn.loss_and_grad(**kwargs)


MSE_CASES = [
    ("y-shape", lambda k: k.update(y=k["y"][..., :O - 1]), ValueError, "y"),
    ("y-float32", lambda k: k.update(y=k["y"].astype(np.float32)), TypeError, "y"),
    ("y-nan", lambda k: k.update(y=with_nan(k["y"])), ValueError, "y"),
]


@pytest.mark.parametrize("change, exc, argument", [c[1:] for c in MSE_CASES],
                         ids=[c[0] for c in MSE_CASES])
def test_mse_targets_are_checked(change, exc, argument):
    kwargs = problem(loss="mse")
    change(kwargs)
    with pytest.raises(exc, match=rf"^{argument}: "):
        fastrnn.loss_and_grad(**kwargs)


FORWARD_CASES = [c for c in CASES if c[3] in ("x", "h0", "backend", "params")]


@pytest.mark.parametrize("change, exc, argument", [c[1:] for c in FORWARD_CASES],
                         ids=[c[0] for c in FORWARD_CASES])
def test_forward_rejects(change, exc, argument):
    kwargs = problem()
    change(kwargs)
    kwargs.pop("y"), kwargs.pop("loss")
    with pytest.raises(exc, match=rf"^{argument}: "):
        fastrnn.forward(**kwargs)


def test_float32_params_reject_float64_inputs():
    kwargs = problem(dtype=np.float32)
    kwargs["x"] = kwargs["x"].astype(np.float64)
    with pytest.raises(TypeError, match=r"^x: expected dtype float32"):
        fastrnn.loss_and_grad(**kwargs)


@pytest.mark.parametrize("kwargs, exc, argument", [
    (dict(cell="softsign"), ValueError, "cell"),
    (dict(dtype=np.int32), TypeError, "dtype"),
    (dict(dtype=np.float16), TypeError, "dtype"),
    (dict(hidden_size=0), ValueError, "hidden_size"),
    (dict(input_size=2.5), TypeError, "input_size"),
])
def test_init_params_rejects(kwargs, exc, argument):
    sizes = dict(input_size=3, hidden_size=4, output_size=2)
    sizes.update(kwargs)
    with pytest.raises(exc, match=rf"^{argument}: "):
        fastrnn.init_params(**sizes)


@pytest.mark.parametrize("lr, exc", [(0.0, ValueError), (-1.0, ValueError),
                                     (np.nan, ValueError), ("0.1", TypeError)])
def test_sgd_step_rejects_learning_rate(lr, exc):
    params = fastrnn.init_params(3, 4, 2, seed=0)
    with pytest.raises(exc, match=r"^lr: "):
        fastrnn.sgd_step(params, params.zeros_like(), lr)


def test_sgd_step_rejects_other_layout():
    params = fastrnn.init_params(3, 4, 2, seed=0)
    with pytest.raises(TypeError, match=r"^grads: "):
        fastrnn.sgd_step(params, fastrnn.init_params(3, 5, 2), 0.1)


def test_backend_override_from_environment(monkeypatch):
    monkeypatch.setenv("FASTRNN_BACKEND", "nope")
    kwargs = problem()
    with pytest.raises(ValueError, match=r"^FASTRNN_BACKEND: "):
        fastrnn.loss_and_grad(**kwargs)


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_overflowing_loss_is_an_error_not_a_nan(backend):
    params, x, y, h0 = make_problem(T=3, B=2, D=D, H=H, O=O)
    params.b[:] = 100.0                     # s_t = 1
    params.V[:] = 1.7e308
    params.c[:] = 1.7e308                   # o_t overflows to inf
    with pytest.raises(FloatingPointError, match=r"^loss: "):
        fastrnn.loss_and_grad(params, x, y, h0, backend=backend)
