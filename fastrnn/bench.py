"""One-run comparison: ``python -m fastrnn bench``.

Measures a training step (forward, loss, BPTT) of fastrnn's backends, of a
min-char-rnn-style NumPy loop and of PyTorch's CPU ``nn.RNN`` + ``nn.Linear`` +
cross-entropy with the same weights (``fastrnn.interop.to_torch``) on the same inputs,
and this machine's GEMM peak, each system in its own process (on a few cores the thread
pools of different libraries disturb each other). Every process warms up first
(compilation is never timed) and reports the median of repeated runs; ratios are taken
between figures of the same run.

FLOPs are those of the step's products, 2 per multiply-add: forward U x_t, W s_{t-1} and
V s_t, 2 T B H (D + H + O); backward dV, V^T do_t, W^T da_{t+1}, dW and dU,
2 T B H (D + 2 H + 2 O) (no gradient for x). Token ids count as one-hot products, which
PyTorch computes and fastrnn replaces by lookups.

With ``gated=True`` it also runs the gated cases of ``GATED_CASES``: fastrnn's stack
backends against PyTorch's ``nn.LSTM`` / ``nn.GRU`` + ``nn.Linear`` holding the same
weights (``fastrnn.interop.to_torch``), a training step or, under
``torch.inference_mode()``, a forward pass, and the ratio PyTorch ms / fastrnn ms
against each case's target.

The problems (``training_problem``, ``gated_problem``, ``step_problem``) and the timed
calls (``measured_call``) are public: the asv suite in the repository's benchmarks/ and
its pytest-benchmark cases build theirs with them.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

SIZES = {
    "S": dict(T=25, B=1, D=65, H=100, O=65, dtype="float64", tokens=True),
    "M": dict(T=100, B=32, D=64, H=256, O=64, dtype="float32", tokens=False),
    "L": dict(T=50, B=128, D=256, H=1024, O=256, dtype="float32", tokens=False),
}
SYSTEMS = ("cython", "numba", "reference", "numpy-loop", "torch")
STEP_SIZE = dict(B=1, D=8, H=64, O=8, dtype="float32")

_M = {k: SIZES["M"][k] for k in "TBDHO"}
# Dense float32 inputs and class-id targets. ``train``: a training step (forward,
# cross-entropy with reduction "sum", full backward), else a forward pass. ``target``:
# the PyTorch ms / fastrnn ms to reach, None for cases tracked without one.
GATED_CASES = {
    "lstm": dict(_M, cell="lstm", num_layers=1, bidirectional=False, dtype="float32",
                 train=True, target=1.2),
    "gru": dict(_M, cell="gru", num_layers=1, bidirectional=False, dtype="float32",
                train=True, target=1.5),
    "lstm-2x-bi": dict(_M, cell="lstm", num_layers=2, bidirectional=True, dtype="float32",
                       train=True, target=None),
    "lstm-infer": dict(T=150, B=1, D=256, H=256, O=256, cell="lstm", num_layers=1,
                       bidirectional=False, dtype="float32", train=False, target=1.5),
}


def training_flops(T, B, D, H, O, **_) -> float:
    """FLOPs of a training step (see the module's docstring)."""
    return 2 * T * B * H * (2 * D + 3 * H + 3 * O)


# The problems are seeded and shared with the asv suite in benchmarks/, so that its
# history and this comparison speak of the same work: changing what a builder returns
# for an existing size or case invalidates that history.


def training_problem(size: dict, seed: int = 0):
    """Params, inputs and targets of a vanilla size (a value of ``SIZES``).

    Returns
    -------
    params : Params
        One tanh layer (D, H, O) of the size's dtype, PyTorch's initialisation.
    x : ndarray
        (T, B) int64 token ids in [0, D) when the size uses tokens, else (T, B, D)
        standard normal of the size's dtype.
    y : ndarray
        (T, B) int64 class ids in [0, O).
    """
    import fastrnn

    T, B, D, H, O = (size[k] for k in "TBDHO")
    rng = np.random.default_rng(seed)
    x = rng.integers(0, D, size=(T, B)) if size["tokens"] else \
        rng.standard_normal((T, B, D)).astype(size["dtype"])
    y = rng.integers(0, O, size=(T, B))
    return fastrnn.init_params(D, H, O, dtype=size["dtype"], seed=seed), x, y


def gated_problem(case: dict, seed: int = 0):
    """Params, inputs and targets of a gated case (a value of ``GATED_CASES``).

    Returns
    -------
    params : Params
        (D, H, O) of the case's cell, layers, directions and dtype, PyTorch's
        initialisation (the LSTM's forget-gate bias at one).
    x : ndarray
        (T, B, D) standard normal of the case's dtype.
    y : ndarray
        (T, B) int64 class ids in [0, O).
    """
    import fastrnn

    T, B, D, H, O = (case[k] for k in "TBDHO")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, D)).astype(case["dtype"])
    y = rng.integers(0, O, size=(T, B))
    params = fastrnn.init_params(D, H, O, cell=case["cell"], num_layers=case["num_layers"],
                                 bidirectional=case["bidirectional"], dtype=case["dtype"],
                                 seed=seed)
    return params, x, y


def step_problem(cell: str = "tanh", seed: int = 0):
    """Params and buffers of one streaming step at ``STEP_SIZE``.

    Returns
    -------
    params : Params
        (D, H, O) of STEP_SIZE's dtype, one layer of ``cell``.
    x : ndarray
        (B, D) standard normal input block.
    h : ndarray
        (B, H) zero state.
    o : ndarray
        (B, O) output buffer.
    """
    import fastrnn

    B, D, H, O, dtype = (STEP_SIZE[k] for k in ("B", "D", "H", "O", "dtype"))
    rng = np.random.default_rng(seed)
    params = fastrnn.init_params(D, H, O, cell=cell, dtype=dtype, seed=seed)
    x = rng.standard_normal((B, D)).astype(dtype)
    return params, x, np.zeros((B, H), dtype=dtype), np.zeros((B, O), dtype=dtype)


def measured_call(system: str, params, x, y, train: bool = True):
    """The no-argument call that is timed for ``system`` on a problem (params, x, y).

    A fastrnn backend runs ``loss_and_grad`` (forward, cross-entropy with reduction
    "sum", BPTT) or, with ``train=False``, ``forward``. ``system="torch"`` runs PyTorch's
    ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` + ``nn.Linear`` holding the same weights
    (``fastrnn.interop.to_torch``), on token ids one-hot encoded once, here: a training
    call zeroes the gradients, runs forward, ``cross_entropy`` (reduction "sum") and
    ``backward`` and returns the loss; an inference call runs forward under
    ``torch.inference_mode()`` and returns the outputs (T, B, O).
    """
    import fastrnn

    if system == "torch":
        return _torch_call(params, x, y, train)
    if train:
        return lambda: fastrnn.loss_and_grad(params, x, y, backend=system)
    return lambda: fastrnn.forward(params, x, backend=system)


def _torch_call(params, x, y, train: bool):
    import torch

    from fastrnn.interop import to_torch

    module, linear = to_torch(params)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).reshape(-1)
    if x.ndim == 2:                                     # (T, B) token ids
        xt = torch.nn.functional.one_hot(xt, params.input_size).to(
            getattr(torch, params.dtype.name))

    def training_step():
        module.zero_grad(set_to_none=False)
        linear.zero_grad(set_to_none=False)
        out, _ = module(xt)
        loss = torch.nn.functional.cross_entropy(
            linear(out).reshape(-1, params.output_size), yt, reduction="sum")
        loss.backward()
        return loss

    def inference():
        with torch.inference_mode():
            return linear(module(xt)[0])

    return training_step if train else inference


def _numpy_loop_step(size):
    """min-char-rnn's lossFun: column vectors, one sequence, a Python loop per step."""
    T, D, H, O = size["T"], size["D"], size["H"], size["O"]
    if size["B"] != 1 or not size["tokens"]:
        raise NotImplementedError("the min-char-rnn loop takes one sequence of token ids")
    _, x, y = training_problem(size)
    inputs, targets = x[:, 0], y[:, 0]
    rng = np.random.default_rng(0)
    Wxh, Whh = rng.standard_normal((H, D)) * 0.01, rng.standard_normal((H, H)) * 0.01
    Why = rng.standard_normal((O, H)) * 0.01
    bh, by = np.zeros((H, 1)), np.zeros((O, 1))

    def loss_fun():
        xs, hs, ps = {}, {-1: np.zeros((H, 1))}, {}
        loss = 0.0
        for t in range(T):
            xs[t] = np.zeros((D, 1))
            xs[t][inputs[t]] = 1
            hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
            ys = Why @ hs[t] + by
            ps[t] = np.exp(ys - ys.max()) / np.exp(ys - ys.max()).sum()
            loss += -np.log(ps[t][targets[t], 0])
        dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
        dbh, dby, dhnext = np.zeros_like(bh), np.zeros_like(by), np.zeros_like(bh)
        for t in reversed(range(T)):
            dy = ps[t].copy()
            dy[targets[t]] -= 1
            dWhy += dy @ hs[t].T
            dby += dy
            dh = Why.T @ dy + dhnext
            dhraw = (1 - hs[t] * hs[t]) * dh
            dbh += dhraw
            dWxh += dhraw @ xs[t].T
            dWhh += dhraw @ hs[t - 1].T
            dhnext = Whh.T @ dhraw
        return loss, dWxh, dWhh, dWhy, dbh, dby

    return loss_fun


def _median_ms(fn, budget=2.0, min_runs=5, max_runs=200) -> float:
    """Median wall time of fn() in ms, after warm-up, within about ``budget`` seconds."""
    for _ in range(3):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < budget
                                    and len(times) < max_runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _per_call_us(fn) -> float:
    """Microseconds per call of fn(): after 1000 calls of warm-up, the median of 7 means
    over 20,000 calls each (a single call is too short to time on its own)."""
    for _ in range(1000):
        fn()
    means = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(20000):
            fn()
        means.append((time.perf_counter() - t0) / 20000)
    return 1e6 * statistics.median(means)


def _gemm_peak(dtype, n=2048) -> float:
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    b = a.copy()
    c = np.empty_like(a)
    ms = _median_ms(lambda: np.matmul(a, b, out=c), budget=2.0)
    return 2 * n**3 / (ms * 1e-3) / 1e9


def _stream_step_us(backend):
    import fastrnn

    params, x, h, o = step_problem()
    stream = fastrnn.Stream(params, batch_size=STEP_SIZE["B"], backend=backend)
    out = (o, h)
    return {"step": _per_call_us(lambda: fastrnn.step(params, x, h, out=out,
                                                      backend=backend)),
            "Stream": _per_call_us(lambda: stream(x))}


def _torch_cell_step_us():
    import torch

    _, x, h, _ = step_problem()
    x, h = torch.from_numpy(x), torch.from_numpy(h)
    cell = torch.nn.RNNCell(x.shape[1], h.shape[1], dtype=x.dtype)
    with torch.inference_mode():
        return _per_call_us(lambda: cell(x, h))


def _gated_worker(name: str, system: str) -> dict:
    case = GATED_CASES[name]
    fn = measured_call(system, *gated_problem(case), train=case["train"])
    extra = {}
    if system == "torch":
        import torch

        extra["threads"] = torch.get_num_threads()
    budget = 1.0 if system == "reference" else 3.0
    return {"ms": _median_ms(fn, budget=budget, min_runs=3), **extra}


# ``fastrnn train``'s default model and window, on a 96-character vocabulary.
TRAIN_CASE = dict(T=50, B=32, H=128, vocabulary=96, cell="tanh", dtype="float32")


def _training_seconds(steps: int) -> float:
    """Seconds of ``steps`` training steps of TRAIN_CASE (Adam, clipping), after two
    untimed steps that compile, with the BLAS threads ``fastrnn train`` would use."""
    from . import RNN, data
    from ._threads import blas_threads_for

    case = TRAIN_CASE
    rng = np.random.default_rng(0)
    text = "".join(map(chr, rng.integers(32, 32 + case["vocabulary"], 100_000)))
    vocabulary = data.Vocabulary.from_text(text)
    ids = vocabulary.encode(text)
    x, y = (data.streams(ids[k:len(ids) - 1 + k], case["B"]) for k in (0, 1))
    model = RNN.char_model(vocabulary, case["H"], cell=case["cell"], dtype=case["dtype"],
                           seed=0)
    model.configure("adam", 3e-3)
    with blas_threads_for(model, case["B"]):
        model.fit(x, y, window=case["T"], steps=2, clip_norm=5.0)
        start = time.perf_counter()
        model.fit(x, y, window=case["T"], steps=steps, clip_norm=5.0)
        return time.perf_counter() - start


def concurrent(steps: int = 100, out=sys.stdout) -> dict:
    """Two trainings at once against one alone: the slowdown when jobs share the cores.

    Trains TRAIN_CASE for ``steps`` steps in one process, then in two processes started
    together, and prints the seconds and the slowdown, the slower of the two over the
    one alone (two single-threaded jobs on two cores: about 1; on one core: about 2).

    Returns
    -------
    dict
        "alone" seconds, "together" [seconds, seconds], "slowdown".
    """
    job = f"train:{steps}"
    _seconds(_run_in_subprocess(job))           # compiles, if the kernel cache is cold
    alone = _seconds(_run_in_subprocess(job))
    procs = [subprocess.Popen([sys.executable, "-m", "fastrnn.bench", job], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    together = [_seconds(_result(p.returncode, stdout, stderr))
                for p in procs for stdout, stderr in [p.communicate()]]
    slowdown = max(together) / alone
    c = TRAIN_CASE
    print(f"training T={c['T']} B={c['B']} H={c['H']} {c['cell']} {c['dtype']}, {steps} "
          f"steps: alone {alone:.2f} s, two at once {together[0]:.2f} and "
          f"{together[1]:.2f} s, slowdown {slowdown:.2f}x", file=out)
    return {"alone": alone, "together": together, "slowdown": slowdown}


def worker(job: str) -> dict:
    """Run one measurement in this process and return it."""
    kind, _, arg = job.partition(":")
    if kind == "train":
        return {"s": _training_seconds(int(arg))}
    if kind == "peak":
        return {"gflops": _gemm_peak(np.dtype(arg))}
    if kind == "stream":
        return _stream_step_us(arg) if arg != "torch" else {"RNNCell": _torch_cell_step_us()}
    if kind == "gated":
        return _gated_worker(*arg.split(":"))
    system, size = kind, SIZES[arg]
    fn = _numpy_loop_step(size) if system == "numpy-loop" else \
        measured_call(system, *training_problem(size))
    budget = 1.0 if system in ("reference", "numpy-loop") else 3.0
    return {"ms": _median_ms(fn, budget=budget, min_runs=3)}


def _run_in_subprocess(job: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "fastrnn.bench", job], capture_output=True,
                          text=True, env=dict(os.environ))
    return _result(proc.returncode, proc.stdout, proc.stderr)


def _result(returncode: int, stdout: str, stderr: str) -> dict:
    """A worker's JSON result, or {"error": its last line on stderr} when it failed."""
    if returncode != 0:
        last = (stderr.strip().splitlines() or ["failed"])[-1]
        return {"error": last}
    return json.loads(stdout.strip().splitlines()[-1])


def _seconds(result: dict) -> float:
    if "error" in result:
        raise RuntimeError(f"the training worker failed: {result['error']}")
    return result["s"]


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _describe(case: dict) -> str:
    stack = (f", {case['num_layers']} layers" if case["num_layers"] > 1 else "") + \
        (", bidirectional" if case["bidirectional"] else "")
    what = "training step (forward + cross-entropy + backward)" if case["train"] else \
        "inference (forward; PyTorch under inference_mode)"
    target = f"target >= {case['target']}x" if case["target"] else "no target"
    return (f"{case['cell'].upper()}{stack} {what}: T={case['T']} B={case['B']} "
            f"D={case['D']} H={case['H']} O={case['O']} {case['dtype']}, {target}")


def _run_gated(systems, out) -> dict:
    """Measure and print the gated cases; return {case: {system: ms}}."""
    import fastrnn

    systems = [s for s in systems if s == "torch" or s in fastrnn.available_backends()]
    print("\ngated cells against PyTorch's module + nn.Linear with the same weights; "
          "ratio = PyTorch ms / fastrnn ms", file=out)
    results = {}
    for name, case in GATED_CASES.items():
        print(f"{name}: {_describe(case)}", file=out)
        rows, threads = {}, None
        for system in systems:
            r = _run_in_subprocess(f"gated:{name}:{system}")
            if "error" in r:
                print(f"  {system:12s} failed: {r['error']}", file=out)
                continue
            rows[system] = r["ms"]
            threads = r.get("threads", threads)
        fast = [s for s in rows if s not in ("torch", "reference")]
        best = min(fast, key=rows.get) if fast else None
        for system, ms in rows.items():
            line = f"  {system:12s} {ms:10.3f} ms"
            if system == "torch":
                line += f"   ({threads} threads)"
            elif "torch" in rows:
                ratio = rows["torch"] / ms
                line += f"   {ratio:6.2f}x"
                if system == best and case["target"]:
                    line += "   meets the target" if ratio >= case["target"] else \
                        "   below the target"
            print(line, file=out)
        results[name] = rows
    return results


def run(sizes=("S", "M", "L"), systems=SYSTEMS, stream=True, gated=False,
        out=sys.stdout) -> dict:
    """Measure everything, print a table, return the figures.

    Parameters
    ----------
    sizes : iterable of str
        Keys of ``SIZES`` for the vanilla training step; empty skips it and the GEMM peak.
    systems : iterable of str
        Among ``SYSTEMS``; unavailable ones are left out.
    stream : bool
        Also the streaming step.
    gated : bool
        Also the cases of ``GATED_CASES`` (fastrnn's backends and PyTorch only).
    out : file
        Where the tables go.

    Returns
    -------
    dict
        "peak" {dtype: GFLOP/s, None if it failed}, each size {system: ms}, "gated"
        {case: {system: ms}}, "stream" {label: us}, as measured.
    """
    import fastrnn

    systems = [s for s in systems if s in ("reference", "numpy-loop", "torch")
               or s in fastrnn.available_backends()]
    if "torch" in systems and not _have("torch"):
        print("PyTorch is not installed: skipping the PyTorch comparison "
              "(pip install torch==2.13.0)", file=out)
        systems.remove("torch")
    results = {}
    if sizes:
        measured = {dt: _run_in_subprocess(f"peak:{dt}") for dt in ("float32", "float64")}
        peaks = {dt: r.get("gflops") for dt, r in measured.items()}
        shown = ", ".join(f"{dt} " + (f"failed ({r['error']})" if "gflops" not in r
                                      else f"{r['gflops']:.0f} GFLOP/s")
                          for dt, r in measured.items())
        print(f"GEMM peak on this machine (numpy matmul 2048^2): {shown}", file=out)
        results["peak"] = peaks
    for name in sizes:
        size = SIZES[name]
        flops = training_flops(**size)
        print(f"\n{name}: T={size['T']} B={size['B']} D={size['D']}"
              f"{' ids' if size['tokens'] else ''} H={size['H']} O={size['O']} "
              f"{size['dtype']}, loss_and_grad (forward + loss + BPTT)", file=out)
        rows = {}
        for system in systems:
            if system in ("reference", "numpy-loop") and name == "L":
                continue
            r = _run_in_subprocess(f"{system}:{name}")
            if "error" in r:
                if "NotImplementedError" not in r["error"]:
                    print(f"  {system:12s} failed: {r['error']}", file=out)
                continue
            rows[system] = r["ms"]
        compiled = [s for s in ("cython", "numba") if s in rows]
        best = min(compiled, key=rows.get) if compiled else None
        for system, ms in rows.items():
            gflops = flops / (ms * 1e-3) / 1e9
            line = f"  {system:12s} {ms:10.3f} ms {gflops:8.1f} GFLOP/s"
            if peaks[size["dtype"]] is not None:
                line += f" {100 * gflops / peaks[size['dtype']]:5.1f}% of peak"
            if best is not None and system != best:
                line += f"   {best} is {ms / rows[best]:6.2f}x faster"
            print(line, file=out)
        results[name] = rows
    if gated:
        results["gated"] = _run_gated(systems, out)
    if stream:
        s = STEP_SIZE
        print(f"\nstreaming step B={s['B']} D={s['D']} H={s['H']} {s['dtype']} "
              f"(per call from Python)", file=out)
        figures = {}
        for system in [x for x in systems if x not in ("numpy-loop",)]:
            r = _run_in_subprocess(f"stream:{system}")
            if "error" in r:
                print(f"  {system:12s} failed: {r['error']}", file=out)
                continue
            for how, us in r.items():
                label = f"{system} {how}" if system != "torch" else "torch RNNCell"
                figures[label] = us
                print(f"  {label:24s} {us:8.2f} us", file=out)
        results["stream"] = figures
    return results


if __name__ == "__main__":
    print(json.dumps(worker(sys.argv[1])))
