"""OFD: A Comprehensive Overhaul of Feature Distillation (Heo et al., ICCV 2019).

Inputs: s = the student's map after the connector (1x1 conv + BN), t = the teacher's pre-ReLU map,
same shape (N, C, H, W).

variant="seed" (the seed's OFD module, the default):
- margin_c = sum of the teacher's negative values of channel c over (N, H, W)
             / (number of negative values + margin_eps), margin_eps = 1e-6 as the seed's get_margin
  (so it is the mean of the negatives up to a relative 1e-6 / count, and a channel with no negative
  value gets 0 / 1e-6 = 0, never NaN). Recomputed from every batch's teacher map (not from the
  teacher's BN as in the paper) and detached here (the seed does not detach it explicitly; teacher
  features carry no gradient in RepDistiller). margin_eps=0 gives the exact mean (0 for empty
  channels).
- t' = max(t, margin) (elementwise, margin broadcast per channel);
- mask = 1 - [(s <= t') & (t' <= 0)]: no penalty where the teacher is "off" (t' <= 0) and the student
  is already below it;
- loss = mean over all N*C*H*W elements of (s - t')^2 * mask.

variant="original" (clovaai/overhaul-distillation, distiller.py + train_with_distillation.py):
- margin given by the caller, shape (C,) or broadcastable to (1, C, 1, 1): the fixed per-channel
  margin from the teacher's BN before ReLU, see bn_margin(gamma, beta);
- same t', same mask (written there as (s > t') | (t' > 0));
- loss = sum of (s - t')^2 * mask, / N / 1000 (the training script's loss_distill.sum() / batch_size
  / 1000). The original's per-layer weight 1 / 2^(L - i - 1) is left to the caller.

Deliberate difference: the seed's get_margin builds its mask with `.float()`, so for float64 inputs the
count + 1e-6 is rounded in float32 (up to ~1e-7 relative in the margin); here the count is taken in the
input's dtype so that float64 is float64 throughout. Float32 inputs give the seed's values.
"""
import math

import torch
import torch.nn as nn

VARIANTS = ("seed", "original")


def batch_margin(t, eps=1e-6):
    """The seed's get_margin: per-channel sum of t's negative values / (their count + eps), (1, C, 1, 1), detached."""
    t = t.detach()
    neg = (t < 0.0).to(t.dtype)
    total = (t * neg).sum(dim=(0, 2, 3), keepdim=True)
    count = neg.sum(dim=(0, 2, 3), keepdim=True)
    # count == 0: the seed's 0 / (0 + eps) = 0; kept 0 (not NaN) also when eps == 0.
    return torch.where(count > 0, total / (count + eps), torch.zeros_like(total))


def bn_margin(gamma, beta):
    """The original paper's margin from the teacher's BN (weight gamma, bias beta), per channel, float64.

    With s = |gamma|, m = beta: the expectation of the BN output given that it is negative,
    m - s * phi(m/s) / Phi(-m/s), when Phi(-m/s) > 1e-3, else -3 s (phi, Phi: standard normal pdf, cdf),
    as clovaai's get_margin_from_BN. s == 0 (which the original cannot handle: division by zero) gives the
    limit: m if m < 0 (the BN output is the constant m), else -3 s = 0.
    """
    gamma = torch.as_tensor(gamma).detach().to(torch.float64)
    beta = torch.as_tensor(beta).detach().to(torch.float64)
    s, m = gamma.abs(), beta
    safe_s = torch.where(s > 0, s, torch.ones_like(s))
    z = m / safe_s
    cdf = 0.5 * torch.erfc(z / math.sqrt(2.0))  # Phi(-z), accurate in the tail
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    safe_cdf = torch.where(cdf > 1e-3, cdf, torch.ones_like(cdf))
    margin = torch.where(cdf > 1e-3, m - s * pdf / safe_cdf, -3.0 * s)
    degenerate = torch.where(m < 0, m, -3.0 * s)
    return torch.where(s > 0, margin, degenerate)


def ofd_loss(s, t, margin=None, variant="seed", margin_eps=1e-6):
    """OFD partial L2 loss of the connector output s against the teacher pre-ReLU map t (N, C, H, W).

    variant="seed": margin from t's batch statistics (margin must be None), mean over all elements.
    variant="original": margin (C,) given, sum / N / 1000.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    if s.dim() != 4 or s.shape != t.shape:
        raise ValueError(f"s and t must be N x C x H x W of the same shape, got {tuple(s.shape)} and {tuple(t.shape)}")
    if variant == "seed":
        if margin is not None:
            raise ValueError("variant='seed' computes the margin from t; pass margin only with variant='original'")
        margin = batch_margin(t, margin_eps)
    else:
        if margin is None:
            raise ValueError("variant='original' needs the per-channel margin (see bn_margin)")
        margin = torch.as_tensor(margin, dtype=t.dtype, device=t.device).detach()
        if margin.dim() == 1:
            margin = margin.view(1, -1, 1, 1)
    t = torch.max(t, margin)
    mask = 1.0 - ((s <= t) & (t <= 0.0)).to(s.dtype)
    sq = (s - t) ** 2 * mask
    if variant == "seed":
        return torch.mean(sq)
    return sq.sum() / s.shape[0] / 1000


class OFD(nn.Module):
    """A Comprehensive Overhaul of Feature Distillation (the seed's module: connector + partial L2).

    forward(fm_s, fm_t): fm_s the student's map (in_channels), fm_t the teacher's pre-ReLU map
    (out_channels); the connector is a 1x1 conv (no bias, kaiming_normal fan_out) + BatchNorm2d
    (weight 1, bias 0). variant / margin select ofd_loss's variant (default: the seed's).
    """

    def __init__(self, in_channels, out_channels, variant="seed", margin=None):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
        self.connector = nn.Sequential(*[
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(out_channels),
        ])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if variant == "original" and margin is None:
            raise ValueError("variant='original' needs the per-channel margin (see bn_margin)")
        self.variant = variant
        if margin is not None:
            margin = torch.as_tensor(margin).detach().clone()
        self.register_buffer("margin", margin)

    def forward(self, fm_s, fm_t):
        fm_s = self.connector(fm_s)
        return ofd_loss(fm_s, fm_t, self.margin, self.variant)

    def get_margin(self, fm, eps=1e-6):
        """The seed's get_margin (per-channel batch margin, shape 1 x C x 1 x 1)."""
        return batch_margin(fm, eps)
