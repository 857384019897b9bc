"""FitNet: Hints for Thin Deep Nets (Romero et al.), as RepDistiller's HintLoss.

Seed: loss = nn.MSELoss()(f_s, f_t), i.e. the mean over all N*C*H*W elements of (f_s - f_t)^2.
f_s is the output of the student's regressor (the regressor itself is not part of the loss), f_t the
teacher's hint; both must have the same shape.

Deliberate difference: nn.MSELoss broadcasts mismatched shapes (with a warning); fitnet_loss raises a
ValueError instead, since a broadcast hint is always a wiring error.
"""
import torch.nn as nn
import torch.nn.functional as F


def fitnet_loss(f_s, f_t):
    """FitNet hint loss: mean over all elements of (f_s - f_t)^2; f_s and f_t of the same shape."""
    if f_s.shape != f_t.shape:
        raise ValueError(f"f_s and f_t must have the same shape, got {tuple(f_s.shape)} and {tuple(f_t.shape)}")
    return F.mse_loss(f_s, f_t, reduction="mean")


class HintLoss(nn.Module):
    """Fitnets: hints for thin deep nets, ICLR 2015 (the seed's module)."""

    def __init__(self):
        super().__init__()

    def forward(self, f_s, f_t):
        return fitnet_loss(f_s, f_t)
