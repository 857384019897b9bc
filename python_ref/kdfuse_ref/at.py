"""AT: Paying More Attention to Attention (Zagoruyko & Komodakis), as RepDistiller's Attention.

Seed, for one layer pair f_s (N, C_s, H_s, W_s) and f_t (N, C_t, H_t, W_t) (C_s != C_t is fine):
- the map with the larger H is adaptive-avg-pooled to the other's H. Quirk: the seed pools to the
  SQUARE size (H, H) (`F.adaptive_avg_pool2d(f_s, (t_H, t_H))`), whatever W is; the comparison is made
  only on H, so equal H with different W is not pooled. Reproduced exactly.
- a(f) = F.normalize(f.pow(p).mean(1).view(N, -1)): channel mean of f^p, flattened over H*W, divided by
  max(||.||_2, 1e-12) per sample (a zero map stays 0).
- loss = (a(f_s) - a(f_t)).pow(2).mean(): mean over N*H*W (not a sum over H*W).

The module's forward takes lists of layers and returns the list of per-layer losses (the caller sums
them with its own weight, beta = 1000 in RepDistiller). zip() truncates to the shorter list, as the seed.

Option pool="hw" (kdfuse's generalisation; the default pool="seed" is the seed's rule): the larger map is
pooled to the smaller map's (H, W), not (H, H). A map is "larger" when it is at least as large in both H
and W; a pair where one map is larger in H but smaller in W is rejected (ValueError), and equal H with
different W pools along W. Identical to the seed whenever the seed's result is defined and the smaller
map is square (every RepDistiller network); needed for non-square maps such as 3x5x7x9 vs 3x6x14x18.
"""
import torch.nn as nn
import torch.nn.functional as F


def pool_to_smaller(f_s, f_t, pool="seed"):
    """The seed's size matching: the map with the larger H is adaptive-avg-pooled to (H_min, H_min).

    Square on purpose: the seed passes (t_H, t_H) / (s_H, s_H), not (H, W). pool="hw": the larger map
    (in both H and W) is pooled to the smaller map's (H, W); mixed orders raise ValueError.
    """
    if pool == "hw":
        (s_H, s_W), (t_H, t_W) = f_s.shape[2:], f_t.shape[2:]
        if (s_H, s_W) == (t_H, t_W):
            return f_s, f_t
        if s_H >= t_H and s_W >= t_W:
            return F.adaptive_avg_pool2d(f_s, (t_H, t_W)), f_t
        if s_H <= t_H and s_W <= t_W:
            return f_s, F.adaptive_avg_pool2d(f_t, (s_H, s_W))
        raise ValueError(f"pool='hw': one map is larger in H and the other in W: {tuple(f_s.shape)} vs {tuple(f_t.shape)}")
    if pool != "seed":
        raise ValueError(f"pool must be 'seed' or 'hw', got {pool!r}")
    s_H, t_H = f_s.shape[2], f_t.shape[2]
    if s_H > t_H:
        f_s = F.adaptive_avg_pool2d(f_s, (t_H, t_H))
    elif s_H < t_H:
        f_t = F.adaptive_avg_pool2d(f_t, (s_H, s_H))
    return f_s, f_t


def attention_map(f, p=2):
    """a(f) = normalize(mean_C f^p) flattened to N x (H*W), F.normalize's eps 1e-12."""
    return F.normalize(f.pow(p).mean(1).view(f.size(0), -1))


def at_loss(f_s, f_t, p=2, pool="seed"):
    """AT loss of one layer pair: mean over N*HW of (a(f_s) - a(f_t))^2 after pooling to the smaller H
    (pool="hw": to the smaller map's (H, W))."""
    f_s, f_t = pool_to_smaller(f_s, f_t, pool)
    a_s, a_t = attention_map(f_s, p), attention_map(f_t, p)
    if a_s.shape != a_t.shape:
        raise ValueError(f"attention maps differ in shape after pooling: {tuple(a_s.shape)} vs {tuple(a_t.shape)}")
    return (a_s - a_t).pow(2).mean()


class Attention(nn.Module):
    """Paying More Attention to Attention (the seed's module): forward(g_s, g_t) -> list of losses."""

    def __init__(self, p=2, pool="seed"):
        super().__init__()
        self.p = p
        self.pool = pool

    def forward(self, g_s, g_t):
        return [at_loss(f_s, f_t, self.p, self.pool) for f_s, f_t in zip(g_s, g_t)]
