"""The bad-input campaign as a table: every public entry point, every kind of bad
argument, the exception it raises and the argument its message starts with.

Validation happens before dispatch, so the rows run on one backend; the inputs that reach
the kernels (other byte orders, other memory layouts, token ids of other integer types)
run on every backend, and must give what the native, contiguous input gives.
"""
import re
from types import SimpleNamespace

import numpy as np
import pytest

import fastrnn
from fastrnn import diagnostics
from fastrnn.data import Vocabulary

T, B, D, H, O = 2, 2, 3, 4, 5
NAN, INF = np.nan, np.inf


def problem():
    rng = np.random.default_rng(0)
    p = fastrnn.init_params(D, H, O, seed=0)
    return SimpleNamespace(
        p=p, lstm=fastrnn.init_params(D, H, O, cell="lstm", seed=0),
        x=rng.standard_normal((T, B, D)), ids=rng.integers(0, D, (T, B)),
        y=rng.integers(0, O, (T, B)), y_mse=rng.standard_normal((T, B, O)),
        h0=rng.standard_normal((B, H)), model=fastrnn.RNN(D, H, O, seed=0),
        char=fastrnn.RNN.char_model(Vocabulary("abc"), H, seed=0))


def changed(a, value, index=1):
    a = a.copy()
    a.flat[index] = value
    return a


def with_params(p, value):
    p = p.copy()
    p.b[0] = value
    return p


def fit(model, x, y, **kwargs):
    return model.fit(x, y, **{"window": 1, **kwargs})


# (id, call on a fresh problem s, exception, argument the message starts with)
ROWS = [
    # forward
    ("forward-x-shape", lambda s: fastrnn.forward(s.p, s.x[..., :2]), ValueError, "x"),
    ("forward-x-ndim", lambda s: fastrnn.forward(s.p, s.x[0]), ValueError, "x"),
    ("forward-x-empty", lambda s: fastrnn.forward(s.p, s.x[:0]), ValueError, "x"),
    ("forward-x-float32", lambda s: fastrnn.forward(s.p, s.x.astype(np.float32)),
     TypeError, "x"),
    ("forward-x-bool", lambda s: fastrnn.forward(s.p, s.x > 0), TypeError, "x"),
    ("forward-x-complex", lambda s: fastrnn.forward(s.p, s.x + 0j), TypeError, "x"),
    ("forward-x-object", lambda s: fastrnn.forward(s.p, s.x.astype(object)), TypeError, "x"),
    ("forward-x-ragged", lambda s: fastrnn.forward(s.p, [[0, 1], [2]]), TypeError, "x"),
    ("forward-x-nan", lambda s: fastrnn.forward(s.p, changed(s.x, NAN)), ValueError, "x"),
    ("forward-x-inf", lambda s: fastrnn.forward(s.p, changed(s.x, -INF)), ValueError, "x"),
    ("forward-ids-high", lambda s: fastrnn.forward(s.p, changed(s.ids, D)), ValueError, "x"),
    ("forward-ids-negative", lambda s: fastrnn.forward(s.p, changed(s.ids, -1)),
     ValueError, "x"),
    ("forward-ids-uint64-huge",
     lambda s: fastrnn.forward(s.p, changed(s.ids.astype(np.uint64), 2**64 - 1)),
     ValueError, "x"),
    ("forward-ids-big-endian-high",
     lambda s: fastrnn.forward(s.p, changed(s.ids, D).astype(">i8")), ValueError, "x"),
    ("forward-ids-3d", lambda s: fastrnn.forward(s.p, s.ids[..., None]), ValueError, "x"),
    ("forward-h0-shape", lambda s: fastrnn.forward(s.p, s.x, s.h0[:, :2]), ValueError, "h0"),
    ("forward-h0-batch", lambda s: fastrnn.forward(s.p, s.x, s.h0[:1]), ValueError, "h0"),
    ("forward-h0-float32", lambda s: fastrnn.forward(s.p, s.x, s.h0.astype(np.float32)),
     TypeError, "h0"),
    ("forward-h0-pair-for-tanh", lambda s: fastrnn.forward(s.p, s.x, (s.h0, s.h0)),
     TypeError, "h0"),
    ("forward-h0-array-for-lstm", lambda s: fastrnn.forward(s.lstm, s.x, s.h0),
     TypeError, "h0"),
    ("forward-h0-lstm-c-shape", lambda s: fastrnn.forward(s.lstm, s.x, (s.h0, s.h0[:1])),
     ValueError, "h0[1] (c)"),
    ("forward-h0-inf", lambda s: fastrnn.forward(s.p, s.x, changed(s.h0, INF)),
     ValueError, "h0"),
    ("forward-params-type", lambda s: fastrnn.forward(s.p.data, s.x), TypeError, "params"),
    ("forward-params-nan", lambda s: fastrnn.forward(with_params(s.p, NAN), s.x),
     ValueError, "params"),
    ("forward-params-inf", lambda s: fastrnn.forward(with_params(s.p, INF), s.x),
     ValueError, "params"),
    ("forward-backend", lambda s: fastrnn.forward(s.p, s.x, backend="gpu"),
     ValueError, "backend"),
    # loss_and_grad
    ("loss-y-shape", lambda s: fastrnn.loss_and_grad(s.p, s.x, s.y[:1]), ValueError, "y"),
    ("loss-y-float-for-ce", lambda s: fastrnn.loss_and_grad(s.p, s.x, s.y * 1.0),
     TypeError, "y"),
    ("loss-y-bool", lambda s: fastrnn.loss_and_grad(s.p, s.x, s.y > 0), TypeError, "y"),
    ("loss-y-high", lambda s: fastrnn.loss_and_grad(s.p, s.x, changed(s.y, O)),
     ValueError, "y"),
    ("loss-y-negative", lambda s: fastrnn.loss_and_grad(s.p, s.x, changed(s.y, -1)),
     ValueError, "y"),
    ("loss-y-int-for-mse", lambda s: fastrnn.loss_and_grad(s.p, s.x, s.y, loss="mse"),
     TypeError, "y"),
    ("loss-y-mse-nan",
     lambda s: fastrnn.loss_and_grad(s.p, s.x, changed(s.y_mse, NAN), loss="mse"),
     ValueError, "y"),
    ("loss-x-ids-high", lambda s: fastrnn.loss_and_grad(s.p, changed(s.ids, D), s.y),
     ValueError, "x"),
    ("loss-h0-shape", lambda s: fastrnn.loss_and_grad(s.p, s.x, s.y, s.h0.T), ValueError,
     "h0"),
    ("loss-params-nan", lambda s: fastrnn.loss_and_grad(with_params(s.p, NAN), s.x, s.y),
     ValueError, "params"),
    ("loss-params-inf", lambda s: fastrnn.loss_and_grad(with_params(s.p, INF), s.x, s.y),
     ValueError, "params"),
    ("loss-kind", lambda s: fastrnn.loss_and_grad(s.p, s.x, s.y, loss="hinge"),
     ValueError, "loss"),
    ("loss-reduction", lambda s: fastrnn.loss_and_grad(s.p, s.x, s.y, reduction=None),
     ValueError, "reduction"),
    ("loss-workspace-type", lambda s: fastrnn.loss_and_grad(s.p, s.x, s.y, workspace={}),
     TypeError, "workspace"),
    ("loss-workspace-size",
     lambda s: fastrnn.loss_and_grad(s.p, s.x, s.y, workspace=fastrnn.Workspace(s.p, 1, B)),
     ValueError, "workspace"),
    ("loss-grads-layout",
     lambda s: fastrnn.loss_and_grad(s.p, s.x, s.y, grads=fastrnn.Grads(s.lstm, B)),
     TypeError, "grads"),
    # step
    ("step-x_t-D", lambda s: fastrnn.step(s.p, s.x[0, :, :2]), ValueError, "x_t"),
    ("step-x_t-float32", lambda s: fastrnn.step(s.p, s.x[0].astype(np.float32)),
     TypeError, "x_t"),
    ("step-x_t-empty", lambda s: fastrnn.step(s.p, s.x[0, :0]), ValueError, "x_t"),
    ("step-x_t-ragged", lambda s: fastrnn.step(s.p, [[0.0, 1.0], [2.0]]), TypeError, "x_t"),
    ("step-x_t-id-high", lambda s: fastrnn.step(s.p, D), ValueError, "x_t"),
    ("step-x_t-ids-negative", lambda s: fastrnn.step(s.p, [0, -1]), ValueError, "x_t"),
    ("step-x_t-nan", lambda s: fastrnn.step(s.p, changed(s.x[0], NAN)), ValueError, "x_t"),
    ("step-h-shape", lambda s: fastrnn.step(s.p, s.x[0], s.h0[:1]), ValueError, "h"),
    ("step-h-pair-for-tanh", lambda s: fastrnn.step(s.p, s.x[0], [s.h0, s.h0]),
     TypeError, "h"),
    ("step-h-inf", lambda s: fastrnn.step(s.p, s.x[0], changed(s.h0, INF)), ValueError, "h"),
    ("step-out-type", lambda s: fastrnn.step(s.p, s.x[0], s.h0, out=[1, 2, 3]),
     TypeError, "out"),
    ("step-out-shape",
     lambda s: fastrnn.step(s.p, s.x[0], s.h0, out=(np.empty((B, O + 1)), np.empty((B, H)))),
     ValueError, "out"),
    ("step-bidirectional",
     lambda s: fastrnn.step(fastrnn.init_params(D, H, O, bidirectional=True), s.x[0]),
     ValueError, "params"),
    # Stream
    ("stream-batch-zero", lambda s: fastrnn.Stream(s.p, 0), ValueError, "batch_size"),
    ("stream-batch-bool", lambda s: fastrnn.Stream(s.p, True), ValueError, "batch_size"),
    ("stream-batch-float", lambda s: fastrnn.Stream(s.p, 2.0), ValueError, "batch_size"),
    ("stream-batch-huge", lambda s: fastrnn.Stream(s.p, 10**15), ValueError, "batch_size"),
    ("stream-h0-shape", lambda s: fastrnn.Stream(s.p, 1, s.h0), ValueError, "h0"),
    ("stream-params-inf", lambda s: fastrnn.Stream(with_params(s.p, INF)), ValueError,
     "params"),
    ("stream-x_t-batch", lambda s: fastrnn.Stream(s.p, B)(s.x[0, :1]), ValueError, "x_t"),
    ("stream-x_t-id-high", lambda s: fastrnn.Stream(s.p)(D), ValueError, "x_t"),
    ("stream-x_t-nan", lambda s: fastrnn.Stream(s.p, B)(changed(s.x[0], NAN)),
     ValueError, "x_t"),
    # gradcheck
    ("gradcheck-eps-zero", lambda s: fastrnn.gradcheck(s.p, s.x, s.y, eps=0.0),
     ValueError, "eps"),
    ("gradcheck-eps-str", lambda s: fastrnn.gradcheck(s.p, s.x, s.y, eps="1e-4"),
     TypeError, "eps"),
    ("gradcheck-x-ragged", lambda s: fastrnn.gradcheck(s.p, [[0, 1], [2]], s.y),
     TypeError, "x"),
    ("gradcheck-x-shape", lambda s: fastrnn.gradcheck(s.p, s.x[..., :2], s.y),
     ValueError, "x"),
    ("gradcheck-h0-str", lambda s: fastrnn.gradcheck(s.p, s.x, s.y, "abc"), TypeError, "h0"),
    ("gradcheck-grads", lambda s: fastrnn.gradcheck(s.p, s.x, s.y, grads=s.p), TypeError,
     "grads"),
    ("gradcheck-params-inf", lambda s: fastrnn.gradcheck(with_params(s.p, INF), s.x, s.y),
     ValueError, "params"),
    # init_params and Workspace
    ("init-input-zero", lambda s: fastrnn.init_params(0, H, O), ValueError, "input_size"),
    ("init-hidden-negative", lambda s: fastrnn.init_params(D, -1, O), ValueError,
     "hidden_size"),
    ("init-output-bool", lambda s: fastrnn.init_params(D, H, True), TypeError,
     "output_size"),
    ("init-layers-float", lambda s: fastrnn.init_params(D, H, O, num_layers=2.0),
     TypeError, "num_layers"),
    ("init-layers-str", lambda s: fastrnn.init_params(D, H, O, num_layers="2"), TypeError,
     "num_layers"),
    ("init-hidden-huge", lambda s: fastrnn.init_params(D, 10**6, O), ValueError,
     "hidden_size"),
    ("init-input-huge", lambda s: fastrnn.init_params(10**13, H, O), ValueError,
     "input_size"),
    ("init-sizes-beyond-float", lambda s: fastrnn.init_params(10**200, 10**200, O),
     ValueError, "hidden_size"),
    ("init-layers-huge", lambda s: fastrnn.init_params(D, H, O, num_layers=10**12),
     ValueError, "num_layers"),
    ("init-bidirectional-int", lambda s: fastrnn.init_params(D, H, O, bidirectional=1),
     TypeError, "bidirectional"),
    ("init-cell", lambda s: fastrnn.init_params(D, H, O, cell="LSTM"), ValueError, "cell"),
    ("init-dtype", lambda s: fastrnn.init_params(D, H, O, dtype=np.int64), TypeError,
     "dtype"),
    ("init-dtype-big-endian", lambda s: fastrnn.init_params(D, H, O, dtype=">f8"),
     TypeError, "dtype"),
    ("init-seed", lambda s: fastrnn.init_params(D, H, O, seed=-1), ValueError, "seed"),
    ("workspace-huge", lambda s: fastrnn.Workspace(s.p, 10**7, 10**7), ValueError, "T, B"),
    ("grads-batch-huge", lambda s: fastrnn.Grads(s.p, 10**15), ValueError, "batch_size"),
    ("workspace-T-bool", lambda s: fastrnn.Workspace(s.p, True, B), TypeError, "T"),
    # sgd_step
    ("sgd-lr-zero", lambda s: fastrnn.sgd_step(s.p, s.p.zeros_like(), 0.0), ValueError,
     "lr"),
    ("sgd-lr-bool", lambda s: fastrnn.sgd_step(s.p, s.p.zeros_like(), True), TypeError,
     "lr"),
    ("sgd-lr-str", lambda s: fastrnn.sgd_step(s.p, s.p.zeros_like(), "0.1"), TypeError,
     "lr"),
    ("sgd-grads-layout", lambda s: fastrnn.sgd_step(s.p, s.lstm, 0.1), TypeError, "grads"),
    ("sgd-grads-nan", lambda s: fastrnn.sgd_step(s.p, with_params(s.p, NAN), 0.1),
     ValueError, "grads"),
    ("sgd-params-inf", lambda s: fastrnn.sgd_step(with_params(s.p, INF), s.p, 0.1),
     ValueError, "params"),
    # diagnostics.gradient_norms
    ("norms-model", lambda s: diagnostics.gradient_norms(s.p.data, s.x, s.y), TypeError,
     "model"),
    ("norms-x-shape", lambda s: diagnostics.gradient_norms(s.model, s.x[..., :2], s.y),
     ValueError, "x"),
    ("norms-y-high", lambda s: diagnostics.gradient_norms(s.model, s.x, changed(s.y, O)),
     ValueError, "y"),
    ("norms-h0-shape", lambda s: diagnostics.gradient_norms(s.p, s.x, s.y, s.h0[:1]),
     ValueError, "h0"),
    ("norms-params-inf", lambda s: diagnostics.gradient_norms(with_params(s.p, INF), s.x,
                                                              s.y), ValueError, "params"),
    # RNN
    ("rnn-hidden-zero", lambda s: fastrnn.RNN(D, 0, O), ValueError, "hidden_size"),
    ("rnn-hidden-huge", lambda s: fastrnn.RNN(D, 10**6, O), ValueError, "hidden_size"),
    ("rnn-loss", lambda s: fastrnn.RNN(D, H, O, loss="l2"), ValueError, "loss"),
    ("rnn-backend", lambda s: fastrnn.RNN(D, H, O, backend="gpu"), ValueError, "backend"),
    ("rnn-predict-x-shape", lambda s: s.model.predict(s.x[..., :2]), ValueError, "x"),
    ("rnn-predict-ids-high", lambda s: s.model.predict(changed(s.ids, D)), ValueError, "x"),
    ("rnn-forward-h0-shape", lambda s: s.model.forward(s.x, s.h0[:1]), ValueError, "h0"),
    ("rnn-step-x_t-empty", lambda s: s.model.step(s.ids[0, :0]), ValueError, "x_t"),
    ("rnn-step-id-high", lambda s: s.model.step(D), ValueError, "x_t"),
    ("rnn-step-x_t-float32", lambda s: s.model.step(s.x[0].astype(np.float32)), TypeError,
     "x_t"),
    ("rnn-step-x_t-ragged", lambda s: s.model.step([[0.0, 1.0], [2.0]]), TypeError,
     "x_t"),
    ("rnn-sample-no-vocabulary", lambda s: s.model.sample("a", 3), ValueError, "sample"),
    ("rnn-sample-prefix-type", lambda s: s.char.sample(5, 3), TypeError, "prefix"),
    ("rnn-sample-prefix-unknown", lambda s: s.char.sample("z", 3), ValueError, "prefix"),
    ("rnn-sample-n-negative", lambda s: s.char.sample("a", -1), ValueError, "n"),
    ("rnn-sample-n-bool", lambda s: s.char.sample("a", True), ValueError, "n"),
    ("rnn-sample-temperature", lambda s: s.char.sample("a", 3, temperature=0), ValueError,
     "temperature"),
    ("rnn-fit-window-zero", lambda s: fit(s.model, s.ids, s.y, window=0), ValueError,
     "window"),
    ("rnn-fit-window-bool", lambda s: fit(s.model, s.ids, s.y, window=True), ValueError,
     "window"),
    ("rnn-fit-epochs-bool", lambda s: fit(s.model, s.ids, s.y, epochs=True), ValueError,
     "epochs"),
    ("rnn-fit-x-y-lengths", lambda s: fit(s.model, s.ids, s.y[:1]), ValueError, "x, y"),
    ("rnn-fit-x-ids-high", lambda s: fit(s.model, changed(s.ids, D), s.y), ValueError, "x"),
    ("rnn-fit-y-high", lambda s: fit(s.model, s.ids, changed(s.y, O)), ValueError, "y"),
    ("rnn-fit-y-float", lambda s: fit(s.model, s.ids, s.y_mse[..., 0]), TypeError, "y"),
    ("rnn-fit-on-nonfinite", lambda s: fit(s.model, s.ids, s.y, on_nonfinite="ignore"),
     ValueError, "on_nonfinite"),
    ("rnn-fit-clip-norm", lambda s: fit(s.model, s.ids, s.y, clip_norm=-1.0), ValueError,
     "clip_norm"),
    ("rnn-fit-callback", lambda s: fit(s.model, s.ids, s.y, callback=5), TypeError,
     "callback"),
]


@pytest.mark.parametrize("call, exc, argument", [
    pytest.param(*row[1:], id=row[0]) for row in ROWS])
def test_bad_input_names_the_argument(call, exc, argument):
    with pytest.raises(exc) as info:
        call(problem())
    assert info.type is exc, info.value
    assert re.match(rf"{re.escape(argument)}: ", str(info.value)), str(info.value)


def test_the_table_covers_every_public_entry_point():
    covered = {row[0].split("-")[0] for row in ROWS}
    assert covered >= {"forward", "loss", "step", "stream", "gradcheck", "init", "sgd",
                       "norms", "workspace", "grads", "rnn"}


# Inputs that are not as the kernels take them, but fine: each is converted once, before
# dispatch, and must give what the prepared input gives, on every backend.
def other_byte_order(a):
    """a with its bytes swapped: big-endian on the usual little-endian machine."""
    return a.astype(a.dtype.newbyteorder("S"))


def strided(a):
    return np.repeat(a, 2, axis=-1)[..., ::2]


def _outputs(result):
    """The arrays and numbers of a result, flattened and copied, for comparison."""
    if isinstance(result, fastrnn.Params):
        return [result.data.copy()] + [getattr(result, name).copy() for name in ("h0", "c0")
                                       if getattr(result, name, None) is not None]
    if isinstance(result, (tuple, list)):
        return [a for part in result for a in _outputs(part)]
    return [np.copy(result)]


# (id, call of s with c applied to the arrays that the row converts)
ACCEPTED = [
    ("forward-x", lambda s, c: fastrnn.forward(s.p, c(s.x), backend=s.backend)),
    ("forward-ids", lambda s, c: fastrnn.forward(s.p, c(s.ids), backend=s.backend)),
    ("forward-h0", lambda s, c: fastrnn.forward(s.p, s.x, c(s.h0), backend=s.backend)),
    ("forward-lstm-state",
     lambda s, c: fastrnn.forward(s.lstm, s.ids, (c(s.h0), c(s.h0)), backend=s.backend)),
    ("loss-x-y-h0", lambda s, c: fastrnn.loss_and_grad(s.p, c(s.ids), c(s.y), c(s.h0),
                                                       backend=s.backend)),
    ("loss-mse", lambda s, c: fastrnn.loss_and_grad(s.p, c(s.x), c(s.y_mse), loss="mse",
                                                    backend=s.backend)),
    ("step-x_t-h", lambda s, c: fastrnn.step(s.p, c(s.x[0]), c(s.h0), backend=s.backend)),
    ("step-ids", lambda s, c: fastrnn.step(s.p, c(s.ids[0]), backend=s.backend)),
    ("stream", lambda s, c: [fastrnn.Stream(s.p, B, c(s.h0), backend=s.backend)(c(x_t))
                             .copy() for x_t in s.x]),
    ("gradient-norms", lambda s, c: diagnostics.gradient_norms(
        fastrnn.RNN(D, H, O, seed=0, backend=s.backend), c(s.ids), c(s.y))),
]


@pytest.mark.parametrize("convert", [other_byte_order, strided], ids=lambda c: c.__name__)
@pytest.mark.parametrize("row", ACCEPTED, ids=lambda row: row[0])
def test_converted_inputs_give_what_prepared_ones_give(row, convert, backend):
    """Big-endian token ids reached Numba and raised its TypingError on every backend
    (forward, loss_and_grad's x and y, step, Stream, fit); big-endian floats were refused
    as "expected dtype float64 (the params' dtype), got float64"."""
    _, call = row
    s = problem()
    s.backend = backend
    expected = _outputs(call(s, lambda a: a))
    got = _outputs(call(s, convert))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, ">i4", "<u8"])
def test_token_ids_of_any_integer_type(dtype, backend):
    s = problem()
    for call, ids in ((fastrnn.forward, s.ids), (fastrnn.step, s.ids[0])):
        np.testing.assert_array_equal(call(s.p, ids.astype(dtype), backend=backend)[0],
                                      call(s.p, ids, backend=backend)[0])


@pytest.mark.parametrize("convert", [other_byte_order, strided], ids=lambda c: c.__name__)
def test_gradcheck_and_the_model_take_converted_inputs(convert):
    s = problem()
    errors = fastrnn.gradcheck(s.p, convert(s.x), convert(s.y), convert(s.h0))
    assert max(errors.values()) < 1e-6
    models = [fastrnn.RNN(D, H, O, seed=0) for _ in range(2)]
    fit(models[0], s.ids, s.y)
    fit(models[1], convert(s.ids), convert(s.y))
    np.testing.assert_array_equal(models[1].params.data, models[0].params.data)
    prepared = (models[0], lambda a: a)
    predicted = [m.predict(c(s.x)) for m, c in (prepared, (models[1], convert))]
    np.testing.assert_array_equal(predicted[1], predicted[0])
    streamed = [m.step(c(s.ids[0])).copy() for m, c in (prepared, (models[1], convert))]
    np.testing.assert_array_equal(streamed[1], streamed[0])
