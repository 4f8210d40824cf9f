"""After the first call, a training step and a streaming step allocate nothing.

Two witnesses: tracemalloc (NumPy reports its data buffers to it) over many steps, and
Numba's own allocation statistics (NRT), which count every array a compiled kernel
creates. Sizes are chosen so that the smallest array a step could allocate, a (B, H)
state, is larger than the bound on traced memory; what remains under the bound are
Python's transient scalars and tuples.
"""
import textwrap
import tracemalloc

import numpy as np
import pytest

import fastrnn

from conftest import make_problem, run_with_nrt_stats

FAST = [b for b in fastrnn.available_backends() if b != "reference"]
B, H = 8, 256
BOUND = 4096          # bytes; a (B, H) float32 array is 8192 bytes, float64 16384
pytestmark = pytest.mark.skipif(not FAST, reason="no compiled backend available")


def traced_peak(fn, repeats=50):
    """Peak traced memory above the starting point while fn runs ``repeats`` times."""
    fn()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(repeats):
            fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tokens", [True, False], ids=["ids", "dense"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_training_step_allocates_nothing(dtype, tokens, loss):
    params, x, y, h0 = make_problem(T=10, B=B, D=16, H=H, O=8, tokens=tokens, loss=loss,
                                    dtype=dtype)
    backend = FAST[0]

    def train_step():
        _, grads, _ = fastrnn.loss_and_grad(params, x, y, h0, loss=loss, backend=backend)
        fastrnn.sgd_step(params, grads, 1e-5)

    assert traced_peak(train_step) < BOUND


def test_allocation_witness_sees_an_allocating_step():
    """The measurement is not blind: copying the gradients each step is caught."""
    params, x, y, h0 = make_problem(T=10, B=B, D=16, H=H, O=8)

    def train_step_with_copy():
        grads = fastrnn.loss_and_grad(params, x, y, h0, backend=FAST[0])[1]
        fastrnn.sgd_step(params, grads, 1e-5)
        return grads.h0.copy()

    assert traced_peak(train_step_with_copy) >= BOUND


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streaming_allocates_nothing(dtype):
    params = fastrnn.init_params(16, H, 8, dtype=dtype, seed=0)
    x = np.ones((B, 16), dtype=dtype)
    h = np.zeros((B, H), dtype=dtype)
    o = np.zeros((B, 8), dtype=dtype)
    stream = fastrnn.Stream(params, batch_size=B, backend=FAST[0])
    assert traced_peak(lambda: fastrnn.step(params, x, h, out=(o, h),
                                            backend=FAST[0])) < BOUND
    assert traced_peak(lambda: stream(x)) < BOUND


NRT_SCRIPT = textwrap.dedent("""
    import numba
    import numpy as np
    from numba.core.runtime import rtsys
    import fastrnn
    from fastrnn._numba import rnn

    # A compiled driver calls the streaming step n times. Passing arrays into compiled
    # code costs one NRT record per array, once per driver call; if the kernel
    # allocated, the count would grow with n. (The training kernels are checked in
    # test_numba_types.)
    @numba.njit
    def stream(n, step, p, x, h, a, o):
        U, W, b, V, c = p
        for _ in range(n):
            step(0, U, W, b, V, c, x, h, a, o, h)

    def allocations(fn, n, *args):
        before = rtsys.get_allocation_stats().alloc
        fn(n, *args)
        return rtsys.get_allocation_stats().alloc - before

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        params = fastrnn.init_params(16, 64, 8, dtype=dtype, seed=0)
        p = (params.U, params.W, params.b, params.V, params.c)
        for x_t in (rng.integers(0, 16, 4), rng.standard_normal((4, 16)).astype(dtype)):
            h, a = np.zeros((1, 4, 64), dtype), np.zeros((1, 4, 64), dtype)
            o = np.zeros((4, 8), dtype)
            args = (rnn.step, p, x_t, h, a, o)
            stream(1, *args)
            assert allocations(stream, 1, *args) == allocations(stream, 50, *args)
    print("ok")
""")


def test_the_compiled_streaming_step_allocates_nothing_per_call():
    run_with_nrt_stats(NRT_SCRIPT)
