"""Shared pieces of the feature-map losses' bindings (FitNet, AT, FT, AB, OFD, VID): kdfFeatureMap_t
(from the header, _abi), layouts of torch tensors, outputs with the layout of their input, and one generic call path
(workspace query and allocation, handle, stream, lock)."""
import ctypes

import torch

from . import _abi, _lib
from ._lib import KDF_STATUS_INVALID_VALUE, KDF_STATUS_NOT_SUPPORTED, KDF_STATUS_SHAPE_MISMATCH, binding_error
from .kd import _alloc_workspace, _fptr, _vptr, backend_of, check_buffer, extent_bytes



FeatureMap = _abi.STRUCTS["kdfFeatureMap_t"]


def feature_map(t, name, fn):
    """kdfFeatureMap_t of a float32 tensor N x C x H x W (or N x D, as N x D x 1 x 1) whose H x W planes
    are contiguous; samples and channels may be strided (slices of larger tensors)."""
    if not isinstance(t, torch.Tensor):
        raise binding_error(KDF_STATUS_INVALID_VALUE, f"{name} must be a torch.Tensor", fn)
    if t.dtype != torch.float32:
        raise binding_error(KDF_STATUS_NOT_SUPPORTED if t.dtype in (torch.float16, torch.bfloat16) else
                            KDF_STATUS_INVALID_VALUE, f"{name} must be float32, got {t.dtype}", fn)
    check_buffer(t, name, extent_bytes(t), fn, contiguous=False)
    if t.dim() == 2:
        t = t[:, :, None, None]
    if t.dim() != 4:
        raise binding_error(KDF_STATUS_INVALID_VALUE, f"{name} must be 2-D or 4-D, got {t.dim()}-D", fn)
    n, c, h, w = t.shape
    if (w > 1 and t.stride(3) != 1) or (h > 1 and t.stride(2) != w):
        raise binding_error(KDF_STATUS_INVALID_VALUE, f"{name}: each H x W plane must be contiguous, strides "
                                                      f"{tuple(t.stride())}", fn)
    sc = t.stride(1) if c > 1 else h * w
    sn = t.stride(0) if n > 1 else c * sc
    if (c > 1 and sc < h * w) or (n > 1 and sn < (c - 1) * sc + h * w):
        raise binding_error(KDF_STATUS_INVALID_VALUE, f"{name}: overlapping channels or samples, strides "
                                                      f"{tuple(t.stride())}", fn)
    return FeatureMap(n, c, h, w, sn, sc)


def same_device(fn, **tensors):
    """(backend, device) shared by the given tensors (None values ignored)."""
    devices = {t.device for t in tensors.values() if t is not None}
    if len(devices) != 1:
        raise binding_error(KDF_STATUS_INVALID_VALUE, f"tensors on different devices: {sorted(map(str, devices))}", fn)
    device = devices.pop()
    return backend_of(device), device


def check_out(g, like, name, fn):
    """A caller's output `g` (a gradient, or an accumulator) that the C library writes with the layout of the
    input `like`: float32 on like's device, with like's shape and strides (KdfuseError otherwise) and the storage
    behind them (check_buffer). Returns g."""
    if not isinstance(g, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(g).__name__}")
    if g.dtype != torch.float32 or g.device != like.device:
        raise binding_error(KDF_STATUS_INVALID_VALUE, f"{name} must be float32 on {like.device}, got {g.dtype} on "
                                                      f"{g.device}", fn)
    if g.shape != like.shape or g.stride() != like.stride():
        raise binding_error(KDF_STATUS_INVALID_VALUE, f"{name} must have the shape and strides of its input "
                                                      f"({tuple(like.shape)}, {like.stride()}), got "
                                                      f"({tuple(g.shape)}, {g.stride()})", fn)
    return check_buffer(g, name, extent_bytes(g), fn, contiguous=False)


def check_scalar(t, name, fn, device):
    """A float32 tensor of one element on `device` (the loss accumulator, grad_loss): KdfuseError for the type,
    dtype, device or size, check_buffer for its storage. None passes (the library then writes / reads nothing)."""
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a float32 tensor of one element or None, got {type(t).__name__}")
    if t.dtype != torch.float32 or t.device != device or t.numel() != 1:
        raise binding_error(KDF_STATUS_INVALID_VALUE, f"{name} must be one float32 value on {device}, got "
                                                      f"{t.dtype} of shape {tuple(t.shape)} on {t.device}", fn)
    return check_buffer(t, name, 4, fn)


def grad_like(t):
    """A zeroed gradient with the layout (strides) of `t`."""
    return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device).zero_()


def check_shape(t, shape, name, fn):
    if tuple(t.shape) != tuple(shape):
        raise binding_error(KDF_STATUS_SHAPE_MISMATCH, f"{name} has shape {tuple(t.shape)}, expected {tuple(shape)}", fn)


def _entry(backend, entry):
    """The loaded library of `backend`, which must export `entry`."""
    lib = _lib.load(backend)
    if not _lib.has(lib, entry):
        raise binding_error(KDF_STATUS_NOT_SUPPORTED, f"{lib.kdfuse_path} does not export {entry}", entry)
    return lib


def _on_device(backend, device, run):
    """run(handle, stream) with the backend's handle for `device` and, for CUDA, PyTorch's current stream
    (None on the simt backend), with `device` current."""
    def go(device_index):
        stream = torch.cuda.current_stream(device).cuda_stream if backend == "cuda" else None
        run(_lib.handle(backend, device_index), ctypes.c_void_p(stream) if stream else None)

    if backend == "cuda":
        with torch.cuda.device(device):
            go(device.index if device.index is not None else torch.cuda.current_device())
    else:
        go(None)


def call(entry, size_entry, params, args_before_workspace, device, backend):
    """lib.<entry>(handle, &params, *args_before_workspace, workspace, bytes, stream) with a workspace of
    lib.<size_entry>(&params) bytes allocated on `device`. Pointers in args: use ptr() / fptr()."""
    lib = _entry(backend, entry)

    def run(handle, stream):
        size = ctypes.c_size_t()
        getattr(lib, size_entry)(ctypes.byref(params), ctypes.byref(size))
        ws_keep, ws_ptr, ws_size = _alloc_workspace(size.value, device)
        with _lib.CALL_LOCK:
            getattr(lib, entry)(handle, ctypes.byref(params), *args_before_workspace, ws_ptr, ws_size, stream)
        del ws_keep  # stream-ordered reuse on the CUDA caching allocator

    _on_device(backend, device, run)


def call_without_workspace(entry, args, device, backend):
    """lib.<entry>(handle, *args, stream) for the entry points that take no workspace."""
    lib = _entry(backend, entry)

    def run(handle, stream):
        with _lib.CALL_LOCK:
            getattr(lib, entry)(handle, *args, stream)

    _on_device(backend, device, run)


ptr = _vptr
fptr = _fptr
