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
    ("params-inf", lambda k: k["params"].b.__setitem__(slice(None), np.inf), ValueError,
     "params"),
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
    (dict(dtype="flaot32"), TypeError, "dtype"),
    (dict(seed="a"), TypeError, "seed"),
    (dict(seed=-1), ValueError, "seed"),
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


def test_params_reject_data_that_is_not_an_array():
    size = fastrnn.Params(3, 4, 2).data.size
    with pytest.raises(TypeError, match=rf"^data: expected a NumPy array of shape \({size},\), "
                                        r"got list"):
        fastrnn.Params(3, 4, 2, data=[0.0] * size)
    with pytest.raises(TypeError, match=r"^dtype: expected float32 or float64, got 'bogus'"):
        fastrnn.init_params(3, 4, 2).astype("bogus")


def test_a_backend_that_is_not_a_name_is_refused():
    kwargs = problem()
    with pytest.raises(ValueError, match=r"^backend: expected 'auto' or one of"):
        fastrnn.loss_and_grad(**kwargs, backend=["numba"])


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_read_only_params_run_on_every_backend(cell, backend):
    """Params over a read-only buffer (a memory-mapped checkpoint, say) serve every call
    that only reads them."""
    params, x, y, _ = make_problem(T=T, B=B, D=D, H=H, O=O)
    params = fastrnn.init_params(D, H, O, cell=cell, seed=1)
    data = params.data.copy()
    data.setflags(write=False)
    frozen = fastrnn.Params(D, H, O, cell=cell, data=data)
    o, _ = fastrnn.forward(frozen, x, backend=backend)
    np.testing.assert_array_equal(o, fastrnn.forward(params, x, backend=backend)[0])
    loss, _, _ = fastrnn.loss_and_grad(frozen, x, y, backend=backend)
    assert loss == fastrnn.loss_and_grad(params, x, y, backend=backend)[0]
    o_t, _ = fastrnn.step(frozen, x[0], backend=backend)
    np.testing.assert_allclose(o_t, o[0], rtol=1e-12)
    np.testing.assert_allclose(fastrnn.Stream(frozen, B, backend=backend)(x[0]), o[0],
                               rtol=1e-12)


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
@pytest.mark.parametrize("cell, num_layers", [("tanh", 1), ("relu", 2), ("gru", 1)])
def test_overflowing_forward_is_an_error_not_an_inf(cell, num_layers, backend):
    params = fastrnn.init_params(D, H, O, cell=cell, num_layers=num_layers, seed=0)
    x = np.ones((T, B, D))
    for layer in params.layers:
        layer.b[...] = 50.0                 # saturated: tanh and the GRU's h_t near 1
        if cell == "gru":
            layer.b[H:2 * H] = -50.0        # z_t = 0: h_t = n_t
        layer.U[...] = 1e150 if cell == "relu" else 0.0
    params.V[:] = 1.7e308
    params.c[:] = 1.7e308                   # o_t overflows to inf
    with pytest.raises(FloatingPointError, match=r"^o: the outputs or the final state "
                                                 r"overflowed"):
        fastrnn.forward(params, x, backend=backend)


@pytest.mark.parametrize("cell, h0, exc, message", [
    ("lstm", np.ones((1, 3)), TypeError, "h0: expected an LSTM state, a pair (h, c)"),
    ("lstm", 5, TypeError, "h0: expected an LSTM state, a pair (h, c)"),
    ("gru", "abc", TypeError, "h0: expected a state of floats, got str"),
    ("gru", (np.ones((1, 3)), np.ones((1, 3))), TypeError,
     "h0: expected one array of shape (1, 3) for cell 'gru'"),
    ("tanh", np.ones((2, 3)), ValueError, "h0: expected shape (B, H) = (1, 3)"),
])
def test_gradcheck_checks_h0(cell, h0, exc, message):
    from fastrnn.gradcheck import gradcheck
    params = fastrnn.init_params(2, 3, 2, cell=cell, seed=0)
    with pytest.raises(exc) as info:
        gradcheck(params, np.ones((2, 1, 2)), np.zeros((2, 1), dtype=int), h0)
    assert str(info.value).startswith(message), str(info.value)


def test_sgd_step_rejects_other_layout():
    params = fastrnn.init_params(3, 4, 2, seed=0)
    with pytest.raises(TypeError, match=r"^grads: "):
        fastrnn.sgd_step(params, fastrnn.init_params(3, 5, 2), 0.1)


def test_sgd_step_refuses_read_only_params():
    """Read-only params serve forward passes; an update in place names them (it was a
    Numba typing error)."""
    params = fastrnn.init_params(3, 4, 2, seed=0)
    grads = fastrnn.init_params(3, 4, 2, seed=1)
    params.data.flags.writeable = False
    with pytest.raises(ValueError, match=r"^params.data: expected a writable array"):
        fastrnn.sgd_step(params, grads, 0.1)


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.longdouble])
@pytest.mark.parametrize("layout", ["C", "F", "strided", "read-only"])
@pytest.mark.parametrize("size", [0, 1, 7, 1000])
def test_all_finite_agrees_with_numpy(dtype, layout, size):
    """The compiled test of contiguous float32/float64 arrays and the summing one of the
    others agree with np.isfinite, wherever the bad value sits (first, inside a vector
    block, last) and whatever it is."""
    from fastrnn._checks import all_finite

    rng = np.random.default_rng(size)
    base = rng.standard_normal((2 * size, 6)).astype(dtype)
    layouts = {"C": lambda a: a, "F": np.asfortranarray, "strided": lambda a: a[::2, ::2],
               "read-only": lambda a: a}

    def made(index=None, value=None):
        a = layouts[layout](base.copy())
        if index is not None:
            a.flat[index] = value
        a.flags.writeable = layout != "read-only"
        return a

    a = made()
    assert all_finite(a)
    assert a.flags.c_contiguous == (layout in ("C", "read-only") or size == 0)
    for index in {0, a.size // 2, a.size - 1} if a.size else ():
        for value in (np.nan, np.inf, -np.inf):
            assert not all_finite(made(index, value)), (index, value)
    huge = np.full(a.shape, np.finfo(dtype).max, dtype=dtype)
    assert all_finite(huge)                 # their sum overflows; they are finite


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_an_infinite_weight_is_named_though_the_loss_is_finite(cell, backend):
    """With b = inf, tanh, sigmoid and the LSTM's gates saturate: the loss and the
    gradients were finite, and the infinite weight passed silently."""
    _, x, y, _ = make_problem(T=T, B=B, D=D, H=H, O=O)
    params = fastrnn.init_params(D, H, O, cell=cell, seed=0)
    params.b[:] = np.inf
    with pytest.raises(ValueError, match=r"^params: expected finite values, got inf"):
        fastrnn.loss_and_grad(params, x, y, backend=backend)


@pytest.mark.filterwarnings("ignore:overflow encountered")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_overflow_from_huge_targets_names_the_targets(dtype, backend):
    """(o - y)^2 overflowing for targets y near the dtype's largest number was blamed on
    the weights ("weights too large: lower the learning rate")."""
    kwargs = problem(loss="mse", dtype=dtype)
    kwargs["y"][1, 0, 2] = -np.finfo(dtype).max / 2
    with pytest.raises(FloatingPointError) as info:
        fastrnn.loss_and_grad(**kwargs, backend=backend)
    message = str(info.value)
    assert message.startswith("y: the squared error overflowed"), message
    assert f"{np.finfo(dtype).max / 2:.3g}" in message and "weights" not in message

