"""||kappa_t|| from the diagnostics module against the reference BPTT."""
import numpy as np
import pytest

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
