"""FSP: Flow of Solution Procedure (Yim et al., CVPR 2017), as RepDistiller's FSP.

Seed: for each network, the list g = [f_0, f_1, ..., f_L] of feature maps gives L FSP matrices, one per
consecutive pair (bot, top) = (f_i, f_{i+1}), bot N x C1 x H x W, top N x C2 x H' x W':

- the map with the larger H is adaptive-avg-pooled to (h, h), h the smaller H (only H is compared);
- fsp[n, c2, c1] = mean_hw top[n, c2, hw] * bot[n, c1, hw], an N x C2 x C1 tensor
  (the seed broadcasts bot.unsqueeze(1) (N x 1 x C1 x HW) * top.unsqueeze(2) (N x C2 x 1 x HW) and takes
  mean(-1); here the same value as bmm(top, bot^T) / HW, without the N x C2 x C1 x HW intermediate);
- loss of pair i = mean over N*C2*C1 of (fsp_s - fsp_t)^2; the seed returns the list of the L losses.

Gradients: every student map gets gradients; a middle map is the top of one pair and the bottom of the
next, so its gradient is the sum of both pairs' contributions (autograd accumulates it).

Quirks kept:
- pooling is decided by H only and pools to a SQUARE (h, h) output: a non-square map (H x W, W != H)
  with the larger H is pooled to h x h; two maps with equal H are not pooled at all (then their W must
  agree: `fsp_matrix` raises ValueError when the pooled H*W differ, where the seed's broadcast raises a
  RuntimeError, or silently broadcasts in the degenerate case H*W == 1 for one of them).
- the seed's constructor raises ValueError('num of channels not equal (error in FSP)') when the student
  and teacher channel lists differ (and asserts the lists have equal length). `fsp_loss` performs the
  same check on the maps themselves and raises ValueError (the seed's forward would otherwise broadcast
  silently when one channel count is 1, or fail with a RuntimeError); unequal list lengths also raise
  ValueError in `fsp_loss` (the seed's forward would zip them silently).

Option pool="hw" (kdfuse's generalisation, as AT's `pool_to_smaller`; the default pool="seed" is the seed's
rule): the larger map of a pair (at least as large in both H and W) is pooled to the smaller map's (H, W); a
pair where one map is larger in H and the other in W raises ValueError. Identical to the seed whenever the
seed's result is defined and the smaller map is square.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def _pool_pair(bot, top, pool="seed"):
    if pool != "seed":
        from .at import pool_to_smaller
        return pool_to_smaller(bot, top, pool)
    b_H, t_H = bot.shape[2], top.shape[2]
    if b_H > t_H:
        bot = F.adaptive_avg_pool2d(bot, (t_H, t_H))
    elif b_H < t_H:
        top = F.adaptive_avg_pool2d(top, (b_H, b_H))
    return bot, top


def fsp_matrix(bot, top, pool="seed"):
    """FSP matrix of one pair: N x C2 x C1, fsp[n, c2, c1] = mean_hw top[n, c2] * bot[n, c1]."""
    bot, top = _pool_pair(bot, top, pool)
    bot = bot.reshape(bot.shape[0], bot.shape[1], -1)
    top = top.reshape(top.shape[0], top.shape[1], -1)
    if bot.shape[2] != top.shape[2]:
        raise ValueError(f"spatial sizes differ after pooling: {bot.shape[2]} vs {top.shape[2]}")
    return torch.bmm(top, bot.transpose(1, 2)) / bot.shape[2]


def compute_fsp(g, pool="seed"):
    """The seed's FSP.compute_fsp: the list of FSP matrices of consecutive maps of g."""
    return [fsp_matrix(g[i], g[i + 1], pool) for i in range(len(g) - 1)]


def _check_channels(s_c, t_c):
    if len(s_c) != len(t_c):
        raise ValueError(f"unequal length of feat list: {len(s_c)} vs {len(t_c)}")
    if np.any(np.asarray(s_c) != np.asarray(t_c)):
        raise ValueError("num of channels not equal (error in FSP)")


def fsp_loss(g_s, g_t, pool="seed"):
    """FSP losses of student maps g_s against teacher maps g_t (lists of N x C x H x W).

    Returns the list of len(g_s) - 1 losses (0-dim tensors), one per consecutive pair, as the seed.
    Raises ValueError when the lists differ in length or in channel counts.
    """
    _check_channels([f.shape[1] for f in g_s], [f.shape[1] for f in g_t])
    s_fsp = compute_fsp(g_s, pool)
    t_fsp = compute_fsp(g_t, pool)
    return [(s - t).pow(2).mean() for s, t in zip(s_fsp, t_fsp)]


class FSP(nn.Module):
    """A Gift from Knowledge Distillation: Fast Optimization, Network Minimization and Transfer Learning
    (the seed's module). s_shapes / t_shapes: the shapes (N, C, H, W) of the student / teacher maps."""

    def __init__(self, s_shapes, t_shapes):
        super().__init__()
        assert len(s_shapes) == len(t_shapes), 'unequal length of feat list'
        s_c = [s[1] for s in s_shapes]
        t_c = [t[1] for t in t_shapes]
        if np.any(np.asarray(s_c) != np.asarray(t_c)):
            raise ValueError('num of channels not equal (error in FSP)')

    def forward(self, g_s, g_t):
        return fsp_loss(g_s, g_t)

    @staticmethod
    def compute_loss(s, t):
        return (s - t).pow(2).mean()

    compute_fsp = staticmethod(compute_fsp)
