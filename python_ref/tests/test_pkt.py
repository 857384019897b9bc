import math

import pytest
import torch

from kdfuse_ref.pkt import PKT, pkt_loss, pkt_normalize, pkt_probabilities


def seed_cosine_similarity_loss(output_net, target_net, eps=0.0000001):
    """The seed's PKT.cosine_similarity_loss verbatim."""
    # Normalize each vector by its norm
    output_net_norm = torch.sqrt(torch.sum(output_net ** 2, dim=1, keepdim=True))
    output_net = output_net / (output_net_norm + eps)
    output_net[output_net != output_net] = 0
    target_net_norm = torch.sqrt(torch.sum(target_net ** 2, dim=1, keepdim=True))
    target_net = target_net / (target_net_norm + eps)
    target_net[target_net != target_net] = 0
    # Calculate the cosine similarity
    model_similarity = torch.mm(output_net, output_net.transpose(0, 1))
    target_similarity = torch.mm(target_net, target_net.transpose(0, 1))
    # Scale cosine similarity to 0..1
    model_similarity = (model_similarity + 1.0) / 2.0
    target_similarity = (target_similarity + 1.0) / 2.0
    # Transform them into probabilities
    model_similarity = model_similarity / torch.sum(model_similarity, dim=1, keepdim=True)
    target_similarity = target_similarity / torch.sum(target_similarity, dim=1, keepdim=True)
    # Calculate the KL-divergence
    loss = torch.mean(target_similarity * torch.log((target_similarity + eps) / (model_similarity + eps)))
    return loss


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float64)


@pytest.mark.parametrize("s_shape,t_shape", [((1, 5), (1, 3)), ((2, 3), (2, 3)), ((3, 7), (3, 4)), ((17, 9), (17, 5))])
def test_matches_seed_code(s_shape, t_shape):
    f_s, f_t = rand(*s_shape), rand(*t_shape)
    seed = seed_cosine_similarity_loss(f_s, f_t)
    assert torch.allclose(pkt_loss(f_s, f_t), seed, rtol=1e-12, atol=1e-15)
    assert torch.allclose(PKT()(f_s, f_t), seed, rtol=1e-12, atol=1e-15)
    assert torch.allclose(PKT.cosine_similarity_loss(f_s, f_t, 1e-3), seed_cosine_similarity_loss(f_s, f_t, 1e-3),
                          rtol=1e-12, atol=1e-15)


def test_student_gradient_matches_seed():
    f_s, f_t = rand(5, 4), rand(5, 6)
    a, b = f_s.clone().requires_grad_(), f_s.clone().requires_grad_()
    pkt_loss(a, f_t).backward()
    seed_cosine_similarity_loss(b * 1.0, f_t).backward()  # * 1.0: the seed writes in place into a non-leaf
    assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-14)


def test_gradcheck():
    f_s = rand(4, 3).requires_grad_()
    f_t = rand(4, 5)
    assert torch.autograd.gradcheck(lambda a: pkt_loss(a, f_t), (f_s,))
    f_s1 = rand(1, 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: pkt_loss(a, rand(1, 2)), (f_s1,))


def test_n1_is_zero():
    # One row: both probability matrices are [[1]], t log((1 + eps) / (1 + eps)) = 0.
    assert pkt_loss(rand(1, 4), rand(1, 2)).item() == 0.0


def test_zero_row_is_not_nan_but_uniform():
    # 0 / (0 + eps) = 0: no NaN at all; the row's similarities are (0 + 1) / 2 = 1/2 -> uniform row.
    f = rand(3, 4)
    f[1] = 0
    x = pkt_normalize(f)
    assert torch.equal(x[1], torch.zeros(4, dtype=torch.float64))
    p = pkt_probabilities(f)
    assert torch.allclose(p[1], torch.full((3,), 1 / 3, dtype=torch.float64), atol=1e-15)
    assert torch.isfinite(pkt_loss(f, rand(3, 2)))
    # All-zero student and all-zero teacher: both uniform -> loss 0.
    assert pkt_loss(torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, 5, dtype=torch.float64)).item() == 0.0


def test_nonfinite_rows_become_zero_rows():
    # NaN -> 0 fires for non-finite input: a NaN entry makes the whole row NaN (norm NaN) -> 0;
    # an inf entry gives norm inf: inf / inf = NaN -> 0 and finite / inf = 0 -> zero row;
    # a sum of squares that overflows gives norm inf -> zero row (no NaN needed).
    f = torch.randn(4, 3)
    f[0, 1] = float("nan")
    f[1, 2] = float("inf")
    f[2] = torch.tensor([3e19, -1.0, 2.0])  # (3e19)^2 overflows float32
    x = pkt_normalize(f)
    assert torch.equal(x[:3], torch.zeros(3, 3))
    assert torch.allclose(x[3].norm(), torch.tensor(1.0), atol=1e-6)
    # The same rows act exactly like zero rows in the loss, and match the seed.
    g = f.clone()
    g[:3] = 0
    f_t = torch.randn(4, 5)
    assert torch.equal(pkt_loss(f, f_t), pkt_loss(g, f_t))
    assert torch.equal(pkt_loss(f, f_t), seed_cosine_similarity_loss(f.clone(), f_t))


def test_zero_student_row_gradient_is_nan_in_that_row():
    # sqrt'(0) = inf, times 2x = 0 -> NaN (the seed's torch.sqrt of the sum of squares); other rows finite.
    f_s = rand(3, 4)
    f_s[1] = 0
    a = f_s.clone().requires_grad_()
    b = f_s.clone().requires_grad_()
    f_t = rand(3, 5)
    pkt_loss(a, f_t).backward()
    seed_cosine_similarity_loss(b * 1.0, f_t).backward()
    for g in (a.grad, b.grad):
        assert torch.isnan(g[1]).all()
        assert torch.isfinite(g[[0, 2]]).all()
    assert torch.allclose(a.grad[[0, 2]], b.grad[[0, 2]], rtol=1e-10, atol=1e-14)


def test_hand_checked_value():
    # Student rows e1, e2: x = e_i / (1 + eps), so cos = c = 1 / (1 + eps)^2 on the diagonal and 0 off it;
    # S = [[(c + 1)/2, 1/2], [1/2, (c + 1)/2]] -> rows [(c + 1)/(c + 2), 1/(c + 2)] (about [2/3, 1/3]).
    # Teacher rows equal: all similarities equal -> rows [1/2, 1/2] exactly.
    # loss = mean over 4 of 1/2 log((1/2 + eps) / (s + eps)) = (log(.../p_diag) + log(.../p_off)) / 4.
    eps = 1e-7
    c = 1 / (1 + eps) ** 2
    p_diag, p_off = (c + 1) / (c + 2), 1 / (c + 2)
    f_s = torch.eye(2, dtype=torch.float64)
    f_t = torch.ones(2, 3, dtype=torch.float64)
    expected = (math.log((0.5 + eps) / (p_diag + eps)) + math.log((0.5 + eps) / (p_off + eps))) / 4
    assert pkt_loss(f_s, f_t).item() == pytest.approx(expected, abs=1e-15)
    assert expected == pytest.approx(math.log(0.75 * 1.5) / 4, abs=1e-6)
