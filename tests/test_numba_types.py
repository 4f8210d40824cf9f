"""The Numba stack kernels' types do not depend on the network's depth.

Per-cell arrays reach the kernels through one flat array and an offset table, so one
compiled kernel serves every number of layers and directions of a dtype and input kind.
"""
import textwrap

import numpy as np
import pytest

import fastrnn

from conftest import run_with_nrt_stats

pytestmark = pytest.mark.skipif("numba" not in fastrnn.available_backends(),
                                reason="Numba is not available")


def dispatchers():
    """Every compiled function of the Numba stack and gated-cell modules, by name."""
    from numba.core.registry import CPUDispatcher

    from fastrnn._numba import gated, stack
    return {f"{module.__name__}.{name}": f for module in (stack, gated)
            for name, f in vars(module).items()
            if isinstance(f, CPUDispatcher) and f.py_func.__module__ == module.__name__}


def signatures():
    return {name: set(f.signatures) for name, f in dispatchers().items()}


@pytest.mark.parametrize("tokens", [False, True], ids=["dense", "ids"])
def test_depth_compiles_nothing_new(tokens):
    """A one-cell LSTM's training step and stream step, then a 2-layer bidirectional
    one's (4 cells) and a 2-layer stream's: the deeper calls add no signature to any
    stack or cell kernel."""
    rng = np.random.default_rng(0)
    T, B, D, H, O = 3, 2, 5, 4, 3
    x = rng.integers(0, D, (T, B)) if tokens else rng.standard_normal((T, B, D))
    y = rng.integers(0, O, (T, B))

    def run(num_layers, bidirectional):
        params = fastrnn.init_params(D, H, O, cell="lstm", num_layers=num_layers,
                                     bidirectional=bidirectional, seed=0)
        fastrnn.loss_and_grad(params, x, y, backend="numba")
        if not bidirectional:
            fastrnn.Stream(params, batch_size=B, backend="numba")(x[0])

    run(1, False)
    run(1, True)
    before = signatures()
    run(2, True)
    run(2, False)
    assert signatures() == before
    assert all(len(before[f"fastrnn._numba.stack.{name}"]) >= 1
               for name in ("stack_forward", "stack_backward", "stack_step"))


NRT_SCRIPT = textwrap.dedent("""
    import numba
    import numpy as np
    from numba.core.runtime import rtsys
    import fastrnn
    from fastrnn._contract import CELL_CODES
    from fastrnn._numba import kernels, rnn, stack

    # A compiled driver runs n training steps of a stack. Passing arrays in costs NRT
    # records once per driver call; if the kernels allocated, the count would grow with n.
    @numba.njit
    def train(n, cell, dirs, x, y, weights, wtab, V, c, h0, arena, btab, o, do, h_T, c_T,
              scratch, grads, dV, dc, dh0, dc0, blas):
        for _ in range(n):
            stack.stack_forward(cell, dirs, x, weights, wtab, V, c, h0, h0, arena, btab, o,
                                h_T, c_T, scratch, blas)
            rnn.cross_entropy(o, y, 1.0, do)
            stack.stack_backward(cell, dirs, x, weights, wtab, V, arena, btab, do, grads,
                                 dV, dc, dh0, dc0, blas)

    rng = np.random.default_rng(0)
    for cell, layers, tokens in (("lstm", 2, False), ("gru", 2, True), ("tanh", 1, True),
                                 ("tanh", 2, False)):
        params = fastrnn.init_params(6, 8, 5, cell=cell, num_layers=layers,
                                     bidirectional=layers > 1, seed=0)
        ws = fastrnn.Workspace(params, 5, 3)
        g = ws.grads
        x = rng.integers(0, 6, (5, 3)) if tokens else rng.standard_normal((5, 3, 6))
        y = rng.integers(0, 5, (5, 3))
        for blas in (False, True):
            args = (CELL_CODES[cell], params.num_directions, x, y, params.data,
                    kernels._weight_table(params), params.V, params.c,
                    np.zeros_like(ws.h_T), ws.arena, kernels._buffer_table(ws), ws.o,
                    ws.do, ws.h_T, ws.c_T, ws.scratch, g.data, g.V, g.c,
                    g.h0.reshape(ws.h_T.shape), ws.grad_c0, blas)
            train(1, *args)
            counts = []
            for n in (1, 20):
                before = rtsys.get_allocation_stats().alloc
                train(n, *args)
                counts.append(rtsys.get_allocation_stats().alloc - before)
            assert counts[0] == counts[1], (cell, blas, counts)
    print("ok")
""")


def test_stack_kernels_allocate_nothing_per_call():
    run_with_nrt_stats(NRT_SCRIPT)
