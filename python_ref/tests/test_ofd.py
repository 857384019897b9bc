import math

import pytest
import torch
import torch.nn as nn

from kdfuse_ref.ofd import OFD, batch_margin, bn_margin, ofd_loss


class SeedOFD(nn.Module):
    '''
    The seed's code verbatim.
    '''
    def __init__(self, in_channels, out_channels):
        super(SeedOFD, self).__init__()
        self.connector = nn.Sequential(*[
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(out_channels)
        ])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, fm_s, fm_t):
        margin = self.get_margin(fm_t)
        fm_t = torch.max(fm_t, margin)
        fm_s = self.connector(fm_s)
        mask = 1.0 - ((fm_s <= fm_t) & (fm_t <= 0.0)).float()
        loss = torch.mean((fm_s - fm_t)**2 * mask)
        return loss

    def get_margin(self, fm, eps=1e-6):
        mask = (fm < 0.0).float()
        masked_fm = fm * mask
        margin = masked_fm.sum(dim=(0,2,3), keepdim=True) / (mask.sum(dim=(0,2,3), keepdim=True)+eps)
        return margin


class SeedOFDFloat64Mask(SeedOFD):
    """The seed with its one float32 cast (`.float()` in get_margin) made the input's dtype."""
    def get_margin(self, fm, eps=1e-6):
        mask = (fm < 0.0).to(fm.dtype)
        masked_fm = fm * mask
        margin = masked_fm.sum(dim=(0,2,3), keepdim=True) / (mask.sum(dim=(0,2,3), keepdim=True)+eps)
        return margin


def seed_partial_l2(s, t, cls=SeedOFD):
    """The seed's forward on an already-connected student map: its connector replaced by the identity."""
    seed = cls(1, 1)
    seed.connector = nn.Identity()
    return seed(s, t)


# clovaai/overhaul-distillation CIFAR-100/distiller.py, verbatim
def distillation_loss(source, target, margin):
    target = torch.max(target, margin)
    loss = torch.nn.functional.mse_loss(source, target, reduction="none")
    loss = loss * ((source > target) | (target > 0)).float()
    return loss.sum()


def get_margin_from_BN_transcribed(weight, bias):
    """clovaai's get_margin_from_BN with scipy's norm.cdf replaced by an erfc-based cdf (no scipy here)."""
    class norm:
        @staticmethod
        def cdf(x):
            return 0.5 * math.erfc(-x / math.sqrt(2.0))
    margin = []
    std = weight
    mean = bias
    for (s, m) in zip(std, mean):
        s = abs(s.item())
        m = m.item()
        if norm.cdf(-m / s) > 0.001:
            margin.append(- s * math.exp(- (m / s) ** 2 / 2) / math.sqrt(2 * math.pi) / norm.cdf(-m / s) + m)
        else:
            margin.append(-3 * s)
    return torch.tensor(margin, dtype=torch.float64)


SHAPES = [(3, 5, 7, 7), (2, 6, 14, 14), (1, 1, 1, 1), (4, 3, 2, 9), (64, 8, 4, 4)]


def teacher_with_empty_channel(shape, dtype):
    t = torch.randn(shape, dtype=dtype)
    t[:, 0] = t[:, 0].abs()  # channel 0 has no negative value
    return t


@pytest.mark.parametrize("shape", SHAPES)
def test_matches_seed_code_float64(shape):
    s = torch.randn(shape, dtype=torch.float64)
    t = teacher_with_empty_channel(shape, torch.float64)
    ours = ofd_loss(s, t)
    # the seed with get_margin's count in float64: tight
    assert torch.allclose(ours, seed_partial_l2(s, t, SeedOFDFloat64Mask), rtol=1e-12, atol=1e-15)
    # the seed verbatim: its get_margin rounds count + 1e-6 in float32 (`.float()`), ~1e-7 relative
    assert torch.allclose(ours, seed_partial_l2(s, t), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_matches_seed_code_float32(shape):
    s = torch.randn(shape)
    t = teacher_with_empty_channel(shape, torch.float32)
    assert torch.allclose(ofd_loss(s, t), seed_partial_l2(s, t), rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_module_matches_seed_module(dtype):
    torch.manual_seed(1)
    ours, seed = OFD(5, 6).to(dtype), SeedOFD(5, 6).to(dtype)
    seed.load_state_dict(ours.state_dict(), strict=False)
    fm_s, fm_t = torch.randn(3, 5, 7, 7, dtype=dtype), torch.randn(3, 6, 7, 7, dtype=dtype)
    rtol = 1e-6
    assert torch.allclose(ours(fm_s, fm_t), seed(fm_s, fm_t), rtol=rtol, atol=0)
    # the module is the function on the connector's output (BN in train mode: batch statistics)
    ours.eval()
    assert torch.equal(ours(fm_s, fm_t), ofd_loss(ours.connector(fm_s), fm_t))
    assert torch.equal(ours.get_margin(fm_t), batch_margin(fm_t))


def test_module_original_variant():
    margin = -torch.rand(6, dtype=torch.float64)
    ofd = OFD(5, 6, variant="original", margin=margin).double().eval()
    fm_s, fm_t = torch.randn(3, 5, 4, 4, dtype=torch.float64), torch.randn(3, 6, 4, 4, dtype=torch.float64)
    assert torch.equal(ofd(fm_s, fm_t), ofd_loss(ofd.connector(fm_s), fm_t, margin, variant="original"))
    with pytest.raises(ValueError):
        OFD(5, 6, variant="paper")


@pytest.mark.parametrize("shape", SHAPES)
def test_original_variant_matches_clovaai(shape):
    s, t = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    C = shape[1]
    margin = bn_margin(torch.randn(C, dtype=torch.float64), torch.randn(C, dtype=torch.float64))
    expected = distillation_loss(s, t, margin.view(1, -1, 1, 1)) / shape[0] / 1000
    assert torch.allclose(ofd_loss(s, t, margin, variant="original"), expected, rtol=1e-12, atol=1e-15)
    assert torch.allclose(ofd_loss(s, t, margin.view(1, -1, 1, 1), variant="original"), expected, rtol=1e-12, atol=1e-15)


def test_bn_margin_matches_clovaai_and_hand_values():
    gamma = torch.tensor([1.0, -2.0, 0.5, 1.0, 3.0, 0.1, 1.0], dtype=torch.float64)
    beta = torch.tensor([0.0, 1.0, -0.3, 4.0, -5.0, 0.29, 3.08], dtype=torch.float64)
    ours = bn_margin(gamma, beta)
    assert ours.dtype == torch.float64
    assert torch.allclose(ours, get_margin_from_BN_transcribed(gamma, beta), rtol=1e-13, atol=1e-15)
    # gamma = 1, beta = 0: -phi(0) / Phi(0) = -sqrt(2 / pi)
    assert ours[0].item() == pytest.approx(-math.sqrt(2 / math.pi), abs=1e-15)
    # gamma = 1, beta = 4: Phi(-4) = 3.2e-5 <= 1e-3 -> -3 |gamma|
    assert ours[3].item() == -3.0
    # |gamma| is used: gamma = -2 gives the same as gamma = 2
    assert torch.equal(bn_margin(torch.tensor([2.0]), torch.tensor([1.0])), ours[1:2])
    # gamma == 0 (the original divides by zero): the limits m (m < 0) and 0 (m >= 0)
    assert bn_margin(torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64), torch.tensor([-0.7, 0.5, 0.0], dtype=torch.float64)).tolist() == [-0.7, 0.0, 0.0]


def test_bn_margin_with_scipy_if_available():
    norm = pytest.importorskip("scipy.stats").norm
    gamma, beta = torch.randn(50, dtype=torch.float64), 2 * torch.randn(50, dtype=torch.float64)
    expected = []
    for s, m in zip(gamma.tolist(), beta.tolist()):
        s = abs(s)
        if norm.cdf(-m / s) > 0.001:
            expected.append(-s * math.exp(-(m / s) ** 2 / 2) / math.sqrt(2 * math.pi) / norm.cdf(-m / s) + m)
        else:
            expected.append(-3 * s)
    assert torch.allclose(bn_margin(gamma, beta), torch.tensor(expected, dtype=torch.float64), rtol=1e-12)


@pytest.mark.parametrize("variant", ["seed", "original"])
def test_gradcheck(variant):
    s = torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    margin = None if variant == "seed" else -torch.rand(4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: ofd_loss(a, t, margin, variant=variant), (s,))


def test_channel_without_negatives_gets_margin_zero_hand_checked():
    # N = 1, C = 2, H = 1, W = 2. Channel 0: t = (1, 2), no negatives -> margin 0 / (0 + 1e-6) = 0, not NaN.
    # Channel 1: t = (-1, -3) -> margin -4 / (2 + 1e-6) ~ -2.
    t = torch.tensor([[[[1.0, 2.0]], [[-1.0, -3.0]]]], dtype=torch.float64)
    margin = batch_margin(t)
    assert margin.shape == (1, 2, 1, 1)
    assert margin[0, 0].item() == 0.0
    assert margin[0, 1].item() == pytest.approx(-4 / (2 + 1e-6), abs=1e-15)
    assert batch_margin(t, eps=0.0).flatten().tolist() == [0.0, -2.0]
    # all-positive teacher: margins all 0, finite loss = plain MSE against t
    t_pos = torch.rand(2, 3, 2, 2, dtype=torch.float64) + 0.1
    s = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    assert torch.equal(batch_margin(t_pos), torch.zeros(1, 3, 1, 1, dtype=torch.float64))
    assert torch.allclose(ofd_loss(s, t_pos), ((s - t_pos) ** 2).mean(), rtol=1e-14)
    # t' = max(t, margin) = ch0 (1, 2), ch1 (-1, -2).
    # ch0: t' > 0, mask 1: s = (0, 3) -> 1 + 1 = 2.
    # ch1: s = -1.5 <= t' = -1 <= 0 -> masked out; s = 0 > t' = -2 -> (0 + 2)^2 = 4.  mean = 6 / 4.
    s = torch.tensor([[[[0.0, 3.0]], [[-1.5, 0.0]]]], dtype=torch.float64)
    assert ofd_loss(s, t, margin_eps=0.0).item() == 1.5
    d = 2 / (2 + 1e-6) * 2  # the seed's eps: margin = -4 / (2 + 1e-6)
    assert ofd_loss(s, t).item() == pytest.approx((2 + d * d) / 4, abs=1e-15)


def test_margin_is_detached_and_mask_kills_gradient():
    t = torch.tensor([[[[-1.0, -3.0, 0.5]]]], dtype=torch.float64)  # margin -2 (eps 0), t' = (-1, -2, 0.5)
    s = torch.tensor([[[[-1.5, 0.0, 0.0]]]], dtype=torch.float64, requires_grad=True)
    ofd_loss(s, t, margin_eps=0.0).backward()
    # masked (s <= t' <= 0) -> 0; 2 (0 + 2) / 3; 2 (0 - 0.5) / 3
    assert torch.allclose(s.grad, torch.tensor([[[[0.0, 4 / 3, -1 / 3]]]], dtype=torch.float64), atol=1e-15)
    t_req = t.clone().requires_grad_(True)
    assert not batch_margin(t_req).requires_grad


def test_argument_errors():
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError):
        ofd_loss(s, t, variant="paper")
    with pytest.raises(ValueError):
        ofd_loss(s, t, variant="original")
    with pytest.raises(ValueError):
        ofd_loss(s, t, margin=torch.zeros(3))
    with pytest.raises(ValueError):
        ofd_loss(s, torch.randn(2, 3, 2, 2))
