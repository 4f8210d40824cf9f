"""Stacks: gated cells, several layers and two directions, behind the public API.

Checked against PyTorch's nn.RNN / nn.LSTM / nn.GRU + nn.Linear with the same weights
(float64, rtol 1e-10), against finite differences (gradcheck), and the Numba backend
against the reference at the core's tolerances.
"""
import itertools
import re
import tracemalloc

import numpy as np
import pytest

import fastrnn
from fastrnn.interop import from_torch
from fastrnn.params import suffix

from conftest import DTYPES, RTOL

torch = pytest.importorskip("torch")
F = torch.nn.functional

CELLS = ["tanh", "relu", "lstm", "gru"]
STACKS = [(cell, L, bi) for cell, L, bi in itertools.product(CELLS, (1, 2), (False, True))
          if cell in ("lstm", "gru") or L > 1 or bi]
STACK_BACKENDS = fastrnn.available_backends()
COMPILED = [b for b in STACK_BACKENDS if b != "reference"]
D, H, O = 5, 4, 3


def stack_id(case):
    cell, L, bi = case
    return f"{cell}-L{L}-{'bi' if bi else 'uni'}"


def make_stack(cell, L, bi, *, T=6, B=2, tokens=False, loss="cross_entropy",
               dtype=np.float64, seed=0):
    """Seeded params (nonzero biases), x, y and a nonzero state, in ``dtype``."""
    rng = np.random.default_rng(seed)
    params = fastrnn.init_params(D, H, O, cell=cell, num_layers=L, bidirectional=bi,
                                 dtype=dtype, seed=seed)
    for name, view in params.items():
        if name.startswith(("b", "c")):
            view[...] = rng.uniform(-0.5, 0.5, view.shape)
    x = rng.integers(0, D, size=(T, B)) if tokens else \
        rng.standard_normal((T, B, D)).astype(dtype)
    y = rng.integers(0, O, size=(T, B)) if loss == "cross_entropy" else \
        rng.standard_normal((T, B, O)).astype(dtype)
    shape = params.state_shape(B)
    h0 = (rng.standard_normal(shape) * 0.5).astype(dtype)
    state = (h0, (rng.standard_normal(shape) * 0.5).astype(dtype)) if cell == "lstm" else h0
    return params, x, y, state


def parts(state):
    return state if isinstance(state, tuple) else (state,)


def torch_run(module, linear, x, y, state, loss):
    """PyTorch's loss (sum), outputs, final state parts and gradients by Params name."""
    module.zero_grad()
    linear.zero_grad()
    n = module.num_layers * (2 if module.bidirectional else 1)
    leaves = [torch.tensor(p.reshape(n, *p.shape[-2:]), requires_grad=True)
              for p in parts(state)]
    out, final = module(torch.from_numpy(x), tuple(leaves) if len(leaves) == 2 else leaves[0])
    o = linear(out)
    if loss == "cross_entropy":
        L = F.cross_entropy(o.reshape(-1, O), torch.from_numpy(y).reshape(-1), reduction="sum")
    else:
        L = F.mse_loss(o, torch.from_numpy(y), reduction="sum")
    L.backward()
    grads = {"V": linear.weight.grad, "c": linear.bias.grad}
    dirs = 2 if module.bidirectional else 1
    for k, d in itertools.product(range(module.num_layers), range(dirs)):
        t, s = f"_l{k}" + ("_reverse" if d else ""), suffix(k, d)
        grads["U" + s] = getattr(module, "weight_ih" + t).grad
        grads["W" + s] = getattr(module, "weight_hh" + t).grad
        grads["b" + s] = getattr(module, "bias_ih" + t).grad
        if isinstance(module, torch.nn.GRU):
            grads["b_hh" + s] = getattr(module, "bias_hh" + t).grad
    grads["h0"] = leaves[0].grad
    if len(leaves) == 2:
        grads["c0"] = leaves[1].grad
    final = [f.detach().numpy() for f in (final if isinstance(final, tuple) else (final,))]
    return L.item(), o.detach().numpy(), final, {k: v.numpy() for k, v in grads.items()}


def torch_modules(cell, L, bi, seed):
    torch.manual_seed(seed)
    kwargs = dict(num_layers=L, bidirectional=bi, dtype=torch.float64)
    if cell in ("tanh", "relu"):
        module = torch.nn.RNN(D, H, nonlinearity=cell, **kwargs)
    else:
        module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](D, H, **kwargs)
    return module, torch.nn.Linear(H * (2 if bi else 1), O, dtype=torch.float64)


# The loss kernel does not depend on the cell or the stack's shape: squared error is
# checked on one stack per backend.
@pytest.mark.parametrize("backend", STACK_BACKENDS)
@pytest.mark.parametrize("case, loss", [(case, "cross_entropy") for case in STACKS]
                         + [(("lstm", 2, True), "mse")],
                         ids=[stack_id(case) for case in STACKS] + ["lstm-L2-bi-mse"])
def test_matches_pytorch(case, loss, backend):
    module, linear = torch_modules(*case, seed=1)
    params = from_torch(module, linear)
    _, x, y, state = make_stack(*case, loss=loss, seed=2)
    L_ref, o_ref, final_ref, g_ref = torch_run(module, linear, x, y, state, loss)

    o, final = fastrnn.forward(params, x, state, backend=backend)
    L, grads, final2 = fastrnn.loss_and_grad(params, x, y, state, loss=loss,
                                             backend=backend)
    np.testing.assert_allclose(o, o_ref, rtol=1e-10, atol=1e-14)
    for mine, mine2, ref in zip(parts(final), parts(final2), final_ref):
        np.testing.assert_allclose(mine.reshape(ref.shape), ref, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(mine2.reshape(ref.shape), ref, rtol=1e-10, atol=1e-14)
    assert L == pytest.approx(L_ref, rel=1e-10)
    assert set(g_ref) == set(params.names) | {"h0"} | ({"c0"} if case[0] == "lstm" else set())
    for name, ref in g_ref.items():
        np.testing.assert_allclose(getattr(grads, name).reshape(ref.shape), ref, rtol=1e-10,
                                   atol=1e-13, err_msg=name)


# The reference builds a stack from its single cells: each cell's own code runs in one
# layer each way (and in an upper layer), the stacking of layers and directions is the
# same for every cell (a 2-layer bidirectional LSTM would cost 40 s of finite
# differences for nothing new). Token ids reach layer 0 only: once per cell.
GRADCHECK_CASES = [
    *(((cell, 1, True), False) for cell in ("tanh", "relu", "sigmoid", "lstm", "gru")),
    *(((cell, 2, False), False) for cell in ("tanh", "relu", "sigmoid", "lstm", "gru")),
    (("lstm", 1, False), False), (("gru", 1, False), False),
    (("tanh", 2, True), False), (("sigmoid", 2, True), False),
    *((case, True) for case in (("tanh", 1, True), ("relu", 1, True), ("sigmoid", 1, True),
                                ("lstm", 1, False), ("gru", 1, False)))]


@pytest.mark.parametrize("case, tokens", GRADCHECK_CASES,
                         ids=[stack_id(case) + ("-ids" if tokens else "-dense")
                              for case, tokens in GRADCHECK_CASES])
def test_gradcheck(case, tokens):
    params, x, y, state = make_stack(*case, T=4, B=2, tokens=tokens, seed=3)
    errors = fastrnn.gradcheck(params, x, y, state)
    assert set(errors) == set(params.names) | {"h0"} | ({"c0"} if case[0] == "lstm" else set())
    assert max(errors.values()) < 1e-6, errors


def run(backend, params, x, y, state, loss="cross_entropy"):
    o, final = fastrnn.forward(params, x, state, backend=backend)
    L, grads, _ = fastrnn.loss_and_grad(params, x, y, state, loss=loss, backend=backend)
    out = dict(loss=np.array(L), o=o, data=grads.data.copy(), h0=grads.h0.copy())
    for i, part in enumerate(parts(final)):
        out[f"final{i}"] = part
    if grads.c0 is not None:
        out["c0"] = grads.c0.copy()
    return out


def check_compiled(backend, case, *, T=7, tokens=False, loss="cross_entropy",
                   dtype=np.float64):
    params, x, y, state = make_stack(*case, T=T, B=3, tokens=tokens, loss=loss, dtype=dtype,
                                     seed=4)
    ref = run("reference", params, x, y, state, loss)
    comp = run(backend, params, x, y, state, loss)
    for name, value in ref.items():
        scale = np.abs(value).max()
        np.testing.assert_allclose(comp[name], value, rtol=RTOL[dtype],
                                   atol=RTOL[dtype] * 1e-2 * scale, err_msg=name)


# Crossed: what selects other compiled code (backend, dtype, input kind, cell), on a
# stack of two bidirectional layers, which runs every part of the stack's loops (an
# upper layer's projection and dL/dx, the reverse direction). The other shapes, the
# loss and T = 1 are varied one at a time. A Numba stack kernel compiles once per
# number of cells (layers x directions), dtype and input kind: the shapes run float64
# dense only.
@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", [False, True], ids=["dense", "ids"])
@pytest.mark.parametrize("cell", ["tanh", "relu", "sigmoid", "lstm", "gru"])
def test_compiled_matches_reference(cell, tokens, dtype, backend):
    check_compiled(backend, (cell, 2, True), tokens=tokens, dtype=dtype)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("case", [case for case in STACKS if case[1:] != (2, True)]
                         + [("lstm", 3, False)], ids=stack_id)
def test_compiled_matches_reference_for_every_shape(case, backend):
    check_compiled(backend, case)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_matches_reference_on_squared_error(dtype, backend):
    check_compiled(backend, ("gru", 2, True), loss="mse", dtype=dtype)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru"])
def test_compiled_matches_reference_for_one_step(cell, backend):
    check_compiled(backend, (cell, 2, True), T=1)


@pytest.mark.skipif("numba" not in STACK_BACKENDS, reason="Numba is not available")
@pytest.mark.parametrize("cell", ["lstm", "gru", "tanh"])
def test_numba_blas_and_looped_paths_agree(cell, monkeypatch):
    """Both ways through the recurrent products give the reference's numbers."""
    from fastrnn._numba import kernels
    params, x, y, state = make_stack(cell, 2, True, T=5, B=4, seed=5)
    ref = run("reference", params, x, y, state)
    for threshold in (0, 10**9):
        monkeypatch.setattr(kernels, "BLAS_MIN_WORK_GATED", threshold)
        fast = run("numba", params, x, y, state)
        for name, value in ref.items():
            np.testing.assert_allclose(fast[name], value, rtol=1e-10,
                                       atol=1e-12 * np.abs(value).max(), err_msg=name)


# Two layers run a step's every part (layer 0's input, an upper layer's); on Numba each
# other depth would compile the step kernels again for no new code.
@pytest.mark.parametrize("backend", STACK_BACKENDS)
@pytest.mark.parametrize("tokens", [False, True], ids=["dense", "ids"])
@pytest.mark.parametrize("case", [("lstm", 2, False), ("gru", 2, False), ("relu", 2, False)],
                         ids=stack_id)
def test_steps_equal_the_sequence(case, tokens, backend):
    """Streaming a sequence step by step gives forward's outputs and final state."""
    params, x, _, state = make_stack(*case, T=5, B=2, tokens=tokens, seed=6)
    o_seq, final_seq = fastrnn.forward(params, x, state, backend=backend)
    h = tuple(p.copy() for p in state) if case[0] == "lstm" else state.copy()
    stream = fastrnn.Stream(params, batch_size=2, h0=state, backend=backend)
    for t in range(x.shape[0]):
        o_t, h = fastrnn.step(params, x[t], h, backend=backend)
        np.testing.assert_allclose(o_t, o_seq[t], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(stream(x[t]), o_seq[t], rtol=1e-12, atol=1e-14)
    for mine, streamed, ref in zip(parts(h), parts(stream.state), parts(final_seq)):
        np.testing.assert_allclose(mine, ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(streamed, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", STACK_BACKENDS)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_stack_step_rejects_non_finite_input_and_reports_overflow(cell, backend):
    """A non-finite x_t is refused before anything is written; an output that overflows
    with finite weights is reported, as for the vanilla step."""
    params, x, _, state = make_stack(cell, 2, False, T=1, B=2, seed=8)
    stream = fastrnn.Stream(params, batch_size=2, h0=state, backend=backend)
    bad = x[0].copy()
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match=r"^x_t: expected finite"):
        stream(bad)
    with pytest.raises(ValueError, match=r"^x_t: expected finite"):
        fastrnn.step(params, bad, state, backend=backend)
    for kept, given in zip(parts(stream.state), parts(state)):
        np.testing.assert_array_equal(kept, given)
    top = params.layers[-1].b.reshape(-1, H)     # saturated gates: the top h_t near 1
    top[...] = 50.0
    if cell == "gru":
        top[1] = -50.0                               # z_t = 0: h_t = n_t
    stream.reset()
    params.V[...] = params.c[...] = 1e308
    with np.errstate(over="ignore"), \
            pytest.raises(FloatingPointError, match=r"^o_t: the output overflowed"):
        stream(x[0])


# One row (B = 1) is an edge of the same loops: varied alone.
@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("dtype, B", [(np.float64, 3), (np.float32, 3), (np.float64, 1)],
                         ids=["f64", "f32", "f64-B1"])
@pytest.mark.parametrize("tokens", [False, True], ids=["dense", "ids"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "tanh"])
def test_compiled_stack_step_equals_the_reference_step(cell, tokens, B, dtype, backend):
    """One step of a 2-layer stack (T = 1) on a compiled backend against the reference,
    at the tolerances of the compiled kernels."""
    params, x, _, state = make_stack(cell, 2, False, T=1, B=B, tokens=tokens, dtype=dtype,
                                     seed=10)
    o_ref, s_ref = fastrnn.step(params, x[0], state, backend="reference")
    o_t, s_t = fastrnn.step(params, x[0], state, backend=backend)
    for mine, ref in zip((o_t, *parts(s_t)), (o_ref, *parts(s_ref))):
        np.testing.assert_allclose(mine, ref, rtol=RTOL[dtype],
                                   atol=RTOL[dtype] * 1e-2 * np.abs(ref).max())


def test_carrying_the_state_equals_one_long_sequence():
    params, x, _, state = make_stack("lstm", 2, False, T=8, seed=7)
    o_all, final_all = fastrnn.forward(params, x, state)
    o1, mid = fastrnn.forward(params, x[:3], state)
    o2, final = fastrnn.forward(params, x[3:], mid)
    np.testing.assert_allclose(np.concatenate([o1, o2]), o_all, rtol=1e-12)
    for a, b in zip(final, final_all):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("cell, L, bi", [("lstm", 2, True), ("gru", 1, False)])
def test_compiled_training_step_allocates_nothing(cell, L, bi, backend):
    """Traced memory stays under 4 KiB over 20 steps, while the smallest array a step
    could allocate, one (B, H) state, is 8 KiB; what remains is Python's transient
    objects (Numba's view of the tuple arguments, Cython's memoryviews)."""
    rng = np.random.default_rng(8)
    B, Hb, T = 8, 128, 10
    params = fastrnn.init_params(16, Hb, 8, cell=cell, num_layers=L, bidirectional=bi,
                                 seed=8)
    x = rng.standard_normal((T, B, 16))
    y = rng.integers(0, 8, size=(T, B))

    def train_step():
        _, grads, _ = fastrnn.loss_and_grad(params, x, y, backend=backend)
        fastrnn.sgd_step(params, grads, 1e-3)

    train_step()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            train_step()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 4096 <= B * Hb * 8


# ------------------------------------------------------------------------ bad input

def test_lstm_state_must_be_a_pair():
    params, x, _, (h0, c0) = make_stack("lstm", 1, False)
    with pytest.raises(TypeError, match=r"^h0: expected an LSTM state, a pair \(h, c\)"):
        fastrnn.forward(params, x, h0)
    with pytest.raises(TypeError, match=r"^h: expected an LSTM state"):
        fastrnn.step(params, x[0], h0)


def test_other_cells_refuse_a_pair():
    params, x, _, h0 = make_stack("gru", 2, False)
    with pytest.raises(TypeError, match=r"^h0: expected one array of shape \(2, 2, 4\) "
                                        r"for cell 'gru', got a tuple of 2"):
        fastrnn.forward(params, x, (h0, h0))


@pytest.mark.parametrize("case", [("lstm", 2, True), ("tanh", 3, False)], ids=stack_id)
def test_state_shape_follows_layers_and_directions(case):
    params, x, _, state = make_stack(*case)
    n = case[1] * (2 if case[2] else 1)
    assert parts(state)[0].shape == (n, 2, H)
    wrong = np.zeros((n - 1, 2, H))
    bad = (wrong, wrong) if case[0] == "lstm" else wrong
    arg = "h0[0] (h)" if case[0] == "lstm" else "h0"
    with pytest.raises(ValueError, match=rf"^{re.escape(arg)}: expected shape "
                                         rf"\(num_layers \* directions, B, H\) = \({n}, 2, 4\)"):
        fastrnn.forward(params, x, bad)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_one_layer_accepts_pytorch_state_layout_and_returns_it(cell):
    """A (1, B, H) state gives (B, H)'s numbers, and the final state comes back (1, B, H),
    as PyTorch's modules take it."""
    params, x, y, state = make_stack(cell, 1, False)
    torch_state = tuple(p[None] for p in parts(state))
    if cell == "gru":
        state, torch_state = state, torch_state[0]
    o1, final1 = fastrnn.forward(params, x, state)
    o2, final2 = fastrnn.forward(params, x, torch_state)
    np.testing.assert_array_equal(o1, o2)
    for mine, ref in zip(parts(final2), parts(final1)):
        np.testing.assert_array_equal(mine, ref[None])
    _, _, final3 = fastrnn.loss_and_grad(params, x, y, torch_state)
    assert [p.shape for p in parts(final3)] == [p.shape for p in parts(final2)]
    o_t, s_t = fastrnn.step(params, x[0], torch_state)
    assert [p.shape for p in parts(s_t)] == [(1,) + p.shape for p in parts(state)]
    np.testing.assert_allclose(o_t, o1[0], rtol=1e-12)
    o_out = np.zeros_like(o_t)
    in_place = tuple(p.copy() for p in parts(torch_state))
    in_place = in_place if cell == "lstm" else in_place[0]
    assert fastrnn.step(params, x[0], in_place, out=(o_out, in_place))[1] is in_place
    np.testing.assert_array_equal(o_out, o_t)
    for mine, ref in zip(parts(in_place), parts(s_t)):
        np.testing.assert_array_equal(mine, ref)


@pytest.mark.skipif("cython" not in COMPILED, reason="the Cython extension is not built")
def test_cython_runs_a_stack_of_more_than_64_cells():
    """33 bidirectional GRU layers: 66 cells (the Cython address table once held 64)."""
    params, x, y, state = make_stack("gru", 33, True, T=3, B=1, seed=9)
    ref = run("reference", params, x, y, state)
    fast = run("cython", params, x, y, state)
    for name, value in ref.items():
        np.testing.assert_allclose(fast[name], value, rtol=1e-10,
                                   atol=1e-12 * np.abs(value).max(), err_msg=name)


def test_bidirectional_cannot_stream():
    params, x, _, _ = make_stack("gru", 1, True)
    with pytest.raises(ValueError, match="^params: a bidirectional network cannot run step"):
        fastrnn.step(params, x[0])
    with pytest.raises(ValueError, match="^params: a bidirectional"):
        fastrnn.Stream(params)


@pytest.mark.skipif("cython" not in COMPILED, reason="no extension")
def test_cython_cells_refuse_another_dtype():
    from fastrnn._cython import kernels
    params, x, _, _ = make_stack("gru", 1, False)
    ws = fastrnn.get_workspace(params, x.shape[0], x.shape[1])
    cells = kernels.cells(params, ws, ws.grads)
    x32 = x.astype(np.float32)
    zeros = np.zeros((1, 2, H), np.float32)
    with pytest.raises(TypeError, match="^cells: expected arrays of 4-byte floats"):
        kernels.stack.stack_forward(cells, x32, zeros, zeros, params.V.astype(np.float32),
                                    params.c.astype(np.float32), ws.o.astype(np.float32),
                                    zeros, zeros)


def test_grads_of_another_cell_are_refused():
    params, x, y, state = make_stack("lstm", 1, False)
    other = fastrnn.Grads(fastrnn.init_params(D, H, O, cell="gru"), 2)
    with pytest.raises(TypeError, match="^grads: expected fastrnn.Grads of the params' layout"):
        fastrnn.loss_and_grad(params, x, y, state, grads=other)


@pytest.mark.parametrize("argument, value, error", [
    ("num_layers", 0, ValueError), ("num_layers", 1.5, TypeError),
    ("bidirectional", "yes", TypeError), ("cell", "lstmx", ValueError)])
def test_init_params_checks_its_arguments(argument, value, error):
    kwargs = dict(cell="lstm", num_layers=1, bidirectional=False)
    kwargs[argument] = value
    with pytest.raises(error, match=f"^{argument}: "):
        fastrnn.init_params(D, H, O, **kwargs)


def test_layout_follows_pytorch_names_and_order():
    params = fastrnn.init_params(D, H, O, cell="gru", num_layers=2, bidirectional=True)
    assert params.names == (
        "U", "W", "b", "b_hh", "U_reverse", "W_reverse", "b_reverse", "b_hh_reverse",
        "U_l1", "W_l1", "b_l1", "b_hh_l1", "U_l1_reverse", "W_l1_reverse", "b_l1_reverse",
        "b_hh_l1_reverse", "V", "c")
    assert params.U_l1.shape == (3 * H, 2 * H) and params.V.shape == (O, 2 * H)
    assert params.layers[3].U is params.U_l1_reverse
    lstm = fastrnn.init_params(D, H, O, cell="lstm", seed=0)
    np.testing.assert_array_equal(lstm.b[H:2 * H], 1.0)        # forget-gate bias
    assert np.count_nonzero(lstm.b) == H


@pytest.mark.parametrize("backend", COMPILED)
def test_streaming_a_stack_allocates_nothing(backend):
    """A Stream over a 2-layer LSTM, after its first step: under 4 KiB traced over 50
    steps, while its (h, c) state alone is 2 * 2 * 8 * 128 * 8 = 32 KiB."""
    params = fastrnn.init_params(16, 128, 8, cell="lstm", num_layers=2, seed=0)
    stream = fastrnn.Stream(params, batch_size=8, backend=backend)
    x = np.ones((8, 16))
    stream(x)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(50):
            stream(x)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 4096
