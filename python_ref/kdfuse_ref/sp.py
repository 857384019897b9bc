"""SP: Similarity-Preserving Knowledge Distillation (Tung & Mori, ICCV 2019), as RepDistiller's Similarity.

Seed, per (f_s, f_t) pair of one layer (N = batch size, features flattened to N x D_s and N x D_t):

    G = f f^T                      (N x N)
    G = F.normalize(G)             rows of G (dim=1, p=2, eps=1e-12), NOT the features and NOT ||G||_F
    loss = sum_ij (G_t - G_s)_ij^2 / N^2

Quirks kept:
- the normalisation is the row L2 norm of the Gram matrix (the seed's commented-out `G / G.norm(2)` is
  the Frobenius version, which is CC's seed code, not SP's); a zero feature row gives a zero Gram row,
  which F.normalize leaves at 0 (max(||row||, 1e-12) in the denominator), so no NaN;
- the seed returns `(G_diff * G_diff).view(-1, 1).sum(0) / (bsz * bsz)`, a tensor of shape (1,).
  `sp_loss` returns the same value as a 0-dim tensor; the module `Similarity` returns the seed's
  shape (a list of (1,) tensors, one per layer pair).
- f_s and f_t are flattened with reshape (the seed's `view` fails on non-contiguous inputs; the values
  are the same whenever `view` works). D_s and D_t may differ; the batch sizes must match.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def sp_gram(f):
    """Row-normalised Gram matrix F.normalize(f f^T) of features f (N x ...), N x N."""
    f = f.reshape(f.shape[0], -1)
    return F.normalize(torch.mm(f, f.t()))


def sp_loss(f_s, f_t):
    """SP loss of one layer pair: sum((G_t - G_s)^2) / N^2 as a 0-dim tensor (seed value, shape ())."""
    bsz = f_s.shape[0]
    if f_t.shape[0] != bsz:
        raise ValueError(f"batch sizes differ: {bsz} vs {f_t.shape[0]}")
    g_diff = sp_gram(f_t) - sp_gram(f_s)
    return (g_diff * g_diff).sum() / (bsz * bsz)


class Similarity(nn.Module):
    """Similarity-Preserving Knowledge Distillation, ICCV2019 (the seed's module).

    forward(g_s, g_t) takes two lists of feature maps and returns the list of per-pair losses, each of
    shape (1,) as the seed's `.view(-1, 1).sum(0)`.
    """

    def __init__(self):
        super().__init__()

    def forward(self, g_s, g_t):
        return [self.similarity_loss(f_s, f_t) for f_s, f_t in zip(g_s, g_t)]

    def similarity_loss(self, f_s, f_t):
        return sp_loss(f_s, f_t).view(1)
