"""The vectorisable tanh, exp and sigmoid of the compiled kernels, against NumPy."""
import numpy as np
import pytest

numba = pytest.importorskip("numba")

from fastrnn._numba.vecmath import exp, sigmoid, tanh  # noqa: E402


def _vectorised(fn):
    @numba.njit(error_model="numpy")
    def apply(x, out):
        for i in range(x.size):
            out[i] = fn(x[i])
    return apply


APPLY = {name: _vectorised(fn) for name, fn in
         (("tanh", tanh), ("exp", exp), ("sigmoid", sigmoid))}
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0]


def grid(dtype, limit):
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-limit, limit, 400_001), rng.standard_normal(50_000),
                        10.0 ** rng.uniform(-30, 1, 50_000)])
    return x.astype(dtype)


def ulp_error(comp, x, true_fn, dtype):
    true = true_fn(x.astype(np.float64))
    rounded = true.astype(dtype)
    ok = np.isfinite(rounded) & (np.abs(rounded) >= np.finfo(dtype).tiny)
    ulp = np.spacing(np.abs(rounded[ok])).astype(np.float64)
    return (np.abs(comp[ok].astype(np.float64) - true[ok]) / ulp).max()


def run(name, x):
    out = np.empty_like(x)
    APPLY[name](x, out)
    return out


@pytest.mark.parametrize("dtype, max_ulp", [(np.float64, 8), (np.float32, 7)])
def test_tanh_accuracy(dtype, max_ulp):
    x = grid(dtype, 25)
    assert ulp_error(run("tanh", x), x, np.tanh, dtype) <= max_ulp


@pytest.mark.parametrize("dtype, limit", [(np.float64, 760), (np.float32, 110)])
def test_exp_accuracy_and_range(dtype, limit):
    x = grid(dtype, limit)
    with np.errstate(over="ignore", under="ignore"):
        assert ulp_error(run("exp", x), x, np.exp, dtype) <= 2
        big = np.array([limit, np.finfo(dtype).max], dtype)
        np.testing.assert_array_equal(run("exp", big), np.inf)
        np.testing.assert_array_equal(run("exp", -big), 0.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_accuracy(dtype):
    x = grid(dtype, 40)
    assert ulp_error(run("sigmoid", x), x, lambda v: 1 / (1 + np.exp(-v)), dtype) <= 4


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_special_values(dtype):
    x = np.array(SPECIAL, dtype)
    np.testing.assert_array_equal(run("tanh", x), [np.nan, 1, -1, 0, -0.0])
    np.testing.assert_array_equal(run("exp", x), [np.nan, np.inf, 0, 1, 1])
    np.testing.assert_array_equal(run("sigmoid", x), [np.nan, 1, 0, 0.5, 0.5])
    assert run("tanh", x).dtype == dtype
