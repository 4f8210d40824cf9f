"""Numerical edge cases of the compiled kernels, against the reference: losses whose
terms could cancel or be lost in a long sum, and gradients through saturated units.

A saturated unit's derivative is computed as 1 - s^2 (s(1 - s) for a sigmoid) from a
rounded s, in the reference and in the kernels alike, and NumPy's tanh and the kernels'
each round differently (within a few ulp). Near saturation that rounding is an absolute
error of about 1e-16 in f' and a large relative one, so gradients are compared with an
absolute tolerance scaled by the largest gradient entry of the network (or 1, the size of
the entries of dL/do = p - onehot), besides the relative one.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastrnn

COMPILED = [b for b in fastrnn.available_backends() if b != "reference"]
pytestmark = pytest.mark.skipif(not COMPILED, reason="no compiled backend available")

NETWORKS = {"tanh": dict(cell="tanh"),
            "gru-L2-bi": dict(cell="gru", num_layers=2, bidirectional=True)}


def loss_and_gradients(params, x, y, backend, loss="cross_entropy"):
    """The loss and copies of every gradient tensor, dL/dh0 (and dL/dc0) included."""
    value, grads, _ = fastrnn.loss_and_grad(params, x, y, loss=loss, backend=backend)
    arrays = {name: getattr(grads, name).copy() for name in grads.names}
    arrays["h0"] = grads.h0.copy()
    if grads.c0 is not None:
        arrays["c0"] = grads.c0.copy()
    return value, arrays


def assert_gradients_close(fast, ref, rtol, atol_scale):
    """Every gradient tensor within rtol of the reference's entries plus atol_scale times
    the network's largest gradient entry (or 1)."""
    scale = max(1.0, max(np.abs(value).max() for value in ref.values()))
    for name, value in ref.items():
        np.testing.assert_allclose(fast[name], value, rtol=rtol, atol=atol_scale * scale,
                                   err_msg=name)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_cross_entropy_keeps_the_log_sum_beside_large_logits(backend, dtype, network,
                                                             reduction):
    """Two equal logits of 1e17: every term is log 2, which m + log(z) - o[y] lost."""
    params = fastrnn.init_params(1, 1, 2, dtype=dtype, seed=0, **NETWORKS[network])
    params.V[...] = 0.0
    params.c[...] = 1e17
    x = np.zeros((2, 3), np.int64)
    y = np.array([[0, 1, 0], [1, 1, 0]])
    ref = fastrnn.loss_and_grad(params, x, y, reduction=reduction, backend="reference")[0]
    fast = fastrnn.loss_and_grad(params, x, y, reduction=reduction, backend=backend)[0]
    terms = 1 if reduction == "mean" else y.size
    assert ref == pytest.approx(terms * math.log(2.0), rel=1e-15)
    assert fast == pytest.approx(ref, rel=1e-15)


@pytest.mark.parametrize("backend", COMPILED)
def test_a_long_sequence_of_growing_logits_sums_every_term(backend):
    """A relu unit with W = 1.02 grows to 1e43 over 5000 steps; its two equal logits make
    every term log 2. Before the fix the compiled loss was a third of the reference's
    (each term lost log z to the max); a plain running sum of the 20,000 terms would
    also be off by 2e-13."""
    params = fastrnn.init_params(1, 1, 2, cell="relu", seed=0)
    params.U[...] = params.W[...] = 1.02
    params.b[...] = params.c[...] = 0.0
    params.V[...] = 1.0
    x = np.ones((5000, 4, 1))
    y = np.zeros((5000, 4), np.int64)
    ref = fastrnn.loss_and_grad(params, x, y, backend="reference")[0]
    fast = fastrnn.loss_and_grad(params, x, y, backend=backend)[0]
    assert ref == pytest.approx(y.size * math.log(2.0), rel=1e-14)
    assert fast == pytest.approx(ref, rel=1e-14)


@pytest.mark.parametrize("backend", COMPILED)
def test_squared_error_sums_many_terms_without_drift(backend):
    """40,000 equal squared errors, o = 0 against y = 0.3: a plain running sum of them
    is off by 5e-13, np.sum's pairwise sum in the reference by 3e-16."""
    params = fastrnn.init_params(1, 1, 2, seed=0)
    params.V[...] = params.c[...] = 0.0
    x = np.zeros((5000, 4, 1))
    y = np.full((5000, 4, 2), 0.3)
    ref = fastrnn.loss_and_grad(params, x, y, loss="mse", backend="reference")[0]
    fast = fastrnn.loss_and_grad(params, x, y, loss="mse", backend=backend)[0]
    assert fast == pytest.approx(ref, rel=1e-14)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_a_loss_that_overflows_is_inf_not_nan(backend, loss):
    """Once the running total is inf, the compensation term is NaN: it must not be added."""
    params = fastrnn.init_params(1, 1, 2, seed=0)
    params.V[...] = 0.0
    params.c[...] = [1e308, -1e308]     # -log p of class 1 is about 2e308: inf
    x = np.zeros((2, 1), np.int64)
    y = np.ones((2, 1), np.int64) if loss == "cross_entropy" else np.full((2, 1, 2), 1e300)
    with pytest.raises(FloatingPointError, match=r"\(the loss is inf\)|the loss is inf "):
        fastrnn.loss_and_grad(params, x, y, loss=loss, backend=backend)


@pytest.mark.parametrize("backend", COMPILED)
def test_saturated_tanh_stack_agrees_in_absolute_terms(backend):
    """Every unit of a 2-layer bidirectional tanh stack with weights x20 saturates. A
    gradient made only of saturated derivatives is rounding noise in both: dW of the top
    reverse cell is 2e-27 in the reference and 8e-15 in the kernels, s_t having rounded
    to 1 in one and to 1 - 2^-53 in the other (1 - s_t^2 = 0 or 2.2e-16). It agrees in
    absolute terms, to 1e-12 of the largest gradient entry (seen: 1e-15)."""
    params = fastrnn.init_params(3, 1, 3, num_layers=2, bidirectional=True, seed=272)
    rng = np.random.default_rng(272)
    params.data[...] = rng.standard_normal(params.data.size) * 20.0
    x = rng.standard_normal((6, 2, 3))
    y = rng.integers(0, 3, (6, 2))
    loss_ref, ref = loss_and_gradients(params, x, y, "reference")
    loss_fast, fast = loss_and_gradients(params, x, y, backend)
    assert loss_fast == pytest.approx(loss_ref, rel=1e-13)
    assert_gradients_close(fast, ref, rtol=1e-10, atol_scale=1e-12)


@pytest.mark.parametrize("backend", COMPILED)
@settings(max_examples=30, deadline=None)
@given(cell=st.sampled_from(["tanh", "relu", "sigmoid", "lstm", "gru"]),
       layers=st.integers(1, 2), bidirectional=st.booleans(), H=st.integers(1, 4),
       T=st.integers(1, 6), B=st.integers(1, 3), weight_scale=st.sampled_from([1.0, 20.0]),
       loss=st.sampled_from(["cross_entropy", "mse"]), tokens=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_compiled_matches_reference_small_and_saturating_weights(
        backend, cell, layers, bidirectional, H, T, B, weight_scale, loss, tokens, seed):
    """Random small networks, with weights as initialised or 20 times larger (most units
    saturated), in float64: the loss to 1e-12 relative, the gradients to 1e-10 relative
    plus 1e-10 of the largest gradient entry (seen: up to 2e-12 of it in 12,000 draws)."""
    D, O = 3, 3
    rng = np.random.default_rng(seed)
    params = fastrnn.init_params(D, H, O, cell=cell, num_layers=layers,
                                 bidirectional=bidirectional, seed=seed)
    params.data *= weight_scale
    x = rng.integers(0, D, (T, B)) if tokens else rng.standard_normal((T, B, D))
    if loss == "cross_entropy":
        y = rng.integers(0, O, (T, B))
    else:
        y = rng.standard_normal((T, B, O))
    loss_ref, ref = loss_and_gradients(params, x, y, "reference", loss)
    loss_fast, fast = loss_and_gradients(params, x, y, backend, loss)
    assert loss_fast == pytest.approx(loss_ref, rel=1e-12)
    assert_gradients_close(fast, ref, rtol=1e-10, atol_scale=1e-10)
