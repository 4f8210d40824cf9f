"""The model API: truncated BPTT, training behaviour, resuming, checkpoints, sampling."""
import functools
import math
import os
import signal
import re
import tracemalloc
import warnings

import numpy as np
import pytest

import fastrnn
from fastrnn import data
from fastrnn.model import RNN, NonFiniteError

TEXT = "the quick brown fox jumps over the lazy dog. " * 40


def char_streams(text=TEXT, batch=4):
    vocab = data.Vocabulary.from_text(text)
    ids = vocab.encode(text)
    return vocab, data.streams(ids[:-1], batch), data.streams(ids[1:], batch)


def trained(steps, backend="auto", dtype=np.float64, seed=0, **fit):
    vocab, x, y = char_streams()
    model = RNN.char_model(vocab, 16, dtype=dtype, seed=seed, backend=backend)
    model.configure("adam", 1e-2)
    losses = []
    model.fit(x, y, window=10, epochs=100, steps=steps, clip_norm=5.0,
              callback=lambda info: losses.append(info["loss"]), **fit)
    return model, losses


def test_fit_learns_a_repetitive_text():
    model, losses = trained(150)
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    sample = model.sample("the ", 40, temperature=0.5, seed=1)
    assert sample.startswith("the ") and len(sample) == 44


def test_truncated_bptt_carries_the_state_across_windows():
    """Windows see the state the previous window ended in, not zeros."""
    vocab, x, y = char_streams()
    model = RNN.char_model(vocab, 8, seed=0)
    model.configure("sgd", 1e-12)            # parameters stay (numerically) put
    model.fit(x, y, window=7, steps=3)
    _, h_expected = model.forward(x[:21])
    np.testing.assert_allclose(model.carry, h_expected, rtol=1e-9)
    assert model.progress["position"] == 21


def test_state_resets_at_each_epoch():
    vocab, x, y = char_streams()
    model = RNN.char_model(vocab, 8, seed=0)
    model.configure("sgd", 1e-12)
    N = x.shape[0]
    model.fit(x, y, window=N, epochs=1)      # one window is one epoch
    assert model.progress == dict(steps=1, epoch=1, position=0, skipped=0)
    model.fit(x, y, window=5, epochs=2, steps=1)
    _, h_expected = model.forward(x[:5])     # started again from zeros
    np.testing.assert_allclose(model.carry, h_expected, rtol=1e-9)


def test_fit_on_data_shorter_than_the_saved_position_starts_the_epoch_again():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((100, 2, 3)), rng.standard_normal((100, 2, 2))
    model = RNN(3, 4, 2, cell="gru", loss="mse", seed=0)
    model.fit(x, y, window=30, steps=2)
    assert model.progress["position"] == 60
    model.configure("sgd", 1e-12)            # parameters stay (numerically) put
    model.fit(x[:40], y[:40], window=30, steps=1)
    assert model.progress == dict(steps=3, epoch=0, position=30, skipped=0)
    _, h_expected = model.forward(x[:30])    # from position 0 and a zero state
    np.testing.assert_allclose(model.carry, h_expected, rtol=1e-9)


@pytest.mark.skipif("numba" not in fastrnn.available_backends(), reason="needs numba")
def test_numba_and_reference_give_the_same_trajectory():
    _, ref = trained(20, backend="reference")
    _, comp = trained(20, backend="numba")
    np.testing.assert_allclose(comp, ref, rtol=1e-9)


def test_resume_continues_bit_exactly(tmp_path):
    straight, losses_straight = trained(25)
    first, losses_first = trained(10)
    path = first.save(tmp_path / "model.npz")
    resumed = RNN.load(path)
    vocab, x, y = char_streams()
    rest = []
    resumed.fit(x, y, window=10, epochs=100, steps=15, clip_norm=5.0,
                callback=lambda info: rest.append(info["loss"]))
    assert losses_first + rest == losses_straight
    np.testing.assert_array_equal(resumed.params.data, straight.params.data)
    assert resumed.progress == straight.progress


def test_checkpoint_round_trip(tmp_path):
    model, _ = trained(5, dtype=np.float32)
    loaded = RNN.load(model.save(tmp_path / "m.npz"))
    assert loaded.vocabulary == model.vocabulary and loaded.loss == model.loss
    assert loaded.params.dtype == np.float32 and loaded.optimizer.steps == 5
    np.testing.assert_array_equal(loaded.params.data, model.params.data)
    assert loaded.sample("the", 20, seed=3) == model.sample("the", 20, seed=3)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_a_checkpoint_gets_a_new_files_permissions_or_keeps_the_replaced_ones(tmp_path):
    """Not the 0600 of a temporary file: the umask decides, as for any new file."""
    model, _ = trained(1)
    old = os.umask(0o022)
    try:
        path = model.save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o600)                               # a replaced checkpoint keeps its own
    model.save(path)
    assert path.stat().st_mode & 0o777 == 0o600


def test_fit_measures_a_huge_finite_gradient_as_finite(monkeypatch):
    """Without clipping, fit's gradient norm is clip_grad_norm's, finite for float64
    entries above 1e154 whose squares overflow."""
    model = RNN(3, 4, 2, loss="mse", seed=0)
    x, y = large_targets()
    real = fastrnn.model.loss_and_grad

    def huge(*args, **kwargs):
        loss, grads, h_T = real(*args, **kwargs)
        grads.data[:] = 0.0
        grads.data[0] = 1e160
        return loss, grads, h_T

    monkeypatch.setattr(fastrnn.model, "loss_and_grad", huge)
    model.configure("sgd", lr=1e-170)
    model.fit(x, y, window=5, steps=1)
    assert model.progress["skipped"] == 0 and model.progress["steps"] == 1


def test_configure_refuses_options_beside_an_optimizer_instance():
    """An Optimizer comes with its own lr and options; others given too were ignored."""
    model = RNN(3, 4, 2, seed=0)
    sgd = fastrnn.optim.SGD(0.1)
    with pytest.raises(TypeError, match=r"^configure: an Optimizer instance .* got lr, "
                                         r"momentum"):
        model.configure(sgd, lr=0.5, momentum=0.9)
    assert model.configure(sgd) is sgd and model.optimizer.lr == 0.1


def test_configure_refuses_a_learning_rate_the_params_dtype_cannot_hold():
    """float32 params: lr=1e308 would become inf and every update would be undone."""
    model = RNN(3, 4, 2, dtype=np.float32, seed=0)
    with pytest.raises(ValueError, match=r"^lr: expected a positive number that float32 "
                                         r"can hold, got 1e\+308"):
        model.configure("sgd", lr=1e308)
    assert model.configure("sgd", lr=1e30).lr == 1e30
    decayed = fastrnn.optim.SGD(fastrnn.optim.Cosine(0.1, 10, 0.0))
    decayed.steps = 10                                  # at its floor, 0: still accepted
    assert model.configure(decayed) is decayed


@pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="needs SIGINT")
def test_ctrl_c_during_an_update_stops_after_the_step_is_complete(monkeypatch):
    """Ctrl-C arriving while the optimiser updates the params: fit stops once that step's
    bookkeeping (step count, position, carried state) is done too, so that a checkpoint
    saved then resumes exactly."""
    vocab, x, y = char_streams()
    interrupted, straight = (RNN.char_model(vocab, 8, seed=0) for _ in range(2))
    for model in (interrupted, straight):
        model.configure("adam", 1e-2)
    real = type(interrupted.optimizer).step

    def step_then_ctrl_c(self, params, grads):
        real(self, params, grads)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(type(interrupted.optimizer), "step", step_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(x, y, window=10, steps=3)
    monkeypatch.undo()
    straight.fit(x, y, window=10, steps=1)
    assert interrupted.progress == straight.progress
    np.testing.assert_array_equal(interrupted.params.data, straight.params.data)
    np.testing.assert_array_equal(interrupted.carry, straight.carry)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="needs SIGINT")
def test_ctrl_c_while_the_gradient_is_computed_stops_at_once(monkeypatch):
    """Nothing is held back before the model changes: the step is abandoned."""
    vocab, x, y = char_streams()
    model = RNN.char_model(vocab, 8, seed=0)
    before = model.params.data.copy()

    def ctrl_c(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        raise AssertionError("not interrupted")

    monkeypatch.setattr(fastrnn.model, "loss_and_grad", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, window=10, steps=3)
    assert model.progress["steps"] == 0
    np.testing.assert_array_equal(model.params.data, before)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_save_is_atomic(tmp_path, monkeypatch):
    """A crash mid-save leaves the previous checkpoint intact and no temporary file."""
    model, _ = trained(3)
    path = model.save(tmp_path / "m.npz")
    before = path.read_bytes()
    model.fit(*char_streams()[1:], window=10, steps=2)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


@pytest.mark.parametrize("content", [b"", b"not a zip file", b"PK\x03\x04 truncated"])
def test_corrupt_checkpoint_is_refused(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"^checkpoint: .* is not a valid fastrnn"):
        RNN.load(path)


@pytest.mark.parametrize("missing", [b for b in fastrnn.available_backends()
                                     if b != "reference"])
def test_a_checkpoint_whose_backend_is_missing_here_loads_on_auto(tmp_path, monkeypatch,
                                                                  missing):
    model, _ = trained(3, backend=missing)
    path = model.save(tmp_path / "m.npz")
    ids = model.vocabulary.encode("the quick")[:, None]
    expected = model.forward(ids)[0]
    monkeypatch.setitem(fastrnn.backends._loaded, missing, None)     # as if not built
    monkeypatch.setattr(fastrnn.backends, "_fastest",
                        functools.cache(fastrnn.backends._fastest.__wrapped__))
    with pytest.warns(RuntimeWarning, match=rf"saved with backend '{missing}', which is "
                                            rf"not available here; using 'auto'"):
        loaded = RNN.load(path)
    assert loaded.backend == "auto" and loaded.progress == model.progress
    np.testing.assert_allclose(loaded.forward(ids)[0], expected, rtol=1e-10)


def test_a_bad_backend_argument_is_not_blamed_on_the_checkpoint(tmp_path):
    path = trained(1)[0].save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"^backend: expected 'auto' or one of .*got 'gpu'"):
        RNN.load(path, backend="gpu")
    assert RNN.load(path, backend="reference").backend == "reference"


def test_foreign_npz_and_missing_file_are_refused(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match=r"^checkpoint: "):
        RNN.load(tmp_path / "other.npz")
    with pytest.raises(ValueError, match=r"^checkpoint: no such file"):
        RNN.load(tmp_path / "missing.npz")


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_non_finite_steps_are_never_applied():
    vocab, x, y = char_streams()
    model = RNN.char_model(vocab, 8, seed=0)
    model.params.b[:] = 100.0                 # s_t = 1 ...
    model.params.V[:] = 1.7e308               # ... so o_t = c + V s_t overflows
    model.params.c[:] = 1.7e308
    before = model.params.data.copy()
    with pytest.raises(NonFiniteError, match="training step 1: loss: "):
        model.fit(x, y, window=10, steps=5)
    model.fit(x, y, window=10, steps=3, on_nonfinite="skip")
    assert model.progress["skipped"] == 3 and model.progress["steps"] == 3
    np.testing.assert_array_equal(model.params.data, before)


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_a_non_finite_loss_is_reported_once_under_its_argument():
    vocab, x, y = char_streams()
    model = RNN.char_model(vocab, 8, seed=0)
    model.params.b[:] = 100.0
    model.params.V[:] = 1.7e308
    model.params.c[:] = 1.7e308
    with pytest.raises(NonFiniteError) as info:
        model.fit(x, y, window=10, steps=1)
    assert str(info.value).startswith("training step 1: loss: the loss is "), info.value
    assert info.value.reason.startswith("loss: the loss is ")


@pytest.mark.parametrize("index, value", [(3, np.inf), (-1, np.nan)])
def test_fit_says_when_the_params_were_already_not_finite(index, value):
    """Not finite before training, whatever the step would have made of them: an input
    weight that the first window reads as finite, or an output bias."""
    vocab, x, y = char_streams()
    model = RNN.char_model(vocab, 8, seed=0)
    model.params.data[index] = value
    with pytest.raises(ValueError, match=rf"^params: expected finite values, got {value} at "
                                         rf"index \(\d+,\): the parameters were already "
                                         rf"inf or NaN before training; fit changed "
                                         rf"nothing$"):
        model.fit(x, y, window=10, steps=1)
    assert model.optimizer is None and model.progress["steps"] == 0


def test_fit_shows_a_progress_bar_of_the_steps_it_makes_when_asked(capsys):
    vocab, x, y = char_streams()
    x, y = x[:25], y[:25]                       # windows of 10, 10 and 5 steps
    model = RNN.char_model(vocab, 8, seed=0)
    model.fit(x, y, window=10, steps=1)
    assert capsys.readouterr().err == ""
    model.fit(x, y, window=10, epochs=2, progress=True)     # 2 steps left, then 3
    err = capsys.readouterr().err
    assert " 5/5 " in err and re.search(r"loss=\d", err), err
    model.fit(x, y, window=10, epochs=4, steps=2, progress=True)
    assert " 2/2 " in capsys.readouterr().err


def large_targets():
    rng = np.random.default_rng(0)
    return rng.standard_normal((40, 2, 3)), 1000 * rng.standard_normal((40, 2, 2))


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_an_update_that_overflows_the_params_is_never_applied():
    x, y = large_targets()
    model = RNN(3, 4, 2, loss="mse", seed=0)
    model.configure("sgd", lr=1e308, momentum=0.9)   # finite gradients, infinite steps
    before = model.params.data.copy()
    with pytest.raises(NonFiniteError, match="training step 1: the update would have made "
                                             "params inf or NaN; the step was not applied"):
        model.fit(x, y, window=5, steps=1)
    np.testing.assert_array_equal(model.params.data, before)
    model.fit(x, y, window=5, steps=3, on_nonfinite="skip")
    assert model.progress["skipped"] == 3 and model.progress["steps"] == 3
    np.testing.assert_array_equal(model.params.data, before)
    assert model.optimizer.steps == 0


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_an_undone_update_leaves_the_optimizer_as_it_was():
    x, y = large_targets()
    model = RNN(3, 4, 2, loss="mse", seed=0)
    lr = fastrnn.optim.StepDecay(1e-2, every=2, gamma=1e308)   # 1e306 from the third step
    model.configure(fastrnn.optim.SGD(lr, momentum=0.9))
    model.fit(x, y, window=5, steps=2)
    params, momentum = model.params.data.copy(), model.optimizer.state["momentum"].copy()
    model.fit(x, y, window=5, steps=1, on_nonfinite="skip")
    assert model.progress["skipped"] == 1 and model.optimizer.steps == 2
    np.testing.assert_array_equal(model.params.data, params)
    np.testing.assert_array_equal(model.optimizer.state["momentum"], momentum)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fit_allocates_no_array_per_step(optimizer):
    """Copies kept for undoing an update go to buffers made once: after the first step,
    a step allocates less than a tenth of the parameters' size (Python's scalars only)."""
    vocab, x, y = char_streams()
    model = RNN.char_model(vocab, 64, seed=0)
    model.configure(optimizer, 1e-3)
    model.fit(x, y, window=10, steps=2)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            model.fit(x, y, window=10, steps=1)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < model.params.data.nbytes / 10


def test_time_series_regression_beats_the_last_value():
    rng = np.random.default_rng(0)
    t = np.arange(4000)
    series = np.sin(2 * np.pi * t / 50) + 0.02 * rng.standard_normal(t.size)
    x, y = data.series_windows(data.streams(series, 8), horizon=1)
    model = RNN(1, 24, 1, loss="mse", seed=0)
    model.configure("adam", 1e-2)
    model.fit(x, y, window=25, epochs=10)
    mse = float(((model.forward(x)[0] - y) ** 2)[25:].mean())
    last_value = float(((x - y) ** 2)[25:].mean())
    assert mse < 0.2 * last_value


def test_streaming_step_matches_forward():
    model, _ = trained(5)
    ids = model.vocabulary.encode("the quick")
    o_seq, _ = model.forward(ids[:, None])
    model.reset_state()
    for t, token in enumerate(ids):
        np.testing.assert_allclose(model.step(int(token)), o_seq[t], rtol=1e-12)


@pytest.mark.parametrize("call, argument", [
    (lambda m, x, y: m.fit(x, y, window=0), "window"),
    (lambda m, x, y: m.fit(x, y, window=5, on_nonfinite="ignore"), "on_nonfinite"),
    (lambda m, x, y: m.fit(x, y[:3], window=5), "x, y"),
    (lambda m, x, y: m.fit(x, y, window=5, epochs="2"), "epochs"),
    (lambda m, x, y: m.fit(x, y, window=5, epochs=None), "epochs"),
    (lambda m, x, y: m.fit(x, y, window=5, epochs=0), "epochs"),
    (lambda m, x, y: m.fit(x, y, window=5, epochs=True), "epochs"),
    (lambda m, x, y: m.fit(x, y, window=5, steps=1.5), "steps"),
    (lambda m, x, y: m.fit(x, y, window=5, steps=0), "steps"),
    (lambda m, x, y: m.fit(x, y, window=5, steps="3"), "steps"),
    (lambda m, x, y: m.configure("lbfgs"), "optimizer"),
    (lambda m, x, y: m.configure("adam", lr=-1.0), "lr"),
    (lambda m, x, y: m.sample("the", 5, temperature=0), "temperature"),
])
def test_model_rejects_bad_arguments(call, argument):
    vocab, x, y = char_streams()
    model = RNN.char_model(vocab, 8, seed=0)
    with pytest.raises(ValueError, match=rf"^{argument}: "):
        call(model, x, y)
    assert math.isfinite(model.params.data.sum())


@pytest.mark.parametrize("call, error, match", [
    (lambda m: m.sample(5, 3), TypeError, r"^prefix: expected str, got int"),
    (lambda m: m.sample("th€", 5), ValueError,
     r"^prefix: expected characters of the model's vocabulary \(\d+ characters\), got '€'"),
    (lambda m: m.sample("a", True), ValueError, r"^n: expected a non-negative int, got True"),
    (lambda m: m.sample("a", 2.0), ValueError, r"^n: expected a non-negative int, got 2.0"),
    (lambda m: m.sample("a", 2, seed="x"), TypeError, r"^seed: expected None, "),
    (lambda m: m.step(np.zeros(0, int)), ValueError,
     r"^x_t: expected a token id, \(B,\) token ids or a \(B, D\) block, B >= 1, got "
     r"int64 array of shape \(0,\)"),
    (lambda m: m.step(np.zeros((0, m.params.input_size))), ValueError, r"^x_t: "),
    (lambda m: m.step([[0.0, 1.0], [2.0]]), TypeError, r"^x_t: expected an array, got list"),
])
def test_sample_and_step_name_their_argument(call, error, match):
    vocab, _, _ = char_streams()
    model = RNN.char_model(vocab, 8, seed=0)
    with pytest.raises(error, match=match):
        call(model)


@pytest.mark.parametrize("args, vocabulary, error, match", [
    ((3, 4, 3), "abc", TypeError, r"^vocabulary: expected a Vocabulary or None, got str"),
    ((3, 4, 2), data.Vocabulary("abc"), ValueError,
     r"^vocabulary: expected input_size = output_size = the vocabulary's 3 characters, "
     r"got input_size 3 and output_size 2"),
    ((4, 4, 4), data.Vocabulary("abc"), ValueError,
     r"^vocabulary: expected input_size = output_size = the vocabulary's 3 characters, "
     r"got input_size 4 and output_size 4"),
])
def test_a_vocabulary_must_fit_the_model(args, vocabulary, error, match):
    with pytest.raises(error, match=match):
        RNN(*args, vocabulary=vocabulary)


def test_sample_at_a_tiny_temperature_picks_the_most_likely_character():
    """softmax(o / 1e-320) is the argmax's one-hot, computed without overflow."""
    model, _ = trained(5)
    vocab = model.vocabulary
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = model.sample("the", 8, temperature=1e-320, seed=0)
        model.sample("the", 8, temperature=1e308, seed=0)
    expected = "the"
    for _ in range(8):
        p = model.predict(vocab.encode(expected)[:, None])[-1, 0]
        expected += vocab.chars[int(np.argmax(p))]
    assert text == expected


def test_save_names_its_path_and_writes_nothing_when_it_cannot(tmp_path):
    model = RNN(3, 4, 2, seed=0)
    missing = tmp_path / "no" / "such"
    with pytest.raises(ValueError, match=rf"^path: cannot write {re.escape(str(missing))}"
                                         rf"/m.npz: no such folder {re.escape(str(missing))}$"):
        model.save(missing / "m.npz")
    with pytest.raises(ValueError, match=rf"^path: cannot write {re.escape(str(tmp_path))}: "
                                         rf"it is a folder"):
        model.save(tmp_path)
    with pytest.raises(TypeError, match=r"^path: expected a str or os.PathLike, got int"):
        model.save(3)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, value, match", [
    ("y", 99, r"^y: expected class ids in \[0, \d+\), got 99"),
    ("x", -1, r"^x: expected token ids in \[0, \d+\), got -1"),
])
def test_fit_checks_all_the_data_before_the_first_update(name, value, match):
    vocab, x, y = char_streams()
    dict(x=x, y=y)[name][-1, 1] = value       # bad data in the last window only
    model = RNN.char_model(vocab, 8, seed=0)
    before = model.params.data.copy()
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, window=10, epochs=1)
    np.testing.assert_array_equal(model.params.data, before)
    assert model.progress == dict(steps=0, epoch=0, position=0, skipped=0)


@pytest.mark.parametrize("options, error, match", [
    (dict(clip_norm=0), ValueError, r"^clip_norm: expected a positive finite number, got 0"),
    (dict(clip_norm=-1.0), ValueError, r"^clip_norm: expected a positive finite number, "),
    (dict(clip_norm="1"), TypeError, r"^clip_norm: expected a positive number, got '1'"),
    (dict(clip_value=0.0), ValueError, r"^clip_value: expected a positive finite number, "),
    (dict(clip_value=math.inf), ValueError, r"^clip_value: expected a positive finite "),
    (dict(callback=3), TypeError, r"^callback: expected a callable or None, got int"),
    (dict(progress="yes"), TypeError, r"^progress: expected True or False, got 'yes'"),
])
def test_fit_checks_its_options_before_the_first_update(options, error, match):
    """A clip of 0 is refused, not taken for "no clipping"; nothing is updated."""
    vocab, x, y = char_streams()
    model = RNN.char_model(vocab, 8, seed=0)
    before = model.params.data.copy()
    with pytest.raises(error, match=match):
        model.fit(x, y, window=10, steps=2, **options)
    np.testing.assert_array_equal(model.params.data, before)
    assert model.progress == dict(steps=0, epoch=0, position=0, skipped=0)


def test_fit_names_the_index_of_a_nan_in_the_whole_sequence():
    x = np.ones((40, 2, 3))
    x[35, 1, 2] = np.nan
    model = RNN(3, 4, 2, loss="mse", seed=0)
    before = model.params.data.copy()
    with pytest.raises(ValueError, match=r"^x: expected finite values, got nan at index "
                                         r"\(35, 1, 2\)"):
        model.fit(x, np.zeros((40, 2, 2)), window=5)
    np.testing.assert_array_equal(model.params.data, before)


@pytest.mark.parametrize("cell, layers", [("lstm", 2), ("gru", 1)])
def test_gated_model_trains_saves_and_resumes_exactly(tmp_path, cell, layers):
    """N steps, save, load, M steps equals N + M steps, with the LSTM's (h, c) carried."""
    vocab = fastrnn.data.Vocabulary.from_text("abcdefgh ")
    ids = vocab.encode("abc defg habc hgfe dcba " * 20)
    x, y = (fastrnn.data.streams(ids[k:len(ids) - 1 + k], 3) for k in (0, 1))

    def fresh():
        model = fastrnn.RNN.char_model(vocab, 16, cell=cell, num_layers=layers, seed=0)
        model.configure("adam", 1e-2)
        return model

    straight = fresh()
    straight.fit(x, y, window=7, steps=10)
    resumed = fresh()
    resumed.fit(x, y, window=7, steps=4)
    assert isinstance(resumed.carry, tuple) == (cell == "lstm")
    resumed.save(tmp_path / "ck.npz")
    resumed = fastrnn.RNN.load(tmp_path / "ck.npz")
    assert resumed.params.cell == cell and resumed.params.num_layers == layers
    resumed.fit(x, y, window=7, steps=6)
    np.testing.assert_array_equal(resumed.params.data, straight.params.data)
    text = resumed.sample("ab", 20, seed=0)
    assert len(text) == 22 and set(text) <= set(vocab.chars)


def test_bidirectional_model_fits_without_carrying_state():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 2, 3))
    y = np.cumsum(x, axis=0)[..., :1] * 0.1
    model = fastrnn.RNN(3, 8, 1, cell="gru", bidirectional=True, loss="mse", seed=0)
    model.configure("adam", 1e-2)
    first = model.loss_and_grad(x, y)[0]
    model.fit(x, y, window=10, epochs=20)
    assert model.loss_and_grad(x, y)[0] < 0.5 * first
    with pytest.raises(ValueError, match="^params: a bidirectional network cannot run step"):
        model.step(x[0])
