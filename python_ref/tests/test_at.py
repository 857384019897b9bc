import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdfuse_ref.at import Attention, at_loss


class SeedAttention(nn.Module):
    """The seed's code verbatim."""
    def __init__(self, p=2):
        super(SeedAttention, self).__init__()
        self.p = p

    def forward(self, g_s, g_t):
        return [self.at_loss(f_s, f_t) for f_s, f_t in zip(g_s, g_t)]

    def at_loss(self, f_s, f_t):
        s_H, t_H = f_s.shape[2], f_t.shape[2]
        if s_H > t_H:
            f_s = F.adaptive_avg_pool2d(f_s, (t_H, t_H))
        elif s_H < t_H:
            f_t = F.adaptive_avg_pool2d(f_t, (s_H, s_H))
        else:
            pass
        return (self.at(f_s) - self.at(f_t)).pow(2).mean()

    def at(self, f):
        return F.normalize(f.pow(self.p).mean(1).view(f.size(0), -1))


def seed_at_loss(f_s, f_t, p=2):
    return SeedAttention(p).at_loss(f_s, f_t)


SHAPES = [
    ((3, 5, 7, 7), (3, 6, 14, 14)),   # teacher pooled 14 -> 7, channel counts differ
    ((3, 5, 14, 14), (3, 6, 7, 7)),   # student pooled
    ((2, 4, 7, 7), (2, 3, 3, 3)),     # non-divisible 7 -> 3 (overlapping adaptive windows)
    ((2, 3, 5, 5), (2, 8, 7, 7)),     # non-divisible 7 -> 5
    ((4, 3, 6, 9), (4, 2, 6, 9)),     # equal H, non-square, no pooling
    ((1, 1, 1, 1), (1, 1, 1, 1)),
]


@pytest.mark.parametrize("s_shape,t_shape", SHAPES)
@pytest.mark.parametrize("p", [2, 1, 4])
def test_matches_seed_code(s_shape, t_shape, p):
    f_s, f_t = torch.randn(s_shape, dtype=torch.float64), torch.randn(t_shape, dtype=torch.float64)
    expected = seed_at_loss(f_s, f_t, p)
    assert torch.allclose(at_loss(f_s, f_t, p), expected, rtol=1e-12, atol=1e-15)


def test_module_matches_seed_module_and_function():
    g_s = [torch.randn(s, dtype=torch.float64) for s, _ in SHAPES[:4]]
    g_t = [torch.randn(t, dtype=torch.float64) for _, t in SHAPES[:4]]
    ours, seed = Attention()(g_s, g_t), SeedAttention()(g_s, g_t)
    assert isinstance(ours, list) and len(ours) == 4
    for a, b, f_s, f_t in zip(ours, seed, g_s, g_t):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-15)
        assert torch.equal(a, at_loss(f_s, f_t))
    # zip truncates to the shorter list, as the seed
    assert len(Attention(p=2)(g_s[:2], g_t)) == 2


@pytest.mark.parametrize("s_shape,t_shape", [((2, 3, 5, 5), (2, 4, 5, 5)), ((2, 3, 7, 7), (2, 2, 3, 3)),
                                             ((2, 3, 3, 3), (2, 2, 7, 7))])
def test_gradcheck(s_shape, t_shape):
    f_s = torch.randn(s_shape, dtype=torch.float64, requires_grad=True)
    f_t = torch.randn(t_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(at_loss, (f_s, f_t))
    assert torch.autograd.gradcheck(lambda a, b: at_loss(a, b, p=3), (f_s, f_t))


def test_hand_checked_value():
    # a(f_s) = normalize([1, 0]) = [1, 0], a(f_t) = normalize([0, 4]) = [0, 1]: mean((1, -1)^2) = 1.
    f_s = torch.tensor([[[[1.0, 0.0]]]], dtype=torch.float64)
    f_t = torch.tensor([[[[0.0, 2.0]]]], dtype=torch.float64)
    assert at_loss(f_s, f_t).item() == pytest.approx(1.0, abs=1e-15)
    # mean over channels of f^2 before normalising: channels (1, 0) and (1, 2) -> (1, 2) -> /sqrt(5)
    f_s2 = torch.tensor([[[[1.0, 0.0]], [[1.0, 2.0]]]], dtype=torch.float64)
    a = torch.tensor([1.0, 2.0], dtype=torch.float64) / 5 ** 0.5
    assert at_loss(f_s2, f_t).item() == pytest.approx(((a - torch.tensor([0.0, 1.0], dtype=torch.float64)) ** 2).mean().item(), abs=1e-15)


def test_zero_map_stays_zero():
    # F.normalize's eps: a zero map gives a = 0 (no NaN), so the loss is mean(a_t^2) = 1 / (H W) per sample.
    f_s = torch.zeros(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    f_t = torch.randn(2, 4, 2, 2, dtype=torch.float64)
    loss = at_loss(f_s, f_t)
    assert loss.item() == pytest.approx(1.0 / 4, abs=1e-15)
    loss.backward()
    assert torch.isfinite(f_s.grad).all()


def test_larger_map_is_pooled_to_the_smaller_square():
    # 4x4 teacher pooled to the student's 2x2: same as pooling by hand with 2x2 windows.
    f_s = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    f_t = torch.randn(2, 5, 4, 4, dtype=torch.float64)
    assert torch.allclose(at_loss(f_s, f_t), at_loss(f_s, F.avg_pool2d(f_t, 2)), rtol=1e-14)
    assert torch.allclose(at_loss(f_t, f_s), at_loss(F.avg_pool2d(f_t, 2), f_s), rtol=1e-14)
    # Quirk: the target size is (H, H), not (H, W): a 4x8 teacher against a 2x4 student becomes 2x2.
    with pytest.raises(ValueError):
        at_loss(torch.randn(1, 1, 2, 4), torch.randn(1, 1, 4, 8))
    f_t_wide = torch.randn(1, 1, 4, 8, dtype=torch.float64)
    f_s_sq = torch.randn(1, 1, 2, 2, dtype=torch.float64)
    assert torch.allclose(at_loss(f_s_sq, f_t_wide), at_loss(f_s_sq, F.adaptive_avg_pool2d(f_t_wide, (2, 2))), rtol=1e-14)


# ---- pool="hw": kdfuse's generalisation of the size matching --------------------------------------

@pytest.mark.parametrize("s_shape,t_shape", SHAPES[:4])
@pytest.mark.parametrize("p", [2, 3])
def test_hw_pool_equals_seed_when_the_smaller_map_is_square(s_shape, t_shape, p):
    f_s, f_t = torch.randn(s_shape, dtype=torch.float64), torch.randn(t_shape, dtype=torch.float64)
    assert torch.allclose(at_loss(f_s, f_t, p, pool="hw"), seed_at_loss(f_s, f_t, p), rtol=1e-12, atol=1e-15)
    assert torch.allclose(Attention(p, pool="hw")([f_s], [f_t])[0], seed_at_loss(f_s, f_t, p), rtol=1e-12, atol=1e-15)


def test_hw_pool_pools_non_square_maps_to_the_smaller_h_w():
    # 3x5x7x9 vs 3x6x14x18: the seed pools the teacher to 7x7 and fails; "hw" pools it to 7x9.
    f_s, f_t = torch.randn(3, 5, 7, 9, dtype=torch.float64), torch.randn(3, 6, 14, 18, dtype=torch.float64)
    with pytest.raises(ValueError):
        at_loss(f_s, f_t)
    expected = at_loss(f_s, F.avg_pool2d(f_t, 2))
    assert torch.allclose(at_loss(f_s, f_t, pool="hw"), expected, rtol=1e-14)
    assert torch.allclose(at_loss(f_t, f_s, pool="hw"), at_loss(F.avg_pool2d(f_t, 2), f_s), rtol=1e-14)
    # non-divisible, student pooled: 11x13 -> 4x5 (overlapping windows in both dimensions)
    f_s, f_t = torch.randn(2, 3, 11, 13, dtype=torch.float64), torch.randn(2, 5, 4, 5, dtype=torch.float64)
    assert torch.allclose(at_loss(f_s, f_t, pool="hw"), at_loss(F.adaptive_avg_pool2d(f_s, (4, 5)), f_t), rtol=1e-14)
    # equal H, different W: pooled along W only (the seed would fail)
    f_s, f_t = torch.randn(2, 3, 6, 10, dtype=torch.float64), torch.randn(2, 2, 6, 4, dtype=torch.float64)
    assert torch.allclose(at_loss(f_s, f_t, pool="hw"), at_loss(F.adaptive_avg_pool2d(f_s, (6, 4)), f_t), rtol=1e-14)


def test_hw_pool_rejects_mixed_orders_and_unknown_modes():
    with pytest.raises(ValueError):
        at_loss(torch.randn(1, 1, 8, 2), torch.randn(1, 1, 4, 4), pool="hw")
    with pytest.raises(ValueError):
        at_loss(torch.randn(1, 1, 4, 4), torch.randn(1, 1, 4, 4), pool="square")


def test_hw_pool_gradcheck():
    f_s = torch.randn(2, 3, 7, 5, dtype=torch.float64, requires_grad=True)
    f_t = torch.randn(2, 2, 3, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: at_loss(a, f_t, pool="hw"), (f_s,))
