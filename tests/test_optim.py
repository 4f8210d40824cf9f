"""Optimisers and clipping against torch.optim and torch.nn.utils, on the same gradients."""
import json
import math

import numpy as np
import pytest

import fastrnn
from fastrnn import optim

torch = pytest.importorskip("torch")

P = 37


def gradients(steps, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(P) * (1 + k) for k in range(steps)]


def run_fastrnn(optimizer, grads):
    params = _flat_params()
    for g in grads:
        gp = params.zeros_like()
        gp.data[...] = g
        optimizer.step(params, gp)
    return params.data


def _flat_params():
    """A Params whose flat buffer has P entries: D=33, H=1, O=1 gives 33+1+1+1+1 = 37."""
    params = fastrnn.Params(33, 1, 1)
    params.data[...] = np.linspace(-1, 1, P)
    return params


def run_torch(make, grads):
    theta = torch.nn.Parameter(torch.tensor(np.linspace(-1, 1, P)))
    opt = make([theta])
    for g in grads:
        theta.grad = torch.tensor(g)
        opt.step()
    return theta.detach().numpy()


CASES = [
    ("sgd", lambda: optim.SGD(0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    ("momentum", lambda: optim.SGD(0.1, momentum=0.9),
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    ("nesterov", lambda: optim.SGD(0.1, momentum=0.9, nesterov=True),
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)),
    ("adagrad", lambda: optim.Adagrad(0.1), lambda p: torch.optim.Adagrad(p, lr=0.1)),
    ("rmsprop", lambda: optim.RMSprop(0.01), lambda p: torch.optim.RMSprop(p, lr=0.01)),
    ("adam", lambda: optim.Adam(1e-2), lambda p: torch.optim.Adam(p, lr=1e-2)),
    ("adam-betas", lambda: optim.Adam(3e-3, betas=(0.8, 0.99), eps=1e-6),
     lambda p: torch.optim.Adam(p, lr=3e-3, betas=(0.8, 0.99), eps=1e-6)),
]


@pytest.mark.parametrize("make, make_torch", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_optimizer_matches_torch(make, make_torch):
    grads = gradients(20)
    np.testing.assert_allclose(run_fastrnn(make(), grads), run_torch(make_torch, grads),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_state_dict_round_trip_continues_exactly(name):
    grads = gradients(10)
    straight = optim.OPTIMIZERS[name](0.01, **({"momentum": 0.9} if name == "sgd" else {}))
    expected = run_fastrnn(straight, grads)
    first = optim.OPTIMIZERS[name](0.01, **({"momentum": 0.9} if name == "sgd" else {}))
    params = _flat_params()
    for g in grads[:4]:
        gp = params.zeros_like()
        gp.data[...] = g
        first.step(params, gp)
    second = optim.from_config(type(first).__name__, first.config())
    second.load_state_dict({k: (v.copy() if isinstance(v, np.ndarray) else v)
                            for k, v in first.state_dict().items()})
    for g in grads[4:]:
        gp = params.zeros_like()
        gp.data[...] = g
        second.step(params, gp)
    np.testing.assert_array_equal(params.data, expected)


def test_schedules():
    assert optim.Constant(0.1)(1000) == 0.1
    step = optim.StepDecay(1.0, every=10, gamma=0.5)
    assert [step(t) for t in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    cos = optim.Cosine(1.0, total=100, min_lr=0.1)
    assert cos(0) == 1.0 and cos(100) == pytest.approx(0.1) and cos(500) == pytest.approx(0.1)
    assert cos(50) == pytest.approx(0.55)
    sgd = optim.SGD(step)
    params = _flat_params()
    before = params.data.copy()
    for _ in range(10):
        sgd.step(params, params.zeros_like())
    assert sgd.lr == 0.5
    np.testing.assert_array_equal(params.data, before)


@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(max_norm):
    g = gradients(1)[0]
    grads = _flat_params().zeros_like()
    grads.data[...] = g
    norm = optim.clip_grad_norm(grads, max_norm)
    t = torch.nn.Parameter(torch.zeros(P, dtype=torch.float64))
    t.grad = torch.tensor(g)
    expected_norm = torch.nn.utils.clip_grad_norm_([t], max_norm)
    assert norm == pytest.approx(expected_norm.item(), rel=1e-12)
    np.testing.assert_allclose(grads.data, t.grad.numpy(), rtol=1e-12)


def test_clip_grad_value_and_nonfinite_norm():
    grads = _flat_params().zeros_like()
    grads.data[...] = np.linspace(-10, 10, P)
    optim.clip_grad_value(grads, 5.0)
    assert grads.data.max() == 5.0 and grads.data.min() == -5.0
    grads.data[3] = np.nan
    assert math.isnan(optim.clip_grad_norm(grads, 1.0))
    assert math.isnan(grads.data[3]) and grads.data[0] == -5.0


@pytest.mark.parametrize("make, argument", [
    (lambda: optim.Adam(0.0), "lr"),
    (lambda: optim.SGD(0.1, momentum=1.5), "momentum"),
    (lambda: optim.SGD(0.1, nesterov=True), "nesterov"),
    (lambda: optim.RMSprop(0.1, eps=-1.0), "eps"),
    (lambda: optim.StepDecay(0.1, every=0), "every"),
    (lambda: optim.StepDecay(0.1, every=True), "every"),
    (lambda: optim.StepDecay(0.1, every=1, gamma=0.0), "gamma"),
    (lambda: optim.Cosine(0.1, total=True), "total"),
    (lambda: optim.clip_grad_norm(_flat_params(), 0.0), "max_norm"),
    (lambda: optim.from_config("Lion", {}), "optimizer"),
])
def test_bad_hyperparameters(make, argument):
    with pytest.raises(ValueError, match=rf"^{argument}: "):
        make()


def test_optimizer_refuses_other_params():
    adam = optim.Adam()
    adam.step(_flat_params(), _flat_params().zeros_like())
    other = fastrnn.init_params(3, 4, 2)
    with pytest.raises(ValueError, match=r"^params: "):
        adam.step(other, other.zeros_like())


@pytest.mark.parametrize("dtype, value", [(np.float32, 1e20), (np.float64, 1e160)])
def test_clip_grad_norm_of_huge_finite_gradients(dtype, value):
    grads = fastrnn.Params(33, 1, 1, dtype=dtype)
    grads.data[...] = value * np.linspace(-1, 1, P)
    expected = np.linalg.norm(grads.data.astype(np.float64) / value) * value
    assert optim.clip_grad_norm(grads, 1.0) == pytest.approx(expected, rel=1e-6)
    assert np.linalg.norm(grads.data.astype(np.float64)) == pytest.approx(1.0, rel=1e-5)


def test_clip_grad_norm_leaves_an_infinite_gradient_unscaled():
    grads = _flat_params().zeros_like()
    grads.data[...] = np.linspace(-10, 10, P)
    grads.data[3] = np.inf
    before = grads.data.copy()
    assert optim.clip_grad_norm(grads, 1.0) == math.inf
    np.testing.assert_array_equal(grads.data, before)


def _read_only(params):
    params.data.flags.writeable = False
    return params


@pytest.mark.parametrize("update, argument", [
    (lambda g: optim.clip_grad_norm(_read_only(g), 1.0), "grads"),
    (lambda g: optim.clip_grad_value(_read_only(g), 1.0), "grads"),
    (lambda g: optim.SGD(0.1).step(_read_only(_flat_params()), g), "params"),
    (lambda g: optim.Adam().step(_read_only(_flat_params()), g), "params"),
])
def test_read_only_buffers_are_refused(update, argument):
    grads = _flat_params().zeros_like()
    grads.data[...] = np.linspace(-10, 10, P)
    with pytest.raises(ValueError, match=rf"^{argument}.data: expected a writable array, "
                                         r"got a read-only one"):
        update(grads)


def test_read_only_gradients_update_params():
    grads = _flat_params().zeros_like()
    grads.data[...] = gradients(1)[0]
    expected = run_fastrnn(optim.Adam(0.1), [grads.data])
    params = _flat_params()
    optim.Adam(0.1).step(params, _read_only(grads))
    np.testing.assert_array_equal(params.data, expected)


@pytest.mark.parametrize("clip", [lambda g: optim.clip_grad_norm(g, 1.0),
                                  lambda g: optim.clip_grad_value(g, 1.0)])
def test_clipping_refuses_what_is_not_params(clip):
    with pytest.raises(TypeError, match=r"^grads: expected Params, got ndarray"):
        clip(np.ones(P))


@pytest.mark.parametrize("make", [
    lambda: optim.SGD(np.float32(0.1), momentum=np.float32(0.9), nesterov=np.True_),
    lambda: optim.Adagrad(np.float64(0.1), eps=np.float32(1e-9)),
    lambda: optim.RMSprop(0.01, alpha=np.float32(0.9), eps=np.float32(1e-7)),
    lambda: optim.Adam(optim.Cosine(np.float32(0.1), np.int64(10), np.float32(0.01)),
                       betas=np.array([0.8, 0.99], dtype=np.float32), eps=np.float32(1e-6)),
    lambda: optim.Adam(optim.StepDecay(0.1, every=np.int64(3), gamma=np.float32(0.5))),
])
def test_config_of_numpy_hyperparameters_is_json(make):
    opt = make()
    config = json.loads(json.dumps(opt.config()))
    assert config == opt.config()
    assert optim.from_config(type(opt).__name__, config).config() == config


@pytest.mark.parametrize("make, argument", [
    (lambda: optim.SGD(0.1, momentum="0.9"), "momentum"),
    (lambda: optim.SGD(0.1, momentum=None), "momentum"),
    (lambda: optim.SGD(0.1, momentum=0.9, nesterov="no"), "nesterov"),
    (lambda: optim.RMSprop(0.1, alpha=True), "alpha"),
    (lambda: optim.Cosine(0.1, total=10, min_lr=None), "min_lr"),
])
def test_hyperparameters_of_the_wrong_type(make, argument):
    with pytest.raises(TypeError, match=rf"^{argument}: expected "):
        make()


@pytest.mark.parametrize("betas", [0.9, (0.9,), (0.9, 0.99, 0.999), "ab"])
def test_adam_betas_must_be_a_pair(betas):
    with pytest.raises(ValueError, match=r"^betas: expected a pair of numbers in \[0, 1\), "):
        optim.Adam(betas=betas)


def _adam_state_after_one_step():
    adam = optim.Adam()
    adam.step(_flat_params(), _flat_params().zeros_like())
    return adam.state_dict()


@pytest.mark.parametrize("change", [
    lambda s: s.pop("state_exp_avg_sq"),
    lambda s: s.update(state_exp_avg=s["state_exp_avg"].reshape(1, P)),
    lambda s: s.update(state_exp_avg=s["state_exp_avg"][:-1]),
    lambda s: s.update(state_exp_avg=s["state_exp_avg"].astype(np.int64)),
    lambda s: s.update(state_velocity=np.zeros(P)),
    lambda s: [s.pop("state_exp_avg"), s.pop("state_exp_avg_sq")],
    lambda s: s.pop("steps"),
    lambda s: s.update(steps=-1),
    lambda s: s.update(steps=1.5),
], ids=["missing", "2d", "sizes", "int", "extra", "none-after-steps", "no-steps",
        "negative-steps", "float-steps"])
def test_load_state_dict_refuses_bad_state(change):
    state = _adam_state_after_one_step()
    change(state)
    with pytest.raises(ValueError, match=r"^state: expected "):
        optim.Adam().load_state_dict(state)


@pytest.mark.parametrize("make, name", [(optim.Adam, "exp_avg_sq"),
                                        (optim.Adagrad, "sum_sq"),
                                        (optim.RMSprop, "square_avg")])
def test_load_state_dict_refuses_a_negative_average_of_squares(make, name):
    """Its square root would make every later update NaN."""
    opt = make()
    opt.step(_flat_params(), _flat_params().zeros_like())
    state = opt.state_dict()
    state[f"state_{name}"][2] = -1e-300
    with pytest.raises(ValueError, match=rf"^state_{name}: expected values >= 0 \(a running "
                                         rf"sum or average of squared gradients\), got "
                                         rf"-1e-300 at index 2$"):
        make().load_state_dict(state)


@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_load_state_dict_refuses_a_non_finite_buffer(value):
    state = _adam_state_after_one_step()
    state["state_exp_avg"][0] = value
    with pytest.raises(ValueError, match=rf"^state_exp_avg: expected finite values, got "
                                         rf"{value} at index \(0,\)$"):
        optim.Adam().load_state_dict(state)


@pytest.mark.parametrize("config, match", [
    ([1], r"^config: expected a dict of options, got list$"),
    (dict(eps=1e-8), r"^config: expected the schedule's config, a dict, under 'lr', got "
                     r"None$"),
    (dict(lr=dict(lr=0.1)), r"^lr: expected a schedule in \('Constant', 'StepDecay', "
                            r"'Cosine'\), got None$"),
])
def test_from_config_names_what_is_missing(config, match):
    with pytest.raises(ValueError, match=match):
        optim.from_config("Adam", config)


def test_state_dict_survives_npz(tmp_path):
    grads = gradients(6)
    expected = run_fastrnn(optim.Adam(0.01), grads)
    first, params = optim.Adam(0.01), _flat_params()
    for g in grads[:3]:
        gp = params.zeros_like()
        gp.data[...] = g
        first.step(params, gp)
    np.savez(tmp_path / "adam.npz", **first.state_dict())
    second = optim.Adam(0.01)
    with np.load(tmp_path / "adam.npz") as saved:
        second.load_state_dict(dict(saved))
    for g in grads[3:]:
        gp = params.zeros_like()
        gp.data[...] = g
        second.step(params, gp)
    np.testing.assert_array_equal(params.data, expected)


def test_optimizer_refuses_params_of_another_dtype_than_its_state():
    adam = optim.Adam()
    adam.step(_flat_params(), _flat_params().zeros_like())
    params32 = _flat_params().astype(np.float32)
    with pytest.raises(ValueError, match=r"^params: this optimiser holds state for 37 "
                                         r"float64 parameters, got 37 float32 ones"):
        adam.step(params32, params32.zeros_like())
    loaded = optim.Adam()
    loaded.load_state_dict({k: v.astype(np.float32) if isinstance(v, np.ndarray) else v
                            for k, v in _adam_state_after_one_step().items()})
    with pytest.raises(ValueError, match=r"^params: this optimiser holds state for 37 "
                                         r"float32 parameters, got 37 float64 ones"):
        loaded.step(_flat_params(), _flat_params().zeros_like())


@pytest.mark.parametrize("make, make_torch", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_float32_optimizer_matches_torch(make, make_torch):
    grads = gradients(20)
    params = _flat_params().astype(np.float32)
    opt = make()
    for g in grads:
        gp = params.zeros_like()
        gp.data[...] = g
        opt.step(params, gp)
    theta = torch.nn.Parameter(torch.tensor(np.linspace(-1, 1, P), dtype=torch.float32))
    opt_torch = make_torch([theta])
    for g in grads:
        theta.grad = torch.tensor(g, dtype=torch.float32)
        opt_torch.step()
    expected = theta.detach().numpy()
    assert params.data.dtype == np.float32
    np.testing.assert_allclose(params.data, expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("schedule, make_torch, steps", [
    (optim.StepDecay(1.0, every=10, gamma=0.5),
     lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=10, gamma=0.5), 50),
    (optim.Cosine(1.0, total=100, min_lr=0.1),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=100, eta_min=0.1), 101),
])
def test_schedules_match_torch(schedule, make_torch, steps):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_torch(opt)
    for t in range(steps):
        assert schedule(t) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
        opt.step()
        scheduler.step()


def test_step_decay_over_many_steps_goes_to_zero_or_inf():
    assert optim.StepDecay(0.1, every=1, gamma=0.5)(10_000) == 0.0
    assert optim.StepDecay(0.1, every=1, gamma=1.0)(10_000) == 0.1
    assert optim.StepDecay(0.1, every=1, gamma=2.0)(10_000) == math.inf
