"""torch.compile of distillation training steps with kdfuse's ops, on the CPU (SIMT build):

- every method's loss together (all 15 criteria, CRD's in-place state updates included) in one graph with
  fullgraph=True (a graph break would raise) and torch._dynamo.explain reporting zero breaks; backend "aot_eager"
  (Dynamo, AOTAutograd, functionalization of the mutating CRD op: what decides graph breaks and correctness);
- a smaller step (KD, AT, CRD) through the default backend (Inductor), and through its "reduce-overhead" mode;

each against the same steps run eagerly: losses, gradients and the CRD / BN state. Skipped when the SIMT library
is not built."""
import copy

import pytest
import torch
import torch.nn as nn

import distill_setup as ds
from simt_library import load_or_skip

LIB = load_or_skip("kdfCRD")


class Distiller(nn.Module):
    """Student, teacher, and the criteria and heads of the given methods: forward(x, y, idx, cidx) is one training
    step's loss (CE + KD + the sum of the methods' weighted losses)."""

    def __init__(self, methods):
        super().__init__()
        self.methods = methods
        self.model_s, self.model_t = ds.make_nets(seed=0)
        torch.manual_seed(2)
        self.div = ds.kdfuse_zoo.DistillKL(4)
        self.crit, self.heads = nn.ModuleDict(), nn.ModuleDict()
        for m in methods:
            self.crit[m], self.heads[m] = ds.make_heads(ds.kdfuse_zoo, m)

    def forward(self, x, y, idx, cidx):
        total = 0
        for m in self.methods:
            total = total + ds.train_step_loss(m, self.crit[m], self.div, self.heads[m], self.model_s, self.model_t,
                                               x, y, idx, cidx)
        return total


def run_steps(module, step_fn, data):
    optimizer = torch.optim.SGD(module.parameters(), lr=0.02, momentum=0.9)
    losses, grads = [], []
    for x, y, idx, cidx in data:
        loss = step_fn(x, y, idx, cidx)
        optimizer.zero_grad()
        loss.backward()
        grads.append([p.grad.clone() for p in module.parameters() if p.grad is not None])
        optimizer.step()
        losses.append(loss.detach())
    return losses, grads


def assert_same_run(module, compiled_module, data, compiled_fn):
    losses, grads = run_steps(module, module, data)
    c_losses, c_grads = run_steps(compiled_module, compiled_fn, data)
    for step, (a, b) in enumerate(zip(c_losses, losses)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m: f"step {step} loss: {m}")
    for step, (ga, gb) in enumerate(zip(c_grads, grads)):
        assert len(ga) == len(gb)
        for a, b in zip(ga, gb):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=lambda m: f"step {step} gradient: {m}")
    for (name, a), (_, b) in zip(compiled_module.named_buffers(), module.named_buffers()):
        if a.is_floating_point():  # CRD banks and Z, OFD's BN statistics
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m: f"buffer {name}: {m}")


def test_every_loss_in_one_graph_without_graph_breaks():
    torch._dynamo.reset()
    module = Distiller(ds.METHODS)
    data = ds.batches(3)
    explanation = torch._dynamo.explain(copy.deepcopy(module))(*data[0])
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    compiled_module = copy.deepcopy(module)
    compiled = torch.compile(compiled_module, backend="aot_eager", fullgraph=True)
    assert_same_run(module, compiled_module, data, compiled)


@pytest.mark.parametrize("mode", [None, "reduce-overhead"], ids=["default", "reduce-overhead"])
def test_inductor_step(mode):
    """Inductor, and its "reduce-overhead" mode (CUDA graphs on CUDA tensors; on these CPU tensors Inductor skips the
    graphs, so this checks that the mode compiles and runs the ops, not the capture: test_cuda.py does that)."""
    torch._dynamo.reset()
    module = Distiller(("attention", "crd"))
    compiled_module = copy.deepcopy(module)
    compiled = torch.compile(compiled_module, fullgraph=True, mode=mode)
    assert_same_run(module, compiled_module, ds.batches(2), compiled)
