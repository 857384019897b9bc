"""PKT (Passalis & Tefas; RepDistiller's PKT) through kdfPKT: the loss of two batches of embeddings and the
student's gradient, with Gram matrices on cuBLAS and O(N^2) workspace.

The helpers here (N x D embedding checks, leading dimensions) are shared with kdfuse.rkd."""
import ctypes

import torch

from . import _abi, _feature, _lib
from ._lib import KDF_STATUS_INVALID_VALUE, KDF_STATUS_NOT_SUPPORTED, KDF_STATUS_SHAPE_MISMATCH, binding_error
from .kd import _leading_dim, check_buffer, extent_bytes

_FN = "kdfuse.pkt"


PKTParams = _abi.STRUCTS["kdfPKTParams_t"]


def embedding(t, name, fn):
    """(N x D view, ld) of a float32 tensor of rank >= 2 whose samples flatten to rows with unit column
    stride (2-D with any row stride, or contiguous per sample)."""
    if not isinstance(t, torch.Tensor):
        raise binding_error(KDF_STATUS_INVALID_VALUE, f"{name} must be a torch.Tensor", fn)
    if t.dtype != torch.float32:
        raise binding_error(KDF_STATUS_NOT_SUPPORTED if t.dtype in (torch.float16, torch.bfloat16) else
                            KDF_STATUS_INVALID_VALUE, f"{name} must be float32, got {t.dtype}", fn)
    if t.dim() < 2:
        raise binding_error(KDF_STATUS_INVALID_VALUE, f"{name} must have rank >= 2, got {t.dim()}", fn)
    check_buffer(t, name, extent_bytes(t), fn, contiguous=False)
    if t.dim() > 2:
        try:
            t = t.view(t.shape[0], -1)
        except RuntimeError:
            raise binding_error(KDF_STATUS_INVALID_VALUE, f"{name}: each sample must be contiguous", fn) from None
    try:
        ld = _leading_dim(t, name)
    except _lib.KdfuseError as e:
        raise binding_error(e.status, e.detail, fn) from None
    return t, ld


def embedding_pair(fn, e_s, e_t, grad_s):
    """Common checks of the relational bindings: (backend, device, e_s 2-D, ld_s, e_t 2-D, ld_t)."""
    backend, device = _feature.same_device(fn, e_s=e_s, e_t=e_t)
    s2, ld_s = embedding(e_s, "e_s", fn)
    t2, ld_t = embedding(e_t, "e_t", fn)
    if s2.shape[0] != t2.shape[0]:
        raise binding_error(KDF_STATUS_SHAPE_MISMATCH, f"batch sizes differ: {s2.shape[0]} vs {t2.shape[0]}", fn)
    if grad_s is not None:
        g2, ld_g = embedding(grad_s, "grad_s", fn)
        if g2.device != device or g2.shape != s2.shape or ld_g != ld_s:
            raise binding_error(KDF_STATUS_INVALID_VALUE, "grad_s must have the device, shape and row stride of e_s",
                                fn)
    return backend, device, s2, ld_s, t2, ld_t


def run(fn, entry, size_entry, params, e_s, e_t, loss, grad_s, grad_loss, grad_scale, accumulate, device, backend):
    _feature.check_scalar(loss, "loss", fn, device)
    _feature.check_scalar(grad_loss, "grad_loss", fn, device)
    _feature.call(entry, size_entry, params,
                  [_feature.ptr(e_s), _feature.ptr(e_t), _feature.fptr(loss), _feature.ptr(grad_s),
                   _feature.fptr(grad_loss), ctypes.c_float(grad_scale), 1 if accumulate else 0], device, backend)


def pkt(f_s, f_t, weight=1.0, grad_loss=None, grad_scale=1.0, accumulate=False, want_loss=True, want_grad_s=True,
        out=None):
    """(loss, grad_s) of weight * PKT(f_s, f_t); f_s (N x D_s), f_t (N x D_t) float32, unit column stride
    (rank > 2: flattened per sample). grad_loss: device float32 scalar tensor or None (= 1); grad_scale:
    factor on the gradient. accumulate=True adds into out=(loss, grad_s)."""
    loss, grad_s = out if out is not None else (None, None)
    backend, device, s2, ld_s, t2, ld_t = embedding_pair(_FN, f_s, f_t, grad_s)
    if loss is None and want_loss:
        loss = torch.zeros((), dtype=torch.float32, device=device)
    if grad_s is None and want_grad_s:
        grad_s = _feature.grad_like(f_s)
        if grad_s.stride() != f_s.stride():
            raise binding_error(KDF_STATUS_INVALID_VALUE, "f_s must be non-overlapping and dense", _FN)
    params = PKTParams(ctypes.sizeof(PKTParams), s2.shape[0], s2.shape[1], t2.shape[1], ld_s, ld_t,
                       _lib.KDF_DTYPE_FP32, float(weight))
    run(_FN, "kdfPKT", "kdfPKTWorkspaceSize", params, s2, t2, loss, grad_s, grad_loss, grad_scale, accumulate,
        device, backend)
    return loss, grad_s
