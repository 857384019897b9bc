"""Infinities and NaN in the inputs: every loss gives the seed's pattern of non-finite values.

One element of the student or the teacher input is set to +inf, -inf or NaN; the seed's module (kdfuse_ref, run
in float32) and the kdfuse.nn module then must agree, for the loss and for every element of the student's
gradient, on the class of the value: finite, +inf, -inf or NaN. This pins, for example, KD's p = 0 terms of a
masked (-inf) teacher logit (they add 0, not NaN), a +inf logit making its row's gradient NaN (not a single
element), a NaN reaching a normalisation (the whole sample's map is NaN, as F.normalize gives; fmaxf would have
replaced the NaN norm by eps), and PKT's masked rows (their NaN must not leak into other rows through the
gradient GEMM). CRD is left out: its inputs pass through the embedding heads, which make everything NaN.
"""
import importlib

import pytest
import torch

import kdfuse.nn as K
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
