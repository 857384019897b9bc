import pytest
import torch
import torch.nn as nn

from kdfuse_ref.fitnet import HintLoss, fitnet_loss


class SeedHintLoss(nn.Module):
    """The seed's code verbatim."""
    def __init__(self):
        super(SeedHintLoss, self).__init__()
        self.crit = nn.MSELoss()

    def forward(self, f_s, f_t):
        loss = self.crit(f_s, f_t)
        return loss


def seed_hint_loss(f_s, f_t):
    return SeedHintLoss()(f_s, f_t)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 5, 7, 7), (2, 6, 4, 9), (4, 16), (5,)])
def test_matches_seed_code(shape):
    f_s, f_t = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    expected = seed_hint_loss(f_s, f_t)
    assert torch.allclose(fitnet_loss(f_s, f_t), expected, rtol=1e-12, atol=1e-14)
    assert torch.allclose(HintLoss()(f_s, f_t), expected, rtol=1e-12, atol=1e-14)


def test_gradcheck():
    f_s = torch.randn(3, 5, 7, 7, dtype=torch.float64, requires_grad=True)
    f_t = torch.randn(3, 5, 7, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fitnet_loss, (f_s, f_t))


def test_hand_checked_value_and_gradient():
    # mean over ALL elements: ((1 - 0)^2 + (3 - 1)^2 + 0 + 0) / 4 = 5 / 4; d/df_s = 2 (f_s - f_t) / 4.
    f_s = torch.tensor([[[[1.0, 3.0], [2.0, -1.0]]]], dtype=torch.float64, requires_grad=True)
    f_t = torch.tensor([[[[0.0, 1.0], [2.0, -1.0]]]], dtype=torch.float64)
    loss = fitnet_loss(f_s, f_t)
    assert loss.item() == pytest.approx(1.25, abs=1e-15)
    loss.backward()
    assert torch.allclose(f_s.grad, torch.tensor([[[[0.5, 1.0], [0.0, 0.0]]]], dtype=torch.float64))


def test_shape_mismatch_is_refused():
    # nn.MSELoss would broadcast (with a warning); the reference refuses.
    with pytest.raises(ValueError):
        fitnet_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 1, 1))
