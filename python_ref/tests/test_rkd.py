import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdfuse_ref.rkd import RKDLoss, pdist, rkd_angle_loss, rkd_distance_loss, rkd_loss


class SeedRKDLoss(nn.Module):
    """The seed's RKDLoss verbatim."""
    def __init__(self, w_d=25, w_a=50):
        super(SeedRKDLoss, self).__init__()
        self.w_d = w_d
        self.w_a = w_a

    def forward(self, f_s, f_t):
        student = f_s.view(f_s.shape[0], -1)
        teacher = f_t.view(f_t.shape[0], -1)
        # RKD distance loss
        with torch.no_grad():
            t_d = self.pdist(teacher, squared=False)
            mean_td = t_d[t_d > 0].mean()
            t_d = t_d / mean_td
        d = self.pdist(student, squared=False)
        mean_d = d[d > 0].mean()
        d = d / mean_d
        loss_d = F.smooth_l1_loss(d, t_d)
        # RKD Angle loss
        with torch.no_grad():
            td = (teacher.unsqueeze(0) - teacher.unsqueeze(1))
            norm_td = F.normalize(td, p=2, dim=2)
            t_angle = torch.bmm(norm_td, norm_td.transpose(1, 2)).view(-1)
        sd = (student.unsqueeze(0) - student.unsqueeze(1))
        norm_sd = F.normalize(sd, p=2, dim=2)
        s_angle = torch.bmm(norm_sd, norm_sd.transpose(1, 2)).view(-1)
        loss_a = F.smooth_l1_loss(s_angle, t_angle)
        loss = self.w_d * loss_d + self.w_a * loss_a
        return loss

    @staticmethod
    def pdist(e, squared=False, eps=1e-12):
        e_square = e.pow(2).sum(dim=1)
        prod = e @ e.t()
        res = (e_square.unsqueeze(1) + e_square.unsqueeze(0) - 2 * prod).clamp(min=eps)
        if not squared:
            res = res.sqrt()
        res = res.clone()
        res[range(len(e)), range(len(e))] = 0
        return res


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float64)


@pytest.mark.parametrize("s_shape,t_shape,w", [
    ((2, 3), (2, 5), (25, 50)), ((3, 7), (3, 4), (25, 50)), ((5, 2, 3, 1), (5, 9), (1, 2)), ((17, 5), (17, 13), (25, 50)),
])
def test_matches_seed_code(s_shape, t_shape, w):
    f_s, f_t = rand(*s_shape), rand(*t_shape)
    seed = SeedRKDLoss(*w)(f_s, f_t)
    assert torch.allclose(rkd_loss(f_s, f_t, *w), seed, rtol=1e-12, atol=1e-13)
    assert torch.allclose(RKDLoss(*w)(f_s, f_t), seed, rtol=1e-12, atol=1e-13)


def test_student_gradient_matches_seed():
    f_s, f_t = rand(6, 5), rand(6, 3)
    a, b = f_s.clone().requires_grad_(), f_s.clone().requires_grad_()
    rkd_loss(a, f_t).backward()
    SeedRKDLoss()(b, f_t).backward()
    assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-12)


def test_pdist_matches_seed():
    e = rand(5, 3)
    assert torch.equal(pdist(e), SeedRKDLoss.pdist(e))
    assert torch.equal(pdist(e, squared=True), SeedRKDLoss.pdist(e, squared=True))
    assert RKDLoss.pdist is pdist


def test_gradcheck():
    f_s = rand(4, 3).requires_grad_()
    f_t = rand(4, 5)
    assert torch.autograd.gradcheck(lambda a: rkd_loss(a, f_t), (f_s,))
    assert torch.autograd.gradcheck(lambda a: rkd_distance_loss(a, f_t), (f_s,))
    assert torch.autograd.gradcheck(lambda a: rkd_angle_loss(a, f_t), (f_s,))
    f_s2 = rand(2, 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: rkd_loss(a, rand(2, 2)), (f_s2,))


def test_student_normaliser_not_detached():
    # Both terms are invariant to scaling f_s, so with the mean NOT detached the gradient is orthogonal
    # to f_s (zero radial derivative). A detached mean would break this for the distance term.
    f_s = rand(5, 4).requires_grad_()
    f_t = rand(5, 6)
    rkd_distance_loss(f_s, f_t).backward()
    assert f_s.grad.abs().max() > 1e-3
    assert abs((f_s.grad * f_s).sum().item()) < 1e-12


def test_teacher_gets_no_gradient():
    f_s, f_t = rand(4, 3).requires_grad_(), rand(4, 3).requires_grad_()
    rkd_loss(f_s, f_t).backward()
    assert f_t.grad is None


def test_n1_seed_is_nan_and_empty_mean_zero_is_zero():
    f_s, f_t = rand(1, 4).requires_grad_(), rand(1, 6)
    # The seed: d = [[0]] (diagonal zeroed), d[d > 0] is empty, its mean is NaN -> L_d = NaN; L_a = 0.
    assert math.isnan(SeedRKDLoss()(f_s, f_t).item())
    out = rkd_loss(f_s, f_t)
    assert math.isnan(out.item())
    assert math.isnan(rkd_distance_loss(f_s, f_t).item())
    assert rkd_angle_loss(f_s, f_t).item() == 0.0
    out.backward()  # the gradient itself is 0 (the only entry is the cut diagonal), not NaN
    assert torch.equal(f_s.grad, torch.zeros_like(f_s))
    # Kernel-friendly definition: the distance term is 0 when there is no positive distance.
    zero = rkd_loss(f_s, f_t, empty_mean="zero")
    assert zero.item() == 0.0
    assert RKDLoss(empty_mean="zero")(f_s, f_t).item() == 0.0
    with pytest.raises(ValueError):
        rkd_loss(f_s, f_t, empty_mean="skip")


def test_identical_rows_look_equidistant():
    # Identical rows: the squared distances are exactly 0, clamped to 1e-12, so every off-diagonal
    # distance is 1e-6 > 0 and the mean is over N(N-1) entries: no empty set, no NaN (N >= 2).
    e = torch.tensor([[1.0, 2.0, 3.0]] * 3, dtype=torch.float64)
    d = pdist(e)
    assert torch.equal(d, 1e-6 * (1 - torch.eye(3, dtype=torch.float64)))
    # Teacher: an equilateral triangle (basis vectors, all distances sqrt 2). Normalised distances are 1
    # off the diagonal for both, so L_d = 0: the collapsed student matches the equilateral teacher.
    f_t = torch.eye(3, dtype=torch.float64)
    assert rkd_distance_loss(e, f_t).item() == pytest.approx(0.0, abs=1e-15)
    # Angles: student differences are zero vectors, normalised to 0 -> all 27 student angles are 0.
    # Teacher: <u_ij, u_ij> = 1 for the 6 (i, j != i, k = j); <u_ij, u_ik> = 1/2 for the 6 (i, j != k, both != i);
    # 0 where j = i or k = i. smooth_l1 (beta 1): 6 * 0.5 + 6 * 0.125 = 3.75, mean over 27.
    assert rkd_angle_loss(e, f_t).item() == pytest.approx(3.75 / 27, abs=1e-15)
    assert rkd_loss(e, f_t).item() == pytest.approx(50 * 3.75 / 27, abs=1e-13)
    assert SeedRKDLoss()(e, f_t).item() == pytest.approx(50 * 3.75 / 27, abs=1e-13)
    # Identical teacher rows: the teacher also looks equilateral; no NaN either way.
    assert torch.isfinite(rkd_loss(rand(3, 2), e))


def test_hand_checked_n2():
    # N = 2: the normalised distance matrices are both [[0, 1], [1, 0]] -> L_d = 0.
    # Angles (8 entries): u_01 = -u_10 = unit vector, angle_ijk = 1 for (0,1,1) and (1,0,0), 0 otherwise,
    # for any two distinct points: L_a = 0 too.
    assert rkd_loss(rand(2, 3), rand(2, 5)).item() == pytest.approx(0.0, abs=1e-14)


def test_degenerate_grad_zero_cuts_the_1e12_gradient_of_duplicate_rows():
    # Rows 1 and 4 equal: the seed's angle gradient divides by F.normalize's eps (order 1e12);
    # degenerate_grad="zero" holds the zero difference at 0 (finite), forward values unchanged.
    f_s, f_t = rand(5, 3), rand(5, 4)
    f_s[4] = f_s[1]
    a, b = f_s.clone().requires_grad_(), f_s.clone().requires_grad_()
    seed, cut = rkd_loss(a, f_t), rkd_loss(b, f_t, degenerate_grad="zero")
    assert seed.item() == cut.item()
    seed.backward()
    cut.backward()
    assert a.grad.abs().max() > 1e9
    assert b.grad.abs().max() < 1e3
    # Without degenerate differences the two are the same function.
    c, d = rand(4, 3).requires_grad_(), None
    d = c.detach().clone().requires_grad_()
    rkd_loss(c, f_t[:4]).backward()
    rkd_loss(d, f_t[:4], degenerate_grad="zero").backward()
    assert torch.allclose(c.grad, d.grad, rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(lambda x: rkd_loss(x, f_t[:4], degenerate_grad="zero"), (d,))
    with pytest.raises(ValueError):
        rkd_loss(f_s, f_t, degenerate_grad="nan")
