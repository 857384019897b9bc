"""AB: Knowledge Transfer via Distillation of Activation Boundaries Formed by Hidden Neurons (Heo et
al.), as RepDistiller's ABLoss.

Inputs of one layer: source = the student's pre-ReLU map after the connector, target = the teacher's
pre-ReLU map, same shape (N, C, H, W) (any shape works: the loss is elementwise then summed).

Seed (criterion_alternative_l2 then ABLoss.forward):
- L = sum over all elements of
      (s + m)^2 * [(s > -m) & (t <= 0)]    teacher inactive (t <= 0, t == 0 counts as inactive):
                                          the student must be <= -m, strictly above -m is penalised
    + (s - m)^2 * [(s <= m) & (t > 0)]     teacher active: the student must be > m, s == m costs 0
  (the seed wraps it in torch.abs(), a no-op on a sum of squares times 0/1 masks, gradient included).
- per layer i of feat_num: loss_i = w_i * L_i, then / bsz, then / 1000 * 3, in that order
  (`losses = [w * l ...]; losses = [l / bsz ...]; losses = [l / 1000 * 3 ...]`), with
  w_i = 2^(i - feat_num + 1) (the last layer has weight 1, each earlier layer half the next) and bsz
  the batch size of the FIRST layer (g_s[0].shape[0]). The forward returns the list of per-layer
  losses; zip() truncates to the shortest list, so with fewer layers than feat_num the first weights
  are used.

ab_loss(source, target, margin, scale=True) is one layer with weight 1: L / N / 1000 * 3 (N =
source.shape[0]); scale=False returns the raw sum L. ABLoss multiplies by w_i outside; w_i is a power
of two, so w * (L / N / 1000 * 3) is bit-identical to the seed's (w * L) / N / 1000 * 3.
"""
import torch.nn as nn


def ab_alternative_l2(source, target, margin=1.0):
    """The seed's criterion_alternative_l2: the raw (unscaled) sum L for one layer."""
    if source.shape != target.shape:
        raise ValueError(f"source and target must have the same shape, got {tuple(source.shape)} and {tuple(target.shape)}")
    inactive = ((source > -margin) & (target <= 0)).to(source.dtype)
    active = ((source <= margin) & (target > 0)).to(source.dtype)
    loss = (source + margin) ** 2 * inactive + (source - margin) ** 2 * active
    return loss.sum()


def ab_loss(source, target, margin=1.0, scale=True):
    """AB loss of one layer (weight 1): L / N / 1000 * 3, or the raw sum L when scale=False."""
    loss = ab_alternative_l2(source, target, margin)
    if not scale:
        return loss
    return loss / source.shape[0] / 1000 * 3


class ABLoss(nn.Module):
    """Activation Boundaries (the seed's module): forward(g_s, g_t) -> list of weighted per-layer losses."""

    def __init__(self, feat_num, margin=1.0):
        super().__init__()
        self.w = [2 ** (i - feat_num + 1) for i in range(feat_num)]
        self.margin = margin

    def forward(self, g_s, g_t):
        bsz = g_s[0].shape[0]
        losses = []
        for w, s, t in zip(self.w, g_s, g_t):
            # The seed divides by the first layer's batch size; ab_loss uses each layer's own, so
            # check they agree rather than silently differ.
            if s.shape[0] != bsz:
                raise ValueError(f"all layers must have batch size {bsz}, got {s.shape[0]}")
            losses.append(w * ab_loss(s, t, self.margin))
        return losses
