"""The reference against finite differences, and its own invariants."""
import numpy as np
import pytest

import fastrnn
from fastrnn import reference
from fastrnn.gradcheck import numeric_gradient, relative_error

from conftest import make_problem


def check_gradients(*, T=7, B=3, cell="tanh", loss="cross_entropy", reduction="sum",
                    tokens=False):
    params, x, y, h0 = make_problem(T=T, B=B, cell=cell, loss=loss, tokens=tokens)
    errors = fastrnn.gradcheck(params, x, y, h0, loss=loss, reduction=reduction,
                               backend="reference")
    assert set(errors) == {"U", "W", "b", "V", "c", "h0"}
    assert max(errors.values()) <= 1e-6, errors


# Crossed: cell, loss and input kind, each code of its own in the reference. The
# reduction only scales the loss; one row and one step are the edges of the loops.
@pytest.mark.parametrize("cell", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("tokens", [True, False], ids=["ids", "dense"])
def test_gradcheck(cell, loss, tokens):
    check_gradients(cell=cell, loss=loss, tokens=tokens)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_gradcheck_of_the_mean(loss):
    check_gradients(loss=loss, reduction="mean")


@pytest.mark.parametrize("tokens", [True, False], ids=["ids", "dense"])
@pytest.mark.parametrize("B, T", [(1, 1), (1, 7), (3, 1)])
def test_gradcheck_at_the_edges(tokens, B, T):
    check_gradients(T=T, B=B, tokens=tokens)


def test_gradcheck_detects_a_wrong_gradient():
    params, x, y, h0 = make_problem(T=4, B=2)
    grads = fastrnn.loss_and_grad(params, x, y, h0)[1]
    wrong = fastrnn.Grads(params, 2, data=grads.data.copy(), h0=grads.h0.copy())
    wrong.W[1, 2] *= 1.01
    errors = fastrnn.gradcheck(params, x, y, h0, grads=wrong)
    assert errors["W"] > 1e-4
    assert errors["U"] <= 1e-6


def test_numeric_gradient_at_chosen_entries_equals_the_full_one():
    theta = np.random.default_rng(0).standard_normal((3, 4))

    def f():
        return float(np.sin(theta).sum() + (theta[0] ** 3).sum())
    full = numeric_gradient(f, theta)
    at = np.array([11, 0, 5])
    np.testing.assert_array_equal(numeric_gradient(f, theta, at=at), full.reshape(-1)[at])


def test_gradcheck_on_sampled_entries():
    params, x, y, h0 = make_problem(T=4, B=2, H=6)
    errors = fastrnn.gradcheck(params, x, y, h0, entries=2)
    assert set(errors) == {"U", "W", "b", "V", "c", "h0"}
    assert max(errors.values()) <= 1e-6, errors
    assert fastrnn.gradcheck(params, x, y, h0, entries=10**6) == \
        fastrnn.gradcheck(params, x, y, h0)
    grads = fastrnn.loss_and_grad(params, x, y, h0)[1]
    wrong = fastrnn.Grads(params, 2, data=grads.data.copy(), h0=grads.h0.copy())
    wrong.W[...] *= 1.01
    assert fastrnn.gradcheck(params, x, y, h0, grads=wrong, entries=1)["W"] > 1e-4
    for entries in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="entries: expected a positive int"):
            fastrnn.gradcheck(params, x, y, h0, entries=entries)


def test_token_ids_equal_one_hot_inputs():
    params, ids, y, h0 = make_problem(T=6, B=3, tokens=True)
    onehot = np.eye(params.input_size)[ids]
    L_ids, g_ids, h_ids = fastrnn.loss_and_grad(params, ids, y, h0, backend="reference")
    g_ids = g_ids.data.copy()
    h_ids = h_ids.copy()
    L_dense, g_dense, h_dense = fastrnn.loss_and_grad(params, onehot, y, h0,
                                                      backend="reference")
    np.testing.assert_allclose(L_ids, L_dense, rtol=1e-13)
    np.testing.assert_allclose(g_ids, g_dense.data, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h_ids, h_dense, rtol=1e-13)


def test_cross_entropy_does_not_overflow():
    o = np.array([[[1000.0, -1000.0, 0.0]]])
    y = np.array([[0]])
    L, do = reference.cross_entropy(o, y)
    assert np.isfinite(L) and L == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(do, [[[0.0, 0.0, 0.0]]], atol=1e-12)


@pytest.mark.parametrize("loss, terms", [("cross_entropy", 5 * 2), ("mse", 5 * 2 * 3)])
def test_mean_is_sum_divided_by_the_number_of_terms(loss, terms):
    """T * B terms for cross-entropy (one per token), T * B * O for squared error."""
    params, x, y, h0 = make_problem(T=5, B=2, O=3, loss=loss)
    L_sum, g_sum, _ = fastrnn.loss_and_grad(params, x, y, h0, loss=loss, backend="reference")
    g_sum = g_sum.data.copy()
    L_mean, g_mean, _ = fastrnn.loss_and_grad(params, x, y, h0, loss=loss, reduction="mean",
                                              backend="reference")
    assert L_mean == pytest.approx(L_sum / terms, rel=1e-14)
    np.testing.assert_allclose(g_mean.data, g_sum / terms, rtol=1e-14, atol=1e-17)


def test_kappa_and_da_are_the_derivatives_of_the_loss():
    """kappa_t = dL/ds_t and da_t = dL/da_t, by finite differences on s_t and a_t."""
    params, x, y, h0 = make_problem(T=5, B=2)
    U, W, b, V, c = params.U, params.W, params.b, params.V, params.c
    a, s, o = reference.rnn_forward(U, W, b, V, c, x, h0)
    g = reference.bptt(U, W, V, x, a, s, reference.cross_entropy(o, y)[1])

    def loss_from(t, s_t):
        """L_t + ... + L_T as a function of s_t (the steps before t do not depend on it)."""
        L = reference.cross_entropy((c + s_t @ V.T)[None], y[t - 1:t])[0]
        if t < len(x):
            L += reference.cross_entropy(reference.rnn_forward(U, W, b, V, c, x[t:], s_t)[2],
                                         y[t:])[0]
        return L

    for t in range(1, len(x) + 1):
        e = np.zeros_like(h0)
        kappa_t = numeric_gradient(lambda: loss_from(t, s[t] + e), e)
        da_t = numeric_gradient(lambda: loss_from(t, np.tanh(a[t - 1] + e)), e)
        assert relative_error(kappa_t, g["kappa"][t - 1]) <= 1e-8, t
        assert relative_error(da_t, g["da"][t - 1]) <= 1e-8, t


def test_sigmoid_cell_follows_the_equations():
    """PyTorch has no sigmoid RNN: a_t = b + W s_{t-1} + U x_t in column form, and
    s_t = (1 + tanh(a_t / 2)) / 2, the logistic function written another way."""
    params, x, _, h0 = make_problem(T=3, B=2, cell="sigmoid")
    U, W, b, V, c = params.U, params.W, params.b, params.V, params.c
    a, s, o = reference.rnn_forward(U, W, b, V, c, x, h0, "sigmoid")
    s_prev = h0.T                                 # one column per sequence
    for t in range(len(x)):
        a_t = b[:, None] + W @ s_prev + U @ x[t].T
        s_prev = (1.0 + np.tanh(a_t / 2.0)) / 2.0
        np.testing.assert_allclose(a[t], a_t.T, rtol=1e-13)
        np.testing.assert_allclose(s[t + 1], s_prev.T, rtol=1e-13)
        np.testing.assert_allclose(o[t], (c[:, None] + V @ s_prev).T, rtol=1e-13)


def test_final_state_carries_over():
    """Two halves with the state carried equal one whole sequence."""
    params, x, y, h0 = make_problem(T=8, B=2)
    o_whole, h_whole = fastrnn.forward(params, x, h0, backend="reference")
    o_first, h_mid = fastrnn.forward(params, x[:3], h0, backend="reference")
    o_second, h_end = fastrnn.forward(params, x[3:], h_mid, backend="reference")
    np.testing.assert_allclose(np.concatenate([o_first, o_second]), o_whole, rtol=1e-14)
    np.testing.assert_allclose(h_end, h_whole, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_step_is_the_reference_update_and_descends(dtype):
    params, x, y, h0 = make_problem(T=6, B=2, dtype=dtype)
    L0, grads, _ = fastrnn.loss_and_grad(params, x, y, h0)
    expected = params.data.copy()
    reference.sgd_update(expected, grads.data, 0.05)
    fastrnn.sgd_step(params, grads, 0.05)
    np.testing.assert_array_equal(params.data, expected)
    assert fastrnn.loss_and_grad(params, x, y, h0)[0] < L0


@pytest.mark.parametrize("numeric, analytic", [
    ([1.0, 0.0], [1.0, np.nan]),
    ([0.0, 0.0], [np.nan, np.nan]),
    ([np.nan, 0.0], [1.0, 1.0]),
    ([1.0, 2.0], [1.0, np.inf]),
])
def test_relative_error_of_a_non_finite_gradient_is_infinite(numeric, analytic):
    """inf, not nan or 0: max() over a dict of errors would step over a nan."""
    assert relative_error(np.array(numeric), np.array(analytic)) == np.inf


def test_gradcheck_fails_a_nan_gradient():
    params, x, y, h0 = make_problem(T=4, B=2)
    grads = fastrnn.loss_and_grad(params, x, y, h0)[1]
    wrong = fastrnn.Grads(params, 2, data=grads.data.copy(), h0=grads.h0.copy())
    wrong.W[1, 2] = np.nan
    errors = fastrnn.gradcheck(params, x, y, h0, grads=wrong)
    assert errors["W"] == np.inf and max(errors.values()) == np.inf


def test_numeric_gradient_of_a_non_contiguous_array():
    theta = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    strided = np.arange(12.0).reshape(3, 4)[:, :2]
    for a in (theta, strided):
        np.testing.assert_allclose(numeric_gradient(lambda: float((a ** 2).sum()), a), 2 * a,
                                   rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("theta, exc, message", [
    (np.arange(3), TypeError, "theta: expected a float64 array, got int64"),
    (np.ones(3, dtype=np.float32), TypeError, "theta: expected a float64 array, got float32"),
    ([1.0, 2.0], TypeError, "theta: expected a float64 array, got list"),
    (np.broadcast_to(np.ones(1), (3,)), ValueError,
     "theta: expected a writable array (it is perturbed in place), got a read-only one"),
])
def test_numeric_gradient_rejects_what_it_cannot_perturb(theta, exc, message):
    with pytest.raises(exc) as info:
        numeric_gradient(lambda: 0.0, theta)
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize("eps, exc, message", [
    (0, ValueError, "eps: expected a positive finite step, got 0"),
    (-1e-4, ValueError, "eps: expected a positive finite step, got -0.0001"),
    (float("nan"), ValueError, "eps: expected a positive finite step, got nan"),
    ("1e-4", TypeError, "eps: expected a positive finite step, got '1e-4'"),
    (True, TypeError, "eps: expected a positive finite step, got True"),
])
def test_gradcheck_checks_eps(eps, exc, message):
    params, x, y, h0 = make_problem(T=2, B=1)
    with pytest.raises(exc) as info:
        fastrnn.gradcheck(params, x, y, h0, eps=eps)
    assert str(info.value).startswith(message), str(info.value)


def test_gradcheck_checks_grads():
    params, x, y, h0 = make_problem(T=3, B=3)
    grads = fastrnn.loss_and_grad(params, x, y, h0)[1]
    one_row = fastrnn.Grads(params, 1, data=grads.data.copy(), h0=grads.h0[:1].copy())
    sigmoid = fastrnn.Grads(fastrnn.init_params(5, 4, 3, cell="sigmoid"), 3)
    wider = fastrnn.Grads(fastrnn.init_params(5, 6, 3), 3)
    cases = [(one_row, ValueError, "grads: expected grads.h0 of shape (3, 4), got (1, 4)"),
             (sigmoid, TypeError, "grads: expected fastrnn.Grads of the params' layout"),
             (wider, TypeError, "grads: expected fastrnn.Grads of the params' layout"),
             (params, TypeError, "grads: expected fastrnn.Grads of the params' layout"),
             (grads.data, TypeError, "grads: expected fastrnn.Grads of the params' layout")]
    for wrong, exc, message in cases:
        with pytest.raises(exc) as info:
            fastrnn.gradcheck(params, x, y, h0, grads=wrong)
        assert str(info.value).startswith(message), str(info.value)


def test_gradcheck_accepts_float32_grads():
    params, x, y, h0 = make_problem(T=3, B=2, dtype=np.float32)
    grads = fastrnn.loss_and_grad(params, x, y, h0, backend="numba")[1]
    errors = fastrnn.gradcheck(params, x, y, h0, grads=grads)
    assert max(errors.values()) <= 1e-5, errors


def test_gradcheck_checks_x_before_h0():
    params, _, y, h0 = make_problem(T=2, B=1)
    with pytest.raises(ValueError, match=r"^x: expected shape \(T, B, 5\)"):
        fastrnn.gradcheck(params, np.ones(2), y, h0)


def test_numeric_gradient_of_a_constant_is_exactly_zero():
    theta = np.ones(3)
    assert not numeric_gradient(lambda: 1.1518323798586385, theta).any()


@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru"])
def test_gradcheck_of_one_step_from_a_zero_state(cell):
    """dL/dW is exactly zero when s_0 = 0 and T = 1: the error must be 0, not 1."""
    params = fastrnn.init_params(1, 2, 1, cell=cell, seed=0)
    x, y = np.ones((1, 1, 1)), np.ones((1, 1, 1))
    errors = fastrnn.gradcheck(params, x, y, loss="mse")
    assert errors["W"] == 0.0 and max(errors.values()) <= 1e-6, errors
