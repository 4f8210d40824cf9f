"""Checkpoints: the .npz that ``RNN.save`` writes and ``RNN.load`` reads, and the atomic
write that every file fastrnn writes goes through.

Legend: P parameters, B batch (streams), H hidden size, n layers * directions.

A checkpoint is an ``np.savez`` archive (a zip of .npy members):

    meta                  (bytes,) uint8   UTF-8 JSON: format, config, vocabulary,
                                           progress, optimizer (name, steps, config)
    params                (P,)             ``Params.data``
    carry, carry_c        (B, H) or (n, B, H)   the state ``fit`` carries (carry_c: the
                                           LSTM's cell state); absent before ``fit``
    optimizer_state_NAME  (P,)             the optimiser's buffers; absent before its
                                           first step

Reading is bounded: the JSON is checked first (types, ranges), every array member's .npy
header is checked against the shape and dtype the config implies before any of its data
is read, the arrays' total size is allocated before reading (or refused), and members
the format does not have are never read.
"""
from __future__ import annotations

import json
import math
import os
import re
import reprlib
import secrets
import stat
import time
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import _checks, optim
from .data import Vocabulary
from .params import CELLS, DTYPES, Params, memory_limit, parameter_count

FORMAT = 1
_META_BYTES = 1 << 26           # the JSON: a vocabulary of every Unicode character fits
_COUNT_LIMIT = 1 << 62          # step counts, epochs, positions: int64 with room for + 1
_STALE_SECONDS = 60.0
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}


class Checkpoint(NamedTuple):
    """What ``read`` returns, every part checked against the others."""
    params: Params
    loss: str
    backend: str                # as saved; it may not be available here
    vocabulary: Vocabulary | None
    progress: dict              # steps, epoch, position, skipped
    carry: np.ndarray | tuple | None
    optimizer: optim.Optimizer | None


class _Invalid(ValueError):
    """A checkpoint's field that is not what the format says; ``read`` names the file."""


class _TooLarge(ValueError):
    """Arrays that fit the config but cannot be allocated here."""


# ------------------------------------------------------------------------- writing

def check_target(path, argument: str = "path") -> Path:
    """``path`` as a Path to a file that can be written: not a folder, in one that exists."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{argument}: expected a str or os.PathLike, got "
                        f"{type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{argument}: cannot write {path}: it is a folder")
    if not path.parent.is_dir():
        raise ValueError(f"{argument}: cannot write {path}: no such folder {path.parent}")
    return path


def atomic_write(path, write, *, argument: str = "path") -> Path:
    """Write a file through ``write(f)``, f a binary file object, so that readers of
    ``path`` see either the previous file or the complete new one.

    ``write`` writes to a temporary file beside ``path`` (``.NAME.PID.HEX.tmp``), which
    is flushed to disk and renamed over ``path``; if ``write`` raises (a full disk, a
    Ctrl-C), the temporary file is removed and the exception propagates. The temporary
    file is opened as any new file, so that a new file gets the permissions the umask
    gives (mkstemp's would be 0600); a file that replaces another keeps that one's.
    A process killed mid-write cannot remove its temporary file: each write first removes
    the stale ones of the same ``path`` (see ``_remove_stale_temporaries``).
    ``path`` is checked as ``check_target`` does, naming ``argument``. Returns it.
    """
    path = check_target(path, argument)
    folder = path.parent
    _remove_stale_temporaries(path)
    tmp = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp"
    f = open(tmp, "xb")
    try:
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        except FileNotFoundError:
            pass
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:                     # a folder that cannot be opened (Windows)
        return path
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def _temporaries(path: Path) -> re.Pattern:
    """The names of ``path``'s temporary files: ``.NAME.PID.HEX.tmp``, and
    ``.NAME.HEX.tmp`` as versions before the PID was added wrote them."""
    return re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)\.)?[0-9a-f]{{16}}\.tmp")


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files that writers of ``path`` killed mid-write left behind.

    A temporary file is stale when the process its name carries is not running here AND
    it has not been modified for ``_STALE_SECONDS``. The PID alone protects every live
    writer on this machine (a reused PID only keeps a stale file longer); the age protects
    a writer on another machine sharing the folder (a network file system), whose PID
    means nothing here and which writes continuously until its rename. Removing a live
    writer's file could not corrupt ``path`` anyway: that writer's rename would fail
    with an error and leave the previous file. Best effort: a file that cannot be
    examined or removed is left alone.
    """
    pattern = _temporaries(path)
    now = time.time()
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    for name in names:
        match = pattern.fullmatch(name)
        if match is None or (match[1] is not None and _process_exists(int(match[1]))):
            continue
        tmp = path.parent / name
        try:
            if now - tmp.stat().st_mtime >= _STALE_SECONDS:
                tmp.unlink()
        except OSError:
            pass


def _process_exists(pid: int) -> bool:
    if os.name == "nt":
        # os.kill would terminate the process; and Windows refuses to remove a file that
        # a live writer holds open, which protects it instead.
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):     # none, or a PID no process can have
        return False
    except PermissionError:                         # another user's process
        return True
    return True


def write(path, *, config: dict, params: Params, vocabulary: Vocabulary | None,
          progress: dict, carry, optimizer: optim.Optimizer | None) -> Path:
    """Write a checkpoint of a model's parts atomically (see ``atomic_write``); ``config``
    is ``RNN.config()``: the params' configuration, loss and backend."""
    arrays = dict(params=params.data)
    meta = dict(format=FORMAT, config=config, progress=progress, optimizer=None,
                vocabulary=None if vocabulary is None else vocabulary.chars)
    if carry is not None:
        arrays.update(zip(("carry", "carry_c"), carry if isinstance(carry, tuple)
                          else (carry,)))
    if optimizer is not None:
        state = optimizer.state_dict()
        meta["optimizer"] = dict(name=state.pop("name"), steps=state.pop("steps"),
                                 config=optimizer.config())
        arrays.update({f"optimizer_{k}": v for k, v in state.items()})
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    return atomic_write(path, lambda f: np.savez(f, **arrays))


# ------------------------------------------------------------------------- reading

def read(path) -> Checkpoint:
    """Read and check a checkpoint that ``write`` wrote.

    Raises TypeError for a ``path`` that is not a str or os.PathLike, and ValueError
    naming the file (and the field at fault) for anything else: no such file, a file
    that cannot be read, is not an .npz archive or is damaged, a field of the wrong
    type or range, an array whose shape or dtype does not fit the config, arrays too
    large to allocate here.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint: no such file: {path}")
    invalid = f"checkpoint: {path} is not a valid fastrnn checkpoint"
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ValueError(f"{invalid} (not an .npz archive)") from None
    except OSError as exc:
        raise ValueError(f"checkpoint: cannot read {path}: {exc}") from exc
    with archive:
        try:
            return _read(archive)
        except _TooLarge as exc:
            raise ValueError(str(exc)) from None
        except ValueError as exc:       # _Invalid, and NumPy's on a malformed .npy header
            raise ValueError(f"{invalid} ({exc})") from None
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise ValueError(f"{invalid} (a damaged archive: {exc})") from exc
        except OSError as exc:
            raise ValueError(f"checkpoint: cannot read {path}: {exc}") from exc


class _Member(NamedTuple):
    """An .npy member of the archive and what its header says."""
    info: zipfile.ZipInfo
    offset: int                 # where its data starts
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool


def _read(archive: zipfile.ZipFile) -> Checkpoint:
    members = {info.filename[:-len(".npy")]: info for info in archive.infolist()
               if info.filename.endswith(".npy")}
    for name in ("meta", "params"):
        if name not in members:
            raise _Invalid(f"{name}: missing; the archive holds "
                           f"{', '.join(sorted(members)) or 'no arrays'}")
    meta = _read_meta(archive, members["meta"])
    if meta.get("format") != FORMAT:
        raise _Invalid(f"format: expected {FORMAT}, got {reprlib.repr(meta.get('format'))}")
    config = _config(meta.get("config"))
    vocabulary = _vocabulary(meta.get("vocabulary"), config)
    progress = _progress(meta.get("progress"))
    optimizer = _optimizer(meta.get("optimizer"))
    dtype = np.dtype(config["dtype"])

    P = parameter_count(config["input_size"], config["hidden_size"], config["output_size"],
                        config["cell"], config["num_layers"], config["bidirectional"])
    headers = {"params": _checked_header(archive, members, "params", (P,), dtype)}
    if "carry" in members:
        shape = _carry_shape(_header(archive, members["carry"], "carry").shape, config)
        for name in ("carry", "carry_c") if config["cell"] == "lstm" else ("carry",):
            headers[name] = _checked_header(archive, members, name, shape, dtype)
    if optimizer is not None:
        found = sorted(name[len("optimizer_state_"):] for name in members
                       if name.startswith("optimizer_state_"))
        if found != sorted(optimizer.buffers) and (found or optimizer.steps):
            raise _Invalid(f"optimizer: expected the buffers {optimizer.buffers} after "
                           f"{optimizer.steps} steps, got {tuple(found)}")
        for buffer in found:
            name = f"optimizer_state_{buffer}"
            headers[name] = _checked_header(archive, members, name, (P,), dtype)
    arrays = _read_arrays(archive, headers)

    params = Params(**{k: config[k] for k in ("input_size", "hidden_size", "output_size",
                                               "cell", "num_layers", "bidirectional")},
                    data=arrays["params"])
    parts = {name: arrays[name] for name in ("carry", "carry_c") if name in arrays}
    for name, a in parts.items():
        _checks.check_finite(a, name)
    carry = tuple(parts.values()) if len(parts) == 2 else parts.get("carry")
    if optimizer is not None:
        state = {name[len("optimizer_"):]: a for name, a in arrays.items()
                 if name.startswith("optimizer_state_")}
        for key, a in state.items():
            optimizer.check_buffer(key[len("state_"):], a, f"optimizer_{key}")
        optimizer.load_state_dict(dict(name=type(optimizer).__name__,
                                       steps=optimizer.steps, **state))
    return Checkpoint(params, config["loss"], config["backend"], vocabulary, progress,
                      carry, optimizer)


def _carry_shape(shape: tuple, config: dict) -> tuple:
    """``shape`` if it is that of a state of the network ``config`` describes."""
    n = config["num_layers"] * (2 if config["bidirectional"] else 1)
    H = config["hidden_size"]
    if len(shape) != (2 if n == 1 else 3) or shape[-1] != H or shape[-2] < 1 or \
            (n > 1 and shape[0] != n):
        what = "(B, H)" if n == 1 else "(num_layers * directions, B, H)"
        raise _Invalid(f"carry: expected shape {what} with H = {H}"
                       f"{f' and {n} layers * directions' if n > 1 else ''}, B >= 1, "
                       f"got {shape}")
    return shape


def _checked_header(archive: zipfile.ZipFile, members: dict, name: str, shape: tuple,
                    dtype: np.dtype) -> _Member:
    if name not in members:
        raise _Invalid(f"{name}: missing; the archive holds {', '.join(sorted(members))}")
    header = _header(archive, members[name], name)
    _check_header(header, name, shape, dtype)
    return header


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> _Member:
    """The .npy header of a member, read alone."""
    try:
        f = archive.open(info)
    except (RuntimeError, NotImplementedError) as exc:  # encrypted, unknown compression
        raise _Invalid(f"{name}: {exc}") from None
    with f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = _HEADER_READERS.get(version)
            if read_header is not None:
                shape, fortran_order, dtype = read_header(f)
        except ValueError as exc:
            raise _Invalid(f"{name}: not an .npy header ({exc})") from None
        if read_header is None:
            raise _Invalid(f"{name}: .npy format version {version}, expected (1, 0) or "
                           f"(2, 0) as np.savez writes")
        offset = f.tell()
    return _Member(info, offset, shape, dtype, fortran_order)


def _check_header(header: _Member, name: str, shape: tuple, dtype: np.dtype) -> None:
    """A header of ``shape`` and ``dtype`` (in either byte order) whose data fills the
    member exactly, so that the size it declares is the size read."""
    if header.shape != shape or header.dtype.newbyteorder("=") != dtype:
        raise _Invalid(f"{name}: expected {dtype.name} of shape {shape}, got "
                       f"{header.dtype.name} of shape {header.shape}")
    nbytes = math.prod(shape) * dtype.itemsize
    if header.offset + nbytes != header.info.file_size:
        raise _Invalid(f"{name}: its header declares {dtype.name} of shape {shape}, "
                       f"{nbytes:,} bytes, but the member holds "
                       f"{header.info.file_size - header.offset:,}")


def _read_arrays(archive: zipfile.ZipFile, headers: dict) -> dict:
    """The members' data, allocated all at once (or refused) before any is read."""
    total = sum(math.prod(h.shape) * h.dtype.itemsize for h in headers.values())
    too_large = f"checkpoint: {archive.filename} holds {total:,} bytes of arrays " \
                f"({', '.join(headers)}), more than"
    if total > memory_limit():
        raise _TooLarge(f"{too_large} the machine's memory (or its cgroup's limit), "
                        f"{memory_limit():,} bytes")
    try:
        flat = {name: np.empty(math.prod(h.shape), dtype=h.dtype)
                for name, h in headers.items()}
    except MemoryError:
        raise _TooLarge(f"{too_large} can be allocated now (too little free "
                        f"memory)") from None
    arrays = {}
    for name, h in headers.items():
        view = memoryview(flat[name]).cast("B")
        with archive.open(h.info) as f:
            f.read(h.offset)
            done = 0
            while done < len(view):
                count = f.readinto(view[done:])
                if not count:
                    raise _Invalid(f"{name}: the data ends after {done:,} of "
                                   f"{len(view):,} bytes")
                done += count
        a = flat.pop(name).reshape(h.shape, order="F" if h.fortran_order else "C")
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        arrays[name] = np.ascontiguousarray(a)
    return arrays


def _read_meta(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict:
    header = _header(archive, info, "meta")
    if header.dtype != np.uint8 or len(header.shape) != 1 or header.shape[0] > _META_BYTES:
        raise _Invalid(f"meta: expected UTF-8 JSON as uint8 of shape (n,), n <= "
                       f"{_META_BYTES:,}, got {header.dtype} of shape {header.shape}")
    _check_header(header, "meta", header.shape, header.dtype)
    data = _read_arrays(archive, {"meta": header})["meta"]
    try:
        meta = json.loads(data.tobytes().decode("utf-8"))
    except ValueError as exc:           # not UTF-8, not JSON, an int of 4300 digits
        raise _Invalid(f"meta: expected UTF-8 JSON ({exc})") from None
    except RecursionError:
        raise _Invalid("meta: expected the checkpoint's JSON, got one nested too deeply") \
            from None
    if not isinstance(meta, dict):
        raise _Invalid(f"meta: expected a JSON object, got {_json_type(meta)}")
    return meta


def _json_type(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}[type(value)]


def _count(value, field: str, least: int = 0) -> int:
    """An int in [least, 2**62): JSON's integers only, not 1.0 or true."""
    if type(value) is not int or not least <= value < _COUNT_LIMIT:
        raise _Invalid(f"{field}: expected an int in [{least}, 2**62), got "
                       f"{reprlib.repr(value)}")
    return value


def _object(value, field: str) -> dict:
    if not isinstance(value, dict):
        raise _Invalid(f"{field}: expected an object, got {_json_type(value)}")
    return value


def _choice(value, choices, field: str):
    if not isinstance(value, str) or value not in choices:
        raise _Invalid(f"{field}: expected one of {tuple(choices)}, got "
                       f"{reprlib.repr(value)}")
    return value


def _config(config) -> dict:
    """The network's configuration, every field checked (num_layers and bidirectional
    default to 1 and false, as in checkpoints written before they existed)."""
    config = dict(_object(config, "config"))
    for key in ("input_size", "hidden_size", "output_size"):
        _count(config.get(key), f"config.{key}", 1)
    config["num_layers"] = _count(config.get("num_layers", 1), "config.num_layers", 1)
    config.setdefault("bidirectional", False)
    if not isinstance(config["bidirectional"], bool):
        raise _Invalid(f"config.bidirectional: expected true or false, got "
                       f"{reprlib.repr(config['bidirectional'])}")
    _choice(config.get("cell"), CELLS, "config.cell")
    _choice(config.get("loss"), _checks.LOSSES, "config.loss")
    _choice(config.get("dtype"), [dt.name for dt in DTYPES], "config.dtype")
    if not isinstance(config.get("backend"), str):
        raise _Invalid(f"config.backend: expected a backend's name, got "
                       f"{reprlib.repr(config.get('backend'))}")
    return config


def _vocabulary(chars, config: dict) -> Vocabulary | None:
    if chars is None:
        return None
    if not isinstance(chars, str):
        raise _Invalid(f"vocabulary: expected a string of characters or null, got "
                       f"{_json_type(chars)}")
    try:
        vocabulary = Vocabulary(chars)
    except ValueError as exc:
        raise _Invalid(f"vocabulary: {exc}") from None
    if not len(vocabulary) == config["input_size"] == config["output_size"]:
        raise _Invalid(f"vocabulary: expected config.input_size = config.output_size = "
                       f"its {len(vocabulary)} characters, got {config['input_size']} and "
                       f"{config['output_size']}")
    return vocabulary


def _progress(progress) -> dict:
    progress = _object(progress, "progress")
    return {key: _count(progress.get(key), f"progress.{key}")
            for key in ("steps", "epoch", "position", "skipped")}


def _optimizer(saved) -> optim.Optimizer | None:
    """The optimiser the checkpoint names, configured, its step count set (its buffers
    are read later, once their headers fit the params)."""
    if saved is None:
        return None
    saved = _object(saved, "optimizer")
    names = [cls.__name__ for cls in optim.OPTIMIZERS.values()]
    name = _choice(saved.get("name"), names, "optimizer.name")
    steps = _count(saved.get("steps"), "optimizer.steps")
    config = _object(saved.get("config"), "optimizer.config")
    _object(config.get("lr"), "optimizer.config.lr")
    try:
        optimizer = optim.from_config(name, config)
    except (TypeError, ValueError) as exc:
        raise _Invalid(f"optimizer.config: {exc}") from None
    optimizer.steps = steps
    return optimizer
