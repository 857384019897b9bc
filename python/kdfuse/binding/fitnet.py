"""FitNet (RepDistiller's HintLoss) through kdfFitNet: weight * mean((f_s - f_t)^2) and its gradient."""
import ctypes

import torch

from . import _abi, _feature, _lib

_FN = "kdfuse.fitnet"


FitNetParams = _abi.STRUCTS["kdfFitNetParams_t"]


def fitnet(f_s, f_t, weight=1.0, grad_loss=None, grad_scale=1.0, accumulate=False, want_loss=True,
           want_grad_s=True, out=None):
    """(loss, grad_s) of weight * mean((f_s - f_t)^2); f_s, f_t float32 of one shape (N x C x H x W or
    N x D), planes contiguous. grad_loss: device float32 scalar tensor or None (= 1); grad_scale: factor
    on the gradient. accumulate=True adds into out=(loss, grad_s)."""
    backend, device = _feature.same_device(_FN, f_s=f_s, f_t=f_t)
    ms, mt = _feature.feature_map(f_s, "f_s", _FN), _feature.feature_map(f_t, "f_t", _FN)
    _feature.check_shape(f_t, f_s.shape, "f_t", _FN)
    loss, grad_s = out if out is not None else (None, None)
    _feature.check_scalar(loss, "loss", _FN, device)
    _feature.check_scalar(grad_loss, "grad_loss", _FN, device)
    if loss is None and want_loss:
        loss = torch.zeros((), dtype=torch.float32, device=device)
    if grad_s is None and want_grad_s:
        grad_s = _feature.grad_like(f_s)
    if grad_s is not None:
        _feature.check_out(grad_s, f_s, "grad_s", _FN)
    params = FitNetParams(ctypes.sizeof(FitNetParams), ms, mt, _lib.KDF_DTYPE_FP32, float(weight))
    _feature.call("kdfFitNet", "kdfFitNetWorkspaceSize", params,
                  [_feature.ptr(f_s), _feature.ptr(f_t), _feature.fptr(loss), _feature.ptr(grad_s),
                   _feature.fptr(grad_loss), ctypes.c_float(grad_scale), 1 if accumulate else 0], device, backend)
    return loss, grad_s
