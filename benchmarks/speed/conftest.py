"""pytest-benchmark set-up: the medians of a run and the ratio table printed after it.

Each test of ``test_speed.py`` records its median in the ``medians`` fixture under
(case, system);
``pytest_terminal_summary`` then prints, per case, every system's median and two ratios
from this run: the NumPy reference's time over the system's, and PyTorch's time over the
system's (above 1: faster than the reference, or than PyTorch).
"""
import pytest

MEDIANS: dict = {}


@pytest.fixture
def medians() -> dict:
    """Seconds by (case, system), for the summary."""
    return MEDIANS


def pytest_terminal_summary(terminalreporter, config):
    if not MEDIANS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fastrnn: medians and ratios from this run")
    write(f"{'case':<12} {'system':<11} {'median ms':>10} {'reference/x':>12} "
          f"{'torch/x':>8}")
    for case in dict.fromkeys(case for case, _ in MEDIANS):
        reference, torch = MEDIANS.get((case, "reference")), MEDIANS.get((case, "torch"))
        for (c, system), seconds in MEDIANS.items():
            if c != case:
                continue
            vs_ref = f"{reference / seconds:.2f}x" if reference else "-"
            vs_torch = f"{torch / seconds:.2f}x" if torch else "-"
            write(f"{case:<12} {system:<11} {1e3 * seconds:>10.3f} {vs_ref:>12} "
                  f"{vs_torch:>8}")
