"""Numba's on-disk cache: in fastrnn's per-user folder (never in the installed package), in
a folder FASTRNN_NUMBA_CACHE names, or off on request or when the folder is unwritable.

The compiling runs happen in subprocesses, so that each starts without compiled kernels.
"""
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import fastrnn
from fastrnn import _config

# min_max compiles in about a second (it calls another kernel, flat): enough to see
# where the cache goes, without the 10 s of a training step's kernels.
RUN = textwrap.dedent("""
    import json
    import numpy as np
    import fastrnn
    from fastrnn import _config
    from fastrnn import _vec
    {prelude}
    result = _vec.min_max(np.arange(-3, 7))
    print(json.dumps(dict(cache=_config.numba_cache_enabled(), result=result,
                          folder=str(_config.kernel_cache_dir()),
                          hits=sum(_vec.min_max.stats.cache_hits.values()))))
""")


def run(env_changes, prelude="", cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "FASTRNN_"))}
    env.update(env_changes)
    proc = subprocess.run([sys.executable, "-c", RUN.format(prelude=prelude)],
                          capture_output=True, text=True, env=env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cached_files(folder: Path):
    return sorted(p.name for p in folder.rglob("*") if p.suffix in (".nbi", ".nbc"))


def installed_cache_files():
    """The cache files inside the package, by name, with their modification times."""
    package = Path(_config.__file__).parent
    return {p: p.stat().st_mtime_ns for p in package.rglob("*")
            if p.suffix in (".nbi", ".nbc")}


def test_second_process_loads_kernels_from_the_cache(tmp_path):
    first = run({"FASTRNN_NUMBA_CACHE": str(tmp_path)})
    assert first["cache"] and first["folder"] == str(tmp_path) and cached_files(tmp_path)
    second = run({"FASTRNN_NUMBA_CACHE": str(tmp_path)})
    assert second["hits"] > 0
    assert second["result"] == first["result"] == [-3, 6]


def test_kernels_are_cached_per_user_never_in_the_package(tmp_path):
    before = installed_cache_files()
    result = run({"XDG_CACHE_HOME": str(tmp_path), "HOME": str(tmp_path)})
    folder = tmp_path / "fastrnn" / f"{fastrnn.__version__}-{sys.implementation.cache_tag}"
    assert result["cache"] and result["folder"] == str(folder)
    assert cached_files(folder)
    assert installed_cache_files() == before


def test_numba_cache_dir_moves_the_per_user_folder(tmp_path):
    result = run({"NUMBA_CACHE_DIR": str(tmp_path), "XDG_CACHE_HOME": "/proc/fastrnn-none"})
    assert result["folder"].startswith(str(tmp_path / "fastrnn"))
    assert cached_files(tmp_path / "fastrnn")


def test_cache_can_be_turned_off(tmp_path):
    result = run({"XDG_CACHE_HOME": str(tmp_path), "HOME": str(tmp_path),
                  "FASTRNN_NUMBA_CACHE": "0"})
    assert result["cache"] is False and result["hits"] == 0
    assert cached_files(tmp_path) == []


def test_read_only_install_runs_without_cache(tmp_path):
    """No writable cache folder anywhere: kernels compile in memory and nothing fails.

    Root ignores permission bits, so the install is made read-only by importing the
    package from a zip archive, and HOME points where nobody can create a folder.
    """
    archive = tmp_path / "fastrnn.zip"
    package = Path(_config.__file__).parent
    with zipfile.ZipFile(archive, "w") as zf:
        for path in package.rglob("*.py"):
            zf.write(path, path.relative_to(package.parent))
    unwritable = "/proc/fastrnn-cannot-exist"
    result = run({"PYTHONPATH": str(archive), "HOME": unwritable,
                  "XDG_CACHE_HOME": unwritable},
                 prelude=f"assert fastrnn.__file__.startswith({str(archive)!r})",
                 cwd=tmp_path)
    assert result["cache"] is False and result["hits"] == 0


@pytest.mark.parametrize("value", ["0", "off", "No"])
def test_environment_switch_turns_the_cache_off(monkeypatch, value):
    monkeypatch.setenv("FASTRNN_NUMBA_CACHE", value)
    assert _config.kernel_cache_dir.__wrapped__() is None


@pytest.mark.parametrize("value", ["", "1", "on"])
def test_environment_switch_keeps_the_per_user_folder(monkeypatch, tmp_path, value):
    monkeypatch.setenv("FASTRNN_NUMBA_CACHE", value)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr("numba.core.config.CACHE_DIR", "")
    assert _config.kernel_cache_dir.__wrapped__() == _config.default_cache_dir()
    assert _config.default_cache_dir().parent == tmp_path / "fastrnn"


def test_environment_switch_names_a_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTRNN_NUMBA_CACHE", str(tmp_path / "ci-cache"))
    assert _config.kernel_cache_dir.__wrapped__() == tmp_path / "ci-cache"
    assert (tmp_path / "ci-cache").is_dir()


def test_an_unwritable_folder_turns_the_cache_off(monkeypatch):
    monkeypatch.setenv("FASTRNN_NUMBA_CACHE", "/proc/fastrnn-cannot-exist")
    assert _config.kernel_cache_dir.__wrapped__() is None
