"""KD: Distilling the Knowledge in a Neural Network (Hinton et al.), as RepDistiller's DistillKL.

Seed: loss = kl_div(log_softmax(y_s / T), softmax(y_t / T), size_average=False) * T^2 / N, i.e.
T^2 / N * sum_ij p_t (log p_t - log q_s). Entries with p_t == 0 contribute 0 (kl_div's convention).

Extras of the kdfuse API, all off by default:
- weight: per-row weights (N); the row's term is multiplied by weight[i] (0 masks a padding row). The
  normaliser stays N (batchmean over all rows, as the seed).
- reduction: "batchmean" (seed) or "none" (per-row losses T^2 * weight_i * KL_i, no division by N).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def kd_loss(y_s, y_t, T=4.0, weight=None, reduction="batchmean"):
    """KD loss of student logits y_s against teacher logits y_t, both N x C."""
    if reduction not in ("batchmean", "none"):
        raise ValueError(f"reduction must be 'batchmean' or 'none', not {reduction!r}")
    log_q = F.log_softmax(y_s / T, dim=1)
    log_p = F.log_softmax(y_t / T, dim=1)
    p = log_p.exp()
    # xlogy-style: p * (log p - log q) with 0 where p == 0.
    per_row = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(dim=1) * (T * T)
    if weight is not None:
        per_row = per_row * weight
    if reduction == "none":
        return per_row
    return per_row.sum() / y_s.shape[0]


class DistillKL(nn.Module):
    """Distilling the Knowledge in a Neural Network (the seed's module)."""

    def __init__(self, T):
        super().__init__()
        self.T = T

    def forward(self, y_s, y_t):
        return kd_loss(y_s, y_t, self.T)
