"""||kappa_t|| from the diagnostics module against the reference BPTT."""
import io
import os
import stat

import numpy as np
import pytest

import fastrnn
from fastrnn import available_backends, diagnostics, reference
from fastrnn.model import RNN

from conftest import make_problem


@pytest.mark.parametrize("last_step_only", [False, True])
def test_gradient_norms_match_the_reference(backend, last_step_only):
    params, x, y, h0 = make_problem(T=12, B=3, tokens=True)
    a, s, o = reference.rnn_forward(params.U, params.W, params.b, params.V, params.c, x, h0)
    _, do = reference.cross_entropy(o, y)
    if last_step_only:
        do[:-1] = 0.0
    kappa = reference.bptt(params.U, params.W, params.V, x, a, s, do)["kappa"]
    expected = np.sqrt((kappa ** 2).sum(axis=(1, 2)))
    model = RNN(params.input_size, params.hidden_size, params.output_size, backend=backend)
    model.params.data[...] = params.data
    norms = diagnostics.gradient_norms(model, x, y, h0, last_step_only=last_step_only)
    np.testing.assert_allclose(norms, expected, rtol=1e-10)


def test_plot_gradient_norms(tmp_path):
    pytest.importorskip("matplotlib")
    path = diagnostics.plot_gradient_norms({"a": np.array([1.0, 0.1, 0.01])},
                                           tmp_path / "g.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradient_norms_of_a_stack_agree_across_backends(bidirectional):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, size=(2, 12, 3))
    norms = {}
    for backend in available_backends():
        model = RNN(5, 6, 5, cell="lstm", num_layers=2, bidirectional=bidirectional, seed=0,
                    backend=backend)
        norms[backend] = diagnostics.gradient_norms(model, x, y)
    for value in norms.values():
        assert value.shape == (12,) and np.all(value > 0)
        np.testing.assert_allclose(value, norms["reference"], rtol=1e-10)


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_gradient_norms_leave_the_last_gradients_alone(cell, backend):
    """loss_and_grad's results are views into a cached workspace; the diagnostics must not
    overwrite them between loss_and_grad and the optimiser's step."""
    params = fastrnn.init_params(5, 4, 5, cell=cell, seed=0)
    x, y = np.random.default_rng(0).integers(0, 5, size=(2, 6, 3))
    _, grads, state = fastrnn.loss_and_grad(params, x, y, backend=backend)
    before = grads.data.copy(), grads.h0.copy()
    x2, y2 = np.random.default_rng(1).integers(0, 5, size=(2, 6, 3))
    diagnostics.gradient_norms(params, x2, y2, last_step_only=True)
    np.testing.assert_array_equal(grads.data, before[0])
    np.testing.assert_array_equal(grads.h0, before[1])


def test_gradient_norms_name_a_model_of_the_wrong_type():
    with pytest.raises(TypeError, match=r"^model: expected fastrnn.RNN or fastrnn.Params, "
                                        r"got str"):
        diagnostics.gradient_norms("model", np.zeros((2, 1), int), np.zeros((2, 1), int))


def test_plotting_leaves_the_matplotlib_backend_alone(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    previous = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        diagnostics.plot_gradient_norms({"a": np.array([1.0, 0.1])}, tmp_path / "g.png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(previous)


def test_a_failed_plot_leaves_the_previous_file(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    path = diagnostics.plot_gradient_norms({"a": np.array([1.0, 0.1])}, tmp_path / "g.png")
    good = path.read_bytes()
    print_png = FigureCanvasAgg.print_png

    def fail_midway(self, target, **kwargs):
        if isinstance(target, io.BytesIO):           # matplotlib's own trial rendering
            return print_png(self, target)
        if hasattr(target, "write"):
            target.write(good[:10])
        else:
            with open(target, "wb") as f:
                f.write(good[:10])
        raise OSError("No space left on device")

    monkeypatch.setattr(FigureCanvasAgg, "print_png", fail_midway)
    with pytest.raises(OSError, match="No space left"):
        diagnostics.plot_gradient_norms({"b": np.array([1.0, 0.5])}, path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]


def test_plotting_into_a_folder_is_refused(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match=r"^path: cannot write .*: it is a folder"):
        diagnostics.plot_gradient_norms({"a": np.array([1.0, 0.1])}, tmp_path)
    with pytest.raises(ValueError, match=r"^path: cannot write .*: no such folder"):
        diagnostics.plot_gradient_norms({"a": np.array([1.0, 0.1])}, tmp_path / "no" / "g.png")


def test_a_plot_gets_the_permissions_of_a_new_file(tmp_path):
    pytest.importorskip("matplotlib")
    umask = os.umask(0o022)
    try:
        path = diagnostics.plot_gradient_norms({"a": np.array([1.0, 0.1])}, tmp_path / "g.png")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_the_training_plot_has_units_held_out_curve_and_baseline(tmp_path, monkeypatch):
    """The losses of a resumed run at their step numbers, the held-out points, the
    unigram baseline as a horizontal line, a title and the unit of the loss."""
    pytest.importorskip("matplotlib")
    figures = []
    monkeypatch.setattr(diagnostics, "_save",
                        lambda fig, path, argument: figures.append(fig) or path)
    vocab = fastrnn.data.Vocabulary.from_text("abcd")
    model = RNN.char_model(vocab, 4, seed=0)
    model.progress["steps"] = 13
    x, y = np.random.default_rng(0).integers(0, 4, size=(2, 5, 2))
    diagnostics.plot_training(model, [1.4, np.nan, 1.3], x, y, tmp_path / "t",
                              held_out={13: 1.35, 12: 1.38}, baseline=1.386)
    ax = figures[0].axes[0]
    assert ax.get_title() == "loss: tanh x 1 layer(s), H=4"
    assert ax.get_ylabel() == "cross-entropy (nats/char)"
    train, held_out, baseline = ax.get_lines()
    assert [line.get_label() for line in ax.get_legend().get_lines()] == \
        ["training", "held-out", "unigram baseline"]
    np.testing.assert_array_equal(train.get_xdata(), [11, 12, 13])
    np.testing.assert_array_equal(held_out.get_xydata(), [[12, 1.38], [13, 1.35]])
    np.testing.assert_array_equal(baseline.get_ydata(), [1.386, 1.386])
