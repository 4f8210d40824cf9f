"""Shared fixtures: seeded problems and the per-backend parametrization."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastrnn


def pytest_configure(config):
    config.addinivalue_line("markers", "smoke: the subset CI runs on installed packages: "
                                       "every backend entry point once (tests/test_smoke.py)")


# Float32 kernels are compared with the float64 reference at these tolerances.
RTOL = {np.float32: 1e-4, np.float64: 1e-10}
DTYPES = [np.float64, np.float32]


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


def as64(*arrays):
    """Float64 copies of the float arrays (for the reference); ids and None as they are."""
    return [a.astype(np.float64) if a is not None and a.dtype.kind == "f" else a
            for a in arrays]


def assert_agree(comp, ref, dtype):
    """A compiled backend's results (dict of arrays) against the float64 reference's.

    Float64 agrees to RTOL[float64] entry by entry. In float32 every entry lies within
    RTOL[float32] times the largest entry of its tensor: rounding in float32 makes tiny
    entries of a large gradient noisy in relative terms, so the scale is the tensor's.
    """
    assert comp.keys() == ref.keys()
    for name in ref:
        if dtype == np.float64:
            np.testing.assert_allclose(comp[name], ref[name], rtol=RTOL[dtype], atol=1e-13,
                                       err_msg=name)
        else:
            scale = max(np.abs(ref[name]).max(), 1e-30)
            np.testing.assert_allclose(comp[name], ref[name], rtol=0,
                                       atol=RTOL[dtype] * scale, err_msg=name)


def run_with_nrt_stats(script: str) -> None:
    """Run ``script`` in a fresh interpreter with Numba's allocation statistics on (they
    are read when Numba starts); it must succeed and print "ok"."""
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
