"""kdfuse.functional.kl_div and kdfuse.nn.KLDivLoss (KD with torch.nn.functional.kl_div's signature) on the SIMT
build, against F.kl_div in float64: every reduction, log and probability targets, leading dimensions, the
temperature, label masking, zero target probabilities, gradients to the logits, torch.compile, bad arguments."""
import pytest
import torch
import torch.nn.functional as F

import kdfuse.nn as knn
from kdfuse import functional

from simt_library import load_or_skip

load_or_skip("kdfKD")
pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")  # F.kl_div's own notice

RTOL, ATOL = 1e-5, 1e-6


def logits(*shape, seed, scale=2.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def reference(z_s, target, reduction, log_target):
    """F.kl_div in float64 on the student's log-probabilities, per distribution for "none"."""
    out = F.kl_div(F.log_softmax(z_s.double(), -1), target.double(), reduction="none" if reduction == "none"
                   else reduction, log_target=log_target)
    return out.sum(-1) if reduction == "none" else out


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 6), (1, 4)], ids=["rows", "batch-seq", "one-row"])
@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("reduction", functional.REDUCTIONS)
def test_matches_f_kl_div_with_gradients(shape, log_target, reduction):
    z_s = logits(*shape, seed=1).requires_grad_()
    z_t = logits(*shape, seed=2)
    target = F.log_softmax(z_t, -1) if log_target else F.softmax(z_t, -1)
    loss = functional.kl_div(F.log_softmax(z_s, -1), target, reduction=reduction, log_target=log_target)
    ref_s = z_s.detach().double().requires_grad_()
    ref = reference(ref_s, target, reduction, log_target)
    assert loss.dtype == torch.float32 and loss.shape == ref.shape
    torch.testing.assert_close(loss.double(), ref, rtol=RTOL, atol=ATOL)
    upstream = torch.linspace(-1.5, 2.0, loss.numel()).reshape(loss.shape)
    loss.backward(upstream)
    ref.backward(upstream.double())
    torch.testing.assert_close(z_s.grad.double(), ref_s.grad, rtol=RTOL, atol=ATOL)


def test_logits_and_log_probabilities_give_the_same_loss():
    """input is normalised inside: raw logits and their log_softmax give one loss (and one gradient to the
    logits)."""
    z_s, z_t = logits(4, 9, seed=3), logits(4, 9, seed=4)
    a = functional.kl_div(z_s, z_t, "batchmean", log_target=True)
    b = functional.kl_div(F.log_softmax(z_s, -1), F.log_softmax(z_t, -1), "batchmean", log_target=True)
    torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL)


def test_temperature_is_hintons_kd():
    """temperature T on logits = F.kl_div(log_softmax(s / T), softmax(t / T)) * T^2, the seed's DistillKL."""
    z_s, z_t = logits(6, 11, seed=5).requires_grad_(), logits(6, 11, seed=6)
    loss = functional.kl_div(z_s, z_t, "batchmean", log_target=True, temperature=4.0)
    ref_s = z_s.detach().double().requires_grad_()
    ref = F.kl_div(F.log_softmax(ref_s / 4, -1), F.softmax(z_t.double() / 4, -1), reduction="batchmean") * 16
    torch.testing.assert_close(loss.double(), ref, rtol=RTOL, atol=ATOL)
    loss.backward()
    ref.backward()
    torch.testing.assert_close(z_s.grad.double(), ref_s.grad, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("reduction", functional.REDUCTIONS)
def test_ignored_labels_drop_rows_and_the_mean_counts_the_rest(reduction):
    z_s, z_t = logits(2, 5, 8, seed=7).requires_grad_(), logits(2, 5, 8, seed=8)
    labels = torch.tensor([[3, -100, 1, 0, -100], [-100, 2, 2, 7, 4]])
    loss = functional.kl_div(z_s, z_t, reduction, log_target=True, labels=labels)
    ref_s = z_s.detach().double().requires_grad_()
    rows = reference(ref_s, F.log_softmax(z_t.double(), -1), "none", True) * (labels != -100)
    ref = {"none": rows, "sum": rows.sum(), "batchmean": rows.sum() / 7, "mean": rows.sum() / (7 * 8)}[reduction]
    torch.testing.assert_close(loss.double(), ref, rtol=RTOL, atol=ATOL)
    loss.backward(torch.ones_like(loss))
    ref.backward(torch.ones_like(ref))
    torch.testing.assert_close(z_s.grad.double(), ref_s.grad, rtol=RTOL, atol=ATOL)
    assert torch.all(z_s.grad[labels == -100] == 0)
    every = functional.kl_div(z_s, z_t, reduction, log_target=True, labels=torch.full((2, 5), -100))
    assert torch.all(every == 0)  # nothing kept: zero, not NaN


def test_zero_target_probabilities():
    z_s = logits(3, 6, seed=9)
    target = F.softmax(logits(3, 6, seed=10), -1)
    target[0, 2] = 0.0
    target[2, :3] = 0.0
    target = target / target.sum(-1, keepdim=True)
    loss = functional.kl_div(F.log_softmax(z_s, -1), target, "batchmean")
    torch.testing.assert_close(loss.double(), reference(z_s, target, "batchmean", False), rtol=RTOL, atol=ATOL)


def test_module_is_the_functional_and_compiles_without_graph_breaks():
    module = knn.KLDivLoss(reduction="batchmean", log_target=True, temperature=2.0)
    z_s, z_t = logits(4, 10, seed=11).requires_grad_(), logits(4, 10, seed=12)
    labels = torch.tensor([1, -100, 3, 4])
    eager = module(z_s, z_t, labels)
    torch.testing.assert_close(eager, functional.kl_div(z_s, z_t, "batchmean", True, 2.0, labels))
    explained = torch._dynamo.explain(module)(z_s, z_t, labels)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(z_s, z_t, labels), eager)


def test_bad_arguments():
    z = logits(3, 4, seed=13)
    with pytest.raises(ValueError, match="reduction must be one of"):
        functional.kl_div(z, z, "avg")
    with pytest.raises(ValueError, match="reduction must be one of"):
        knn.KLDivLoss(reduction="avg")
    with pytest.raises(ValueError, match="same shape"):
        functional.kl_div(z, z[:, :3])
    with pytest.raises(TypeError, match="must be tensors"):
        functional.kl_div(z, [1.0])
    with pytest.raises(ValueError, match="temperature must be positive"):
        functional.kl_div(z, z, temperature=0.0)
    with pytest.raises(TypeError, match="integer"):
        functional.kl_div(z, z, labels=torch.zeros(3))
    with pytest.raises(ValueError, match=r"labels must have the shape"):
        functional.kl_div(z, z, labels=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one distribution"):
        functional.kl_div(torch.zeros(0, 4), torch.zeros(0, 4))
