"""The benchmark suites beside the tests: asv's modules import and build their problems
with ``fastrnn.bench``'s public names; the pytest-benchmark suite (benchmarks/speed) runs
every case once, untimed.

They live in the source tree only; an installed wheel has no benchmarks.
"""
import ast
import importlib
import io
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SPEED = BENCHMARKS / "speed"
SUITE = sorted(BENCHMARKS.rglob("*.py")) if BENCHMARKS.is_dir() else []


def _private_names_of_bench(path: Path) -> list[str]:
    """The names starting with "_" that ``path`` takes from ``fastrnn.bench``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == "fastrnn.bench":
            found += [alias.name for alias in node.names if alias.name.startswith("_")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and \
                isinstance(node.value, ast.Name) and node.value.id == "bench":
            found.append(node.attr)
    return found


@pytest.mark.skipif(not SUITE, reason="no benchmarks/ beside the tests")
@pytest.mark.parametrize("path", SUITE, ids=lambda path: str(path.relative_to(ROOT)))
def test_benchmarks_use_only_public_names_of_fastrnn_bench(path):
    assert _private_names_of_bench(path) == []


@pytest.mark.skipif(not SUITE, reason="no benchmarks/ beside the tests")
def test_asv_can_import_every_benchmark_module(monkeypatch):
    """asv imports each module of benchmarks/ as part of the package ``benchmarks``."""
    monkeypatch.syspath_prepend(str(ROOT))
    for path in SUITE:
        if path.parent == BENCHMARKS:
            importlib.import_module(f"benchmarks.{path.stem}")


@pytest.mark.skipif(not SPEED.is_dir(), reason="no benchmarks/ beside the tests")
def test_the_pytest_benchmark_suite_runs():
    pytest.importorskip("pytest_benchmark")
    proc = subprocess.run([sys.executable, "-m", "pytest", str(SPEED), "-q",
                           "--benchmark-disable", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout


def test_concurrent_training_reports_the_slowdown_of_two_jobs():
    from fastrnn import bench

    out = io.StringIO()
    result = bench.concurrent(1, out=out)
    assert result["alone"] > 0 and len(result["together"]) == 2
    assert result["slowdown"] == max(result["together"]) / result["alone"]
    assert "slowdown" in out.getvalue()
