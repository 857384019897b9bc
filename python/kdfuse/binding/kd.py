"""KD (Hinton et al., RepDistiller's DistillKL) through kdfKD: loss, student and teacher gradients of
torch tensors in one fused call.

CPU tensors run on the SIMT build (libkdfuse_sim, the real kernels on the CPU), CUDA tensors on the CUDA
build, on torch.cuda.current_stream() of their device, without any synchronisation: the results are
ready when that stream reaches them, as with any torch op.
"""
import ctypes
import numbers

import torch

from . import _lib
from ._lib import (KDF_STATUS_INVALID_VALUE, KDF_STATUS_NOT_SUPPORTED, KDF_STATUS_SHAPE_MISMATCH,
                   KDParams, binding_error)

_DTYPES = {torch.float32: _lib.KDF_DTYPE_FP32, torch.float16: _lib.KDF_DTYPE_FP16,
           torch.bfloat16: _lib.KDF_DTYPE_BF16}
_REDUCTIONS = {"batchmean": _lib.KDF_REDUCTION_BATCHMEAN, "none": _lib.KDF_REDUCTION_NONE}
_FN = "kdfuse.kd"


def _err(status, detail):
    return binding_error(status, detail, _FN)


def backend_of(device):
    """"simt" for CPU tensors, "cuda" for CUDA tensors."""
    if device.type == "cpu":
        return "simt"
    if device.type == "cuda":
        return "cuda"
    raise _err(KDF_STATUS_NOT_SUPPORTED, f"tensors on {device} are not supported (cpu: simt, cuda: cuda)")


def _fptr(t):
    """float* of a tensor, or NULL for None."""
    return None if t is None else ctypes.cast(t.data_ptr(), ctypes.POINTER(ctypes.c_float))


def _vptr(t):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def check_buffer(t, name, nbytes, fn, contiguous=True):
    """Checks a tensor whose data pointer the binding hands to the C library, which will access `nbytes` bytes
    from it: a torch.Tensor (TypeError), contiguous unless contiguous=False (a strided operand whose layout the
    library is told), and with at least `nbytes` bytes of its storage from the data pointer on, i.e.
    untyped_storage().nbytes() minus the storage offset in bytes (ValueError). numel() overstates the memory of
    an expanded tensor: torch.empty(1, dtype=torch.uint8).expand(65536) holds one byte. Returns t."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if contiguous and not t.is_contiguous():
        raise ValueError(f"{fn}: {name} must be contiguous (shape {tuple(t.shape)}, strides {tuple(t.stride())}): "
                         f"the C library reads and writes it as one dense block")
    available = t.untyped_storage().nbytes() - t.storage_offset() * t.element_size()
    if nbytes > available:
        raise ValueError(f"{fn}: {name}: the C library accesses {nbytes} bytes from its data pointer, but its storage "
                         f"holds {available} bytes from there (shape {tuple(t.shape)}, strides {tuple(t.stride())})")
    return t


def extent_bytes(t):
    """Bytes from t's data pointer to the end of its last element, as its shape and strides lay it out (0 when
    empty): what the C library accesses of an operand whose layout it is told."""
    if t.numel() == 0:
        return 0
    return (1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))) * t.element_size()


def _leading_dim(t, name):
    """Elements between rows of an N x C tensor with unit column stride (the C API's ld)."""
    n, c = t.shape
    if c > 1 and t.stride(1) != 1:
        raise _err(KDF_STATUS_INVALID_VALUE, f"{name} must have unit column stride (stride(1) == 1), "
                                             f"got strides {tuple(t.stride())}")
    if n <= 1:
        return c  # the row stride of a single row is never used
    if t.stride(0) < c:  # includes 0 (an expanded tensor), which the C API would read as "dense"
        raise _err(KDF_STATUS_INVALID_VALUE, f"{name} rows overlap: stride(0) = {t.stride(0)} < {c} columns")
    return t.stride(0)


def _check_vector(t, name, numel, device):
    if not isinstance(t, torch.Tensor):
        raise _err(KDF_STATUS_INVALID_VALUE, f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != torch.float32:
        raise _err(KDF_STATUS_INVALID_VALUE, f"{name} must be float32, got {t.dtype}")
    if t.device != device:
        raise _err(KDF_STATUS_INVALID_VALUE, f"{name} is on {t.device}, the logits on {device}")
    if t.numel() != numel:
        raise _err(KDF_STATUS_SHAPE_MISMATCH, f"{name} has {t.numel()} elements, expected {numel}")
    if not t.is_contiguous():
        raise _err(KDF_STATUS_INVALID_VALUE, f"{name} must be contiguous")
    check_buffer(t, name, numel * t.element_size(), _FN)


def _check_matrix_out(t, name, like, ld):
    if not isinstance(t, torch.Tensor):
        raise _err(KDF_STATUS_INVALID_VALUE, f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != like.dtype or t.device != like.device:
        raise _err(KDF_STATUS_INVALID_VALUE, f"{name} must be {like.dtype} on {like.device}, "
                                             f"got {t.dtype} on {t.device}")
    if t.shape != like.shape:
        raise _err(KDF_STATUS_SHAPE_MISMATCH, f"{name} has shape {tuple(t.shape)}, "
                                              f"the logits {tuple(like.shape)}")
    if _leading_dim(t, name) != ld:
        raise _err(KDF_STATUS_INVALID_VALUE, f"{name} must have the row stride of its logits ({ld}), "
                                             f"got {t.stride(0)} (the C API shares one ld)")
    check_buffer(t, name, extent_bytes(t), _FN, contiguous=False)


def _params(rows, classes, ld_s, ld_t, dtype, T, reduction):
    return KDParams(rows=rows, classes=classes, ld_student=ld_s, ld_teacher=ld_t, dtype=dtype,
                    temperature=float(T), reduction=reduction)


def workspace_size(params, backend="simt"):
    """kdfKDWorkspaceSize for a KDParams (bytes)."""
    lib = _lib.load(backend)
    size = ctypes.c_size_t()
    lib.kdfKDWorkspaceSize(ctypes.byref(params), ctypes.byref(size))
    return size.value


def _alloc_workspace(nbytes, device):
    """(tensor keeping it alive, aligned pointer, bytes). The CPU allocator aligns to 64 bytes only, so
    over-allocate and align up to the 256 bytes the API requires (free on the CUDA caching allocator)."""
    if nbytes == 0:
        return None, None, 0
    a = _lib.WORKSPACE_ALIGNMENT
    buf = torch.empty(nbytes + a - 1, dtype=torch.uint8, device=device)
    ptr = (buf.data_ptr() + a - 1) // a * a
    return buf, ctypes.c_void_p(ptr), nbytes


def kd(y_s, y_t, T=4.0, weight=None, reduction="batchmean", grad_loss=None, grad_scale=1.0,
       accumulate=False, want_loss=True, want_grad_s=True, want_grad_t=False, out=None, workspace=None):
    """KD loss of student logits y_s against teacher logits y_t (N x C; float32, float16 or bfloat16, both the
    same) and its gradients (in the logits' dtype; the kernel computes in float32).

    loss = T^2 / N * sum_i w_i KL(softmax(y_t[i]/T) || softmax(y_s[i]/T))   (reduction="batchmean", 0-d)
    loss[i] = T^2 * w_i * KL_i                                               (reduction="none", N)

    weight: N float32 row weights or None (rows with weight 0 are skipped and get zero gradients).
    grad_loss: upstream gradient of the loss: a float32 tensor on the logits' device (1 value for
      batchmean, N for none), a Python number (folded into grad_scale), or None (= 1).
    grad_scale: host factor on every gradient (not on the loss).
    want_loss / want_grad_s / want_grad_t: which outputs to compute (the others are passed as NULL).
    out: (loss, grad_s, grad_t) tensors to write (or, with accumulate=True, add) into; None entries are
      allocated. grad_s / grad_t must have the row stride of y_s / y_t (the C API shares one ld); new
      gradients are allocated with it. With accumulate=True every requested output must be in out.
    workspace: a caller-owned contiguous tensor (e.g. uint8) on the logits' device, passed as is with its
      numel() * element_size() bytes, which its storage must hold (TypeError / ValueError otherwise); whether
      that is enough and its alignment are the caller's business, as in the C API (KdfuseError
      KDF_STATUS_WORKSPACE_TOO_SMALL / MISALIGNED_POINTER). Default: kdfKDWorkspaceSize bytes from torch's
      allocator.

    Rows may be strided (stride(0) >= C); columns must be contiguous. Returns (loss, grad_s, grad_t),
    None for outputs not requested. Raises KdfuseError (the library's status, or the status the library
    would use for an argument the C API cannot express, such as mismatched shapes), and TypeError /
    ValueError for a workspace or a tensor whose storage does not hold what the library would access
    (check_buffer).
    """
    for name, t in (("y_s", y_s), ("y_t", y_t)):
        if not isinstance(t, torch.Tensor):
            raise _err(KDF_STATUS_INVALID_VALUE, f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise _err(KDF_STATUS_SHAPE_MISMATCH, f"{name} must be 2-D (N x C), got shape {tuple(t.shape)}")
    if y_s.shape != y_t.shape:
        raise _err(KDF_STATUS_SHAPE_MISMATCH, f"y_s has shape {tuple(y_s.shape)}, y_t {tuple(y_t.shape)}")
    if y_s.device != y_t.device:
        raise _err(KDF_STATUS_INVALID_VALUE, f"y_s is on {y_s.device}, y_t on {y_t.device}")
    if y_s.dtype != y_t.dtype:
        raise _err(KDF_STATUS_INVALID_VALUE, f"y_s is {y_s.dtype}, y_t {y_t.dtype}")
    if y_s.dtype not in _DTYPES:
        raise _err(KDF_STATUS_NOT_SUPPORTED, f"dtype {y_s.dtype} (float32, float16 or bfloat16)")
    if reduction not in _REDUCTIONS:
        raise _err(KDF_STATUS_INVALID_VALUE, f"reduction must be 'batchmean' or 'none', not {reduction!r}")
    device = y_s.device
    backend = backend_of(device)
    n, c = y_s.shape
    ld_s = _leading_dim(y_s, "y_s")
    ld_t = _leading_dim(y_t, "y_t")
    check_buffer(y_s, "y_s", extent_bytes(y_s), _FN, contiguous=False)
    check_buffer(y_t, "y_t", extent_bytes(y_t), _FN, contiguous=False)
    loss_numel = 1 if reduction == "batchmean" else n

    if weight is not None:
        _check_vector(weight, "weight", n, device)
    grad_scale = float(grad_scale)
    if isinstance(grad_loss, numbers.Real) and not isinstance(grad_loss, bool):
        grad_scale *= float(grad_loss)  # the upstream gradient only scales the gradients
        grad_loss = None
    elif grad_loss is not None:
        _check_vector(grad_loss, "grad_loss", loss_numel, device)

    if out is None:
        out = (None, None, None)
    if len(out) != 3:
        raise _err(KDF_STATUS_INVALID_VALUE, "out must be (loss, grad_s, grad_t)")
    loss, grad_s, grad_t = out
    for name, want, t in (("loss", want_loss, loss), ("grad_s", want_grad_s, grad_s), ("grad_t", want_grad_t, grad_t)):
        if t is not None and not want:
            raise _err(KDF_STATUS_INVALID_VALUE, f"out gives {name} but want_{name} is False")
        if t is None and want and accumulate:
            raise _err(KDF_STATUS_INVALID_VALUE, f"accumulate=True needs the {name} tensor to add into in out")
    if want_loss:
        if loss is None:
            loss = torch.empty(() if reduction == "batchmean" else (n,), dtype=torch.float32, device=device)
        else:
            _check_vector(loss, "loss", loss_numel, device)
    if want_grad_s:
        if grad_s is None:
            grad_s = torch.empty_strided((n, c), (ld_s, 1), dtype=y_s.dtype, device=device)
        else:
            _check_matrix_out(grad_s, "grad_s", y_s, ld_s)
    if want_grad_t:
        if grad_t is None:
            grad_t = torch.empty_strided((n, c), (ld_t, 1), dtype=y_t.dtype, device=device)
        else:
            _check_matrix_out(grad_t, "grad_t", y_t, ld_t)

    if workspace is not None:
        if not isinstance(workspace, torch.Tensor):
            raise TypeError(f"{_FN}: workspace must be a torch.Tensor, got {type(workspace).__name__}")
        if workspace.device != device:
            raise ValueError(f"{_FN}: workspace is on {workspace.device}, the logits on {device}")
        check_buffer(workspace, "workspace", workspace.numel() * workspace.element_size(), _FN)

    params = _params(n, c, ld_s, ld_t, _DTYPES[y_s.dtype], T, _REDUCTIONS[reduction])
    lib = _lib.load(backend)
    if backend == "cuda":
        with torch.cuda.device(device):
            return _call(lib, backend, device, device.index if device.index is not None
                         else torch.cuda.current_device(), params, y_s, y_t, weight, loss, grad_s, grad_t,
                         grad_loss, grad_scale, accumulate, workspace)
    return _call(lib, backend, device, None, params, y_s, y_t, weight, loss, grad_s, grad_t, grad_loss,
                 grad_scale, accumulate, workspace)


def _call(lib, backend, device, device_index, params, y_s, y_t, weight, loss, grad_s, grad_t, grad_loss,
          grad_scale, accumulate, workspace):
    if not _lib.has(lib, "kdfKD"):
        raise _err(KDF_STATUS_NOT_SUPPORTED, f"{lib.kdfuse_path} does not export kdfKD")
    handle = _lib.handle(backend, device_index)
    if workspace is None:
        ws_bytes = ctypes.c_size_t()
        lib.kdfKDWorkspaceSize(ctypes.byref(params), ctypes.byref(ws_bytes))
        ws_keep, ws_ptr, ws_size = _alloc_workspace(ws_bytes.value, device)
    else:
        ws_keep, ws_ptr, ws_size = workspace, _vptr(workspace), workspace.numel() * workspace.element_size()
    stream = torch.cuda.current_stream(device).cuda_stream if backend == "cuda" else None
    with _lib.CALL_LOCK:
        lib.kdfKD(handle, ctypes.byref(params), _vptr(y_s), _vptr(y_t), _fptr(weight), _fptr(loss),
                  _vptr(grad_s), _vptr(grad_t), _fptr(grad_loss), ctypes.c_float(grad_scale),
                  1 if accumulate else 0, ws_ptr, ws_size, ctypes.c_void_p(stream) if stream else None)
    # ws_keep is released here: on CUDA the caching allocator reuses it only in stream order.
    del ws_keep
    return loss, grad_s, grad_t
