"""Numerical edge cases of the compiled kernels, against the reference: losses whose
terms could cancel or be lost in a long sum."""
import math

import numpy as np
import pytest

import fastrnn

COMPILED = [b for b in fastrnn.available_backends() if b != "reference"]
pytestmark = pytest.mark.skipif(not COMPILED, reason="no compiled backend available")

NETWORKS = {"tanh": dict(cell="tanh"),
            "gru-L2-bi": dict(cell="gru", num_layers=2, bidirectional=True)}


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
