import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdfuse_ref.ft import FactorTransfer, ft_loss


class SeedFactorTransfer(nn.Module):
    """The seed's code verbatim."""
    def __init__(self, p1=2, p2=1):
        super(SeedFactorTransfer, self).__init__()
        self.p1 = p1
        self.p2 = p2

    def forward(self, f_s, f_t):
        return self.factor_loss(f_s, f_t)

    def factor_loss(self, f_s, f_t):
        s_H, t_H = f_s.shape[2], f_t.shape[2]
        if s_H > t_H:
            f_s = F.adaptive_avg_pool2d(f_s, (t_H, t_H))
        elif s_H < t_H:
            f_t = F.adaptive_avg_pool2d(f_t, (s_H, s_H))
        else:
            pass
        if self.p2 == 1:
            return (self.factor(f_s) - self.factor(f_t)).abs().mean()
        else:
            return (self.factor(f_s) - self.factor(f_t)).pow(self.p2).mean()

    def factor(self, f):
        return F.normalize(f.pow(self.p1).mean(1).view(f.size(0), -1))


def seed_ft_loss(f_s, f_t, p1=2, p2=1):
    return SeedFactorTransfer(p1, p2)(f_s, f_t)


SHAPES = [
    ((3, 5, 7, 7), (3, 6, 14, 14)),
    ((3, 5, 14, 14), (3, 6, 7, 7)),
    ((2, 4, 7, 7), (2, 3, 3, 3)),
    ((4, 3, 6, 9), (4, 2, 6, 9)),
    ((1, 1, 1, 1), (1, 1, 1, 1)),
]


@pytest.mark.parametrize("s_shape,t_shape", SHAPES)
@pytest.mark.parametrize("p1,p2", [(2, 1), (2, 2), (1, 1), (2, 3), (4, 2)])
def test_matches_seed_code(s_shape, t_shape, p1, p2):
    f_s, f_t = torch.randn(s_shape, dtype=torch.float64), torch.randn(t_shape, dtype=torch.float64)
    expected = seed_ft_loss(f_s, f_t, p1, p2)
    assert torch.allclose(ft_loss(f_s, f_t, p1, p2), expected, rtol=1e-12, atol=1e-15)
    assert torch.allclose(FactorTransfer(p1, p2)(f_s, f_t), expected, rtol=1e-12, atol=1e-15)


def test_module_is_the_function():
    f_s, f_t = torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.randn(2, 5, 4, 4, dtype=torch.float64)
    assert torch.equal(FactorTransfer()(f_s, f_t), ft_loss(f_s, f_t))
    assert torch.equal(FactorTransfer(p1=1, p2=2)(f_s, f_t), ft_loss(f_s, f_t, p1=1, p2=2))


@pytest.mark.parametrize("s_shape,t_shape", [((2, 3, 5, 5), (2, 4, 5, 5)), ((2, 3, 7, 7), (2, 2, 3, 3))])
@pytest.mark.parametrize("p2", [1, 2])
def test_gradcheck(s_shape, t_shape, p2):
    f_s = torch.randn(s_shape, dtype=torch.float64, requires_grad=True)
    f_t = torch.randn(t_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: ft_loss(a, b, p2=p2), (f_s, f_t))


def test_hand_checked_values_and_odd_p2_quirk():
    # factor_s = normalize([1, 0]) = [1, 0]; factor_t = normalize([1, 1]) = [r, r], r = 1/sqrt(2).
    f_s = torch.tensor([[[[1.0, 0.0]]]], dtype=torch.float64)
    f_t = torch.tensor([[[[1.0, 1.0]]]], dtype=torch.float64)
    r = 1 / math.sqrt(2)
    d = (1 - r, -r)
    assert ft_loss(f_s, f_t).item() == pytest.approx((abs(d[0]) + abs(d[1])) / 2, abs=1e-15)
    assert ft_loss(f_s, f_t, p2=2).item() == pytest.approx((d[0] ** 2 + d[1] ** 2) / 2, abs=1e-15)
    # p2 = 3 keeps the sign (pow without abs): the seed's loss goes negative here.
    odd = ft_loss(f_s, f_t, p2=3).item()
    assert odd == pytest.approx((d[0] ** 3 + d[1] ** 3) / 2, abs=1e-15)
    assert odd < 0


def test_l1_subgradient_at_equal_inputs_is_zero():
    # abs'(0) = sign(0) = 0 in autograd: identical factors give loss 0 and a zero gradient (not +-1/n).
    f_t = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    f_s = f_t.clone().requires_grad_(True)
    loss = ft_loss(f_s, f_t)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(f_s.grad, torch.zeros_like(f_s))


def test_larger_map_is_pooled_to_the_smaller():
    f_s = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    f_t = torch.randn(2, 5, 4, 4, dtype=torch.float64)
    assert torch.allclose(ft_loss(f_s, f_t), ft_loss(f_s, F.avg_pool2d(f_t, 2)), rtol=1e-14)
    assert torch.allclose(ft_loss(f_t, f_s), ft_loss(F.avg_pool2d(f_t, 2), f_s), rtol=1e-14)


@pytest.mark.parametrize("s_shape,t_shape", SHAPES[:3])
@pytest.mark.parametrize("p1,p2", [(2, 1), (2, 3)])
def test_hw_pool_equals_seed_when_the_smaller_map_is_square(s_shape, t_shape, p1, p2):
    f_s, f_t = torch.randn(s_shape, dtype=torch.float64), torch.randn(t_shape, dtype=torch.float64)
    expected = seed_ft_loss(f_s, f_t, p1, p2)
    assert torch.allclose(ft_loss(f_s, f_t, p1, p2, pool="hw"), expected, rtol=1e-12, atol=1e-15)
    assert torch.allclose(FactorTransfer(p1, p2, pool="hw")(f_s, f_t), expected, rtol=1e-12, atol=1e-15)


def test_hw_pool_non_square_and_mixed_orders():
    f_s, f_t = torch.randn(3, 5, 7, 9, dtype=torch.float64), torch.randn(3, 6, 14, 18, dtype=torch.float64)
    with pytest.raises(ValueError):
        ft_loss(f_s, f_t)
    assert torch.allclose(ft_loss(f_s, f_t, pool="hw"), ft_loss(f_s, F.avg_pool2d(f_t, 2)), rtol=1e-14)
    with pytest.raises(ValueError):
        ft_loss(torch.randn(1, 1, 8, 2), torch.randn(1, 1, 4, 4), pool="hw")
