"""The Cython extension's copy of the kernel contract's constants: the cell codes its
kernels branch on (the enum in fastrnn/_cython/_loops.pxd) are those of
fastrnn._contract, in every build of the modules that has them."""
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


@pytest.mark.parametrize("name", ["rnn", "rnn_avx2"])
def test_rnn_cell_codes_are_the_contracts(name):
    vanilla = {cell: _contract.CELL_CODES[cell] for cell in ("tanh", "sigmoid", "relu")}
    assert built(name).CELLS == vanilla
