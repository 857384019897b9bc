"""SP (similarity-preserving KD, RepDistiller's Similarity) through kdfSP: one layer pair per call,
weight * sum((normalize_rows(f_t f_t^T) - normalize_rows(f_s f_s^T))^2) / N^2 and its gradient."""
import ctypes

import torch

from . import _abi, _feature, _lib
from ._lib import KDF_STATUS_INVALID_VALUE, KDF_STATUS_NOT_SUPPORTED, KDF_STATUS_SHAPE_MISMATCH, binding_error
from .kd import check_buffer, extent_bytes

_FN = "kdfuse.sp"


SPParams = _abi.STRUCTS["kdfSPParams_t"]


def rows_of(t, name, fn):
    """(N, D, ld) of a float32 tensor N x ... read as N rows of D = numel / N elements: each sample
    contiguous, samples ld elements apart (a batch slice of a larger tensor works)."""
    if not isinstance(t, torch.Tensor):
        raise binding_error(KDF_STATUS_INVALID_VALUE, f"{name} must be a torch.Tensor", fn)
    if t.dtype != torch.float32:
        raise binding_error(KDF_STATUS_NOT_SUPPORTED if t.dtype in (torch.float16, torch.bfloat16) else
                            KDF_STATUS_INVALID_VALUE, f"{name} must be float32, got {t.dtype}", fn)
    if t.dim() < 2:
        raise binding_error(KDF_STATUS_INVALID_VALUE, f"{name} must be N x D or N x C x H x W, got {t.dim()}-D", fn)
    check_buffer(t, name, extent_bytes(t), fn, contiguous=False)
    n = t.shape[0]
    d = t[0].numel() if n else 0
    if n > 0 and not t[0].is_contiguous():
        raise binding_error(KDF_STATUS_INVALID_VALUE, f"{name}: each sample must be contiguous, strides "
                                                      f"{tuple(t.stride())}", fn)
    ld = t.stride(0) if n > 1 else d
    if ld < d:
        raise binding_error(KDF_STATUS_INVALID_VALUE, f"{name}: overlapping samples, strides {tuple(t.stride())}", fn)
    return n, d, ld


def sp(f_s, f_t, weight=1.0, grad_loss=None, grad_scale=1.0, accumulate=False, want_loss=True, want_grad_s=True,
       out=None):
    """(loss, grad_s) of SP for student features f_s (N x ...) and teacher features f_t (N x ...), float32,
    flattened per sample (D_s and D_t may differ). grad_loss: device float32 scalar tensor or None (= 1);
    grad_scale: factor on the gradient. accumulate=True adds into out=(loss, grad_s)."""
    backend, device = _feature.same_device(_FN, f_s=f_s, f_t=f_t)
    n, ds, lds = rows_of(f_s, "f_s", _FN)
    nt, dt, ldt = rows_of(f_t, "f_t", _FN)
    if nt != n:
        raise binding_error(KDF_STATUS_SHAPE_MISMATCH, f"f_t has {nt} samples, f_s {n}", _FN)
    loss, grad_s = out if out is not None else (None, None)
    _feature.check_scalar(loss, "loss", _FN, device)
    _feature.check_scalar(grad_loss, "grad_loss", _FN, device)
    if loss is None and want_loss:
        loss = torch.zeros((), dtype=torch.float32, device=device)
    if grad_s is None and want_grad_s:
        grad_s = _feature.grad_like(f_s)
    if grad_s is not None:
        _feature.check_out(grad_s, f_s, "grad_s", _FN)
    params = SPParams(ctypes.sizeof(SPParams), n, ds, dt, lds, ldt, _lib.KDF_DTYPE_FP32, float(weight))
    _feature.call("kdfSP", "kdfSPWorkspaceSize", params,
                  [_feature.ptr(f_s), _feature.ptr(f_t), _feature.fptr(loss), _feature.ptr(grad_s),
                   _feature.fptr(grad_loss), ctypes.c_float(grad_scale), 1 if accumulate else 0], device, backend)
    return loss, grad_s
