"""The PyTorch operator libraries (python/csrc, loaded by kdfuse._extension): every op has its schema, CPU kernel and
autograd; the CUDA operator library, when built, loads in the same process as the CPU one (the two C libraries
export the same names under different symbol versions) and registers the CUDA kernels."""
import torch

from kdfuse import _extension, ops

LOSS_OPS = ("kd", "fitnet", "at", "ft", "ab", "ofd", "vid", "sp", "cc", "pkt", "rkd", "nst", "fsp", "kdsvd")


def has_kernel(op, key):
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"kdfuse::{op}", key)


def test_every_op_has_a_cpu_kernel_and_autograd():
    assert set(ops.OPS) == set(LOSS_OPS) | {"crd", "attach_grads", "kdsvd_backward"}
    for op in LOSS_OPS + ("crd", "kdsvd_backward"):
        assert has_kernel(op, "CPU"), op
    for op in LOSS_OPS + ("attach_grads",):
        assert has_kernel(op, "Autograd"), op
    assert has_kernel("crd", "ADInplaceOrView")  # its in-place updates bump version counters


def test_cuda_kernels_load_beside_the_cpu_kernels():
    cuda_library = _extension.library_dir() / _extension.KERNELS["cuda"]
    assert "cpu" in _extension.DEVICES
    if cuda_library.is_file() and torch.version.cuda is not None:
        assert _extension.DEVICES == ("cpu", "cuda")
        for op in LOSS_OPS + ("crd", "kdsvd_backward"):
            assert has_kernel(op, "CUDA"), op
        names = {line.split()[-1].rsplit("/", 1)[-1] for line in open("/proc/self/maps") if "libkdfuse" in line}
        assert any(n.startswith("libkdfuse.so") for n in names), sorted(names)  # both C libraries
        assert any(n.startswith("libkdfuse_sim.so") for n in names), sorted(names)
    # the CPU kernels still compute through the SIMT build
    y_s = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    loss = ops.kd(y_s, torch.tensor([[3.0, 2.0, 1.0]]), 1.0)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0 and y_s.grad.abs().sum() > 0
