"""kdfuse's ops on CUDA tensors (the CUDA build under PyTorch): they run only where a GPU is visible and are
reported as skipped elsewhere (no machine this project builds on has one; scripts/gpu_check.sh runs them where one
is lent).

- Every loss op of a training step against the same step on the CPU (the SIMT build runs the same kernels).
- CUDA-graph capture of a training step holding kdfuse ops (torch.cuda.graph): the ops make no host
  synchronisation and allocate only through PyTorch's caching allocator, so the step captures, and a replay on new
  inputs gives the eager results.
- torch.compile(mode="reduce-overhead") of the step (Inductor's CUDA graphs) against eager."""
import pytest
import torch

from kdfuse import ops

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def inputs(device, seed=0):
    g = torch.Generator().manual_seed(seed)
    y_s, y_t = torch.randn(8, 100, generator=g), torch.randn(8, 100, generator=g)
    f_s, f_t = torch.randn(8, 16, 8, 8, generator=g), torch.randn(8, 32, 8, 8, generator=g)
    e_s, e_t = torch.randn(8, 64, generator=g), torch.randn(8, 32, generator=g)
    return [t.to(device) for t in (y_s, y_t, f_s, f_t, e_s, e_t)]


def step(y_s, y_t, f_s, f_t, e_s, e_t):
    """A step's distillation losses (KD, AT, SP, RKD, PKT, FitNet-like) and the gradients of the student inputs."""
    y_s, f_s, e_s = (t.detach().requires_grad_() for t in (y_s, f_s, e_s))
    loss = (ops.kd(y_s, y_t, 4.0) + 1000 * ops.at(f_s, f_t) + 3000 * ops.sp(f_s, f_t) + ops.rkd(e_s, e_t)
            + 30000 * ops.pkt(e_s, e_t))
    grads = torch.autograd.grad(loss, (y_s, f_s, e_s))
    return (loss.detach(), *grads)


def test_cuda_step_matches_the_simt_build():
    got = step(*inputs("cuda"))
    want = step(*inputs("cpu"))
    for g, w in zip(got, want):
        torch.testing.assert_close(g.cpu(), w, rtol=1e-4, atol=1e-5)


def test_cuda_graph_capture_and_replay():
    static = inputs("cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: handles, workspace sizes, lazy initialisation
        for _ in range(3):
            step(*static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = step(*static)
    for seed in (1, 2):
        for dst, src in zip(static, inputs("cuda", seed)):
            dst.copy_(src)
        graph.replay()
        want = step(*inputs("cuda", seed))
        for g, w in zip(outputs, want):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_compile_reduce_overhead():
    torch._dynamo.reset()
    compiled = torch.compile(step, mode="reduce-overhead")
    for seed in (0, 1, 2):
        got = compiled(*inputs("cuda", seed))
        want = step(*inputs("cuda", seed))
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
