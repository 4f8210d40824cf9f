"""Checkpoints: every malformed field refused at load with the file and the field named,
bounded reads, atomic writes and the removal of the temporary files of killed saves."""
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from fastrnn import checkpoint
from fastrnn.model import RNN
from fastrnn.params import Params

D, H, O = 3, 4, 3


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The bytes of a trained model's checkpoint: Adam's buffers and a carried (2, H)
    state; the reference backend, which compiles nothing."""
    rng = np.random.default_rng(0)
    model = RNN(D, H, O, seed=0, backend="reference")
    model.fit(rng.integers(0, D, (6, 2)), rng.integers(0, O, (6, 2)), window=3, steps=2)
    return model.save(tmp_path_factory.mktemp("saved") / "m.npz").read_bytes()


def members(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def write_members(path, content: dict) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in content.items():
            archive.writestr(name, data)


def npy(a) -> bytes:
    f = io.BytesIO()
    np.save(f, a)
    return f.getvalue()


def edited(path, saved, change):
    """The checkpoint ``saved``, written to ``path`` after ``change(meta, arrays)``, which
    edits the arrays in place and returns the meta to write."""
    path.write_bytes(saved)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = change(json.loads(arrays.pop("meta").tobytes()), arrays)
    np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return path


def config(**changes):
    return lambda meta, arrays: {**meta, "config": {**meta["config"], **changes}}


def progress(**changes):
    return lambda meta, arrays: {**meta, "progress": {**meta["progress"], **changes}}


def optimizer(**changes):
    return lambda meta, arrays: {**meta, "optimizer": {**meta["optimizer"], **changes}}


def array(name, change):
    return lambda meta, arrays: arrays.update({name: change(arrays[name])}) or meta


def negative_at_1(a):
    a = a.copy()
    a[1] = -1.0
    return a


P = Params(D, H, O).data.size

MALFORMED = [
    ("meta-array", lambda meta, arrays: [1, 2], "meta: expected a JSON object, got an array"),
    ("format", lambda meta, arrays: {**meta, "format": 2}, "format: expected 1, got 2"),
    ("config-string", lambda meta, arrays: {**meta, "config": "tanh"},
     "config: expected an object, got a string"),
    ("hidden-float", config(hidden_size=4.0),
     "config.hidden_size: expected an int in [1, 2**62), got 4.0"),
    ("hidden-huge", config(hidden_size=10**6),
     f"params: expected float64 of shape ({10**12 + 10**6 * (D + 1 + O) + O},), got "
     f"float64 of shape ({P},)"),
    ("layers-huge", config(num_layers=10**9), "params: expected float64 of shape (3"),
    ("layers-bool", config(num_layers=True), "config.num_layers: expected an int"),
    ("cell", config(cell="TANH"), "config.cell: expected one of"),
    ("dtype", config(dtype="float16"), "config.dtype: expected one of"),
    ("backend", config(backend=None), "config.backend: expected a backend's name, got None"),
    ("position-negative", progress(position=-1),
     "progress.position: expected an int in [0, 2**62), got -1"),
    ("steps-float", progress(steps=1e300), "progress.steps: expected an int in [0, 2**62), "
                                           "got 1e+300"),
    ("progress-missing", lambda meta, arrays: {**meta, "progress": {}},
     "progress.steps: expected an int in [0, 2**62), got None"),
    ("vocabulary-size", lambda meta, arrays: {**meta, "vocabulary": "ab"},
     "vocabulary: expected config.input_size = config.output_size = its 2 characters"),
    ("vocabulary-repeats", lambda meta, arrays: {**meta, "vocabulary": "aab"},
     "vocabulary: chars: expected distinct characters"),
    ("params-float32", array("params", lambda a: a.astype(np.float32)),
     f"params: expected float64 of shape ({P},), got float32 of shape ({P},)"),
    ("carry-float32", array("carry", lambda a: a.astype(np.float32)),
     "carry: expected float64 of shape (2, 4), got float32 of shape (2, 4)"),
    ("carry-width", array("carry", lambda a: a[:, :3]),
     "carry: expected shape (B, H) with H = 4, B >= 1, got (2, 3)"),
    ("carry-nan", array("carry", lambda a: a * np.nan), "carry: expected finite values"),
    ("optimizer-name", optimizer(name="Lion"), "optimizer.name: expected one of"),
    ("optimizer-steps", optimizer(steps=-2), "optimizer.steps: expected an int"),
    ("optimizer-lr-missing", optimizer(config={"betas": [0.9, 0.999], "eps": 1e-8}),
     "optimizer.config.lr: expected an object, got null"),
    ("optimizer-lr-negative", optimizer(config={"lr": {"kind": "Constant", "lr": -1.0}}),
     "optimizer.config: lr: expected a positive finite number, got -1.0"),
    ("optimizer-buffer-size", array("optimizer_state_exp_avg", lambda a: a[:5]),
     f"optimizer_state_exp_avg: expected float64 of shape ({P},), got float64 of shape "
     f"(5,)"),
    ("optimizer-buffer-inf", array("optimizer_state_exp_avg", lambda a: a + np.inf),
     "optimizer_state_exp_avg: expected finite values, got inf"),
    ("exp-avg-sq-negative", array("optimizer_state_exp_avg_sq", negative_at_1),
     "optimizer_state_exp_avg_sq: expected values >= 0 (a running sum or average of "
     "squared gradients), got -1.0 at index 1"),
    ("optimizer-buffers-missing",
     lambda meta, arrays: arrays.pop("optimizer_state_exp_avg") is not None and meta,
     "optimizer: expected the buffers ('exp_avg', 'exp_avg_sq') after 2 steps, got "
     "('exp_avg_sq',)"),
]


@pytest.mark.parametrize("change, message", [pytest.param(*row[1:], id=row[0])
                                             for row in MALFORMED])
def test_a_malformed_checkpoint_is_refused_naming_the_file_and_the_field(tmp_path, saved,
                                                                         change, message):
    path = edited(tmp_path / "m.npz", saved, change)
    with pytest.raises(ValueError) as info:
        RNN.load(path)
    assert info.type is ValueError
    assert str(info.value).startswith(f"checkpoint: {path} is not a valid fastrnn "
                                      f"checkpoint ({message}"), str(info.value)


def test_the_untouched_checkpoint_loads(tmp_path, saved):
    """The edit of the test above changes only what each row changes."""
    model = RNN.load(edited(tmp_path / "m.npz", saved, lambda meta, arrays: meta))
    assert model.progress == dict(steps=2, epoch=1, position=0, skipped=0)
    assert model.carry.shape == (2, H) and model.optimizer.steps == 2


def test_an_npy_header_is_checked_before_its_data_is_read(tmp_path, saved):
    """A header claiming 2**40 elements is refused from the header, allocating nothing."""
    path = tmp_path / "m.npz"
    path.write_bytes(saved)
    content = members(path)
    for name, shape in [("params.npy", (2**40,)), ("carry.npy", (2**38, H))]:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, dict(descr="<f8", fortran_order=False,
                                                           shape=shape))
        write_members(path, {**content, name: header.getvalue() + bytes(64)})
        with pytest.raises(ValueError) as info:
            RNN.load(path)
        assert info.type is ValueError
        expected = {"params.npy": f"params: expected float64 of shape ({P},), got float64 "
                                  f"of shape (1099511627776,)",
                    "carry.npy": "carry: its header declares float64 of shape "
                                 "(274877906944, 4), 8,796,093,022,208 bytes, but the "
                                 "member holds 64"}[name]
        assert f"({expected})" in str(info.value)


def test_members_the_format_does_not_have_are_not_read(tmp_path, saved):
    """A member that is not the checkpoint's, however large or broken, costs nothing."""
    path = tmp_path / "m.npz"
    path.write_bytes(saved)
    content = members(path)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in content.items():
            archive.writestr(name, data)
        archive.writestr("junk.npy", npy(np.zeros(4 << 20)))         # 32 MiB of zeros
        archive.writestr("broken.npy", b"not an npy file")
    tracemalloc.start()
    try:
        model = RNN.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak
    assert model.optimizer.steps == 2


def test_arrays_that_cannot_be_allocated_are_refused_with_their_size(tmp_path, saved,
                                                                    monkeypatch):
    """More than the machine's memory, or than is free: a ValueError either way, counted
    over every array the checkpoint has."""
    path = tmp_path / "m.npz"
    path.write_bytes(saved)
    total = (3 * P + 2 * H) * 8                 # params, 2 Adam buffers, a (2, H) carry
    arrays = rf"checkpoint: {re.escape(str(path))} holds {total:,} bytes of arrays \(params, " \
             r"carry, optimizer_state_exp_avg, optimizer_state_exp_avg_sq\), more than "
    monkeypatch.setattr(checkpoint, "memory_limit", lambda: total - 1)
    with pytest.raises(ValueError, match=rf"^{arrays}the machine's memory \(or its "
                                         rf"cgroup's limit\), {total - 1:,} bytes$") as info:
        RNN.load(path)
    assert info.type is ValueError
    monkeypatch.undo()
    empty = np.empty

    def no_memory(shape, dtype=float):
        if shape == P:
            raise MemoryError("Unable to allocate")
        return empty(shape, dtype=dtype)

    monkeypatch.setattr(np, "empty", no_memory)
    with pytest.raises(ValueError, match=rf"^{arrays}can be allocated now \(too little free "
                                         rf"memory\)$") as info:
        RNN.load(path)
    assert info.type is ValueError


@pytest.mark.parametrize("content", [b"hello, this is a text file\n", bytes(range(256)),
                                     npy(np.zeros(3))])
def test_a_file_that_is_not_an_npz_is_refused_without_numpys_pickle_advice(tmp_path,
                                                                           content):
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        RNN.load(path)
    assert str(info.value) == f"checkpoint: {path} is not a valid fastrnn checkpoint (not " \
                              f"an .npz archive)"


def test_an_archive_without_meta_names_what_it_holds(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3), b=np.ones(2))
    with pytest.raises(ValueError, match=r"\(meta: missing; the archive holds a, b\)$"):
        RNN.load(tmp_path / "other.npz")


# ------------------------------------------------------------------- atomic writes

def test_atomic_write_serves_any_writer_and_names_its_argument(tmp_path):
    path = checkpoint.atomic_write(tmp_path / "f.bin", lambda f: f.write(b"abc"))
    assert path.read_bytes() == b"abc" and os.listdir(tmp_path) == ["f.bin"]
    with pytest.raises(ValueError, match=r"^--plot: cannot write .*: no such folder"):
        checkpoint.atomic_write(tmp_path / "no" / "f.png", lambda f: None, argument="--plot")


def test_a_save_removes_the_stale_temporaries_of_its_target_and_no_other_file(tmp_path):
    """Stale: the writer's PID is not running and the file is a minute old. A live
    writer's file, a fresh one, another target's and other names stay."""
    dead, live = 999_999_999, os.getpid()          # above any pid_max: no such process
    names = {".m.npz.%d.0123456789abcdef.tmp" % dead: "stale",
             ".m.npz.0123456789abcdef.tmp": "stale",             # before PIDs were added
             ".m.npz.%d.fedcba9876543210.tmp" % live: "live",
             ".m.npz.%d.00000000000000aa.tmp" % dead: "fresh",
             ".n.npz.%d.0123456789abcdef.tmp" % dead: "other target",
             ".m.npz.%d.notHEX.tmp" % dead: "other name", "m.npz.tmp": "other name"}
    old = time.time() - 2 * checkpoint._STALE_SECONDS
    for name, kind in names.items():
        (tmp_path / name).write_bytes(b"partial")
        if kind != "fresh":
            os.utime(tmp_path / name, (old, old))
    RNN(D, H, O, seed=0).save(tmp_path / "m.npz")
    kept = {name for name, kind in names.items() if kind != "stale"}
    assert set(os.listdir(tmp_path)) == kept | {"m.npz"}


CHILD = """
import sys
from fastrnn import RNN
model = RNN(40, 256, 40, seed=0)
while True:
    model.save(sys.argv[1])
    print("saved", flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_save_killed_mid_write_leaves_the_previous_file_and_the_next_save_cleans_up(
        tmp_path):
    """A process saving in a loop is killed once its first save is done, as soon as a
    temporary file is seen: the checkpoint loads intact, and the temporary file the kill
    left (unless the rename won the race) is removed by the next save once it is stale."""
    path = tmp_path / "m.npz"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "saved\n"
        deadline = time.monotonic() + 5.0
        while not any(name.endswith(".tmp") for name in os.listdir(tmp_path)) and \
                time.monotonic() < deadline:
            pass
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert RNN.load(path).params.hidden_size == 256
    leftovers = [p for p in tmp_path.iterdir() if p != path]
    assert all(re.fullmatch(rf"\.m\.npz\.{child.pid}\.[0-9a-f]{{16}}\.tmp", p.name)
               for p in leftovers), leftovers
    old = time.time() - 2 * checkpoint._STALE_SECONDS
    for p in leftovers:
        os.utime(p, (old, old))
    RNN.load(path).save(path)
    assert os.listdir(tmp_path) == ["m.npz"]


def test_a_member_that_is_not_npy_is_named(tmp_path, saved):
    path = tmp_path / "m.npz"
    path.write_bytes(saved)
    write_members(path, {**members(path), "carry.npy": b"\x93NUMPY\x09\x00 garbage"})
    with pytest.raises(ValueError, match=r"\(carry: \.npy format version \(9, 0\), expected "
                                         r"\(1, 0\) or \(2, 0\) as np\.savez writes\)$"):
        RNN.load(path)
    write_members(path, {**members(path), "carry.npy": b"PK not npy"})
    with pytest.raises(ValueError, match=r"\(carry: not an \.npy header \(.*magic"):
        RNN.load(path)
