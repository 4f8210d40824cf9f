"""Edges of the functional API: buffers that alias one another, updates that cannot be
applied, arguments of the wrong kind."""
import numpy as np
import pytest

import fastrnn

D = H = O = 4
B = 2


def state_of(params, rng):
    shape = params.state_shape(B)
    if params.has_cell_state:
        return (rng.standard_normal(shape), rng.standard_normal(shape))
    return rng.standard_normal(shape)


def copied(state):
    return tuple(part.copy() for part in state) if isinstance(state, tuple) else state.copy()


def parts(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("cell, num_layers", [("tanh", 1), ("lstm", 1), ("gru", 2)])
def test_step_refuses_an_output_written_over_the_new_state(cell, num_layers, backend):
    """o_out inside h_out: the state came back holding o_t (it was silently wrong)."""
    params = fastrnn.init_params(D, H, O, cell=cell, num_layers=num_layers, seed=0)
    rng = np.random.default_rng(0)
    h = state_of(params, rng)
    h_out = copied(h)
    o_out = parts(h_out)[0].reshape(-1, B, H)[0]
    with pytest.raises(ValueError, match=r"^out: expected o_out and h_out in separate "
                                         r"memory"):
        fastrnn.step(params, rng.standard_normal((B, D)), h, out=(o_out, h_out),
                     backend=backend)


def test_step_refuses_one_buffer_for_the_lstms_h_and_c(backend):
    """h_out = (buf, buf): h_t and c_t overwrote each other (it was silently wrong)."""
    params = fastrnn.init_params(D, H, O, cell="lstm", seed=0)
    rng = np.random.default_rng(0)
    buf = np.empty((B, H))
    with pytest.raises(ValueError, match=r"^out: expected o_out and h_out in separate "
                                         r"memory, got h_out\[0\] overlapping h_out\[1\]"):
        fastrnn.step(params, rng.standard_normal((B, D)), state_of(params, rng),
                     out=(np.empty((B, O)), (buf, buf)), backend=backend)


@pytest.mark.parametrize("cell, num_layers", [("tanh", 2), ("gru", 2), ("lstm", 2)])
def test_step_refuses_a_new_state_that_half_overlaps_the_old(cell, num_layers, backend):
    """h_out shifted by one row against h: the compiled stacks read rows they had already
    overwritten and silently disagreed with the reference."""
    params = fastrnn.init_params(D, H, O, cell=cell, num_layers=num_layers, seed=0)
    rng = np.random.default_rng(0)
    shape = params.state_shape(B)
    n = int(np.prod(shape))
    buf = rng.standard_normal(n + H)
    h, shifted = buf[:n].reshape(shape), buf[H:].reshape(shape)
    state = (h, rng.standard_normal(shape)) if params.has_cell_state else h
    h_out = (shifted, np.empty(shape)) if params.has_cell_state else shifted
    with pytest.raises(ValueError, match=r"^out: expected h_out to be h itself or apart "
                                         r"from it"):
        fastrnn.step(params, rng.standard_normal((B, D)), state,
                     out=(np.empty((B, O)), h_out), backend=backend)


@pytest.mark.parametrize("cell, num_layers", [("tanh", 1), ("lstm", 2), ("gru", 2)])
def test_step_in_place_and_swapped_buffers_still_agree(cell, num_layers, backend):
    """What the kernels do handle stays allowed: h_out is h (PyTorch's (1, B, H) too),
    the LSTM's h and c swapped, and o_out one of the old state's blocks."""
    params = fastrnn.init_params(D, H, O, cell=cell, num_layers=num_layers, seed=0)
    rng = np.random.default_rng(1)
    x_t = rng.standard_normal((B, D))
    h = state_of(params, rng)
    ref_o, ref_h = fastrnn.step(params, x_t, copied(h), backend="reference")

    state = copied(h)
    o, new = fastrnn.step(params, x_t, state, out=(np.empty((B, O)), state), backend=backend)
    np.testing.assert_allclose(o, ref_o, rtol=1e-12)
    for part, ref in zip(parts(new), parts(ref_h)):
        np.testing.assert_allclose(part, ref, rtol=1e-12)

    state = copied(h)
    o_out = parts(state)[0].reshape(-1, B, H)[0]
    o, _ = fastrnn.step(params, x_t, state, out=(o_out, copied(h)), backend=backend)
    np.testing.assert_allclose(o, ref_o, rtol=1e-12)

    if params.has_cell_state:
        state = copied(h)
        _, (h_t, c_t) = fastrnn.step(params, x_t, state, out=(np.empty((B, O)),
                                                              state[::-1]), backend=backend)
        np.testing.assert_allclose(h_t, ref_h[0], rtol=1e-12)
        np.testing.assert_allclose(c_t, ref_h[1], rtol=1e-12)
    if num_layers == 1 and not params.has_cell_state:
        state = copied(h)[None]
        _, new = fastrnn.step(params, x_t, state, out=(np.empty((B, O)), state),
                              backend=backend)
        assert new is state
        np.testing.assert_allclose(new[0], ref_h, rtol=1e-12)


def test_sgd_step_refuses_non_finite_gradients():
    """A NaN gradient made every touched weight NaN, silently."""
    params = fastrnn.init_params(3, 4, 2, seed=0)
    before = params.data.copy()
    grads = params.zeros_like()
    grads.W[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"^grads: expected finite values, got nan"):
        fastrnn.sgd_step(params, grads, 0.1)
    np.testing.assert_array_equal(params.data, before)


@pytest.mark.parametrize("dtype, lr", [(np.float32, 1e37), (np.float64, 1e308)])
def test_sgd_step_refuses_an_update_that_overflows(dtype, lr):
    """theta - lr * g beyond the dtype's range became -inf, silently; now it is refused
    and the params are left as they were."""
    params = fastrnn.init_params(3, 4, 2, dtype=dtype, seed=0)
    before = params.data.copy()
    grads = params.zeros_like()
    grads.data[:] = 100.0
    with pytest.raises(FloatingPointError, match=r"^lr: the update params - lr \* grads "
                                                 r"overflows"):
        fastrnn.sgd_step(params, grads, lr)
    np.testing.assert_array_equal(params.data, before)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("lr", [1e39, 1e-46])
def test_sgd_step_refuses_a_learning_rate_that_float32_cannot_hold(lr):
    """lr = 1e39 became -inf in float32, and made NaN of every weight with a zero
    gradient (0 * inf); lr = 1e-46 became 0, a step that silently did nothing."""
    params = fastrnn.init_params(3, 4, 2, dtype=np.float32, seed=0)
    before = params.data.copy()
    grads = params.zeros_like()
    grads.data[:2] = 1e-3
    with pytest.raises(ValueError, match=r"^lr: expected a positive number that float32 "
                                         r"can hold"):
        fastrnn.sgd_step(params, grads, lr)
    np.testing.assert_array_equal(params.data, before)


def test_sgd_step_applies_a_finite_update_of_large_numbers():
    """The largest weight and the largest gradient at different places: the update is
    finite and is applied (a bound from the two alone would overflow)."""
    params = fastrnn.Params(1, 1, 1)
    params.data[:] = 0.0
    params.data[0] = 1e308
    grads = params.zeros_like()
    grads.data[1] = -1e308
    fastrnn.sgd_step(params, grads, 1.0)
    expected = np.zeros_like(params.data)
    expected[:2] = 1e308
    np.testing.assert_array_equal(params.data, expected)


def test_sgd_step_refuses_a_complex_learning_rate():
    """np.complex128(0.1) passed as 0.1, its imaginary part dropped."""
    params = fastrnn.init_params(3, 4, 2, seed=0)
    with pytest.raises(TypeError, match=r"^lr: expected a positive number"):
        fastrnn.sgd_step(params, params.zeros_like(), np.complex128(0.1))


@pytest.mark.parametrize("T, B, exc, argument", [
    (True, 2, TypeError, "T"), (2, np.True_, TypeError, "B"), (2.0, 2, TypeError, "T"),
    (0, 2, ValueError, "T"), (2, -1, ValueError, "B"),
])
def test_workspace_sizes_are_positive_ints(T, B, exc, argument):
    """Workspace(params, True, 2) was a workspace for T = 1; T = 2.0 a ValueError."""
    params = fastrnn.init_params(3, 4, 2, seed=0)
    with pytest.raises(exc, match=rf"^{argument}: expected a positive int, got"):
        fastrnn.Workspace(params, T, B)
