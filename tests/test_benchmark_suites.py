"""The pytest-benchmark suite (benchmarks/speed) runs: every case once, untimed.

It lives beside the tests in the source tree only; an installed wheel has no benchmarks.
"""
import io
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEED = ROOT / "benchmarks" / "speed"


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
