"""Smoke tests: every backend entry point once, against the reference.

CI runs the whole suite on the source tree, and only this marked subset (``-m smoke``) on
the installed wheel and on the install without the compiled extension, where what can
break is the build and the packaging, not the arithmetic the rest of the suite checks:
every compiled module is loaded and called (single-cell and stack kernels, dense and
token-id inputs, float32 and float64, streaming steps), and the console script runs.
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastrnn

from conftest import RTOL

pytestmark = pytest.mark.smoke

COMPILED = [b for b in fastrnn.available_backends() if b != "reference"]
# (cell, num_layers, bidirectional, token ids, dtype): the one-layer tanh network reaches
# the single-cell kernels, the rest the stack kernels; each input kind and dtype once.
NETWORKS = [("tanh", 1, False, True, np.float64),
            ("tanh", 1, False, False, np.float32),
            ("lstm", 2, True, False, np.float64),
            ("gru", 1, False, True, np.float32)]


def network_id(case):
    cell, L, bi, tokens, dtype = case
    return f"{cell}-L{L}{'-bi' if bi else ''}-{'ids' if tokens else 'dense'}-" \
           f"{np.dtype(dtype).name}"


def make(cell, L, bi, tokens, dtype, *, T=5, B=2, D=4, H=3, O=3):
    rng = np.random.default_rng(0)
    params = fastrnn.init_params(D, H, O, cell=cell, num_layers=L, bidirectional=bi,
                                 dtype=dtype, seed=0)
    x = rng.integers(0, D, size=(T, B)) if tokens else \
        rng.standard_normal((T, B, D)).astype(dtype)
    y = rng.integers(0, O, size=(T, B))
    return params, x, y


def assert_close(comp, ref, dtype):
    comp, ref = np.asarray(comp, np.float64), np.asarray(ref, np.float64)
    np.testing.assert_allclose(comp, ref, rtol=RTOL[dtype],
                               atol=RTOL[dtype] * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("case", NETWORKS, ids=network_id)
def test_sequence_kernels_match_reference(backend, case):
    dtype = case[-1]
    params, x, y = make(*case)
    o, _ = fastrnn.forward(params, x, backend=backend)
    o_ref, _ = fastrnn.forward(params, x, backend="reference")
    assert_close(o, o_ref, dtype)
    loss, grads, _ = fastrnn.loss_and_grad(params, x, y, backend=backend)
    loss_ref, grads_ref, _ = fastrnn.loss_and_grad(params, x, y, backend="reference")
    assert_close(loss, loss_ref, dtype)
    assert_close(grads.data, grads_ref.data, dtype)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("case", [c for c in NETWORKS if not c[2]], ids=network_id)
def test_streaming_steps_match_forward(backend, case):
    dtype = case[-1]
    params, x, _ = make(*case)
    o_ref, _ = fastrnn.forward(params, x, backend="reference")
    stream = fastrnn.Stream(params, batch_size=x.shape[1], backend=backend)
    for t in range(x.shape[0]):
        assert_close(stream(x[t]), o_ref[t], dtype)


def test_console_script_trains_saves_and_samples(tmp_path):
    script = shutil.which("fastrnn", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("the fastrnn console script is not installed beside this Python")
    text = tmp_path / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 40)
    checkpoint = tmp_path / "model.npz"
    run = subprocess.run([script, "train", "--text", str(text), "--steps", "3",
                          "--hidden", "8", "--batch", "4", "--window", "10", "--sample", "0",
                          "--checkpoint", str(checkpoint)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert checkpoint.exists()
    run = subprocess.run([script, "sample", "--checkpoint", str(checkpoint), "-n", "20"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.strip()) > 0
