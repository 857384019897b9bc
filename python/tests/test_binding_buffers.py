"""Caller buffers the ctypes bindings (python/kdfuse) hand to the C library, on the SIMT build: a workspace, an input,
an output or a grad_loss whose memory does not hold what the library would access is refused with an error naming
it, before the call (the library would read or write past the allocation). numel() overstates the memory of an
expanded tensor, and a tensor whose storage was freed (untyped_storage().resize_(0), as FSDP does with its flat
parameters) keeps its shape. Skipped when the SIMT library is not built."""
import ctypes

import pytest
import torch

import kdfuse
from kdfuse import KdfuseError
from kdfuse.binding import _lib

from simt_library import load_or_skip

LIB = load_or_skip("kdfCRD")


def rand(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def freed(t):
    """t with its storage released: same shape and strides, no memory behind them."""
    t = t.clone()
    t.untyped_storage().resize_(0)
    return t


def kd_workspace_bytes(n, c):
    size = ctypes.c_size_t()
    LIB.kdfKDWorkspaceSize(ctypes.byref(_lib.KDParams(rows=n, classes=c)), ctypes.byref(size))
    return size.value


def test_expanded_workspace_is_refused():
    """torch.empty(1).expand(65536) has numel() 65536 but one byte of memory: passed with numel() bytes, the kernel
    would write 64 KiB past it."""
    y_s, y_t = rand(64, 100, seed=1), rand(64, 100, seed=2)
    workspace = torch.empty(1, dtype=torch.uint8).expand(65536)
    with pytest.raises(ValueError, match="kdfuse.kd: workspace must be contiguous"):
        kdfuse.kd(y_s, y_t, workspace=workspace)


def test_workspace_storage_must_hold_its_bytes():
    y_s, y_t = rand(64, 100, seed=3), rand(64, 100, seed=4)
    need = kd_workspace_bytes(64, 100)
    with pytest.raises(ValueError, match=f"kdfuse.kd: workspace: the C library accesses {need + 255} bytes .* holds 0"):
        kdfuse.kd(y_s, y_t, workspace=freed(torch.empty(need + 255, dtype=torch.uint8)))


def test_workspace_type_and_device():
    y_s, y_t = rand(4, 10, seed=5), rand(4, 10, seed=6)
    with pytest.raises(TypeError, match="kdfuse.kd: workspace must be a torch.Tensor, got bytearray"):
        kdfuse.kd(y_s, y_t, workspace=bytearray(4096))
    with pytest.raises(ValueError, match="kdfuse.kd: workspace is on meta, the logits on cpu"):
        kdfuse.kd(y_s, y_t, workspace=torch.empty(4096, dtype=torch.uint8, device="meta"))


def test_workspace_slice_with_an_offset_works():
    """A contiguous slice at a storage offset (here aligned to 256 bytes) is a valid workspace: its bytes are
    counted from its data pointer."""
    y_s, y_t = rand(64, 100, seed=7), rand(64, 100, seed=8)
    need = kd_workspace_bytes(64, 100)
    big = torch.empty(need + 512, dtype=torch.uint8)
    start = -big.data_ptr() % 256 + 256
    workspace = big[start:start + need]
    assert workspace.storage_offset() == start
    loss, grad_s, _ = kdfuse.kd(y_s, y_t, workspace=workspace)
    ref_loss, ref_grad_s, _ = kdfuse.kd(y_s, y_t)
    assert torch.equal(loss, ref_loss) and torch.equal(grad_s, ref_grad_s)


def _maps(*shapes, seed):
    return [rand(*s, seed=seed + i) for i, s in enumerate(shapes)]


# binding, its arguments, the position and name of the argument whose storage is freed
FREED_ARGUMENT = {
    "kd": (kdfuse.kd, _maps((4, 10), (4, 10), seed=10), 1, "y_t"),
    "fitnet": (kdfuse.fitnet, _maps((2, 3, 4, 4), (2, 3, 4, 4), seed=12), 1, "f_t"),
    "at": (kdfuse.at, _maps((2, 3, 4, 4), (2, 5, 4, 4), seed=14), 1, "f_t"),
    "ft": (kdfuse.ft, _maps((2, 3, 4, 4), (2, 5, 4, 4), seed=16), 0, "f_s"),
    "ab": (kdfuse.ab, _maps((2, 3, 4, 4), (2, 3, 4, 4), seed=18), 1, "t"),
    "ofd": (kdfuse.ofd, _maps((2, 3, 4, 4), (2, 3, 4, 4), seed=20), 0, "s"),
    "vid": (kdfuse.vid, _maps((2, 3, 4, 4), (2, 3, 4, 4), (3,), seed=22), 2, "log_scale"),
    "sp": (kdfuse.sp, _maps((4, 6), (4, 5), seed=25), 1, "f_t"),
    "cc": (kdfuse.cc, _maps((4, 6), (4, 5), seed=27), 0, "f_s"),
    "pkt": (kdfuse.pkt, _maps((4, 6), (4, 5), seed=29), 1, "e_t"),
    "rkd": (kdfuse.rkd, _maps((4, 6), (4, 5), seed=31), 0, "e_s"),
    "nst": (kdfuse.nst, _maps((2, 3, 4, 4), (2, 5, 4, 4), seed=33), 1, "f_t"),
    "fsp": (kdfuse.fsp, _maps((2, 3, 4, 4), (2, 5, 4, 4), (2, 3, 4, 4), (2, 5, 4, 4), seed=35), 3, "t_top"),
    "crd": (kdfuse.crd, [rand(4, 8, seed=39), rand(4, 8, seed=40), rand(10, 8, seed=41), rand(10, 8, seed=42),
                         torch.arange(4), torch.randint(0, 10, (4, 6), generator=torch.Generator().manual_seed(43)),
                         torch.full((2,), -1.0)], 3, "memory_t"),
}


@pytest.mark.parametrize("loss", sorted(FREED_ARGUMENT))
def test_input_without_memory_is_refused_by_every_binding(loss):
    fn, args, pos, name = FREED_ARGUMENT[loss]
    fn(*args)  # the arguments as they are: accepted
    args = list(args)
    args[pos] = freed(args[pos])
    with pytest.raises(ValueError, match=f"kdfuse.{loss}: {name}: the C library accesses .* holds 0 bytes"):
        fn(*args)


@pytest.mark.parametrize("loss", ["fitnet", "ab", "ofd", "nst"])
def test_output_gradient_of_another_shape_is_refused(loss):
    """An out= gradient with the input's strides but fewer samples: the library writes it with the input's layout
    (3 samples), past its 1 sample."""
    fn = getattr(kdfuse, loss)
    f_s, f_t = rand(3, 4, 5, 5, seed=50), rand(3, 4, 5, 5, seed=51)
    small = torch.zeros(1, 4, 5, 5)
    assert small.stride() == f_s.stride()
    with pytest.raises(KdfuseError, match="must have the shape and strides of its input"):
        fn(f_s, f_t, out=(None, small))


def test_fsp_output_gradient_of_another_shape_is_refused():
    s_bot, s_top, t_bot, t_top = _maps((3, 2, 4, 4), (3, 3, 4, 4), (3, 2, 4, 4), (3, 3, 4, 4), seed=52)
    with pytest.raises(KdfuseError, match="grad_s_top must have the shape and strides of its input"):
        kdfuse.fsp(s_bot, s_top, t_bot, t_top, out=(None, None, torch.zeros(1, 3, 4, 4)))


@pytest.mark.parametrize("loss", ["fitnet", "at", "ab", "nst", "sp", "cc", "pkt", "rkd"])
def test_grad_loss_must_be_one_float32_value_with_memory(loss):
    """grad_loss is read as one float by the kernel: an empty tensor (no element), another dtype or a freed one
    would be read past its memory or misread."""
    fn = getattr(kdfuse, loss)
    if loss in ("sp", "cc", "pkt", "rkd"):
        f_s, f_t = rand(4, 6, seed=60), rand(4, 6, seed=61)
    else:
        f_s, f_t = rand(2, 3, 4, 4, seed=60), rand(2, 3, 4, 4, seed=61)
    with pytest.raises(KdfuseError, match="grad_loss must be one float32 value on cpu"):
        fn(f_s, f_t, grad_loss=torch.empty(0))
    with pytest.raises(KdfuseError, match="grad_loss must be one float32 value on cpu"):
        fn(f_s, f_t, grad_loss=torch.ones((), dtype=torch.float64))
    with pytest.raises(ValueError, match=f"kdfuse.{loss}: grad_loss: the C library accesses 4 bytes"):
        fn(f_s, f_t, grad_loss=freed(torch.ones(())))
    with pytest.raises(TypeError, match="grad_loss must be a float32 tensor of one element or None, got float"):
        fn(f_s, f_t, grad_loss=2.0)
