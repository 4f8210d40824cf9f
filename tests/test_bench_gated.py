"""The cases of ``python -m fastrnn bench``: their plumbing at tiny sizes, untimed."""
import io

import numpy as np
import pytest

from fastrnn import bench

TINY = dict(T=3, B=2, D=5, H=4, O=3, dtype="float32")
TINY_CASES = {
    "lstm": dict(TINY, cell="lstm", num_layers=1, bidirectional=False, train=True,
                 target=1.2),
    "gru": dict(TINY, cell="gru", num_layers=1, bidirectional=False, train=True,
                target=1.5),
    "lstm-2x-bi": dict(TINY, cell="lstm", num_layers=2, bidirectional=True, train=True,
                       target=None),
    "lstm-infer": dict(TINY, cell="lstm", num_layers=1, bidirectional=False, train=False,
                       target=1.5),
}


TINY_SIZES = {
    "ids": dict(T=3, B=2, D=5, H=4, O=3, dtype="float64", tokens=True),
    "dense": dict(T=3, B=2, D=5, H=4, O=3, dtype="float32", tokens=False),
}


def _call_once(fn, **_):
    """Stands in for ``bench._median_ms``: one untimed call, a fixed figure."""
    fn()
    return 1.0


def test_cases_are_the_issue_targets():
    c = bench.GATED_CASES
    assert {k: c["lstm"][k] for k in "TBDHO"} == dict(T=100, B=32, D=64, H=256, O=64)
    assert (c["lstm"]["target"], c["gru"]["target"], c["lstm-infer"]["target"]) == \
        (1.2, 1.5, 1.5)
    assert {k: c["lstm-infer"][k] for k in "TBDHO"} == dict(T=150, B=1, D=256, H=256, O=256)
    assert not c["lstm-infer"]["train"]
    assert c["lstm-2x-bi"]["num_layers"] == 2 and c["lstm-2x-bi"]["bidirectional"]
    assert all(case["dtype"] == "float32" for case in c.values())


@pytest.mark.parametrize("name", TINY_CASES)
@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_torch_step_computes_what_fastrnn_does(name, backend):
    pytest.importorskip("torch")
    case = TINY_CASES[name]
    problem = bench.gated_problem(case)
    ours = bench.measured_call(backend, *problem, train=case["train"])()
    theirs = bench.measured_call("torch", *problem, train=case["train"])()
    if case["train"]:
        np.testing.assert_allclose(theirs.item(), ours[0], rtol=1e-5)
    else:
        np.testing.assert_allclose(theirs.numpy(), ours[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", TINY_SIZES)
def test_vanilla_torch_step_computes_what_fastrnn_does(name):
    pytest.importorskip("torch")
    problem = bench.training_problem(TINY_SIZES[name])
    ours = bench.measured_call("numba", *problem)()
    torch_step = bench.measured_call("torch", *problem)
    np.testing.assert_allclose(torch_step().item(), ours[0], rtol=1e-5)
    np.testing.assert_allclose(torch_step().item(), ours[0], rtol=1e-5)


def test_training_flops_count_the_products_of_a_step():
    T, B, D, H, O = 7, 3, 5, 4, 2
    forward = D + H + O                   # U x_t, W s_{t-1}, V s_t
    backward = O + O + H + H + D          # dV, V^T do_t, W^T da_{t+1}, dW, dU; no dx
    assert bench.training_flops(T=T, B=B, D=D, H=H, O=O) == \
        2 * T * B * H * (forward + backward)


@pytest.mark.parametrize("system", ["numba", "reference", "torch"])
def test_worker_runs_a_gated_job(monkeypatch, system):
    if system == "torch":
        pytest.importorskip("torch")
    monkeypatch.setattr(bench, "GATED_CASES", TINY_CASES)
    monkeypatch.setattr(bench, "_median_ms", _call_once)
    result = bench.worker(f"gated:lstm-2x-bi:{system}")
    assert result["ms"] == 1.0
    assert ("threads" in result) == (system == "torch")


@pytest.mark.parametrize("system", ["reference", "torch"])
def test_stream_figures_are_timed_alike(monkeypatch, system):
    if system == "torch":
        pytest.importorskip("torch")
    timed = []
    monkeypatch.setattr(bench, "_per_call_us", lambda fn: timed.append(fn()) or 1.0)
    expected = {"RNNCell": 1.0} if system == "torch" else {"step": 1.0, "Stream": 1.0}
    assert bench.worker(f"stream:{system}") == expected
    assert len(timed) == len(expected)


def _canned(job):
    kind, _, arg = job.partition(":")
    assert kind == "gated"
    system = arg.split(":")[1]
    return {"numba": {"ms": 10.0}, "reference": {"ms": 40.0},
            "torch": {"ms": 12.0, "threads": 2}}[system]


def test_table_reports_ratio_and_target(monkeypatch):
    monkeypatch.setattr(bench, "_run_in_subprocess", _canned)
    monkeypatch.setattr(bench, "_have", lambda module: True)
    out = io.StringIO()
    results = bench.run(sizes=(), systems=("numba", "reference", "torch"), stream=False,
                        gated=True, out=out)
    assert results == {"gated": {name: {"numba": 10.0, "reference": 40.0, "torch": 12.0}
                                 for name in bench.GATED_CASES}}
    text = out.getvalue()
    assert "LSTM training step" in text and "GRU training step" in text
    assert "LSTM, 2 layers, bidirectional training step" in text
    assert "LSTM inference" in text and "(2 threads)" in text
    assert text.count("1.20x   meets the target") == 1          # lstm: 12 / 10 >= 1.2
    assert text.count("1.20x   below the target") == 2          # gru, inference: < 1.5
    assert text.count("0.30x\n") == 4                           # reference: no verdict


def test_gated_cases_are_off_by_default(monkeypatch):
    monkeypatch.setattr(bench, "_run_in_subprocess", _canned)
    out = io.StringIO()
    assert bench.run(sizes=(), systems=("numba",), stream=False, out=out) == {}
    assert out.getvalue() == ""


def test_a_failed_peak_measurement_is_reported_not_raised(monkeypatch):
    """The GEMM peak's process failing leaves the timings and drops the % of peak."""
    def canned(job):
        kind, _, arg = job.partition(":")
        return {"error": "MemoryError"} if kind == "peak" else {"ms": 5.0}

    monkeypatch.setattr(bench, "_run_in_subprocess", canned)
    out = io.StringIO()
    results = bench.run(sizes=("S",), systems=("numba",), stream=False, out=out)
    text = out.getvalue()
    assert "float32 failed (MemoryError), float64 failed (MemoryError)" in text
    assert results["S"] == {"numba": 5.0} and "% of peak" not in text
