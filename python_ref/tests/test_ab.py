import pytest
import torch
import torch.nn as nn

from kdfuse_ref.ab import ABLoss, ab_loss


class SeedABLoss(nn.Module):
    """The seed's code verbatim."""
    def __init__(self, feat_num, margin=1.0):
        super(SeedABLoss, self).__init__()
        self.w = [2**(i-feat_num+1) for i in range(feat_num)]
        self.margin = margin

    def forward(self, g_s, g_t):
        bsz = g_s[0].shape[0]
        losses = [self.criterion_alternative_l2(s, t) for s, t in zip(g_s, g_t)]
        losses = [w * l for w, l in zip(self.w, losses)]
        # loss = sum(losses) / bsz
        # loss = loss / 1000 * 3
        losses = [l / bsz for l in losses]
        losses = [l / 1000 * 3 for l in losses]
        return losses

    def criterion_alternative_l2(self, source, target):
        loss = ((source + self.margin) ** 2 * ((source > -self.margin) & (target <= 0)).float() +
                (source - self.margin) ** 2 * ((source <= self.margin) & (target > 0)).float())
        return torch.abs(loss).sum()


def seed_criterion(source, target, margin=1.0):
    return SeedABLoss(1, margin).criterion_alternative_l2(source, target)


SHAPES = [(3, 5, 7, 7), (2, 6, 14, 14), (1, 1, 1, 1), (4, 3, 2, 9)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("margin", [1.0, 0.5, 0.0])
def test_matches_seed_code(shape, margin):
    s, t = 2 * torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    raw = seed_criterion(s, t, margin)
    assert torch.allclose(ab_loss(s, t, margin, scale=False), raw, rtol=1e-12, atol=1e-15)
    assert torch.allclose(ab_loss(s, t, margin), raw / shape[0] / 1000 * 3, rtol=1e-12, atol=1e-15)


def test_module_matches_seed_module_bitwise():
    g_s = [2 * torch.randn(3, c, h, h, dtype=torch.float64) for c, h in [(4, 16), (8, 8), (16, 4)]]
    g_t = [torch.randn(3, c, h, h, dtype=torch.float64) for c, h in [(4, 16), (8, 8), (16, 4)]]
    ours, seed = ABLoss(3)(g_s, g_t), SeedABLoss(3)(g_s, g_t)
    assert isinstance(ours, list) and len(ours) == 3
    for a, b in zip(ours, seed):
        assert torch.equal(a, b)  # w is a power of two: w * (L/N/1000*3) == (w*L)/N/1000*3 exactly
    # weights 2^(i - feat_num + 1) = 1/4, 1/2, 1
    assert ABLoss(3).w == [0.25, 0.5, 1]
    for w, a, s, t in zip([0.25, 0.5, 1.0], ours, g_s, g_t):
        assert torch.equal(a, w * ab_loss(s, t))
    # zip truncates: two layers with feat_num = 3 get the first two weights, as the seed
    two = ABLoss(3, margin=0.5)(g_s[:2], g_t[:2])
    assert len(two) == 2
    for a, b in zip(two, SeedABLoss(3, margin=0.5)(g_s[:2], g_t[:2])):
        assert torch.equal(a, b)


@pytest.mark.parametrize("margin", [1.0, 0.3])
def test_gradcheck(margin):
    s = 2 * torch.randn(3, 4, 5, 5, dtype=torch.float64)
    s.requires_grad_(True)
    t = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: ab_loss(a, t, margin), (s,))
    assert torch.autograd.gradcheck(lambda a: ab_loss(a, t, margin, scale=False), (s,))


def test_mask_cases_hand_checked():
    m = 1.0
    # teacher inactive (t <= 0; t == 0 counts as inactive): penalise s > -m by (s + m)^2
    #   s = -2 -> 0, s = -1 -> 0 (s > -m is strict), s = -0.5 -> 0.25, s = 0.5 -> 2.25, s = 0 with t = 0 -> 1
    # teacher active (t > 0): penalise s <= m by (s - m)^2
    #   s = 2 -> 0, s = 1 -> 0, s = 0.5 -> 0.25, s = -1 -> 4
    s = torch.tensor([-2.0, -1.0, -0.5, 0.5, 0.0, 2.0, 1.0, 0.5, -1.0], dtype=torch.float64)
    t = torch.tensor([-1.0, -1.0, -3.0, -0.1, 0.0, 1.0, 0.2, 5.0, 1e-9], dtype=torch.float64)
    per = [0.0, 0.0, 0.25, 2.25, 1.0, 0.0, 0.0, 0.25, 4.0]
    for i in range(len(per)):
        assert ab_loss(s[i:i + 1], t[i:i + 1], m, scale=False).item() == pytest.approx(per[i], abs=1e-15)
    # batch of one row of 9: sum = 7.75, scaled by / N / 1000 * 3 with N = 1
    assert ab_loss(s.view(1, 9), t.view(1, 9), m).item() == pytest.approx(7.75 * 3 / 1000, abs=1e-15)
    # N = 3 rows of 3: / 3
    assert ab_loss(s.view(3, 3), t.view(3, 3), m).item() == pytest.approx(7.75 / 3 * 3 / 1000, abs=1e-15)


def test_gradient_hand_checked():
    s = torch.tensor([[-0.5, 0.5, 3.0]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[-1.0, 1.0, 1.0]], dtype=torch.float64)
    ab_loss(s, t, scale=False).backward()
    # 2 (s + m) = 1 ; 2 (s - m) = -1 ; s > m with active teacher: 0
    assert torch.equal(s.grad, torch.tensor([[1.0, -1.0, 0.0]], dtype=torch.float64))


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError):
        ab_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 1, 1))
