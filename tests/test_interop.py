"""PyTorch interop: every cell, depth and direction, both ways, and the rejected inputs."""
import numpy as np
import pytest

import fastrnn
from fastrnn.interop import from_torch, to_torch
from fastrnn.params import suffix

torch = pytest.importorskip("torch")

D, H, O, T, B = 3, 4, 2, 5, 2
CELLS = ["tanh", "relu", "lstm", "gru"]
DTYPES = {np.float32: torch.float32, np.float64: torch.float64}

directions = pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
depths = pytest.mark.parametrize("num_layers", [1, 2, 3])
cells = pytest.mark.parametrize("cell", CELLS)


def make_module(cell, num_layers=1, bidirectional=False, dtype=torch.float64, **kwargs):
    """A seeded torch module of ``cell`` and the Linear that reads its top layer."""
    torch.manual_seed(0)
    shape = dict(num_layers=num_layers, bidirectional=bidirectional, dtype=dtype, **kwargs)
    if cell in ("tanh", "relu"):
        module = torch.nn.RNN(D, H, nonlinearity=cell, **shape)
    else:
        module = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(D, H, **shape)
    dirs = 2 if bidirectional else 1
    return module, torch.nn.Linear(dirs * H, O, dtype=dtype)


def run(module, linear, x, state):
    """Outputs and final states (h_n[, c_n]) as numpy arrays."""
    with torch.no_grad():
        out, final = module(x, state)
        finals = final if isinstance(final, tuple) else (final,)
        return linear(out).numpy(), [f.numpy() for f in finals]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@directions
@depths
@cells
def test_params_round_trip_is_exact(cell, num_layers, bidirectional, dtype):
    params = fastrnn.init_params(D, H, O, cell=cell, num_layers=num_layers,
                                 bidirectional=bidirectional, dtype=dtype, seed=0)
    rng = np.random.default_rng(1)
    for layer in params.layers:               # nonzero biases, so they are checked too
        for bias in (layer.b, layer.b_hh):
            if bias is not None:
                bias[...] = rng.uniform(-1, 1, bias.shape)
    params.c[...] = rng.uniform(-1, 1, O)

    module, linear = to_torch(params)
    assert not module.batch_first and module.num_layers == num_layers
    assert module.bidirectional == bidirectional
    assert module.weight_hh_l0.dtype == DTYPES[dtype] == linear.weight.dtype
    back = from_torch(module, linear)
    assert back.config() == params.config()
    np.testing.assert_array_equal(back.data, params.data)


def check_module_round_trip(cell, num_layers, bidirectional, dtype, rtol, atol):
    module, linear = make_module(cell, num_layers, bidirectional, dtype)
    module2, linear2 = to_torch(from_torch(module, linear))
    assert type(module2) is type(module)

    n = num_layers * (2 if bidirectional else 1)
    x = torch.randn(T, B, D, dtype=dtype)
    h0 = torch.randn(n, B, H, dtype=dtype)
    state = (h0, torch.randn(n, B, H, dtype=dtype)) if cell == "lstm" else h0
    o, finals = run(module, linear, x, state)
    o2, finals2 = run(module2, linear2, x, state)
    assert len(finals) == (2 if cell == "lstm" else 1)
    for got, want in zip([o2, *finals2], [o, *finals]):
        if cell == "gru":                     # same parameters, same arithmetic
            np.testing.assert_array_equal(got, want)
        else:                                 # bias_ih + bias_hh summed in another order
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@directions
@depths
@cells
def test_module_round_trip_computes_the_same(cell, num_layers, bidirectional):
    check_module_round_trip(cell, num_layers, bidirectional, torch.float64, rtol=1e-13,
                            atol=1e-15)


@cells
def test_module_round_trip_computes_the_same_float32(cell):
    check_module_round_trip(cell, 2, True, torch.float32, rtol=1e-5, atol=1e-6)


@cells
def test_each_weight_lands_at_its_name(cell):
    module, linear = make_module(cell, num_layers=2, bidirectional=True)
    params = from_torch(module, linear)
    assert (params.cell, params.num_layers, params.bidirectional) == (cell, 2, True)
    assert params.dtype == np.float64

    def numpy(name):
        return getattr(module, name).detach().numpy()

    np.testing.assert_array_equal(params.U_l1_reverse, numpy("weight_ih_l1_reverse"))
    for k in range(2):
        for d in range(2):
            s, t = suffix(k, d), f"_l{k}" + ("_reverse" if d else "")
            assert params.layers[2 * k + d].U is getattr(params, "U" + s)
            np.testing.assert_array_equal(getattr(params, "U" + s), numpy("weight_ih" + t))
            np.testing.assert_array_equal(getattr(params, "W" + s), numpy("weight_hh" + t))
            if cell == "gru":
                np.testing.assert_array_equal(getattr(params, "b" + s), numpy("bias_ih" + t))
                np.testing.assert_array_equal(getattr(params, "b_hh" + s),
                                              numpy("bias_hh" + t))
            else:
                np.testing.assert_array_equal(getattr(params, "b" + s),
                                              numpy("bias_ih" + t) + numpy("bias_hh" + t))
    np.testing.assert_array_equal(params.V, linear.weight.detach().numpy())
    np.testing.assert_array_equal(params.c, linear.bias.detach().numpy())

    exported, _ = to_torch(params)
    if cell == "gru":
        np.testing.assert_array_equal(params.b_hh_l1, numpy("bias_hh_l1"))
        np.testing.assert_array_equal(exported.bias_hh_l1.detach().numpy(), params.b_hh_l1)
    else:
        np.testing.assert_array_equal(params.b_l1_reverse, numpy("bias_ih_l1_reverse")
                                      + numpy("bias_hh_l1_reverse"))
        np.testing.assert_array_equal(exported.bias_hh_l1.detach().numpy(), 0.0)
    np.testing.assert_array_equal(exported.bias_ih_l1_reverse.detach().numpy(),
                                  params.b_l1_reverse)


def test_batch_first_and_dropout_are_ignored():
    module, linear = make_module("lstm", num_layers=2, batch_first=True, dropout=0.5)
    plain, _ = make_module("lstm", num_layers=2)
    exported, _ = to_torch(from_torch(module, linear))
    assert not exported.batch_first and exported.dropout == 0
    np.testing.assert_array_equal(from_torch(module, linear).data,
                                  from_torch(plain, linear).data)


@pytest.mark.parametrize("make, error, prefix", [
    (lambda: (torch.nn.Linear(D, H), torch.nn.Linear(H, O)), TypeError, "module:"),
    (lambda: (torch.nn.GRUCell(D, H), torch.nn.Linear(H, O)), TypeError, "module:"),
    (lambda: (torch.nn.RNN(D, H, bias=False), torch.nn.Linear(H, O)), ValueError, "module:"),
    (lambda: (torch.nn.LSTM(D, H, proj_size=2), torch.nn.Linear(2, O)), ValueError,
     "module:"),
    (lambda: (torch.nn.GRU(D, H, dtype=torch.float16), torch.nn.Linear(H, O)), TypeError,
     "module:"),
    (lambda: (torch.nn.RNN(D, H), torch.nn.RNN(H, O)), TypeError, "linear:"),
    (lambda: (torch.nn.RNN(D, H), torch.nn.Linear(H, O, bias=False)), ValueError, "linear:"),
    (lambda: (torch.nn.RNN(D, H), torch.nn.Linear(H + 1, O)), ValueError, "linear:"),
    (lambda: (torch.nn.GRU(D, H, bidirectional=True), torch.nn.Linear(H, O)), ValueError,
     "linear:"),
    (lambda: (torch.nn.LSTM(D, H), torch.nn.Linear(H, O, dtype=torch.float64)), TypeError,
     "linear:"),
], ids=["not-rnn", "cell", "no-bias", "proj", "float16", "linear-type", "linear-no-bias",
        "in-features", "in-features-bi", "linear-dtype"])
def test_from_torch_rejects(make, error, prefix):
    with pytest.raises(error) as info:
        from_torch(*make())
    assert str(info.value).startswith(prefix)


def test_to_torch_rejects():
    with pytest.raises(ValueError) as info:
        to_torch(fastrnn.init_params(D, H, O, cell="sigmoid"))
    assert str(info.value).startswith("params:")
    with pytest.raises(TypeError) as info:
        to_torch(fastrnn.init_params(D, H, O).data)
    assert str(info.value).startswith("params:")
