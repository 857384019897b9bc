"""FT: Paraphrasing Complex Network: Network Compression via Factor Transfer (Kim et al.), as
RepDistiller's FactorTransfer.

Seed, for factors f_s, f_t (N, C, H, W) (in RepDistiller: the student translator's and the teacher
paraphraser's outputs; the channel counts may differ):
- the map with the larger H is adaptive-avg-pooled to (H_min, H_min), exactly as AT (square, compared
  on H only; see at.pool_to_smaller);
- factor(f) = F.normalize(f.pow(p1).mean(1).view(N, -1)) (eps 1e-12);
- p2 == 1: loss = (factor_s - factor_t).abs().mean() (L1; autograd's subgradient of abs at 0 is 0, so
  equal factors give a zero gradient);
  otherwise: loss = (factor_s - factor_t).pow(p2).mean() WITHOUT abs (quirk: an odd p2 such as 3 gives
  signed terms that can cancel or make the loss negative; a non-integer p2 gives NaN for negative
  differences). Reproduced exactly.

Unlike Attention, the seed's FactorTransfer.forward takes single tensors and returns one loss.
Option pool="hw": the larger map is pooled to the smaller map's (H, W), as at.pool_to_smaller.
"""
import torch.nn as nn
import torch.nn.functional as F

from .at import pool_to_smaller


def factor(f, p1=2):
    """factor(f) = normalize(mean_C f^p1) flattened to N x (H*W), F.normalize's eps 1e-12."""
    return F.normalize(f.pow(p1).mean(1).view(f.size(0), -1))


def ft_loss(f_s, f_t, p1=2, p2=1, pool="seed"):
    """FT loss: mean |factor_s - factor_t| (p2 == 1) or mean (factor_s - factor_t)^p2 (no abs)."""
    f_s, f_t = pool_to_smaller(f_s, f_t, pool)
    a_s, a_t = factor(f_s, p1), factor(f_t, p1)
    if a_s.shape != a_t.shape:
        raise ValueError(f"factors differ in shape after pooling: {tuple(a_s.shape)} vs {tuple(a_t.shape)}")
    if p2 == 1:
        return (a_s - a_t).abs().mean()
    return (a_s - a_t).pow(p2).mean()


class FactorTransfer(nn.Module):
    """Paraphrasing Complex Network via Factor Transfer, NeurIPS 2018 (the seed's module)."""

    def __init__(self, p1=2, p2=1, pool="seed"):
        super().__init__()
        self.p1 = p1
        self.p2 = p2
        self.pool = pool

    def forward(self, f_s, f_t):
        return ft_loss(f_s, f_t, self.p1, self.p2, self.pool)
