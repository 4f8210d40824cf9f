"""The installed package: what ``import fastrnn`` offers, and an install that pip can remove.

The install test builds fastrnn from a copy of its sources (without the Cython extension,
which only slows the build down) into a fresh virtual environment that borrows NumPy,
Numba and SciPy from this one, compiles a kernel there, and uninstalls it: nothing of
fastrnn may be left behind, as a leftover folder would shadow a later editable install.
"""
import importlib.util
import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fastrnn

SOURCE = Path(fastrnn.__file__).parent.parent


def run(args, **kwargs) -> str:
    """The standard output of ``args``, which must succeed."""
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_interop_is_an_attribute_that_imports_torch_only_when_used():
    out = run([sys.executable, "-c", textwrap.dedent("""
        import sys
        import fastrnn
        assert "interop" in dir(fastrnn)
        from_torch = fastrnn.interop.from_torch
        assert "torch" not in sys.modules, "fastrnn.interop imported torch"
        try:
            fastrnn.not_an_attribute
        except AttributeError as error:
            print(error)
    """)])
    assert out.strip() == "module 'fastrnn' has no attribute 'not_an_attribute'"


def test_import_and_the_command_line_start_without_numpy_or_numba():
    """The console script imports fastrnn.cli before main() can catch a Ctrl-C: nothing
    slow may be imported by then. The API is imported on first use."""
    out = run([sys.executable, "-c", textwrap.dedent("""
        import sys
        import fastrnn.cli
        print(sorted({"numpy", "numba"} & set(sys.modules)))
        from fastrnn.gradcheck import numeric_gradient
        import fastrnn
        print(fastrnn.gradcheck.__name__, callable(fastrnn.gradcheck), fastrnn.RNN.__name__)
    """)])
    assert out.split("\n")[:2] == ["[]", "gradcheck True RNN"]


def test_uninstall_leaves_nothing_in_site_packages(tmp_path):
    if not all(importlib.util.find_spec(name) for name in ("pip", "setuptools")):
        pytest.skip("the install needs pip and setuptools")
    if not (SOURCE / "pyproject.toml").is_file():
        pytest.skip("fastrnn's sources are not beside the package")
    src = tmp_path / "src"
    shutil.copytree(SOURCE / "fastrnn", src / "fastrnn",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "*.c"))
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(SOURCE / name, src)
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    venv_python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site_packages = Path(run([venv_python, "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"]).strip())
    # fastrnn's dependencies come from this environment, after the venv's own folder.
    (site_packages / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NUMBA_", "FASTRNN_", "PYTHON"))}
    env.update(FASTRNN_NO_EXT="1", HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"))
    pip = [sys.executable, "-m", "pip", "--python", venv_python]

    run(pip + ["install", "-q", "--no-deps", "--no-build-isolation", src], env=env,
        cwd=tmp_path)
    package_file, cache = run([venv_python, "-c", textwrap.dedent("""
        import numpy as np
        import fastrnn
        from fastrnn import _config
        from fastrnn import _vec
        assert _vec.min_max(np.arange(3)) == (0, 2)
        print(fastrnn.__file__)
        print(_config.kernel_cache_dir())
    """)], env=env, cwd=tmp_path).split()
    assert Path(package_file).is_relative_to(site_packages)
    assert Path(cache).is_relative_to(tmp_path / "cache" / "fastrnn")
    assert any(Path(cache).rglob("*.nbi"))

    run(pip + ["uninstall", "-y", "-q", "fastrnn"], env=env, cwd=tmp_path)
    left = sorted(p.name for p in site_packages.iterdir() if "fastrnn" in p.name.lower())
    assert left == []
