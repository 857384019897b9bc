"""CC (correlation congruence, RepDistiller's Correlation) through kdfCC: the seed's Gram version
(variant="seed") or RepDistiller's shipped consecutive-row version (variant="repdistiller", gradients for
both embeddings)."""
import ctypes

import torch

from . import _feature, _lib
from ._lib import KDF_STATUS_INVALID_VALUE, KDF_STATUS_SHAPE_MISMATCH, binding_error
from .sp import rows_of

_FN = "kdfuse.cc"
_i64 = ctypes.c_int64
KDF_CC_SEED, KDF_CC_REPDISTILLER = 0, 1
_VARIANTS = {"seed": KDF_CC_SEED, "repdistiller": KDF_CC_REPDISTILLER}


class CCParams(ctypes.Structure):
    """Mirror of kdfCCParams_t."""

    _fields_ = [("struct_size", ctypes.c_size_t), ("rows", _i64), ("dim_student", _i64), ("dim_teacher", _i64),
                ("ld_student", _i64), ("ld_teacher", _i64), ("dtype", _lib.c_enum), ("variant", _lib.c_enum),
                ("weight", ctypes.c_float)]


_P, _vp, _fp = ctypes.POINTER, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float)
_lib.register({
    "kdfCCWorkspaceSize": (_lib.STATUS, [_P(CCParams), _P(ctypes.c_size_t)]),
    # handle, params, f_s, f_t, loss, grad_s, grad_t, grad_loss, grad_scale, accumulate, workspace, bytes, stream
    "kdfCC": (_lib.STATUS, [_lib.kdfHandle_t, _P(CCParams), _vp, _vp, _fp, _vp, _vp, _fp, ctypes.c_float, ctypes.c_int,
                            _vp, ctypes.c_size_t, _lib.kdfStream_t]),
})


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
