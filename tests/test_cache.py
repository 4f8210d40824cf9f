"""Numba's on-disk cache: used when a folder is writable, off on request or when none is.

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

from fastrnn import _config

RUN = textwrap.dedent("""
    import json
    import numpy as np
    import fastrnn
    from fastrnn import _config
    from fastrnn._numba import rnn
    {prelude}
    params = fastrnn.init_params(5, 4, 3, seed=0)
    x = np.random.default_rng(0).integers(0, 5, (6, 2))
    loss, grads, _ = fastrnn.loss_and_grad(params, x, x % 3, backend="numba")
    print(json.dumps(dict(cache=_config.numba_cache_enabled(), loss=loss,
                          hits=sum(rnn.forward_ids.stats.cache_hits.values()))))
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


def test_second_process_loads_kernels_from_the_cache(tmp_path):
    first = run({"NUMBA_CACHE_DIR": str(tmp_path)})
    assert first["cache"] and cached_files(tmp_path)
    second = run({"NUMBA_CACHE_DIR": str(tmp_path)})
    assert second["hits"] > 0
    assert second["loss"] == first["loss"]


def test_cache_can_be_turned_off(tmp_path):
    result = run({"NUMBA_CACHE_DIR": str(tmp_path), "FASTRNN_NUMBA_CACHE": "0"})
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


@pytest.mark.parametrize("value, expected", [("0", False), ("off", False), ("1", True)])
def test_environment_switch(monkeypatch, tmp_path, value, expected):
    monkeypatch.setenv("FASTRNN_NUMBA_CACHE", value)
    assert _config.numba_cache_enabled.__wrapped__(tmp_path) is expected


def test_unwritable_folders_turn_the_cache_off(monkeypatch, tmp_path):
    monkeypatch.delenv("FASTRNN_NUMBA_CACHE", raising=False)
    monkeypatch.setattr(_config, "_writable", lambda folder: False)
    assert _config.numba_cache_enabled.__wrapped__(tmp_path) is False
    monkeypatch.setattr(_config, "_writable", lambda folder: folder == Path("/somewhere/ok"))
    monkeypatch.setattr("numba.core.config.CACHE_DIR", "/somewhere/ok")
    assert _config.numba_cache_enabled.__wrapped__(tmp_path) is True
