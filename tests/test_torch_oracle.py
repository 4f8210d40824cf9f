"""The reference against an outside oracle: PyTorch's CPU nn.RNN + nn.Linear + loss."""
import numpy as np
import pytest

import fastrnn
from fastrnn.interop import from_torch, to_torch

from conftest import make_problem

torch = pytest.importorskip("torch")
F = torch.nn.functional


def torch_loss_and_grad(rnn, linear, x, y, h0, loss):
    """Loss (sum), outputs, final state and every gradient computed by PyTorch."""
    rnn.zero_grad()
    linear.zero_grad()
    h0_t = torch.tensor(h0, requires_grad=True)
    out, h_T = rnn(torch.from_numpy(x), h0_t[None])
    o = linear(out)
    if loss == "cross_entropy":
        L = F.cross_entropy(o.reshape(-1, o.shape[-1]), torch.from_numpy(y).reshape(-1),
                            reduction="sum")
    else:
        L = F.mse_loss(o, torch.from_numpy(y), reduction="sum")
    L.backward()
    grads = dict(U=rnn.weight_ih_l0.grad, W=rnn.weight_hh_l0.grad, b=rnn.bias_hh_l0.grad,
                 V=linear.weight.grad, c=linear.bias.grad, h0=h0_t.grad)
    return (L.item(), o.detach().numpy(), h_T[0].detach().numpy(),
            {k: v.numpy() for k, v in grads.items()})


@pytest.mark.parametrize("cell", ["tanh", "relu"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("B", [1, 4])
def test_reference_matches_pytorch(cell, loss, B):
    torch.manual_seed(0)
    D, H, O, T = 6, 5, 4, 9
    rnn = torch.nn.RNN(D, H, nonlinearity=cell, dtype=torch.float64)
    linear = torch.nn.Linear(H, O, dtype=torch.float64)
    params = from_torch(rnn, linear)
    _, x, y, h0 = make_problem(T=T, B=B, D=D, H=H, O=O, loss=loss, seed=3)

    L_ref, o_ref, hT_ref, g_ref = torch_loss_and_grad(rnn, linear, x, y, h0, loss)
    o, h_T = fastrnn.forward(params, x, h0, backend="reference")
    L, grads, h_T2 = fastrnn.loss_and_grad(params, x, y, h0, loss=loss,
                                           backend="reference")

    np.testing.assert_allclose(o, o_ref, rtol=1e-10)
    np.testing.assert_allclose(h_T, hT_ref, rtol=1e-10)
    np.testing.assert_allclose(h_T2, hT_ref, rtol=1e-10)
    assert L == pytest.approx(L_ref, rel=1e-10)
    for name, ref in g_ref.items():
        np.testing.assert_allclose(getattr(grads, name), ref, rtol=1e-10, atol=1e-13,
                                   err_msg=name)


def test_token_ids_match_pytorch_one_hot():
    torch.manual_seed(1)
    D, H, O = 7, 5, 3
    rnn = torch.nn.RNN(D, H, dtype=torch.float64)
    linear = torch.nn.Linear(H, O, dtype=torch.float64)
    params = from_torch(rnn, linear)
    _, ids, y, h0 = make_problem(T=5, B=2, D=D, H=H, O=O, tokens=True, seed=4)
    onehot = np.eye(D)[ids]
    L_ref, _, _, g_ref = torch_loss_and_grad(rnn, linear, onehot, y, h0, "cross_entropy")
    L, grads, _ = fastrnn.loss_and_grad(params, ids, y, h0, backend="reference")
    assert L == pytest.approx(L_ref, rel=1e-10)
    np.testing.assert_allclose(grads.U, g_ref["U"], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", ["tanh", "relu"])
def test_round_trip_through_torch(cell, dtype):
    params, x, _, h0 = make_problem(T=4, B=2, cell=cell, dtype=dtype)
    back = from_torch(*to_torch(params))
    assert back.dtype == params.dtype and back.cell == cell
    np.testing.assert_array_equal(back.U, params.U)
    np.testing.assert_array_equal(back.W, params.W)
    np.testing.assert_array_equal(back.V, params.V)
    np.testing.assert_array_equal(back.c, params.c)
    np.testing.assert_array_equal(back.b, params.b)


def test_interop_rejects_what_it_cannot_represent():
    with pytest.raises(ValueError, match="linear: expected in_features = 4"):
        from_torch(torch.nn.RNN(3, 4), torch.nn.Linear(5, 2))
    with pytest.raises(ValueError, match="params: torch.nn.RNN supports"):
        to_torch(fastrnn.init_params(3, 4, 2, cell="sigmoid"))
