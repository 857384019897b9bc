"""AT (RepDistiller's Attention, one layer pair) through kdfAT: weight * mean((a(f_s) - a(f_t))^2) over the
N x h*w compared positions, a(f) = normalize(mean_C f^p), and its gradient w.r.t. f_s."""
import ctypes

import torch

from . import _abi, _feature, _lib

_FN = "kdfuse.at"


ATParams = _abi.STRUCTS["kdfATParams_t"]


def attention_call(fn, entry, size_entry, make_params, f_s, f_t, grad_loss, grad_scale, accumulate, want_loss,
                   want_grad_s, out):
    """The call path AT and FT share: layouts, outputs (loss scalar, grad_s with the strides of f_s), the
    C call with params = make_params(student_map, teacher_map). Returns (loss, grad_s)."""
    backend, device = _feature.same_device(fn, f_s=f_s, f_t=f_t)
    ms, mt = _feature.feature_map(f_s, "f_s", fn), _feature.feature_map(f_t, "f_t", fn)
    loss, grad_s = out if out is not None else (None, None)
    _feature.check_scalar(loss, "loss", fn, device)
    _feature.check_scalar(grad_loss, "grad_loss", fn, device)
    if loss is None and want_loss:
        loss = torch.zeros((), dtype=torch.float32, device=device)
    if grad_s is None and want_grad_s:
        grad_s = _feature.grad_like(f_s)
    if grad_s is not None:
        _feature.check_out(grad_s, f_s, "grad_s", fn)
    _feature.call(entry, size_entry, make_params(ms, mt),
                  [_feature.ptr(f_s), _feature.ptr(f_t), _feature.fptr(loss), _feature.ptr(grad_s),
                   _feature.fptr(grad_loss), ctypes.c_float(grad_scale), 1 if accumulate else 0], device, backend)
    return loss, grad_s


def at(f_s, f_t, p=2.0, weight=1.0, grad_loss=None, grad_scale=1.0, accumulate=False, want_loss=True,
       want_grad_s=True, out=None):
    """(loss, grad_s) of weight * mean((a(f_s) - a(f_t))^2), a(f) = normalize(mean_C f^p); f_s, f_t float32
    N x C x H x W with the same N (C, H, W may differ: the larger map is pooled to the smaller one's H x W),
    planes contiguous. grad_loss: device float32 scalar tensor or None (= 1); grad_scale: factor on the
    gradient. accumulate=True adds into out=(loss, grad_s)."""
    def params(ms, mt):
        return ATParams(ctypes.sizeof(ATParams), ms, mt, _lib.KDF_DTYPE_FP32, float(p), float(weight))

    return attention_call(_FN, "kdfAT", "kdfATWorkspaceSize", params, f_s, f_t, grad_loss, grad_scale, accumulate,
                          want_loss, want_grad_s, out)
