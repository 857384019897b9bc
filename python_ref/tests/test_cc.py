import math

import pytest
import torch

from kdfuse_ref.cc import Correlation, cc_loss


def seed_correlation_loss(f_s, f_t):
    """The seed's Correlation.similarity_loss verbatim."""
    bsz = f_s.shape[0]
    f_s = f_s.view(bsz, -1)
    f_t = f_t.view(bsz, -1)
    G_s = torch.mm(f_s, torch.t(f_s))
    G_s = G_s / G_s.norm(2)
    G_t = torch.mm(f_t, torch.t(f_t))
    G_t = G_t / G_t.norm(2)
    G_diff = G_t - G_s
    loss = (G_diff * G_diff).view(-1, 1).sum(0) / (bsz * bsz)
    return loss


def shipped_correlation(f_s, f_t):
    """RepDistiller's shipped distiller_zoo/CC.py Correlation.forward (as in shared/notes/losses.md)."""
    delta = torch.abs(f_s - f_t)
    loss = torch.mean((delta[:-1] * delta[1:]).sum(1))
    return loss


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float64)


@pytest.mark.parametrize("s_shape,t_shape", [
    ((1, 5), (1, 3)), ((2, 3), (2, 3)), ((3, 2, 3, 3), (3, 7)), ((17, 5), (17, 11)),
])
def test_seed_variant_matches_seed_code(s_shape, t_shape):
    f_s, f_t = rand(*s_shape), rand(*t_shape)
    seed = seed_correlation_loss(f_s, f_t)
    assert seed.shape == (1,)
    out = cc_loss(f_s, f_t)
    assert out.shape == ()
    assert torch.allclose(out, seed[0], rtol=1e-12, atol=1e-14)
    assert torch.allclose(Correlation()(f_s, f_t), seed, rtol=1e-12, atol=1e-14)
    assert Correlation()(f_s, f_t).shape == (1,)


@pytest.mark.parametrize("shape", [(2, 3), (3, 5), (17, 7), (4, 3, 2)])
def test_repdistiller_variant_matches_shipped_code(shape):
    f_s, f_t = rand(*shape), rand(*shape)
    expected = shipped_correlation(f_s, f_t)
    assert torch.allclose(cc_loss(f_s, f_t, variant="repdistiller"), expected, rtol=1e-12, atol=1e-14)
    assert torch.equal(Correlation(variant="repdistiller")(f_s, f_t), cc_loss(f_s, f_t, "repdistiller"))


def test_gradcheck_seed_variant():
    f_s = rand(5, 3, 2).requires_grad_()
    f_t = rand(5, 4)
    assert torch.autograd.gradcheck(lambda a: cc_loss(a, f_t), (f_s,))


def test_gradcheck_repdistiller_variant_both_inputs():
    # Offset the inputs so that no |f_s - f_t| is near 0 (abs is not differentiable there).
    f_s = (rand(5, 4) + 3.0).requires_grad_()
    f_t = rand(5, 4).clamp(-1, 1).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: cc_loss(a, b, variant="repdistiller"), (f_s, f_t))


def test_repdistiller_variant_hand_checked_consecutive_rows():
    # delta rows: [1, 2], [3, 1], [0, 2] -> consecutive products summed: 1*3 + 2*1 = 5, 3*0 + 1*2 = 2.
    f_t = torch.zeros(3, 2, dtype=torch.float64)
    f_s = torch.tensor([[1.0, -2.0], [-3.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    assert cc_loss(f_s, f_t, "repdistiller").item() == pytest.approx(3.5, abs=1e-15)
    # Batch-order dependent: swapping rows 0 and 1 changes the value (products 3*1+1*2, 1*0+2*2).
    assert cc_loss(f_s[[1, 0, 2]], f_t, "repdistiller").item() == pytest.approx(4.5, abs=1e-15)


def test_repdistiller_variant_n1_is_nan():
    assert math.isnan(cc_loss(rand(1, 4), rand(1, 4), "repdistiller").item())
    assert math.isnan(shipped_correlation(rand(1, 4), rand(1, 4)).item())


def test_seed_variant_hand_checked_and_zero_features_nan():
    # f_s = [[1, 0], [0, 1]]: G_s = I / sqrt 2. f_t = [[1], [1]]: G_t = ones / 2.
    # diff = [[1/2 - 1/sqrt2, 1/2], [1/2, 1/2 - 1/sqrt2]]; sum of squares / 4.
    f_s = torch.eye(2, dtype=torch.float64)
    f_t = torch.ones(2, 1, dtype=torch.float64)
    a = 0.5 - 2 ** -0.5
    assert cc_loss(f_s, f_t).item() == pytest.approx((2 * a * a + 2 * 0.25) / 4, abs=1e-15)
    # All-zero student features: G / ||G||_F = 0 / 0 = NaN, as the seed.
    z = torch.zeros(2, 3, dtype=torch.float64)
    assert math.isnan(cc_loss(z, f_t).item())
    assert math.isnan(seed_correlation_loss(z, f_t).item())


def test_bad_variant():
    with pytest.raises(ValueError):
        cc_loss(rand(2, 2), rand(2, 2), variant="paper")
    with pytest.raises(ValueError):
        Correlation(variant="paper")
