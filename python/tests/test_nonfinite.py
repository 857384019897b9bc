"""Infinities and NaN in the inputs: every loss gives the seed's pattern of non-finite values.

One element of the student or the teacher input is set to +inf, -inf or NaN; the seed's module (kdfuse_ref, run
in float32) and the kdfuse.nn module then must agree, for the loss and for every element of the student's
gradient, on the class of the value: finite, +inf, -inf or NaN. This pins, for example, KD's p = 0 terms of a
masked (-inf) teacher logit (they add 0, not NaN), a +inf logit making its row's gradient NaN (not a single
element), a NaN reaching a normalisation (the whole sample's map is NaN, as F.normalize gives; fmaxf would have
replaced the NaN norm by eps), and PKT's masked rows (their NaN must not leak into other rows through the
gradient GEMM). CRD is left out: its inputs pass through the embedding heads, which make everything NaN.

KDSVD has no seed pattern to follow (the seed's SVD raises on a non-finite map): kdfuse gives such a sample zero
vectors, as the reference's nonfinite="zero", and that is what its test pins.
"""
import importlib

import pytest
import torch

import kdfuse.nn as K
import kdfuse_ref.kdsvd
from kdfuse.gradcheck.cases.kdsvd import KERNEL, draw
from simt_library import load_or_skip

load_or_skip("kdfPKT")


def ref(name):
    for module in ("kd", "fitnet", "at", "sp", "cc", "rkd", "pkt", "ab", "ft", "nst", "vid", "ofd"):
        m = importlib.import_module("kdfuse_ref." + module)
        if hasattr(m, name):
            return getattr(m, name)
    raise AttributeError(name)


# name: (constructor taking the module namespace's class, student shapes, teacher shapes, takes lists, inputs via
# a learned part whose state is copied)
CASES = {
    "DistillKL": (lambda C: C(4), [(4, 10)], [(4, 10)], False),
    "HintLoss": (lambda C: C(), [(2, 3, 4, 4)], [(2, 3, 4, 4)], False),
    "Attention": (lambda C: C(), [(2, 3, 4, 4)], [(2, 5, 4, 4)], True),
    "Similarity": (lambda C: C(), [(4, 3, 2, 2)], [(4, 5, 2, 2)], True),
    "Correlation": (lambda C: C(variant="repdistiller"), [(4, 6)], [(4, 6)], False),
    "Correlation-seed": (lambda C: C(variant="seed"), [(4, 6)], [(4, 5)], False),
    "RKDLoss": (lambda C: C(), [(5, 6)], [(5, 7)], False),
    "PKT": (lambda C: C(), [(5, 6)], [(5, 7)], False),
    "ABLoss": (lambda C: C(1), [(2, 3, 4, 4)], [(2, 3, 4, 4)], True),
    "FactorTransfer": (lambda C: C(), [(2, 3, 4, 4)], [(2, 5, 4, 4)], False),
    "NSTLoss": (lambda C: C(), [(2, 3, 4, 4)], [(2, 5, 4, 4)], True),
    "VIDLoss": (lambda C: C(3, 4, 5), [(2, 3, 4, 4)], [(2, 5, 4, 4)], False),
    "OFD": (lambda C: C(3, 5), [(2, 3, 4, 4)], [(2, 5, 4, 4)], False),
}


def classes(x):
    """0 finite, 1 +inf, 2 -inf, 3 NaN, elementwise."""
    inf = float("inf")
    return torch.where(torch.isnan(x), 3, torch.where(x == inf, 1, torch.where(x == -inf, 2, 0)))


def run(name, namespace, who, value, state=None):
    ctor, s_shapes, t_shapes, lists = CASES[name]
    cls = name.split("-")[0]
    module = ctor(getattr(namespace, cls) if namespace is K else ref(cls))
    if state is not None:
        module.load_state_dict(state)
    xs = [torch.randn(*sh, generator=torch.Generator().manual_seed(1 + i)) for i, sh in enumerate(s_shapes)]
    xt = [torch.randn(*sh, generator=torch.Generator().manual_seed(11 + i)) for i, sh in enumerate(t_shapes)]
    (xs if who == "student" else xt)[0].view(-1)[1] = value
    xs = [x.requires_grad_() for x in xs]
    out = module(xs, xt) if lists else module(xs[0], xt[0])
    loss = (sum(out) if isinstance(out, list) else out).sum()
    loss.backward()
    return module, classes(loss.detach().reshape(1)), classes(xs[0].grad)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")], ids=["+inf", "-inf", "nan"])
@pytest.mark.parametrize("who", ["student", "teacher"])
@pytest.mark.parametrize("name", list(CASES))
def test_nonfinite_inputs_give_the_seeds_pattern(name, who, value):
    torch.manual_seed(0)
    seed_module, seed_loss, seed_grad = run(name, None, who, value)
    _, loss, grad = run(name, K, who, value, state=seed_module.state_dict())
    assert torch.equal(loss, seed_loss), f"loss class {loss.tolist()} vs the seed's {seed_loss.tolist()}"
    assert torch.equal(grad, seed_grad), (f"{int((grad != seed_grad).sum())} gradient elements differ in class; "
                                          f"counts (finite, +inf, -inf, nan) {torch.bincount(grad.flatten(), minlength=4).tolist()} "
                                          f"vs the seed's {torch.bincount(seed_grad.flatten(), minlength=4).tolist()}")


def kdsvd_run(module, g_s, g_t):
    """(losses, student gradients) of a KDSVD module, each pair's loss with its own upstream gradient."""
    g_s = [f.detach().clone().requires_grad_() for f in g_s]
    losses = torch.stack(module(g_s, g_t))
    grads = torch.autograd.grad((losses * torch.tensor([1.0, -2.0], dtype=losses.dtype)).sum(), g_s)
    return losses.detach(), grads


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")], ids=["+inf", "-inf", "nan"])
@pytest.mark.parametrize("who", ["student", "teacher"])
def test_kdsvd_nonfinite_sample_gets_zero_vectors(who, value):
    """One element of sample 1 of the middle layer is non-finite: the losses stay finite, that sample's student map gets
    a zero gradient, and everything equals the call with that sample's map set to zero (whose vectors are 0 too: the
    other samples are unaffected); the reference with nonfinite="zero" agrees."""
    g_s, g_t = draw(3, [(6, 4), (12, 3), (20, 2)], 1, "relu", torch.Generator().manual_seed(5))
    bad = [[f.clone() for f in maps] for maps in (g_s, g_t)]
    zeroed = [[f.clone() for f in maps] for maps in (g_s, g_t)]
    side = 0 if who == "student" else 1
    bad[side][1][1].view(-1)[7] = value
    zeroed[side][1][1] = 0.0
    losses, grads = kdsvd_run(K.KDSVD(), *bad)
    assert torch.isfinite(losses).all() and all(torch.isfinite(g).all() for g in grads)
    if who == "student":
        assert torch.equal(grads[1][1], torch.zeros_like(grads[1][1]))
    z_losses, z_grads = kdsvd_run(K.KDSVD(), *zeroed)
    assert torch.equal(losses, z_losses) and all(torch.equal(g, z) for g, z in zip(grads, z_grads))
    reference = kdfuse_ref.kdsvd.KDSVD(**KERNEL)
    r_losses, r_grads = kdsvd_run(reference, [f.double() for f in bad[0]], [f.double() for f in bad[1]])
    torch.testing.assert_close(losses, r_losses.float(), rtol=1e-4, atol=1e-6 * r_losses.abs().max().item())
    for g, r in zip(grads, r_grads):
        torch.testing.assert_close(g, r.float(), rtol=1e-4, atol=1e-4 * r.abs().max().item())
