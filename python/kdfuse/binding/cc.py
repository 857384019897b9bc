"""CC (correlation congruence, RepDistiller's Correlation) through kdfCC: the seed's Gram version
(variant="seed") or RepDistiller's shipped consecutive-row version (variant="repdistiller", gradients for
both embeddings)."""
import ctypes

import torch

from . import _abi, _feature, _lib
from ._lib import KDF_STATUS_INVALID_VALUE, KDF_STATUS_SHAPE_MISMATCH, binding_error
from .sp import rows_of

_FN = "kdfuse.cc"
_VARIANTS = {"seed": _lib.KDF_CC_SEED, "repdistiller": _lib.KDF_CC_REPDISTILLER}


CCParams = _abi.STRUCTS["kdfCCParams_t"]


def cc(f_s, f_t, variant="seed", weight=1.0, grad_loss=None, grad_scale=1.0, accumulate=False, want_loss=True,
       want_grad_s=True, want_grad_t=False, out=None):
    """(loss, grad_s, grad_t) of CC for f_s, f_t (N x ..., float32, flattened per sample). grad_t only for
    variant="repdistiller" (same D on both sides). accumulate=True adds into out=(loss, grad_s, grad_t)."""
    if variant not in _VARIANTS:
        raise binding_error(KDF_STATUS_INVALID_VALUE, f"variant must be one of {sorted(_VARIANTS)}, not {variant!r}", _FN)
    backend, device = _feature.same_device(_FN, f_s=f_s, f_t=f_t)
    n, ds, lds = rows_of(f_s, "f_s", _FN)
    nt, dt, ldt = rows_of(f_t, "f_t", _FN)
    if nt != n:
        raise binding_error(KDF_STATUS_SHAPE_MISMATCH, f"f_t has {nt} samples, f_s {n}", _FN)
    loss, grad_s, grad_t = out if out is not None else (None, None, None)
    _feature.check_scalar(loss, "loss", _FN, device)
    _feature.check_scalar(grad_loss, "grad_loss", _FN, device)
    if loss is None and want_loss:
        loss = torch.zeros((), dtype=torch.float32, device=device)
    if grad_s is None and want_grad_s:
        grad_s = _feature.grad_like(f_s)
    if grad_t is None and want_grad_t:
        grad_t = _feature.grad_like(f_t)
    for g, f, name in ((grad_s, f_s, "grad_s"), (grad_t, f_t, "grad_t")):
        if g is not None:
            _feature.check_out(g, f, name, _FN)
    params = CCParams(ctypes.sizeof(CCParams), n, ds, dt, lds, ldt, _lib.KDF_DTYPE_FP32, _VARIANTS[variant], float(weight))
    _feature.call("kdfCC", "kdfCCWorkspaceSize", params,
                  [_feature.ptr(f_s), _feature.ptr(f_t), _feature.fptr(loss), _feature.ptr(grad_s), _feature.ptr(grad_t),
                   _feature.fptr(grad_loss), ctypes.c_float(grad_scale), 1 if accumulate else 0], device, backend)
    return loss, grad_s, grad_t
