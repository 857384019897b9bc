import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdfuse_ref.vid import VIDLoss, stable_softplus, vid_loss


class SeedVIDLoss(nn.Module):
    """The seed's code verbatim."""
    def __init__(self,
                 num_input_channels,
                 num_mid_channel,
                 num_target_channels,
                 init_pred_var=5.0,
                 eps=1e-5):
        super(SeedVIDLoss, self).__init__()

        def conv1x1(in_channels, out_channels, stride=1):
            return nn.Conv2d(
                in_channels, out_channels,
                kernel_size=1, padding=0,
                bias=False, stride=stride)

        self.regressor = nn.Sequential(
            conv1x1(num_input_channels, num_mid_channel),
            nn.ReLU(),
            conv1x1(num_mid_channel, num_mid_channel),
            nn.ReLU(),
            conv1x1(num_mid_channel, num_target_channels),
        )
        self.log_scale = torch.nn.Parameter(
            np.log(np.exp(init_pred_var-eps)-1.0) * torch.ones(num_target_channels)
        )
        self.eps = eps

    def forward(self, input, target):
        # pool for dimentsion match
        s_H, t_H = input.shape[2], target.shape[2]
        if s_H > t_H:
            input = F.adaptive_avg_pool2d(input, (t_H, t_H))
        elif s_H < t_H:
            target = F.adaptive_avg_pool2d(target, (s_H, s_H))
        else:
            pass
        pred_mean = self.regressor(input)
        pred_var = torch.log(1.0+torch.exp(self.log_scale))+self.eps
        pred_var = pred_var.view(1, -1, 1, 1)
        neg_log_prob = 0.5*(
            (pred_mean-target)**2/pred_var+torch.log(pred_var)
            )
        loss = torch.mean(neg_log_prob)
        return loss


def seed_vid_after_regressor(pred_mean, target, log_scale, eps=1e-5):
    """The seed's forward with an identity regressor and the given log_scale."""
    seed = SeedVIDLoss(1, 1, log_scale.shape[0], eps=eps).to(log_scale.dtype)
    seed.regressor = nn.Identity()
    with torch.no_grad():
        seed.log_scale.copy_(log_scale)
    return seed(pred_mean, target)


SHAPES = [
    ((3, 5, 7, 7), (3, 6, 14, 14)),   # target pooled 14 -> 7
    ((3, 5, 14, 14), (3, 6, 7, 7)),   # student input pooled before the regressor
    ((2, 4, 7, 7), (2, 3, 3, 3)),     # non-divisible 7 -> 3
    ((2, 4, 3, 3), (2, 3, 7, 7)),     # non-divisible, target pooled
    ((4, 3, 6, 9), (4, 2, 6, 9)),     # equal H, non-square
    ((1, 1, 1, 1), (1, 1, 1, 1)),
]


@pytest.mark.parametrize("s_shape,t_shape", SHAPES)
@pytest.mark.parametrize("init_pred_var,eps", [(5.0, 1e-5), (0.1, 1e-3)])
def test_module_matches_seed_module(s_shape, t_shape, init_pred_var, eps):
    C_in, C_t = s_shape[1], t_shape[1]
    ours = VIDLoss(C_in, 7, C_t, init_pred_var, eps).double()
    seed = SeedVIDLoss(C_in, 7, C_t, init_pred_var, eps).double()
    seed.load_state_dict(ours.state_dict())
    with torch.no_grad():
        ours.log_scale.add_(torch.randn(C_t, dtype=torch.float64))
        seed.log_scale.copy_(ours.log_scale)
    x, y = torch.randn(s_shape, dtype=torch.float64), torch.randn(t_shape, dtype=torch.float64)
    assert torch.allclose(ours(x, y), seed(x, y), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("p_shape,t_shape", [s for s in SHAPES if s[0][2] <= s[1][2]])
def test_function_matches_seed_code(p_shape, t_shape):
    pred_mean = torch.randn(p_shape[:1] + t_shape[1:2] + p_shape[2:], dtype=torch.float64)
    target = torch.randn(t_shape, dtype=torch.float64)
    log_scale = 2 * torch.randn(t_shape[1], dtype=torch.float64)
    expected = seed_vid_after_regressor(pred_mean, target, log_scale)
    assert torch.allclose(vid_loss(pred_mean, target, log_scale), expected, rtol=1e-12, atol=1e-15)


def test_log_scale_initialisation():
    # log(exp(init - eps) - 1) so that softplus(log_scale) + eps == init_pred_var
    m, seed = VIDLoss(3, 4, 6), SeedVIDLoss(3, 4, 6)
    assert m.log_scale.dtype == seed.log_scale.dtype == torch.float32
    assert torch.equal(m.log_scale, seed.log_scale)
    assert m.log_scale.shape == (6,) and m.eps == 1e-5
    var = stable_softplus(m.log_scale.double()) + 1e-5
    assert torch.allclose(var, torch.full((6,), 5.0, dtype=torch.float64), rtol=1e-6)


def test_module_is_the_function_on_the_regressor_output():
    m = VIDLoss(5, 8, 6).double()
    x, y = torch.randn(3, 5, 14, 14, dtype=torch.float64), torch.randn(3, 6, 7, 7, dtype=torch.float64)
    pred = m.regressor(F.adaptive_avg_pool2d(x, (7, 7)))
    assert torch.equal(m(x, y), vid_loss(pred, y, m.log_scale, m.eps))
    x2, y2 = torch.randn(3, 5, 3, 3, dtype=torch.float64), torch.randn(3, 6, 7, 7, dtype=torch.float64)
    assert torch.equal(m(x2, y2), vid_loss(m.regressor(x2), y2, m.log_scale, m.eps))


@pytest.mark.parametrize("p_shape,t_shape", [((2, 3, 4, 4), (2, 3, 4, 4)), ((2, 3, 3, 3), (2, 3, 7, 7))])
def test_gradcheck(p_shape, t_shape):
    pred = torch.randn(p_shape, dtype=torch.float64, requires_grad=True)
    target = torch.randn(t_shape, dtype=torch.float64, requires_grad=True)
    log_scale = torch.randn(p_shape[1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(vid_loss, (pred, target, log_scale))
    assert torch.autograd.gradcheck(lambda a, b, c: vid_loss(a, b, c, eps=0.1), (pred, target, log_scale))


def test_module_gradients_reach_regressor_and_log_scale():
    m = VIDLoss(3, 4, 5)
    m(torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)).backward()
    assert m.log_scale.grad is not None and torch.isfinite(m.log_scale.grad).all()
    assert all(p.grad is not None for p in m.regressor.parameters())


def test_hand_checked_value_and_gradient():
    # log_scale = log(e - 1): softplus = 1, var = 1 + eps. pred - target = (0, 2) in one channel.
    eps = 1e-5
    log_scale = torch.tensor([math.log(math.e - 1)], dtype=torch.float64, requires_grad=True)
    pred = torch.tensor([[[[1.0, 3.0]]]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[[[1.0, 1.0]]]], dtype=torch.float64)
    var = 1 + eps
    loss = vid_loss(pred, target, log_scale, eps)
    assert loss.item() == pytest.approx(0.5 * ((0 + 4 / var) / 2 + math.log(var)), abs=1e-14)
    loss.backward()
    # d/dpred = (pred - target) / var / numel
    assert torch.allclose(pred.grad, torch.tensor([[[[0.0, 2 / var / 2]]]], dtype=torch.float64), atol=1e-15)
    # d/dvar = 0.5 mean(-(d^2) / var^2 + 1 / var); dvar/dlog_scale = sigmoid(log_scale) = 1 - 1/e
    dvar = 0.5 * ((0 - 4 / var ** 2) / 2 + 1 / var)
    assert log_scale.grad.item() == pytest.approx(dvar * (1 - 1 / math.e), abs=1e-14)


def test_target_pooled_to_pred_size():
    pred = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    target = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    log_scale = torch.randn(3, dtype=torch.float64)
    assert torch.allclose(vid_loss(pred, target, log_scale), vid_loss(pred, F.avg_pool2d(target, 2), log_scale), rtol=1e-14)


def test_softplus_is_stable_where_the_seed_overflows():
    x = torch.tensor([-800.0, -30.0, -1.0, 0.0, 1.0, 19.0, 21.0, 30.0, 800.0], dtype=torch.float64)
    sp = stable_softplus(x)
    assert torch.isfinite(sp).all()
    moderate = x.abs() <= 21  # same function up to rounding
    assert torch.allclose(sp[moderate], torch.log(1.0 + torch.exp(x[moderate])), rtol=1e-14, atol=0)
    assert sp[-1].item() == 800.0 and sp[0].item() == math.exp(-800.0)
    # log(1 + exp(-30)) in the seed's form loses 3 digits (1 + 9.4e-14 rounds): 9.348e-14 vs 9.358e-14
    assert sp[1].item() == pytest.approx(math.log1p(math.exp(-30.0)), rel=1e-15, abs=0)
    assert abs(torch.log(1.0 + torch.exp(x[1])).item() / sp[1].item() - 1) > 1e-4
    pred, target = torch.zeros(1, 2, 1, 1, dtype=torch.float64), torch.ones(1, 2, 1, 1, dtype=torch.float64)
    assert torch.isfinite(vid_loss(pred, target, torch.tensor([800.0, -800.0], dtype=torch.float64))).all()


def test_argument_errors():
    with pytest.raises(ValueError):  # pred_mean larger: pool the input before the regressor
        vid_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2), torch.zeros(3))
    with pytest.raises(ValueError):
        vid_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 4, 4, 4), torch.zeros(3))
    with pytest.raises(ValueError):
        vid_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.zeros(4))


# ---- pool="hw": kdfuse's generalisation of the seed's square pooling ---------------------------------

@pytest.mark.parametrize("p_shape,t_shape", [((3, 5, 7, 7), (3, 5, 14, 14)), ((2, 4, 3, 3), (2, 4, 7, 7)),
                                             ((2, 3, 4, 4), (2, 3, 4, 4)), ((1, 1, 1, 1), (1, 1, 5, 5))])
def test_hw_pool_equals_seed_for_square_maps(p_shape, t_shape):
    pred, target = torch.randn(p_shape, dtype=torch.float64), torch.randn(t_shape, dtype=torch.float64)
    log_scale = 2 * torch.randn(p_shape[1], dtype=torch.float64)
    assert torch.equal(vid_loss(pred, target, log_scale, pool="hw"), vid_loss(pred, target, log_scale))


@pytest.mark.parametrize("p_shape,t_shape", [((3, 5, 7, 9), (3, 5, 14, 18)), ((3, 5, 7, 9), (3, 5, 10, 13)),
                                             ((2, 3, 4, 6), (2, 3, 4, 11)), ((2, 3, 5, 2), (2, 3, 9, 2))])
def test_hw_pool_pools_to_pred_height_and_width(p_shape, t_shape):
    pred, target = torch.randn(p_shape, dtype=torch.float64), torch.randn(t_shape, dtype=torch.float64)
    log_scale = torch.randn(p_shape[1], dtype=torch.float64)
    pooled = F.adaptive_avg_pool2d(target, p_shape[2:])
    assert torch.equal(vid_loss(pred, target, log_scale, pool="hw"), vid_loss(pred, pooled, log_scale, pool="hw"))
    var = (stable_softplus(log_scale) + 1e-5).view(1, -1, 1, 1)
    expected = (0.5 * ((pred - pooled) ** 2 / var + torch.log(var))).mean()
    assert torch.allclose(vid_loss(pred, target, log_scale, pool="hw"), expected, rtol=1e-14, atol=0)


def test_hw_pool_non_divisible_window_rule():
    # 10 -> 7 rows: windows [floor(7i/7)...]: PyTorch's rule, overlapping windows
    target = torch.arange(10.0, dtype=torch.float64).view(1, 1, 10, 1)
    pred = torch.zeros(1, 1, 7, 1, dtype=torch.float64)
    log_scale = torch.tensor([math.log(math.e - 1)], dtype=torch.float64)  # var = 1 + eps
    windows = [(i * 10 // 7, -((-(i + 1) * 10) // 7)) for i in range(7)]
    pooled = torch.tensor([sum(range(a, b)) / (b - a) for a, b in windows], dtype=torch.float64)
    var = 1 + 1e-5
    expected = 0.5 * ((pooled ** 2).mean() / var + math.log(var))
    assert vid_loss(pred, target, log_scale, pool="hw").item() == pytest.approx(expected.item(), rel=1e-14)


def test_hw_pool_gradcheck_non_square():
    pred = torch.randn(2, 3, 3, 5, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 3, 7, 11, dtype=torch.float64)
    log_scale = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, c: vid_loss(a, target, c, pool="hw"), (pred, log_scale))


def test_hw_pool_argument_errors():
    with pytest.raises(ValueError):  # target narrower than pred_mean
        vid_loss(torch.randn(2, 3, 4, 6), torch.randn(2, 3, 8, 5), torch.zeros(3), pool="hw")
    with pytest.raises(ValueError):  # target lower than pred_mean
        vid_loss(torch.randn(2, 3, 4, 6), torch.randn(2, 3, 3, 12), torch.zeros(3), pool="hw")
    with pytest.raises(ValueError):
        vid_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.zeros(3), pool="square")
    with pytest.raises(ValueError):
        VIDLoss(3, 4, 5, pool="nope")
    # the seed's rule refuses a non-square pooled pair that "hw" accepts
    with pytest.raises(ValueError):
        vid_loss(torch.randn(2, 3, 4, 6), torch.randn(2, 3, 8, 12), torch.zeros(3))
    vid_loss(torch.randn(2, 3, 4, 6), torch.randn(2, 3, 8, 12), torch.zeros(3), pool="hw")


def test_hw_pool_module_pools_a_larger_input_to_the_target_size():
    m = VIDLoss(5, 8, 6, pool="hw").double()
    x, y = torch.randn(3, 5, 14, 18, dtype=torch.float64), torch.randn(3, 6, 7, 9, dtype=torch.float64)
    pred = m.regressor(F.adaptive_avg_pool2d(x, (7, 9)))
    assert torch.equal(m(x, y), vid_loss(pred, y, m.log_scale, m.eps, pool="hw"))
    x2 = torch.randn(3, 5, 7, 9, dtype=torch.float64)
    y2 = torch.randn(3, 6, 14, 18, dtype=torch.float64)
    assert torch.equal(m(x2, y2), vid_loss(m.regressor(x2), y2, m.log_scale, m.eps, pool="hw"))


def test_softplus_gradient_is_sigmoid_everywhere():
    # including x = 0, where autograd through max(x, 0) + log1p(exp(-|x|)) would give 0
    x = torch.tensor([-800.0, -80.0, -20.0, -1e-30, 0.0, 1e-30, 1.0, 20.0, 80.0, 800.0], dtype=torch.float64,
                     requires_grad=True)
    stable_softplus(x).sum().backward()
    assert torch.allclose(x.grad, torch.sigmoid(x.detach()), rtol=1e-15, atol=0)
    assert x.grad[4].item() == 0.5
    y = torch.randn(7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(stable_softplus, (y,))
    assert torch.autograd.gradgradcheck(stable_softplus, (y,))
    # vid_loss's log_scale gradient at log_scale = 0 (var = log 2 + eps)
    ls = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    pred, target = torch.tensor([[[[1.0, 3.0]]]], dtype=torch.float64), torch.zeros(1, 1, 1, 2, dtype=torch.float64)
    vid_loss(pred, target, ls).backward()
    var = math.log(2) + 1e-5
    assert ls.grad.item() == pytest.approx(0.5 * (1 / var - 5 / var ** 2) * 0.5, rel=1e-13)
