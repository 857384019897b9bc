"""VID: Variational Information Distillation for Knowledge Transfer (Ahn et al.), as RepDistiller's
VIDLoss.

Seed (VIDLoss.forward(input, target)):
- size matching on H: if the student input's H is larger it is adaptive-avg-pooled to (t_H, t_H)
  BEFORE the regressor; if the target's H is larger the target is pooled to (s_H, s_H) (square, as AT);
- pred_mean = regressor(input) (1x1 conv -> ReLU -> 1x1 conv -> ReLU -> 1x1 conv, no biases);
- pred_var = log(1 + exp(log_scale)) + eps, viewed (1, C, 1, 1) (log_scale: one learnt value per target
  channel, initialised to log(exp(init_pred_var - eps) - 1) so that pred_var starts at init_pred_var);
- loss = mean over N*C*H*W of 0.5 * ((pred_mean - target)^2 / pred_var + log(pred_var)).

vid_loss(pred_mean, target, log_scale, eps) is the part after the regressor; it pools the target to
pred_mean's H when the target's H is larger. A pred_mean with the larger H is refused (ValueError): the
seed pools the student input before the regressor, which cannot be redone after it; VIDLoss does that.

Option pool="seed" (default) | "hw": the seed pools to the square (H, H) and compares H only, so a
non-square pair fails or, with equal H and a wider target, is not pooled at all. pool="hw" is kdfuse's
generalisation: the target is pooled to pred_mean's (H, W) whenever it differs (adaptive_avg_pool2d,
PyTorch's window rule, also for non-divisible sizes), and a target smaller than pred_mean in H or in W is
refused (ValueError). For square maps the two agree exactly; golden data of non-square pooled cases uses
"hw". In VIDLoss, pool="hw" likewise pools a larger student input to the target's (H, W).

Deliberate difference: softplus is evaluated as max(x, 0) + log1p(exp(-|x|)), the same function as
the seed's log(1 + exp(x)) (equal to rounding for moderate x) but without its overflow to inf for large
x nor its underflow to 0 for very negative x. Not torch's F.softplus, which returns x itself above
x = 20 (an error of exp(-20) = 2e-9). Its gradient is sigmoid(x) (a custom autograd function): autograd
through max(x, 0) and |x| would give 0 instead of 1/2 at exactly x = 0 (log_scale = 0 is a valid value).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class _StableSoftplus(torch.autograd.Function):
    """max(x, 0) + log1p(exp(-|x|)) with the derivative sigmoid(x) everywhere. Autograd through the
    formula itself would take the subgradients of max and |.| at x = 0 and return 0 there instead of 1/2."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.sigmoid(x)


def stable_softplus(x):
    """log(1 + exp(x)) without overflow or underflow; its gradient is sigmoid(x), also at x = 0."""
    return _StableSoftplus.apply(x)


def _check_pool(pool):
    if pool not in ("seed", "hw"):
        raise ValueError(f"pool must be 'seed' or 'hw', got {pool!r}")


def vid_loss(pred_mean, target, log_scale, eps=1e-5, pool="seed"):
    """VID loss: mean of 0.5 ((pred_mean - target)^2 / var + log var), var = softplus(log_scale) + eps per channel.

    pool="seed": a target with a larger H is pooled to (H, H); pool="hw": a target larger in H or W is
    pooled to pred_mean's (H, W) (see the module docstring)."""
    _check_pool(pool)
    p_H, t_H = pred_mean.shape[2], target.shape[2]
    if pool == "hw":
        p_W, t_W = pred_mean.shape[3], target.shape[3]
        if p_H > t_H or p_W > t_W:
            raise ValueError(
                f"pred_mean's (H, W) = ({p_H}, {p_W}) is larger than the target's ({t_H}, {t_W}) in H or W: the "
                "target is pooled to pred_mean's size and cannot be smaller; pool the student input before the "
                "regressor (VIDLoss does it)")
        if (p_H, p_W) != (t_H, t_W):
            target = F.adaptive_avg_pool2d(target, (p_H, p_W))
    elif p_H > t_H:
        raise ValueError(
            f"pred_mean's H ({p_H}) is larger than the target's ({t_H}): the seed pools the student input "
            "before the regressor (VIDLoss does it); pool it before computing pred_mean")
    elif p_H < t_H:
        target = F.adaptive_avg_pool2d(target, (p_H, p_H))  # square (p_H, p_H), as the seed
    if pred_mean.shape != target.shape:
        raise ValueError(f"pred_mean and (pooled) target differ in shape: {tuple(pred_mean.shape)} vs {tuple(target.shape)}")
    if log_scale.shape != (pred_mean.shape[1],):
        raise ValueError(f"log_scale must have shape ({pred_mean.shape[1]},), got {tuple(log_scale.shape)}")
    pred_var = stable_softplus(log_scale) + eps
    pred_var = pred_var.view(1, -1, 1, 1)
    neg_log_prob = 0.5 * ((pred_mean - target) ** 2 / pred_var + torch.log(pred_var))
    return torch.mean(neg_log_prob)


class VIDLoss(nn.Module):
    """Variational Information Distillation for Knowledge Transfer, CVPR 2019 (the seed's module)."""

    def __init__(self, num_input_channels, num_mid_channel, num_target_channels, init_pred_var=5.0, eps=1e-5,
                 pool="seed"):
        super().__init__()
        _check_pool(pool)
        self.pool = pool

        def conv1x1(in_channels, out_channels, stride=1):
            return nn.Conv2d(in_channels, out_channels, kernel_size=1, padding=0, bias=False, stride=stride)

        self.regressor = nn.Sequential(
            conv1x1(num_input_channels, num_mid_channel),
            nn.ReLU(),
            conv1x1(num_mid_channel, num_mid_channel),
            nn.ReLU(),
            conv1x1(num_mid_channel, num_target_channels),
        )
        # The seed's np.log(np.exp(init_pred_var - eps) - 1.0) * torch.ones(C), in the default dtype.
        self.log_scale = nn.Parameter(math.log(math.exp(init_pred_var - eps) - 1.0) * torch.ones(num_target_channels))
        self.eps = eps

    def forward(self, input, target):
        s_H, t_H = input.shape[2], target.shape[2]
        if self.pool == "hw":
            s_W, t_W = input.shape[3], target.shape[3]
            if (s_H > t_H or s_W > t_W) and (s_H >= t_H and s_W >= t_W):
                input = F.adaptive_avg_pool2d(input, (t_H, t_W))
        elif s_H > t_H:
            input = F.adaptive_avg_pool2d(input, (t_H, t_H))  # square, as the seed
        # (a larger target is pooled to the regressor output's size by vid_loss: the 1x1 regressor keeps H, W.)
        pred_mean = self.regressor(input)
        return vid_loss(pred_mean, target, self.log_scale, self.eps, self.pool)
