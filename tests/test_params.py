"""Params and Workspace: one buffer, named views, reproducible initialisation."""
import copy
import pickle

import numpy as np
import pytest

import fastrnn


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_views_share_one_buffer(dtype):
    p = fastrnn.init_params(3, 4, 2, dtype=dtype, seed=0)
    assert [v.shape for _, v in p.items()] == [(4, 3), (4, 4), (4,), (2, 4), (2,)]
    assert all(np.shares_memory(v, p.data) for _, v in p.items())
    assert p.data.size == 4 * 3 + 4 * 4 + 4 + 2 * 4 + 2 and p.dtype == dtype
    p.data[:] = 0
    assert not p.W.any()


def test_initialisation_is_seeded_and_scaled():
    a = fastrnn.init_params(3, 16, 2, seed=7)
    b = fastrnn.init_params(3, 16, 2, seed=7)
    c = fastrnn.init_params(3, 16, 2, dtype=np.float32, seed=7)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(c.data, a.data.astype(np.float32))
    assert np.abs(a.W).max() <= 0.25 and np.abs(a.W).max() > 0.2
    assert not a.b.any() and not a.c.any()


def test_workspace_views_do_not_overlap():
    p = fastrnn.init_params(3, 4, 2)
    ws = fastrnn.Workspace(p, 5, 2)
    cell, = ws.cells
    views = [cell.gates, cell.h, cell.kappa, cell.da, cell.WT, ws.o, ws.do, ws.h_T,
             ws.scratch, ws.grads.data, ws.grads.h0]
    for i, u in enumerate(views):
        for v in views[i + 1:]:
            assert not np.shares_memory(u, v)
    assert cell.h.shape == (6, 2, 4) and ws.grads.h0.shape == (2, 4)
    assert cell.aux.size == cell.dah.size == 0       # the gated cells' buffers
    assert ws.fits(p, 5, 2) and not ws.fits(p, 5, 3)
    assert not ws.fits(p.astype(np.float32), 5, 2)


def test_workspace_is_cached_per_params_and_size():
    p = fastrnn.init_params(3, 4, 2)
    assert fastrnn.get_workspace(p, 5, 2) is fastrnn.get_workspace(p, 5, 2)
    assert fastrnn.get_workspace(p, 5, 2) is not fastrnn.get_workspace(p, 6, 2)
    assert fastrnn.get_workspace(p, 5, 2) is not fastrnn.get_workspace(p.copy(), 5, 2)


@pytest.mark.parametrize("duplicate", [copy.deepcopy, lambda p: pickle.loads(pickle.dumps(p))],
                         ids=["deepcopy", "pickle"])
@pytest.mark.parametrize("cell, num_layers, bidirectional", [("tanh", 1, False),
                                                             ("lstm", 2, True)])
def test_a_duplicate_keeps_its_views_in_its_own_buffer(duplicate, cell, num_layers,
                                                       bidirectional):
    p = fastrnn.init_params(3, 4, 2, cell=cell, num_layers=num_layers,
                            bidirectional=bidirectional, dtype=np.float32, seed=0)
    q = duplicate(p)
    assert q.config() == p.config() and q.dtype == np.float32
    np.testing.assert_array_equal(q.data, p.data)
    assert not np.shares_memory(q.data, p.data)
    for name, view in q.items():
        assert np.shares_memory(view, q.data), name
    assert q.layers[-1].W is getattr(q, "W" + ("_l1_reverse" if bidirectional else ""))
    q.data[:] = 0
    assert not q.W.any() and p.W.any()


def test_a_duplicate_of_grads_keeps_its_state_gradients():
    p = fastrnn.init_params(3, 4, 2, cell="lstm", seed=0)
    g = fastrnn.Grads(p, 5)
    g.h0[...] = 1.0
    q = pickle.loads(pickle.dumps(g))
    assert isinstance(q, fastrnn.Grads) and q.h0.shape == (5, 4) and q.h0.all()
    assert q.c0.shape == (5, 4) and np.shares_memory(q.W, q.data)


def test_data_of_another_dtype_than_dtype_is_refused():
    size = fastrnn.Params(3, 4, 2).data.size
    with pytest.raises(TypeError, match=r"^data: expected dtype float32 \(the dtype "
                                        r"argument\), got float64"):
        fastrnn.Params(3, 4, 2, dtype=np.float32, data=np.zeros(size))
    assert fastrnn.Params(3, 4, 2, data=np.zeros(size, np.float32)).dtype == np.float32
    assert fastrnn.Params(3, 4, 2, dtype="float32",
                          data=np.zeros(size, np.float32)).dtype == np.float32


def test_non_contiguous_data_is_refused_as_such():
    size = fastrnn.Params(3, 4, 2).data.size
    with pytest.raises(ValueError, match=rf"^data: expected a contiguous array of shape "
                                         rf"\({size},\), got a non-contiguous one"):
        fastrnn.Params(3, 4, 2, data=np.zeros(2 * size)[::2])


def _grads_with(**kwargs):
    return fastrnn.Grads(fastrnn.init_params(3, 4, 2, seed=0), 2, **kwargs)


def _read_only(a):
    a.setflags(write=False)
    return a


@pytest.mark.parametrize("make, exc, message", [
    (lambda: _grads_with(h0=np.zeros((4, 2)).T), ValueError,
     "h0: expected a writable C-contiguous array, got a non-contiguous one"),
    (lambda: _grads_with(h0=_read_only(np.zeros((2, 4)))), ValueError,
     "h0: expected a writable C-contiguous array, got a read-only one"),
    (lambda: _grads_with(data=_read_only(np.zeros(42))), ValueError,
     "data: expected a writable array (the gradients are written into it), got a "
     "read-only one"),
    (lambda: _grads_with(h0=[[0.0] * 4] * 2), TypeError,
     "h0: expected an array of shape (2, 4) and dtype float64, got list"),
    (lambda: fastrnn.Grads(fastrnn.init_params(3, 4, 2), 2.5), TypeError,
     "batch_size: expected a positive int, got 2.5"),
    (lambda: fastrnn.Grads(fastrnn.init_params(3, 4, 2), 0), ValueError,
     "batch_size: expected a positive int, got 0"),
    (lambda: fastrnn.Grads("params", 2), TypeError,
     "params: expected fastrnn.Params, got str"),
])
def test_grads_refuse_buffers_the_kernels_cannot_write(make, exc, message):
    with pytest.raises(exc) as info:
        make()
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru"])
@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (3, False), (3, True)])
def test_the_parameter_count_is_the_sizes_tables(cell, num_layers, bidirectional):
    from fastrnn.params import layout, parameter_count

    sizes = (3, 4, 2, cell, num_layers, bidirectional)
    assert parameter_count(*sizes) == sum(int(np.prod(shape)) for _, shape in layout(*sizes))


def test_a_network_larger_than_memory_is_refused_naming_its_bytes():
    """hidden_size=10**6 (7.3 TiB of float64) was numpy's MemoryError."""
    count = 3 * 10**6 + 10**12 + 10**6 + 5 * 10**6 + 5
    with pytest.raises(ValueError) as info:
        fastrnn.init_params(3, 10**6, 5)
    message = str(info.value)
    assert message.startswith("hidden_size: a network of input_size=3, hidden_size=1000000, "
                              "output_size=5"), message
    assert f"{count} parameters" in message and f"{8 * count} bytes" in message, message
    with pytest.raises(ValueError, match=rf"^hidden_size: .* {4 * count} bytes"):
        fastrnn.Params(3, 10**6, 5, dtype=np.float32)


def test_too_many_layers_are_refused_before_the_sizes_table_is_built(monkeypatch):
    """num_layers=10**9 built the layout in Python, layer by layer, for about a day before
    the allocation failed."""
    def no_table(*args):
        raise AssertionError("the sizes table was built")

    monkeypatch.setattr(fastrnn.params, "layout", no_table)
    with pytest.raises(ValueError, match=r"^num_layers: a network of .*num_layers="
                                         r"1000000000000"):
        fastrnn.init_params(3, 4, 5, num_layers=10**12)


def test_an_allocation_that_fails_is_a_memory_error_naming_its_bytes(monkeypatch):
    """Below the machine's memory, an allocation can still fail (the memory is in use):
    that is a MemoryError, named as such."""
    monkeypatch.setattr(fastrnn.params, "memory_limit", lambda: 2**62)
    with pytest.raises(MemoryError, match=rf"^input_size: a network of input_size={2**57}, "
                                          rf".* {2**59 + 16} bytes .* could not be allocated"):
        fastrnn.Params(2**57, 1, 1, dtype=np.float32)


def test_a_workspace_larger_than_memory_is_refused_naming_T_and_B(monkeypatch):
    params = fastrnn.init_params(3, 4, 2)
    with pytest.raises(ValueError, match=r"^T, B: a workspace for T=10000000 steps in "
                                         r"batches of B=10000000 .* bytes"):
        fastrnn.Workspace(params, 10**7, 10**7)
    monkeypatch.setattr(fastrnn.params, "memory_limit", lambda: 2**62)
    monkeypatch.setattr(fastrnn.workspace, "memory_limit", lambda: 2**62)
    monkeypatch.setattr(fastrnn.workspace, "MAX_BUFFER", 2**62)
    with pytest.raises(MemoryError, match=r"^T, B: a workspace for T=10000000 steps in "
                                          r"batches of B=1000000000 .* could not be "
                                          r"allocated"):
        fastrnn.get_workspace(params, 10**7, 10**9)


def test_a_workspace_buffer_beyond_32_bit_sizes_is_refused(monkeypatch):
    """The kernels' BLAS calls and loops take 32-bit sizes: a workspace with a larger
    buffer is refused before anything is allocated, not indexed with an overflowed int.
    (Such a buffer needs more memory than this machine has, so the bound is lowered.)"""
    monkeypatch.setattr(fastrnn.workspace, "MAX_BUFFER", 1000)
    params = fastrnn.init_params(3, 4, 2)
    with pytest.raises(ValueError, match=r"^T, B: a workspace for T=100 steps in batches of "
                                         r"B=4 needs a buffer of shape \(101, 4, 4\), 1,616 "
                                         r"elements; the kernels take at most 1,000 in one"):
        fastrnn.Workspace(params, 100, 4)
    fastrnn.Workspace(params, 50, 4)
