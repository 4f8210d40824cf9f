"""The gated references (LSTM, GRU) against finite differences and against PyTorch."""
import numpy as np
import pytest

from fastrnn.gradcheck import numeric_gradient, relative_error
from fastrnn.reference.gru import (gru_bptt, gru_forward, gru_gates, gru_pre_activations,
                                   gru_state_update)
from fastrnn.reference.lstm import (lstm_bptt, lstm_cell_update, lstm_forward, lstm_gates,
                                    lstm_pre_activation)
from fastrnn.reference.rnn import loss_and_output_grad

GATES = {"lstm": 4, "gru": 3}


def make_gated_problem(cell, *, T, B, D=5, H=4, O=3, loss="cross_entropy", tokens=False,
                       dtype=np.float64, seed=0):
    """A seeded (arrays, x, y): every parameter and initial state nonzero, in ``dtype``.

    arrays holds U, W, b, V, c and h0, plus c0 for the LSTM and b_hh for the GRU.
    """
    rng = np.random.default_rng(seed)
    G = GATES[cell]

    def uniform(*shape):
        return rng.uniform(-0.8, 0.8, shape).astype(dtype)

    arrays = dict(U=uniform(G * H, D), W=uniform(G * H, H), b=uniform(G * H),
                  V=uniform(O, H), c=uniform(O), h0=uniform(B, H))
    if cell == "lstm":
        arrays["c0"] = uniform(B, H)
    else:
        arrays["b_hh"] = uniform(G * H)
    if tokens:
        x = rng.integers(0, D, size=(T, B))
    else:
        x = rng.standard_normal((T, B, D)).astype(dtype)
    if loss == "cross_entropy":
        y = rng.integers(0, O, size=(T, B))
    else:
        y = rng.standard_normal((T, B, O)).astype(dtype)
    return arrays, x, y


def forward(cell, arrays, x):
    """The cell's forward cache for the given arrays."""
    p = arrays
    if cell == "lstm":
        return lstm_forward(p["U"], p["W"], p["b"], p["V"], p["c"], x, p["h0"], p["c0"])
    return gru_forward(p["U"], p["W"], p["b"], p["b_hh"], p["V"], p["c"], x, p["h0"])


def loss_and_grads(cell, arrays, x, y, loss):
    """L, the forward cache, and {name: dL/dname} for every entry of ``arrays``."""
    cache = forward(cell, arrays, x)
    L, do = loss_and_output_grad(cache["o"], y, loss)
    bptt = lstm_bptt if cell == "lstm" else gru_bptt
    grads = bptt(arrays["U"], arrays["W"], arrays["V"], x, cache, do)
    return L, cache, {name: grads["d" + name] for name in arrays}


def check_gradients(cell, *, T=6, B=3, loss="cross_entropy", tokens=False):
    arrays, x, y = make_gated_problem(cell, T=T, B=B, loss=loss, tokens=tokens)
    _, _, analytic = loss_and_grads(cell, arrays, x, y, loss)

    def f():
        return loss_and_output_grad(forward(cell, arrays, x)["o"], y, loss)[0]

    errors = {name: relative_error(numeric_gradient(f, theta), analytic[name])
              for name, theta in arrays.items()}
    expected = {"U", "W", "b", "V", "c", "h0"} | ({"c0"} if cell == "lstm" else {"b_hh"})
    assert set(errors) == expected
    assert max(errors.values()) <= 1e-6, errors


# Crossed: cell, loss and input kind; one row and one step (the loops' edges) per cell.
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("tokens", [True, False], ids=["ids", "dense"])
def test_gradcheck(cell, loss, tokens):
    check_gradients(cell, loss=loss, tokens=tokens)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("B, T", [(1, 1), (1, 6), (3, 1)])
def test_gradcheck_at_the_edges(cell, B, T):
    check_gradients(cell, T=T, B=B)


def test_gradcheck_detects_a_wrong_gradient():
    """The check itself can fail: a 1% error in one entry of dW is caught."""
    arrays, x, y = make_gated_problem("gru", T=4, B=2)
    _, _, analytic = loss_and_grads("gru", arrays, x, y, "cross_entropy")
    analytic["W"][1, 2] *= 1.01

    def f():
        return loss_and_output_grad(forward("gru", arrays, x)["o"], y, "cross_entropy")[0]

    assert relative_error(numeric_gradient(f, arrays["W"]), analytic["W"]) > 1e-4
    assert relative_error(numeric_gradient(f, arrays["U"]), analytic["U"]) <= 1e-6


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_kappa_and_da_are_the_derivatives_of_the_loss(cell):
    """kappa_t = dL/dh_t and da_t = dL/da_t (the GRU's: dL/dax_t), by finite differences."""
    arrays, x, y = make_gated_problem(cell, T=4, B=2)
    U, W, b, V, c = (arrays[name] for name in ("U", "W", "b", "V", "c"))
    cache = forward(cell, arrays, x)
    do = loss_and_output_grad(cache["o"], y)[1]
    g = (lstm_bptt if cell == "lstm" else gru_bptt)(U, W, V, x, cache, do)
    h = cache["h"]

    def loss_from(t, h_t, c_t):
        """L_t + ... + L_T as a function of the state at step t."""
        L = loss_and_output_grad((c + h_t @ V.T)[None], y[t - 1:t])[0]
        if t < len(x):
            L += loss_and_output_grad(forward(cell, dict(arrays, h0=h_t, c0=c_t), x[t:])["o"],
                                      y[t:])[0]
        return L

    def state_from(t, e):
        """(h_t, c_t) with e added to the pre-activation a_t (the GRU's ax_t)."""
        if cell == "lstm":
            a_t = lstm_pre_activation(U, W, b, x[t - 1], h[t - 1]) + e
            c_t, h_t = lstm_cell_update(lstm_gates(a_t), cache["c"][t - 1])
            return h_t, c_t
        ax_t, ah_t = gru_pre_activations(U, W, b, arrays["b_hh"], x[t - 1], h[t - 1])
        return gru_state_update(gru_gates(ax_t + e, ah_t), h[t - 1]), None

    for t in range(1, len(x) + 1):
        c_t = cache["c"][t] if cell == "lstm" else None
        e_h, e_a = np.zeros_like(h[t]), np.zeros_like(g["da"][t - 1])
        kappa_t = numeric_gradient(lambda: loss_from(t, h[t] + e_h, c_t), e_h)
        da_t = numeric_gradient(lambda: loss_from(t, *state_from(t, e_a)), e_a)
        assert relative_error(kappa_t, g["kappa"][t - 1]) <= 1e-8, t
        assert relative_error(da_t, g["da"][t - 1]) <= 1e-8, t


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_final_state_carries_over(cell):
    """Two halves with the state carried equal one whole sequence."""
    arrays, x, _ = make_gated_problem(cell, T=8, B=2)
    whole = forward(cell, arrays, x)
    first = forward(cell, arrays, x[:3])
    carried = dict(arrays, h0=first["h"][-1])
    if cell == "lstm":
        carried["c0"] = first["c"][-1]
    second = forward(cell, carried, x[3:])
    np.testing.assert_allclose(np.concatenate([first["o"], second["o"]]), whole["o"],
                               rtol=1e-14)
    np.testing.assert_allclose(second["h"][-1], whole["h"][-1], rtol=1e-14)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tokens", [True, False], ids=["ids", "dense"])
def test_dtype_flows_through(cell, dtype, tokens):
    arrays, x, y = make_gated_problem(cell, T=3, B=2, loss="mse", tokens=tokens,
                                      dtype=dtype)
    _, cache, grads = loss_and_grads(cell, arrays, x, y, "mse")
    for name, value in list(cache.items()) + list(grads.items()):
        assert value.dtype == dtype, name


# ------------------------------------------------------------------ PyTorch oracle

def torch_loss_and_grads(module, linear, x, y, h0, c0, loss):
    """Loss (sum), outputs, final states and every gradient computed by PyTorch.

    The gradients come back under the reference's names: U, W, b, V, c, h0, plus c0 for
    the LSTM (b is bias_hh's gradient, equal to bias_ih's) and b_hh for the GRU.
    """
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    module.zero_grad()
    linear.zero_grad()
    h0_t = torch.tensor(h0, requires_grad=True)
    if c0 is not None:
        c0_t = torch.tensor(c0, requires_grad=True)
        out, (h_T, c_T) = module(torch.from_numpy(x), (h0_t[None], c0_t[None]))
    else:
        out, h_T = module(torch.from_numpy(x), h0_t[None])
    o = linear(out)
    if loss == "cross_entropy":
        L = F.cross_entropy(o.reshape(-1, o.shape[-1]), torch.from_numpy(y).reshape(-1),
                            reduction="sum")
    else:
        L = F.mse_loss(o, torch.from_numpy(y), reduction="sum")
    L.backward()
    grads = dict(U=module.weight_ih_l0.grad, W=module.weight_hh_l0.grad,
                 V=linear.weight.grad, c=linear.bias.grad, h0=h0_t.grad)
    finals = dict(h=h_T[0])
    if c0 is not None:
        grads.update(b=module.bias_hh_l0.grad, b_ih=module.bias_ih_l0.grad, c0=c0_t.grad)
        finals["c"] = c_T[0]
    else:
        grads.update(b=module.bias_ih_l0.grad, b_hh=module.bias_hh_l0.grad)
    return (L.item(), o.detach().numpy(),
            {k: v.detach().numpy() for k, v in finals.items()},
            {k: v.numpy() for k, v in grads.items()})


def arrays_from_torch(cell, module, linear, h0, c0):
    """The reference's arrays from a one-layer torch.nn.LSTM/GRU and a Linear, as is."""
    def numpy(p):
        return p.detach().numpy().copy()

    arrays = dict(U=numpy(module.weight_ih_l0), W=numpy(module.weight_hh_l0),
                  V=numpy(linear.weight), c=numpy(linear.bias), h0=h0)
    if cell == "lstm":
        arrays["b"] = numpy(module.bias_ih_l0) + numpy(module.bias_hh_l0)
        arrays["c0"] = c0
    else:
        arrays["b"] = numpy(module.bias_ih_l0)
        arrays["b_hh"] = numpy(module.bias_hh_l0)
    return arrays


# Crossed: cell, loss and input kind; one row and one step per cell.
@pytest.mark.parametrize("cell, loss, tokens, B, T", [
    *((cell, loss, tokens, 4, 9) for cell in ("lstm", "gru")
      for loss in ("cross_entropy", "mse") for tokens in (True, False)),
    *((cell, "cross_entropy", False, B, T) for cell in ("lstm", "gru")
      for B, T in ((1, 1), (1, 9), (4, 1)))])
def test_reference_matches_pytorch(cell, loss, tokens, B, T):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    D, H, O = 6, 5, 4
    module_type = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
    module = module_type(D, H, dtype=torch.float64)
    linear = torch.nn.Linear(H, O, dtype=torch.float64)
    problem, x, y = make_gated_problem(cell, T=T, B=B, D=D, H=H, O=O, loss=loss,
                                       tokens=tokens, seed=3)
    arrays = arrays_from_torch(cell, module, linear, problem["h0"], problem.get("c0"))
    x_torch = np.eye(D)[x] if tokens else x       # torch gets the one-hot inputs

    L_ref, o_ref, finals_ref, g_ref = torch_loss_and_grads(module, linear, x_torch, y,
                                                           arrays["h0"], arrays.get("c0"),
                                                           loss)
    L, cache, grads = loss_and_grads(cell, arrays, x, y, loss)

    assert L == pytest.approx(L_ref, rel=1e-10)
    np.testing.assert_allclose(cache["o"], o_ref, rtol=1e-10)
    for name, ref in finals_ref.items():
        np.testing.assert_allclose(cache[name][-1], ref, rtol=1e-10, err_msg=name)
    if cell == "lstm":                            # b = b_ih + b_hh: both get dL/db
        np.testing.assert_allclose(grads["b"], g_ref.pop("b_ih"), rtol=1e-10)
    assert set(g_ref) == set(grads)
    for name, ref in g_ref.items():
        np.testing.assert_allclose(grads[name], ref, rtol=1e-10, err_msg=name)
