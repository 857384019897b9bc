"""A 20-step toy distillation per RepDistiller method (tiny conv nets, random data, SGD with momentum, seeded): the
training run with kdfuse.nn and the same run with the reference modules (python_ref) give the same loss curve.

Both runs are float32 and start from identical weights and state; they differ only in the loss modules. Tolerance:
every step's total loss within rtol 1e-3 (atol 1e-5) of the reference's: the per-call float32 differences (~1e-6
relative) grow through 20 momentum-SGD steps, to about 1e-5 at most in practice (printed with -s).
Skipped when the SIMT library is not built."""
import copy

import pytest
import torch

import distill_setup as ds
from simt_library import load_or_skip

LIB = load_or_skip("kdfCRD")

STEPS = 20
RTOL, ATOL = 1e-3, 1e-5


def train(method, zoo, nets, crit, heads, data):
    model_s, model_t = copy.deepcopy(nets)
    crit, heads = copy.deepcopy(crit), copy.deepcopy(heads)
    div = zoo.DistillKL(4)
    params = list(model_s.parameters()) + list(heads.parameters()) + list(crit.parameters())
    optimizer = torch.optim.SGD(params, lr=0.02, momentum=0.9)
    curve = []
    for x, y, idx, cidx in data:
        loss = ds.train_step_loss(method, crit, div, heads, model_s, model_t, x, y, idx, cidx)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        curve.append(loss.item())
    return torch.tensor(curve, dtype=torch.float64)


@pytest.mark.parametrize("method", ds.METHODS)
def test_loss_curve_matches_reference(method):
    nets = ds.make_nets(seed=0)
    torch.manual_seed(2)
    crit, heads = ds.make_heads(ds.kdfuse_zoo, method)
    torch.manual_seed(2)
    ref_crit, _ = ds.make_heads(ds.reference_zoo, method)
    ref_crit.load_state_dict(crit.state_dict())  # identical state (the names are the reference's)
    data = ds.batches(STEPS)
    curve = train(method, ds.kdfuse_zoo, nets, crit, heads, data)
    ref_curve = train(method, ds.reference_zoo, nets, ref_crit, heads, data)
    assert torch.isfinite(ref_curve).all()
    assert (ref_curve[1:] != ref_curve[0]).any()  # the run trains
    rel = ((curve - ref_curve).abs() / ref_curve.abs()).max().item()
    print(f"{method}: loss {ref_curve[0]:.4f} -> {ref_curve[-1]:.4f}, max relative difference {rel:.1e}")
    torch.testing.assert_close(curve, ref_curve, rtol=RTOL, atol=ATOL)
