"""The PyTorch operator libraries (python/csrc, loaded by kdfuse._extension): every op has its schema, CPU kernel and
autograd; the CUDA operator library, when built, loads in the same process as the CPU one (the two C libraries
export the same names under different symbol versions) and registers the CUDA kernels."""
import torch

from kdfuse import _extension, ops

LOSS_OPS = ("kd", "fitnet", "at", "ft", "ab", "ofd", "vid", "sp", "cc", "pkt", "rkd", "nst", "fsp", "kdsvd",
            "kdsvd_sum")


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


def test_threads_each_get_their_own_handle_and_agree():
    """Calls from several host threads at once (each thread creates its own kdfHandle_t: the C API allows one
    thread per handle) give the single-threaded results."""
    import threading

    y_s = torch.randn(6, 12, generator=torch.Generator().manual_seed(1)).requires_grad_()
    y_t = torch.randn(6, 12, generator=torch.Generator().manual_seed(2))
    want = torch.ops.kdfuse.kd(y_s, y_t, None, 2.0, "batchmean", True, False)
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(torch.ops.kdfuse.kd(y_s, y_t, None, 2.0, "batchmean", True, False))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 20
    for got in results:
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_installed_metadata_declares_cublas_as_the_cuda_extra():
    """The wheel's metadata (installed package only): cuBLAS for the CUDA library is the optional extra `cuda`."""
    import importlib.metadata
    import os

    import pytest

    if os.environ.get("KDFUSE_TEST_INSTALLED") != "1":
        pytest.skip("package metadata exists for the installed package only (scripts/test.sh's wheel step)")
    meta = importlib.metadata.metadata("kdfuse")
    assert "cuda" in meta.get_all("Provides-Extra")
    requires = [r.replace(" ", "") for r in meta.get_all("Requires-Dist")]
    assert any(r.startswith("nvidia-cublas") and "<14" in r and ">=13" in r and 'extra=="cuda"' in r for r in requires), requires
