"""PKT: Probabilistic Knowledge Transfer (Passalis & Tefas, ECCV 2018), as RepDistiller's PKT.

Seed (`PKT.cosine_similarity_loss`, eps = 1e-7), for student f_s and teacher f_t (N x D_s, N x D_t):

    x = x / (sqrt(sum_d x^2) + eps); entries that are NaN set to 0       (per row)
    S = x x^T; S = (S + 1) / 2; S = S / S.sum(1, keepdim=True)        (rows sum to 1)
    loss = mean_ij t_ij * log((t_ij + eps) / (s_ij + eps))             (mean over the N^2 entries)

Quirks kept (pinned in tests/test_pkt.py):
- a zero row is NOT a NaN case: 0 / (0 + eps) = 0, so the row becomes the zero vector, its
  similarities are all (0 + 1) / 2 = 1/2 and its probability row is uniform 1/N;
- NaN -> 0 fires only for non-finite input: a row containing NaN becomes all-NaN (its norm is NaN)
  and then all 0; a row containing +-inf has norm inf, inf / inf = NaN -> 0 and finite / inf = 0, so
  the row becomes all 0; a row whose sum of squares overflows (e.g. |x| > ~1.8e19 in float32) has
  norm inf and becomes all 0 as well (no NaN involved). All three behave like a zero row.
- gradient: d sqrt(s)/ds at s = 0 is inf, times d(sum x^2)/dx = 2x = 0 gives NaN, so an exact zero
  student row gets NaN gradients (that row only; the other rows stay finite) in the seed and here;
  a kernel that wants finite gradients must define its own value there (the natural one is 0).
- the KL-like sum is a mean over N^2 entries (not a sum, not per row), and uses (t + eps) / (s + eps).
- the features are used as given (rank 2); flatten before calling, as RepDistiller does.
"""
import torch
import torch.nn as nn


def pkt_normalize(x, eps=1e-7):
    """x / (||x||_2 + eps) per row, with NaN entries replaced by 0 (the seed's code)."""
    norm = torch.sqrt(torch.sum(x ** 2, dim=1, keepdim=True))
    x = x / (norm + eps)
    # the seed's `x[x != x] = 0`, out of place (same values, same gradient: 0 at the replaced entries)
    return torch.where(x != x, torch.zeros_like(x), x)


def pkt_probabilities(x, eps=1e-7):
    """Row-stochastic matrix ((cos + 1) / 2) / row sums, from features x (N x D)."""
    x = pkt_normalize(x, eps)
    sim = torch.mm(x, x.transpose(0, 1))
    sim = (sim + 1.0) / 2.0
    return sim / torch.sum(sim, dim=1, keepdim=True)


def pkt_loss(f_s, f_t, eps=1e-7):
    """PKT loss of student features f_s against teacher features f_t (N x D each), 0-dim tensor."""
    if f_s.shape[0] != f_t.shape[0]:
        raise ValueError(f"batch sizes differ: {f_s.shape[0]} vs {f_t.shape[0]}")
    s = pkt_probabilities(f_s, eps)
    t = pkt_probabilities(f_t, eps)
    return torch.mean(t * torch.log((t + eps) / (s + eps)))


class PKT(nn.Module):
    """Probabilistic Knowledge Transfer for deep representation learning (the seed's module)."""

    def __init__(self):
        super().__init__()

    def forward(self, f_s, f_t):
        return self.cosine_similarity_loss(f_s, f_t)

    @staticmethod
    def cosine_similarity_loss(output_net, target_net, eps=0.0000001):
        return pkt_loss(output_net, target_net, eps)
