"""NST: Neuron Selectivity Transfer (Huang & Wang, 2017), as RepDistiller's NSTLoss.

Seed, per layer pair f_s (N x C_s x H x W), f_t (N x C_t x H' x W'):

- the map with the larger H is adaptive-avg-pooled to (h, h), h the smaller H (square output, as AT);
- f viewed as N x C x HW and L2-normalised over HW (F.normalize(dim=2), eps 1e-12: a zero channel
  map stays 0);
- poly kernel k(a, b)[n, j, i] = (<a[n, i], b[n, j]>)^2, an N x C_b x C_a tensor (the seed's
  poly_kernel broadcasts a.unsqueeze(1) * b.unsqueeze(2) and sums the last dim; here the same value as
  bmm(b, a^T)^2, without the N x C_b x C_a x HW intermediate);
- loss = mean k(t, t) + mean k(s, s) - 2 mean k(s, t), each mean over its own number of entries
  (N C_t^2, N C_s^2, N C_s C_t). The k(t, t) term is detached (`.detach()` in the seed); k(s, t) is
  not, so a teacher tensor that requires grad would get gradients from it, as in the seed.

`full_loss=False` is the seed's other branch (drops the constant k(t, t) term). The seed's module
returns a list of 0-dim losses, one per pair; `nst_loss` returns one 0-dim loss for one pair.

Quirks kept: pooling decided by H only, to a square (h, h) output; with equal H no pooling happens and
the W must agree (else the seed's broadcast fails; here a ValueError).

Option pool="hw" (kdfuse's generalisation, as AT's `pool_to_smaller`; the default pool="seed" is the seed's
rule): the larger map (at least as large in both H and W) is pooled to the smaller map's (H, W); a pair where
one map is larger in H and the other in W raises ValueError. Identical to the seed whenever the seed's result
is defined and the smaller map is square.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def _pool_pair(f_s, f_t, pool="seed"):
    if pool != "seed":
        from .at import pool_to_smaller
        return pool_to_smaller(f_s, f_t, pool)
    s_H, t_H = f_s.shape[2], f_t.shape[2]
    if s_H > t_H:
        f_s = F.adaptive_avg_pool2d(f_s, (t_H, t_H))
    elif s_H < t_H:
        f_t = F.adaptive_avg_pool2d(f_t, (s_H, s_H))
    return f_s, f_t


def poly_kernel(a, b):
    """The seed's poly_kernel on N x C x HW tensors: res[n, j, i] = (a[n, i] . b[n, j])^2 (N x C_b x C_a)."""
    return torch.bmm(b, a.transpose(1, 2)).pow(2)


def nst_loss(f_s, f_t, full_loss=True, pool="seed"):
    """NST loss of one layer pair (0-dim tensor). pool: "seed" (to (h, h), h the smaller H) or "hw"."""
    f_s, f_t = _pool_pair(f_s, f_t, pool)
    f_s = F.normalize(f_s.reshape(f_s.shape[0], f_s.shape[1], -1), dim=2)
    f_t = F.normalize(f_t.reshape(f_t.shape[0], f_t.shape[1], -1), dim=2)
    if f_s.shape[2] != f_t.shape[2]:
        raise ValueError(f"spatial sizes differ after pooling: {f_s.shape[2]} vs {f_t.shape[2]}")
    if full_loss:
        return (poly_kernel(f_t, f_t).mean().detach() + poly_kernel(f_s, f_s).mean()
                - 2 * poly_kernel(f_s, f_t).mean())
    return poly_kernel(f_s, f_s).mean() - 2 * poly_kernel(f_s, f_t).mean()


class NSTLoss(nn.Module):
    """like what you like: knowledge distill via neuron selectivity transfer (the seed's module)."""

    def __init__(self, full_loss=True):
        super().__init__()
        self.full_loss = full_loss

    def forward(self, g_s, g_t):
        return [self.nst_loss(f_s, f_t) for f_s, f_t in zip(g_s, g_t)]

    def nst_loss(self, f_s, f_t):
        return nst_loss(f_s, f_t, self.full_loss)

    @staticmethod
    def poly_kernel(a, b):
        return poly_kernel(a, b)
