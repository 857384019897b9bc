import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdfuse_ref.nst import NSTLoss, nst_loss, poly_kernel


class SeedNSTLoss(nn.Module):
    """The seed's NSTLoss verbatim."""
    def __init__(self):
        super(SeedNSTLoss, self).__init__()
        pass

    def forward(self, g_s, g_t):
        return [self.nst_loss(f_s, f_t) for f_s, f_t in zip(g_s, g_t)]

    def nst_loss(self, f_s, f_t):
        s_H, t_H = f_s.shape[2], f_t.shape[2]
        if s_H > t_H:
            f_s = F.adaptive_avg_pool2d(f_s, (t_H, t_H))
        elif s_H < t_H:
            f_t = F.adaptive_avg_pool2d(f_t, (s_H, s_H))
        else:
            pass
        f_s = f_s.view(f_s.shape[0], f_s.shape[1], -1)
        f_s = F.normalize(f_s, dim=2)
        f_t = f_t.view(f_t.shape[0], f_t.shape[1], -1)
        f_t = F.normalize(f_t, dim=2)
        # set full_loss as False to avoid unnecessary computation
        full_loss = True
        if full_loss:
            return (self.poly_kernel(f_t, f_t).mean().detach() + self.poly_kernel(f_s, f_s).mean()
                    - 2 * self.poly_kernel(f_s, f_t).mean())
        else:
            return self.poly_kernel(f_s, f_s).mean() - 2 * self.poly_kernel(f_s, f_t).mean()

    def poly_kernel(self, a, b):
        a = a.unsqueeze(1)
        b = b.unsqueeze(2)
        res = (a * b).sum(-1).pow(2)
        return res


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float64)


@pytest.mark.parametrize("s_shape,t_shape", [
    ((1, 3, 4, 4), (1, 5, 4, 4)),
    ((2, 3, 8, 8), (2, 5, 4, 4)),   # student pooled
    ((3, 7, 3, 3), (3, 2, 6, 6)),   # teacher pooled
    ((17, 4, 5, 5), (17, 3, 7, 7)),  # odd sizes, adaptive windows overlap
    ((2, 3, 8, 6), (2, 4, 4, 4)),   # non-square student pooled to a square
])
def test_matches_seed_code(s_shape, t_shape):
    f_s, f_t = rand(*s_shape), rand(*t_shape)
    seed = SeedNSTLoss().nst_loss(f_s, f_t)
    assert torch.allclose(nst_loss(f_s, f_t), seed, rtol=1e-12, atol=1e-14)
    assert nst_loss(f_s, f_t).shape == ()


def test_module_matches_function_and_seed():
    g_s = [rand(3, 2, 4, 4), rand(3, 5, 2, 2)]
    g_t = [rand(3, 4, 2, 2), rand(3, 3, 2, 2)]
    ours, seed = NSTLoss()(g_s, g_t), SeedNSTLoss()(g_s, g_t)
    assert len(ours) == len(seed) == 2
    for a, b, f_s, f_t in zip(ours, seed, g_s, g_t):
        assert torch.equal(a, nst_loss(f_s, f_t))
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
    a = rand(2, 3, 6)
    b = rand(2, 4, 6)
    assert torch.allclose(poly_kernel(a, b), SeedNSTLoss().poly_kernel(a, b), rtol=1e-12, atol=1e-15)
    assert poly_kernel(a, b).shape == (2, 4, 3)


def test_full_loss_false_drops_the_teacher_term():
    f_s, f_t = rand(2, 3, 4, 4), rand(2, 5, 4, 4)
    ft = F.normalize(f_t.reshape(2, 5, -1), dim=2)
    diff = nst_loss(f_s, f_t) - nst_loss(f_s, f_t, full_loss=False)
    assert torch.allclose(diff, poly_kernel(ft, ft).mean(), rtol=1e-12)
    assert torch.equal(NSTLoss(full_loss=False)([f_s], [f_t])[0], nst_loss(f_s, f_t, full_loss=False))


def test_gradcheck():
    f_s = rand(2, 3, 4, 4).requires_grad_()
    f_t = rand(2, 2, 2, 2)
    assert torch.autograd.gradcheck(lambda a: nst_loss(a, f_t), (f_s,))
    f_s = rand(1, 2, 2, 3).requires_grad_()
    f_t = rand(1, 3, 2, 3)
    assert torch.autograd.gradcheck(lambda a: nst_loss(a, f_t), (f_s,))


def test_teacher_term_detached_cross_term_not():
    # As the seed: a teacher that requires grad gets gradients only from -2 mean k(s, t).
    f_s, f_t = rand(2, 3, 2, 2), rand(2, 4, 2, 2).requires_grad_()
    nst_loss(f_s, f_t).backward()
    g_ours = f_t.grad.clone()
    f_t.grad = None
    SeedNSTLoss().nst_loss(f_s, f_t).backward()
    assert torch.allclose(g_ours, f_t.grad, rtol=1e-10, atol=1e-14)
    f_t.grad = None
    fs = F.normalize(f_s.reshape(2, 3, -1), dim=2)
    ft = F.normalize(f_t.reshape(2, 4, -1), dim=2)
    (-2 * poly_kernel(fs, ft).mean()).backward()
    assert torch.allclose(g_ours, f_t.grad, rtol=1e-10, atol=1e-14)


def test_hand_checked():
    # One channel each, 1 x 2 maps: after the normalisation over HW, a = (1, 0) and b = (cos, sin).
    # k(s, s) = k(t, t) = 1, k(s, t) = cos^2 -> loss = 2 - 2 cos^2.
    theta = 0.3
    f_s = torch.tensor([3.0, 0.0], dtype=torch.float64).view(1, 1, 1, 2)
    f_t = torch.tensor([math.cos(theta), math.sin(theta)], dtype=torch.float64).view(1, 1, 1, 2) * 5
    assert nst_loss(f_s, f_t).item() == pytest.approx(2 - 2 * math.cos(theta) ** 2, abs=1e-15)
    # Student equal to the teacher up to a positive per-channel scale: loss 0.
    f_t = rand(2, 3, 4, 4)
    scale = torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64).view(1, 3, 1, 1)
    assert nst_loss(f_t * scale, f_t).item() == pytest.approx(0.0, abs=1e-14)


def test_zero_channel_map_stays_zero():
    f_s = rand(2, 3, 2, 2)
    f_s[:, 1] = 0
    f_t = rand(2, 3, 2, 2)
    out = nst_loss(f_s, f_t)
    assert torch.isfinite(out)
    assert torch.allclose(out, SeedNSTLoss().nst_loss(f_s, f_t), rtol=1e-12, atol=1e-14)


def test_pool_hw_option():
    # pool="hw": the larger map pooled to the smaller one's (H, W); the seed's rule where the smaller is square.
    f_s, f_t = rand(3, 5, 7, 9), rand(3, 6, 14, 18)
    expected = nst_loss(f_s, F.adaptive_avg_pool2d(f_t, (7, 9)))
    assert torch.allclose(nst_loss(f_s, f_t, pool="hw"), expected, rtol=1e-12, atol=1e-14)
    f_s, f_t = rand(2, 3, 8, 8), rand(2, 4, 4, 4)
    assert torch.allclose(nst_loss(f_s, f_t, pool="hw"), nst_loss(f_s, f_t), rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError):
        nst_loss(rand(1, 2, 4, 6), rand(1, 2, 6, 4), pool="hw")
