"""Shared fixtures: seeded problems and the per-backend parametrization."""
import numpy as np
import pytest

import fastrnn


def pytest_configure(config):
    config.addinivalue_line("markers", "smoke: the subset CI runs on installed packages: "
                                       "every backend entry point once (tests/test_smoke.py)")


# Float32 kernels are compared with the float64 reference at these tolerances.
RTOL = {np.float32: 1e-4, np.float64: 1e-10}


@pytest.fixture(params=fastrnn.available_backends())
def backend(request):
    """Every backend that is available here; the suite runs once per backend."""
    return request.param


def make_problem(*, T, B, D=5, H=4, O=3, cell="tanh", loss="cross_entropy", tokens=False,
                 with_h0=True, dtype=np.float64, seed=0):
    """A seeded (params, x, y, h0) with nonzero biases, in ``dtype``."""
    rng = np.random.default_rng(seed)
    params = fastrnn.init_params(D, H, O, cell=cell, dtype=dtype, seed=seed)
    params.b[...] = rng.uniform(-0.5, 0.5, H)
    params.c[...] = rng.uniform(-0.5, 0.5, O)
    if tokens:
        x = rng.integers(0, D, size=(T, B))
    else:
        x = rng.standard_normal((T, B, D)).astype(dtype)
    if loss == "cross_entropy":
        y = rng.integers(0, O, size=(T, B))
    else:
        y = rng.standard_normal((T, B, O)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype) * 0.5 if with_h0 else None
    return params, x, y, h0
