"""RKD: Relational Knowledge Distillation (Park et al., CVPR 2019), as RepDistiller's RKDLoss.

Seed (features flattened to N x D_s and N x D_t; L = w_d * L_d + w_a * L_a, w_d = 25, w_a = 50):

- pdist(e) = sqrt(clamp(|e_i|^2 + |e_j|^2 - 2 <e_i, e_j>, min=1e-12)), then the diagonal set to 0
  (squared=False is the only form the loss uses);
- distance: d = pdist / mean(pdist[pdist > 0]) for teacher (under no_grad) and student (the student's
  normaliser is NOT detached: gradients flow through the mean); L_d = smooth_l1(d_s, d_t) with beta 1,
  mean over the N^2 entries (diagonal included, both 0 there);
- angle: u_ij = F.normalize(e_j - e_i) (p=2, eps 1e-12: a zero difference stays the zero vector),
  angle_ijk = <u_ij, u_ik> (td = e.unsqueeze(0) - e.unsqueeze(1); bmm(norm_td, norm_td^T)),
  L_a = smooth_l1(angle_s, angle_t), beta 1, mean over the N^3 entries. Teacher under no_grad.

Quirks kept (and pinned in tests/test_rkd.py):
- the clamp makes every off-diagonal distance >= sqrt(1e-12) = 1e-6 > 0, so for finite inputs and
  N >= 2 the "entries > 0" are exactly the N(N-1) off-diagonal entries, even for identical rows: N >= 2
  identical rows sit at distance sqrt(max(r, 1e-12)) from each other, r the rounding residue of
  |a|^2 + |a|^2 - 2 <a, a> (exactly 1e-6 when r <= 1e-12, e.g. r = 0), and after the normalisation
  they look like an equilateral simplex (normalised distance 1 off the diagonal), not like a collapsed
  set; their difference vectors are exactly 0, so all their angles are 0.
- N = 1: the only entry is the zeroed diagonal, `d[d > 0]` is empty and its mean is NaN, so L_d and the
  total loss are NaN (L_a = 0). `empty_mean="zero"` (an extension, off by default) instead defines
  L_d = 0 whenever the student's or the teacher's set of positive distances is empty, which is the
  non-NaN result a kernel may choose; `empty_mean="nan"` (default) reproduces the seed.
- the clamp cuts the gradient of distances below 1e-6 (clamp's backward is 0 below min), and the
  diagonal assignment cuts the gradient through the diagonal.
- F.normalize of a zero difference (duplicate rows i, j) divides by eps = 1e-12, so the angles
  <u_ij, u_ik> give e_j the gradient h (e_k - e_i) / (1e-12 |e_k - e_i|), of order 1e12 (the forward value
  is 0). `degenerate_grad="zero"` (an extension, off by default) holds such u_ij at the constant 0 vector
  (no gradient through a difference of norm < eps), the finite choice a Gram-matrix kernel makes;
  `degenerate_grad="seed"` (default) reproduces the seed. Forward values are identical.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

EMPTY_MEAN = ("nan", "zero")
DEGENERATE_GRAD = ("seed", "zero")


def pdist(e, squared=False, eps=1e-12):
    """The seed's RKDLoss.pdist: pairwise (squared) distances, clamped at eps, diagonal 0."""
    e_square = e.pow(2).sum(dim=1)
    prod = e @ e.t()
    res = (e_square.unsqueeze(1) + e_square.unsqueeze(0) - 2 * prod).clamp(min=eps)
    if not squared:
        res = res.sqrt()
    res = res.clone()
    res[range(len(e)), range(len(e))] = 0
    return res


def _normalised_distance(e, empty_mean):
    d = pdist(e, squared=False)
    pos = d[d > 0]
    if pos.numel() == 0 and empty_mean == "zero":
        return d, False
    return d / pos.mean(), True


def rkd_angles(e, degenerate_grad="seed", eps=1e-12):
    """angle_ijk = <normalize(e_j - e_i), normalize(e_k - e_i)>, flattened to N^3 (the seed's order).
    degenerate_grad="zero": differences of norm < eps are the constant 0 (no gradient through them)."""
    if degenerate_grad not in DEGENERATE_GRAD:
        raise ValueError(f"degenerate_grad must be one of {DEGENERATE_GRAD}, not {degenerate_grad!r}")
    diff = e.unsqueeze(0) - e.unsqueeze(1)
    if degenerate_grad == "seed":
        norm = F.normalize(diff, p=2, dim=2, eps=eps)
    else:
        length = diff.norm(p=2, dim=2, keepdim=True)
        live = length >= eps
        norm = torch.where(live, diff / torch.where(live, length, torch.ones_like(length)), torch.zeros_like(diff))
    return torch.bmm(norm, norm.transpose(1, 2)).view(-1)


def rkd_distance_loss(f_s, f_t, empty_mean="nan"):
    """L_d: smooth_l1 (beta 1, mean over N^2) of the mean-normalised distance matrices."""
    if empty_mean not in EMPTY_MEAN:
        raise ValueError(f"empty_mean must be one of {EMPTY_MEAN}, not {empty_mean!r}")
    student = f_s.reshape(f_s.shape[0], -1)
    teacher = f_t.reshape(f_t.shape[0], -1)
    with torch.no_grad():
        t_d, t_ok = _normalised_distance(teacher, empty_mean)
    d, s_ok = _normalised_distance(student, empty_mean)
    if not (t_ok and s_ok):  # empty_mean == "zero" and some set of positive distances is empty
        return (d * 0).sum()
    return F.smooth_l1_loss(d, t_d)


def rkd_angle_loss(f_s, f_t, degenerate_grad="seed"):
    """L_a: smooth_l1 (beta 1, mean over N^3) of the angle tensors."""
    student = f_s.reshape(f_s.shape[0], -1)
    teacher = f_t.reshape(f_t.shape[0], -1)
    with torch.no_grad():
        t_angle = rkd_angles(teacher)
    s_angle = rkd_angles(student, degenerate_grad)
    return F.smooth_l1_loss(s_angle, t_angle)


def rkd_loss(f_s, f_t, w_d=25, w_a=50, empty_mean="nan", degenerate_grad="seed"):
    """RKD loss w_d * L_d + w_a * L_a of student features f_s against teacher features f_t (0-dim).

    The teacher terms are computed under no_grad (as the seed); f_s gets gradients.
    empty_mean: "nan" (seed: the mean over an empty set of positive distances, only possible for
    N = 1 with finite inputs, is NaN) or "zero" (the distance term is 0 in that case).
    degenerate_grad: "seed" (F.normalize's 1/eps gradient at zero differences) or "zero" (none).
    """
    if f_s.shape[0] != f_t.shape[0]:
        raise ValueError(f"batch sizes differ: {f_s.shape[0]} vs {f_t.shape[0]}")
    loss_d = rkd_distance_loss(f_s, f_t, empty_mean)
    loss_a = rkd_angle_loss(f_s, f_t, degenerate_grad)
    return w_d * loss_d + w_a * loss_a


class RKDLoss(nn.Module):
    """Relational Knowledge Disitllation, CVPR2019 (the seed's module)."""

    def __init__(self, w_d=25, w_a=50, empty_mean="nan"):
        super().__init__()
        if empty_mean not in EMPTY_MEAN:
            raise ValueError(f"empty_mean must be one of {EMPTY_MEAN}, not {empty_mean!r}")
        self.w_d = w_d
        self.w_a = w_a
        self.empty_mean = empty_mean

    def forward(self, f_s, f_t):
        return rkd_loss(f_s, f_t, self.w_d, self.w_a, self.empty_mean)

    pdist = staticmethod(pdist)
