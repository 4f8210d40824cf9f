"""Streaming inference: ``step`` and ``Stream`` against running the whole sequence."""
import numpy as np
import pytest

import fastrnn

from conftest import RTOL, make_problem


def stepwise(backend, params, x, h0):
    """o (T, B, O) and h_T by calling ``step`` once per time step, state in place."""
    T, B = x.shape[:2]
    h = h0.copy()
    o = np.empty((T, B, params.output_size), dtype=params.dtype)
    for t in range(T):
        fastrnn.step(params, x[t], h, out=(o[t], h), backend=backend)
    return o, h


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("tokens", [True, False], ids=["ids", "dense"])
@pytest.mark.parametrize("B", [1, 3])
def test_steps_equal_the_sequence(backend, dtype, cell, tokens, B):
    params, x, _, h0 = make_problem(T=6, B=B, cell=cell, tokens=tokens, dtype=dtype)
    ref_o, ref_h = fastrnn.forward(params.astype(np.float64),
                                   x if tokens else x.astype(np.float64),
                                   h0.astype(np.float64), backend="reference")
    o, h = stepwise(backend, params, x, h0)
    tol = dict(rtol=RTOL[dtype], atol=RTOL[dtype] * 10)
    np.testing.assert_allclose(o, ref_o, **tol)
    np.testing.assert_allclose(h, ref_h, **tol)

    stream = fastrnn.Stream(params, batch_size=B, h0=h0, backend=backend)
    for t in range(x.shape[0]):
        np.testing.assert_allclose(stream(x[t]), ref_o[t], **tol)
    np.testing.assert_allclose(stream.state, ref_h, **tol)


def test_single_token_and_fresh_buffers(backend):
    params, x, _, _ = make_problem(T=3, B=1, tokens=True)
    o, h = fastrnn.step(params, int(x[0, 0]), backend=backend)
    ref_o, ref_h = fastrnn.forward(params, x[:1], backend="reference")
    np.testing.assert_allclose(o, ref_o[0], rtol=1e-12)
    np.testing.assert_allclose(h, ref_h, rtol=1e-12)
    stream = fastrnn.Stream(params, backend=backend)
    np.testing.assert_allclose(stream(int(x[0, 0])), ref_o[0], rtol=1e-12)
    stream.reset()
    np.testing.assert_allclose(stream(np.int64(x[0, 0])), ref_o[0], rtol=1e-12)


@pytest.mark.parametrize("x_t, exc", [
    (np.full((2, 5), np.nan), ValueError),
    (np.ones((2, 4)), ValueError),
    (np.ones((2, 5), dtype=np.float32), TypeError),
    (np.array([5, 0]), ValueError),
    ("a", ValueError),
    (np.zeros(0, dtype=np.int64), ValueError),
])
def test_step_rejects_bad_input(backend, x_t, exc):
    params, _, _, _ = make_problem(T=1, B=2, D=5)
    h = np.zeros((2, params.hidden_size))
    with pytest.raises(exc, match=r"^x_t: "):
        fastrnn.step(params, x_t, h, backend=backend)
    with pytest.raises(exc, match=r"^x_t: "):
        fastrnn.Stream(params, batch_size=2, backend=backend)(x_t)


def test_step_rejects_bad_state_and_buffers(backend):
    params, _, _, _ = make_problem(T=1, B=2, D=5)
    x_t = np.ones((2, 5))
    with pytest.raises(ValueError, match=r"^h: "):
        fastrnn.step(params, x_t, np.zeros((3, params.hidden_size)), backend=backend)
    bad_out = (np.zeros((2, params.output_size), np.float32), np.zeros((2, params.hidden_size)))
    with pytest.raises(ValueError, match=r"^out: "):
        fastrnn.step(params, x_t, out=bad_out, backend=backend)
    with pytest.raises(ValueError, match=r"^x_t: expected a batch of 3"):
        fastrnn.Stream(params, batch_size=3, backend=backend)(x_t)
    with pytest.raises(ValueError, match=r"^batch_size: "):
        fastrnn.Stream(params, batch_size=0, backend=backend)


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_non_finite_output_is_reported(backend):
    params, _, _, _ = make_problem(T=1, B=1, D=5)
    params.V[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"^params: "):
        fastrnn.step(params, np.ones((1, 5)), backend=backend)
    params.b[:] = 100.0                        # s_t = tanh(a_t) = 1
    params.V[:, 0] = 1.7e308
    params.c[:] = 1.7e308                      # o_t = c + V s_t overflows
    with pytest.raises(FloatingPointError, match=r"^o_t: "):
        fastrnn.step(params, np.ones((1, 5)), backend=backend)


@pytest.mark.parametrize("cell, num_layers", [("tanh", 1), ("lstm", 1), ("gru", 2)])
def test_steps_leave_a_one_step_training_result_alone(backend, cell, num_layers):
    """The final state and gradients of loss_and_grad over T = 1 are views of a workspace;
    a streaming step at the same B wrote its own state over them on the reference
    backend (for stacks) and not on the compiled ones."""
    params = fastrnn.init_params(3, 4, 2, cell=cell, num_layers=num_layers, seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((1, 2, 3)), rng.integers(0, 2, (1, 2))
    _, grads, h_T = fastrnn.loss_and_grad(params, x, y, backend=backend)
    results = (*(h_T if isinstance(h_T, tuple) else (h_T,)), grads.data, grads.h0)
    before = [a.copy() for a in results]
    fastrnn.step(params, rng.standard_normal((2, 3)), backend=backend)
    fastrnn.Stream(params, 2, backend=backend)(rng.standard_normal((2, 3)))
    for now, then in zip(results, before):
        np.testing.assert_array_equal(now, then)
