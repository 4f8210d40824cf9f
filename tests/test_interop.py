"""PyTorch interop: every cell, depth and direction, both ways, and the rejected inputs."""
import numpy as np
import pytest

import fastrnn
from fastrnn.interop import from_torch, load_state_dict, state_dict, to_torch
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


@cells
def test_modules_without_biases_are_read_as_zero_biases(cell):
    """bias=False (the module, the Linear or both, as in a tied output layer): the Params
    hold zero biases and compute the module's outputs and final states."""
    for module_bias, linear_bias in ((False, True), (True, False), (False, False)):
        module, linear = make_module(cell, 2, True, bias=module_bias)
        linear = torch.nn.Linear(linear.in_features, O, bias=linear_bias,
                                 dtype=torch.float64)
        params = from_torch(module, linear)
        for layer in params.layers:
            for bias in (layer.b, layer.b_hh):
                assert bias is None or module_bias or not bias.any()
        assert linear_bias or not params.c.any()
        x = torch.randn(T, B, D, dtype=torch.float64)
        h0 = torch.randn(4, B, H, dtype=torch.float64)
        state = (h0, torch.randn(4, B, H, dtype=torch.float64)) if cell == "lstm" else h0
        o, finals = run(module, linear, x, state)
        mine = fastrnn.forward(params, x.numpy(), tuple(s.numpy() for s in state)
                               if cell == "lstm" else state.numpy())
        np.testing.assert_allclose(mine[0], o, rtol=1e-12, atol=1e-14)
        for got, want in zip(mine[1] if cell == "lstm" else (mine[1],), finals):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def _with_double(name, module):
    """module with its parameter ``name`` turned to float64."""
    getattr(module, name).data = getattr(module, name).data.double()
    return module


@pytest.mark.parametrize("make, error, prefix", [
    (lambda: (torch.nn.Linear(D, H), torch.nn.Linear(H, O)), TypeError, "module:"),
    (lambda: (torch.nn.GRUCell(D, H), torch.nn.Linear(H, O)), TypeError, "module:"),
    (lambda: (torch.nn.LSTM(D, H, proj_size=2), torch.nn.Linear(2, O)), ValueError,
     "module:"),
    (lambda: (torch.nn.GRU(D, H, dtype=torch.float16), torch.nn.Linear(H, O)), TypeError,
     "module:"),
    (lambda: (torch.nn.RNN(D, H), torch.nn.RNN(H, O)), TypeError, "linear:"),
    (lambda: (torch.nn.RNN(D, H), torch.nn.Linear(H + 1, O)), ValueError, "linear:"),
    (lambda: (torch.nn.GRU(D, H, bidirectional=True), torch.nn.Linear(H, O)), ValueError,
     "linear:"),
    (lambda: (torch.nn.LSTM(D, H), torch.nn.Linear(H, O, dtype=torch.float64)), TypeError,
     "linear:"),
    (lambda: (_with_double("weight_ih_l0", torch.nn.GRU(D, H)), torch.nn.Linear(H, O)),
     TypeError, "module: expected every weight in torch.float32"),
    (lambda: (torch.nn.GRU(D, H), _with_double("bias", torch.nn.Linear(H, O))), TypeError,
     "linear: expected every weight in torch.float32"),
    (lambda: (torch.nn.GRU(D, H, device="meta"), torch.nn.Linear(H, O)), ValueError,
     "module: weight_ih_l0 is on the meta device"),
    (lambda: (torch.nn.GRU(D, H), torch.nn.Linear(H, O, device="meta")), ValueError,
     "linear: weight is on the meta device"),
], ids=["not-rnn", "cell", "proj", "float16", "linear-type", "in-features", "in-features-bi", "linear-dtype", "mixed-dtype", "linear-mixed-dtype",
        "meta", "linear-meta"])
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


# --- state dicts -------------------------------------------------------------------------

def random_params(cell, num_layers=1, bidirectional=False, dtype=np.float64, seed=0):
    """Params with every number nonzero, biases included."""
    params = fastrnn.Params(D, H, O, cell=cell, num_layers=num_layers,
                            bidirectional=bidirectional, dtype=dtype)
    params.data[...] = np.random.default_rng(seed).uniform(-1, 1, params.data.shape)
    return params


def tensors(state):
    return {key: torch.from_numpy(value) for key, value in state.items()}


@pytest.mark.parametrize("as_tensors", [False, True], ids=["numpy", "torch"])
@directions
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru"])
def test_state_dict_round_trip_is_exact(cell, num_layers, bidirectional, as_tensors):
    params = random_params(cell, num_layers, bidirectional)
    module_state, linear_state = state_dict(params)
    assert all(isinstance(v, np.ndarray) and v.dtype == params.dtype
               for v in [*module_state.values(), *linear_state.values()])
    module, linear = to_torch(params)
    assert list(module_state) == list(module.state_dict())
    assert list(linear_state) == list(linear.state_dict())
    for key, value in module_state.items():        # copies, not views into params.data
        assert not np.shares_memory(value, params.data), key
    if cell != "gru":
        assert all(not module_state[key].any() for key in module_state
                   if key.startswith("bias_hh"))

    target = random_params(cell, num_layers, bidirectional, seed=1)
    if as_tensors:
        module_state, linear_state = tensors(module_state), tensors(linear_state)
    assert load_state_dict(target, module_state, linear_state) is target
    np.testing.assert_array_equal(target.data, params.data)


@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru"])
def test_state_dict_loads_into_torch(cell):
    params = random_params(cell, num_layers=2, bidirectional=True)
    module, linear = make_module(cell, num_layers=2, bidirectional=True)
    module_state, linear_state = state_dict(params)
    module.load_state_dict(tensors(module_state))
    linear.load_state_dict(tensors(linear_state))
    expected, expected_linear = to_torch(params)
    for got, want in [(module, expected), (linear, expected_linear)]:
        for key, value in want.state_dict().items():
            np.testing.assert_array_equal(got.state_dict()[key].numpy(), value.numpy(), key)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@directions
@pytest.mark.parametrize("num_layers", [1, 2])
@cells
def test_load_torch_state_dict_equals_from_torch(cell, num_layers, bidirectional, dtype):
    module, linear = make_module(cell, num_layers, bidirectional, dtype)
    with torch.no_grad():                       # nonzero biases on both sides
        for name, value in module.named_parameters():
            if name.startswith("bias"):
                value.uniform_(-1, 1)
    expected = from_torch(module, linear)
    params = random_params(cell, num_layers, bidirectional, dtype=expected.dtype)
    load_state_dict(params, module.state_dict(), linear.state_dict())
    np.testing.assert_array_equal(params.data, expected.data)

    as_numpy = {key: value.numpy() for key, value in module.state_dict().items()}
    params = random_params(cell, num_layers, bidirectional, dtype=expected.dtype)
    load_state_dict(params, as_numpy, {k: v.numpy() for k, v in linear.state_dict().items()})
    np.testing.assert_array_equal(params.data, expected.data)


def test_load_state_dict_casts_to_the_params_dtype():
    module, linear = make_module("gru", dtype=torch.float64)
    params = random_params("gru", dtype=np.float32)
    load_state_dict(params, module.state_dict(), linear.state_dict())
    assert params.dtype == np.float32
    np.testing.assert_array_equal(params.data,
                                  from_torch(module, linear).data.astype(np.float32))


def torch_state(cell, **kwargs):
    """The state dicts of a fresh torch module of ``cell`` and its Linear (float64)."""
    module, linear = make_module(cell, **kwargs)
    return module.state_dict(), linear.state_dict()


def gru_state(**kwargs):
    return torch_state("gru", **kwargs)


def without(state, *keys):
    return {k: v for k, v in state.items() if k not in keys}


def edited(state, **changes):
    return {**state, **changes}


# (params, (module_state, linear_state), error, message start)
LOAD_ERRORS = {
    "lstm-into-gru": (
        lambda: random_params("gru"), lambda: torch_state("lstm"), ValueError,
        "module_state: holds the weights of an LSTM (weight_ih_l0 has 4H = 16 rows), but "
        "params are a 'gru' cell (3H = 12 rows)"),
    "gru-into-lstm": (
        lambda: random_params("lstm"), lambda: torch_state("gru"), ValueError,
        "module_state: holds the weights of a GRU (weight_ih_l0 has 3H = 12 rows), but "
        "params are a 'lstm' cell (4H = 16 rows)"),
    "rnn-into-lstm": (
        lambda: random_params("lstm"), lambda: torch_state("tanh"), ValueError,
        "module_state: holds the weights of a vanilla RNN"),
    "gru-into-relu": (
        lambda: random_params("relu"), lambda: torch_state("gru"), ValueError,
        "module_state: holds the weights of a GRU"),
    "gru-other-H-into-lstm": (     # 3 * 4 rows = 4 * 3 rows: told apart by weight_hh
        lambda: fastrnn.Params(D, 3, O, cell="lstm"),
        lambda: torch_state("gru"), ValueError,
        "module_state: holds the weights of a GRU with H = 4 (weight_ih_l0 has 3H = 12 rows)"
        ", but params are a 'lstm' cell with H = 3 (4H = 12 rows)"),
    "2-layers-into-1": (
        lambda: random_params("gru"), lambda: torch_state("gru", num_layers=2), ValueError,
        "module_state: holds 2 layers"),
    "1-layer-into-2": (
        lambda: random_params("lstm", num_layers=2), lambda: torch_state("lstm"), ValueError,
        "module_state: holds 1 layer "),
    "bi-into-uni": (
        lambda: random_params("gru"), lambda: torch_state("gru", bidirectional=True),
        ValueError, "module_state: holds a bidirectional module"),
    "uni-into-bi": (
        lambda: random_params("tanh", bidirectional=True),
        lambda: (torch_state("tanh")[0], torch_state("tanh", bidirectional=True)[1]),
        ValueError, "module_state: holds a unidirectional module"),
    "lstm-projections": (
        lambda: random_params("lstm"), lambda: torch_state("lstm", proj_size=2), ValueError,
        "module_state: holds LSTM projection weights (weight_hr_l0"),
    "no-bias": (
        lambda: random_params("gru"), lambda: torch_state("gru", bias=False), ValueError,
        "module_state: missing keys ['bias_ih_l0', 'bias_hh_l0']"),
    "missing-key": (
        lambda: random_params("lstm", num_layers=2),
        lambda: (without(torch_state("lstm", num_layers=2)[0], "weight_hh_l1"),
                 torch_state("lstm")[1]),
        ValueError, "module_state: missing keys ['weight_hh_l1']"),
    "prefixed-keys": (
        lambda: random_params("gru"),
        lambda: ({"rnn." + k: v for k, v in gru_state()[0].items()}, gru_state()[1]),
        ValueError, "module_state: missing keys"),
    "unexpected-key": (
        lambda: random_params("gru"),
        lambda: (edited(gru_state()[0], step=torch.zeros(1)), gru_state()[1]),
        ValueError, "module_state: unexpected keys ['step']"),
    "hidden-size": (
        lambda: random_params("gru"),
        lambda: (edited(gru_state()[0], weight_hh_l0=torch.zeros(3 * H, H + 1)),
                 gru_state()[1]),
        ValueError, "module_state: 'weight_hh_l0': expected shape (12, 4) = (3H, H), got "
                    "(12, 5)"),
    "input-size": (
        lambda: random_params("gru"),
        lambda: (edited(gru_state()[0], weight_ih_l0=torch.zeros(3 * H, D + 1)),
                 gru_state()[1]),
        ValueError, "module_state: 'weight_ih_l0': expected shape (12, 3) = (3H, D), got "
                    "(12, 4)"),
    "bias-shape-layer-1": (        # layer 0 is fine: nothing may be written before this
        lambda: random_params("lstm", num_layers=2),
        lambda: (edited(torch_state("lstm", num_layers=2)[0], bias_hh_l1=torch.zeros(H)),
                 torch_state("lstm")[1]),
        ValueError, "module_state: 'bias_hh_l1': expected shape (16,) = (4H,), got (4,)"),
    "integer-values": (
        lambda: random_params("gru"),
        lambda: ({k: v.int() for k, v in gru_state()[0].items()}, gru_state()[1]),
        TypeError, "module_state: 'weight_ih_l0': expected a floating-point tensor"),
    "integer-numpy-values": (
        lambda: random_params("gru"),
        lambda: (edited(gru_state()[0], bias_ih_l0=np.zeros(3 * H, dtype=np.int64)),
                 gru_state()[1]),
        TypeError, "module_state: 'bias_ih_l0': expected a floating-point tensor or array"),
    "module-not-a-mapping": (
        lambda: random_params("gru"),
        lambda: (list(gru_state()[0].values()), gru_state()[1]),
        TypeError, "module_state: expected a state dict"),
    "linear-not-a-mapping": (
        lambda: random_params("gru"),
        lambda: (gru_state()[0], torch.nn.Linear(H, O, dtype=torch.float64)),
        TypeError, "linear_state: expected a state dict"),
    "linear-no-bias": (
        lambda: random_params("gru"),
        lambda: (gru_state()[0], torch.nn.Linear(H, O, bias=False).state_dict()),
        ValueError, "linear_state: missing keys ['bias']"),
    "linear-unexpected-key": (
        lambda: random_params("gru"),
        lambda: (gru_state()[0], edited(gru_state()[1], scale=torch.ones(1))),
        ValueError, "linear_state: unexpected keys ['scale']"),
    "linear-in-features": (
        lambda: random_params("gru", bidirectional=True),
        lambda: (gru_state(bidirectional=True)[0], gru_state()[1]),
        ValueError, "linear_state: 'weight': expected shape (2, 8) = (O, 2H), got (2, 4)"),
    "linear-out-features": (
        lambda: random_params("gru"),
        lambda: (gru_state()[0], torch.nn.Linear(H, O + 1).state_dict()),
        ValueError, "linear_state: 'weight': expected shape (2, 4) = (O, H), got (3, 4)"),
    "linear-bias-shape": (
        lambda: random_params("gru"),
        lambda: (gru_state()[0], edited(gru_state()[1], bias=torch.zeros(O + 1))),
        ValueError, "linear_state: 'bias': expected shape (2,) = (O,), got (3,)"),
    "sigmoid-params": (
        lambda: random_params("sigmoid"), lambda: torch_state("tanh"), ValueError,
        "params: "),
    "meta-tensor": (
        lambda: random_params("gru"),
        lambda: (torch.nn.GRU(D, H, device="meta").state_dict(), gru_state()[1]),
        ValueError, "module_state: 'weight_ih_l0' is on the meta device"),
}


@pytest.mark.parametrize("case", list(LOAD_ERRORS))
def test_load_state_dict_rejects(case):
    make_params, make_states, error, message = LOAD_ERRORS[case]
    params = make_params()
    before = params.data.copy()
    module_state, linear_state = make_states()
    with pytest.raises(error) as info:
        load_state_dict(params, module_state, linear_state)
    assert str(info.value).startswith(message), str(info.value)
    np.testing.assert_array_equal(params.data, before)   # nothing written


def test_load_state_dict_rejects_what_is_not_params():
    module_state, linear_state = gru_state()
    with pytest.raises(TypeError) as info:
        load_state_dict(from_torch(*make_module("gru")).data, module_state, linear_state)
    assert str(info.value).startswith("params: expected fastrnn.Params")


def test_state_dict_rejects():
    with pytest.raises(ValueError) as info:
        state_dict(random_params("sigmoid"))
    assert str(info.value).startswith("params:")
    with pytest.raises(TypeError) as info:
        state_dict(random_params("tanh").data)
    assert str(info.value).startswith("params:")
