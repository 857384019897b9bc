import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdfuse_ref.fsp import FSP, compute_fsp, fsp_loss, fsp_matrix


class SeedFSP(nn.Module):
    """The seed's FSP verbatim."""
    def __init__(self, s_shapes, t_shapes):
        super(SeedFSP, self).__init__()
        assert len(s_shapes) == len(t_shapes), 'unequal length of feat list'
        s_c = [s[1] for s in s_shapes]
        t_c = [t[1] for t in t_shapes]
        if np.any(np.asarray(s_c) != np.asarray(t_c)):
            raise ValueError('num of channels not equal (error in FSP)')

    def forward(self, g_s, g_t):
        s_fsp = self.compute_fsp(g_s)
        t_fsp = self.compute_fsp(g_t)
        loss_group = [self.compute_loss(s, t) for s, t in zip(s_fsp, t_fsp)]
        return loss_group

    @staticmethod
    def compute_loss(s, t):
        return (s - t).pow(2).mean()

    @staticmethod
    def compute_fsp(g):
        fsp_list = []
        for i in range(len(g) - 1):
            bot, top = g[i], g[i + 1]
            b_H, t_H = bot.shape[2], top.shape[2]
            if b_H > t_H:
                bot = F.adaptive_avg_pool2d(bot, (t_H, t_H))
            elif b_H < t_H:
                top = F.adaptive_avg_pool2d(top, (b_H, b_H))
            else:
                pass
            bot = bot.unsqueeze(1)
            top = top.unsqueeze(2)
            bot = bot.view(bot.shape[0], bot.shape[1], bot.shape[2], -1)
            top = top.view(top.shape[0], top.shape[1], top.shape[2], -1)
            fsp = (bot * top).mean(-1)
            fsp_list.append(fsp)
        return fsp_list


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def maps(n, specs):
    return [rand(n, c, h, w) for c, h, w in specs]


# (C, H, W) per map: same H, bot larger (pooled), top larger (pooled), odd sizes, non-square bot.
S_SPECS = [(2, 8, 8), (3, 8, 8), (5, 4, 4), (3, 7, 7), (4, 3, 3)]
T_SPECS = [(2, 6, 6), (3, 6, 6), (5, 6, 6), (3, 5, 5), (4, 2, 2)]


@pytest.mark.parametrize("n", [1, 2, 3, 17])
def test_matches_seed_code(n):
    g_s, g_t = maps(n, S_SPECS), maps(n, T_SPECS)
    seed = SeedFSP([f.shape for f in g_s], [f.shape for f in g_t])(g_s, g_t)
    ours = fsp_loss(g_s, g_t)
    mod = FSP([f.shape for f in g_s], [f.shape for f in g_t])(g_s, g_t)
    assert len(ours) == len(seed) == len(mod) == len(g_s) - 1
    for a, b, m in zip(ours, seed, mod):
        assert a.shape == b.shape == ()
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-15)
        assert torch.equal(a, m)
    for a, b in zip(compute_fsp(g_s), SeedFSP.compute_fsp(g_s)):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-15)


def test_orientation_and_hand_checked_matrix():
    # bot: C1 = 2 channels, top: C2 = 3 channels, H = W = 1 -> fsp[n, c2, c1] = top[c2] * bot[c1].
    bot = torch.tensor([1.0, 2.0], dtype=torch.float64).view(1, 2, 1, 1)
    top = torch.tensor([3.0, 5.0, 7.0], dtype=torch.float64).view(1, 3, 1, 1)
    expected = torch.tensor([[3.0, 6.0], [5.0, 10.0], [7.0, 14.0]], dtype=torch.float64).view(1, 3, 2)
    assert torch.equal(fsp_matrix(bot, top), expected)
    # 2 x 2 maps: mean over the 4 positions.
    bot = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64).view(1, 1, 2, 2)
    top = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64).view(1, 1, 2, 2)
    assert fsp_matrix(bot, top).item() == pytest.approx((1 + 4) / 4, abs=1e-15)


def test_larger_map_is_pooled_to_square():
    # Non-square bot 8 x 6 with the larger H: pooled to (4, 4) (H of top, for both dims), as the seed.
    bot, top = rand(2, 3, 8, 6), rand(2, 5, 4, 4)
    expected = SeedFSP.compute_fsp([bot, top])[0]
    assert torch.allclose(fsp_matrix(bot, top), expected, rtol=1e-12, atol=1e-15)
    pooled = F.adaptive_avg_pool2d(bot, (4, 4)).reshape(2, 3, 16)
    assert torch.allclose(fsp_matrix(bot, top), torch.bmm(top.reshape(2, 5, 16), pooled.transpose(1, 2)) / 16)
    # Top larger: the top is pooled to the bottom's H.
    bot, top = rand(2, 3, 2, 2), rand(2, 4, 6, 6)
    assert torch.allclose(fsp_matrix(bot, top), SeedFSP.compute_fsp([bot, top])[0], rtol=1e-12, atol=1e-15)
    # Equal H, different W: no pooling; the sizes do not match.
    with pytest.raises(ValueError):
        fsp_matrix(rand(1, 2, 4, 4), rand(1, 2, 4, 3))


def test_channel_mismatch_raises():
    s_shapes, t_shapes = [(2, 3, 4, 4), (2, 5, 2, 2)], [(2, 3, 4, 4), (2, 6, 2, 2)]
    with pytest.raises(ValueError, match="num of channels not equal"):
        SeedFSP(s_shapes, t_shapes)
    with pytest.raises(ValueError, match="num of channels not equal"):
        FSP(s_shapes, t_shapes)
    with pytest.raises(ValueError, match="num of channels not equal"):
        fsp_loss([rand(*s) for s in s_shapes], [rand(*t) for t in t_shapes])
    # Student channel count 1 would broadcast silently in the seed's forward; the function raises.
    g_s = [rand(2, 1, 4, 4), rand(2, 5, 2, 2)]
    g_t = [rand(2, 3, 4, 4), rand(2, 5, 2, 2)]
    assert SeedFSP.compute_loss(SeedFSP.compute_fsp(g_s)[0], SeedFSP.compute_fsp(g_t)[0]).shape == ()
    with pytest.raises(ValueError):
        fsp_loss(g_s, g_t)
    with pytest.raises(AssertionError):
        FSP(s_shapes, t_shapes[:1])
    with pytest.raises(ValueError):
        fsp_loss([rand(*s) for s in s_shapes], [rand(*t) for t in t_shapes[:1]])


def test_gradcheck_all_student_maps():
    specs_s = [(2, 4, 4), (3, 2, 2), (2, 3, 3)]
    specs_t = [(2, 2, 2), (3, 3, 3), (2, 1, 1)]
    g_s = [f.requires_grad_() for f in maps(2, specs_s)]
    g_t = maps(2, specs_t)
    assert torch.autograd.gradcheck(lambda *g: tuple(fsp_loss(list(g), g_t)), tuple(g_s))


def test_middle_map_gradient_accumulates():
    g_s = [f.requires_grad_() for f in maps(2, [(2, 4, 4), (3, 4, 4), (2, 2, 2)])]
    g_t = maps(2, [(2, 4, 4), (3, 4, 4), (2, 2, 2)])
    l0, l1 = fsp_loss(g_s, g_t)
    g0 = torch.autograd.grad(l0, g_s[1], retain_graph=True)[0]
    g1 = torch.autograd.grad(l1, g_s[1], retain_graph=True)[0]
    total = torch.autograd.grad(l0 + l1, g_s[1])[0]
    assert g0.abs().max() > 0 and g1.abs().max() > 0
    assert torch.allclose(total, g0 + g1, rtol=1e-12, atol=1e-15)


def test_pool_hw_option():
    # pool="hw": the larger map of a pair pooled to the smaller one's (H, W); the seed's rule for square maps.
    bot, top = rand(3, 5, 14, 18), rand(3, 6, 7, 9)
    expected = fsp_matrix(F.adaptive_avg_pool2d(bot, (7, 9)), top)
    assert torch.allclose(fsp_matrix(bot, top, pool="hw"), expected, rtol=1e-12, atol=1e-15)
    g_s, g_t = maps(2, S_SPECS[:3]), maps(2, T_SPECS[:3])
    for a, b in zip(fsp_loss(g_s, g_t, pool="hw"), fsp_loss(g_s, g_t)):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError):
        fsp_matrix(rand(1, 2, 4, 6), rand(1, 2, 6, 4), pool="hw")
