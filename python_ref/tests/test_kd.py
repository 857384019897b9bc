import math

import pytest
import torch
import torch.nn.functional as F

from kdfuse_ref.kd import DistillKL, kd_loss


def seed_distill_kl(y_s, y_t, T):
    """The seed's code verbatim (reduction='sum' is size_average=False)."""
    p_s = F.log_softmax(y_s / T, dim=1)
    p_t = F.softmax(y_t / T, dim=1)
    return F.kl_div(p_s, p_t, reduction="sum") * (T ** 2) / y_s.shape[0]


@pytest.mark.parametrize("shape,T", [((1, 1), 4.0), ((3, 7), 4.0), ((5, 11), 0.5), ((4, 9), 20.0)])
def test_matches_seed_code(shape, T):
    y_s, y_t = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    assert torch.allclose(kd_loss(y_s, y_t, T), seed_distill_kl(y_s, y_t, T), rtol=1e-12, atol=1e-12)
    assert torch.allclose(DistillKL(T)(y_s, y_t), seed_distill_kl(y_s, y_t, T), rtol=1e-12, atol=1e-12)


def test_gradcheck():
    y_s = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    y_t = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([1.0, 0.0, 2.5, 0.5], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: kd_loss(a, b, 3.0), (y_s, y_t))
    assert torch.autograd.gradcheck(lambda a, b: kd_loss(a, b, 2.0, weight=w, reduction="none"), (y_s, y_t))


def test_student_gradient_closed_form():
    # d/dy_s = T (softmax(y_s/T) - softmax(y_t/T)) / N
    T, y_s, y_t = 4.0, torch.randn(3, 5, dtype=torch.float64, requires_grad=True), torch.randn(3, 5, dtype=torch.float64)
    kd_loss(y_s, y_t, T).backward()
    expected = T * (F.softmax(y_s / T, 1) - F.softmax(y_t / T, 1)) / 3
    assert torch.allclose(y_s.grad, expected, atol=1e-12)


def test_hand_checked_value():
    # N = 1, C = 2, T = 1: p = (0.5, 0.5), q = softmax(0, ln 3) = (0.25, 0.75).
    y_s = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)
    y_t = torch.zeros(1, 2, dtype=torch.float64)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kd_loss(y_s, y_t, 1.0).item() == pytest.approx(expected, abs=1e-15)


def test_zero_teacher_probability_contributes_nothing():
    # Teacher mass underflows to exactly 0 for the second class: no NaN from 0 * log 0.
    y_s = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    y_t = torch.tensor([[0.0, -1e5]], dtype=torch.float64)
    assert kd_loss(y_s, y_t, 1.0).item() == pytest.approx(math.log(2.0), abs=1e-12)


def test_weights_and_reduction_none():
    y_s, y_t = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    rows = kd_loss(y_s, y_t, 2.0, reduction="none")
    w = torch.tensor([1.0, 0.0, 2.0, 1.0], dtype=torch.float64)
    assert torch.allclose(kd_loss(y_s, y_t, 2.0, weight=w), (rows * w).sum() / 4)
    assert torch.allclose(rows.sum() / 4, kd_loss(y_s, y_t, 2.0))
    with pytest.raises(ValueError):
        kd_loss(y_s, y_t, reduction="mean")
