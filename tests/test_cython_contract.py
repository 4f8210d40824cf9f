"""The Cython extension's copy of the kernel contract's constants: the cell codes its
kernels branch on (the enum in fastrnn/_cython/_loops.pxd, which rnn.pyx and stack.pyx
both cimport; stack exposes it as CELL_CODES) are those of fastrnn._contract, in every
build."""
import importlib

import pytest

import fastrnn
from fastrnn import _contract

pytestmark = pytest.mark.skipif("cython" not in fastrnn.available_backends(),
                                reason="the Cython extension is not built")


def built(name):
    """The module fastrnn._cython.<name>; the test is skipped where it was not built
    (the AVX2 variants exist on x86-64 only)."""
    try:
        return importlib.import_module(f"fastrnn._cython.{name}")
    except ImportError:
        pytest.skip(f"fastrnn._cython.{name} is not built here")


@pytest.mark.parametrize("name", ["stack", "stack_avx2"])
def test_stack_cell_codes_are_the_contracts(name):
    assert built(name).CELL_CODES == _contract.CELL_CODES

