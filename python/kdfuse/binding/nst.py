"""NST (RepDistiller's NSTLoss) through kdfNST: one layer pair, weight * (mean k(t,t) + mean k(s,s) - 2 mean k(s,t))
and its gradient w.r.t. f_s (docs/losses/nst.md)."""
import ctypes

import torch

from . import _abi, _feature, _lib

_FN = "kdfuse.nst"


NSTParams = _abi.STRUCTS["kdfNSTParams_t"]


def nst(f_s, f_t, weight=1.0, full_loss=True, grad_loss=None, grad_scale=1.0, accumulate=False, want_loss=True,
        want_grad_s=True, out=None):
    """(loss, grad_s) of NST for one layer pair: f_s N x C_s x H x W, f_t N x C_t x H' x W' float32 (planes
    contiguous); the larger map is pooled to the smaller one's H x W. grad_loss: device float32 scalar tensor
    or None (= 1); grad_scale: factor on the gradient. accumulate=True adds into out=(loss, grad_s)."""
    backend, device = _feature.same_device(_FN, f_s=f_s, f_t=f_t)
    ms, mt = _feature.feature_map(f_s, "f_s", _FN), _feature.feature_map(f_t, "f_t", _FN)
    loss, grad_s = out if out is not None else (None, None)
    _feature.check_scalar(loss, "loss", _FN, device)
    _feature.check_scalar(grad_loss, "grad_loss", _FN, device)
    if loss is None and want_loss:
        loss = torch.zeros((), dtype=torch.float32, device=device)
    if grad_s is None and want_grad_s:
        grad_s = _feature.grad_like(f_s)
    if grad_s is not None:
        _feature.check_out(grad_s, f_s, "grad_s", _FN)
    params = NSTParams(ctypes.sizeof(NSTParams), ms, mt, _lib.KDF_DTYPE_FP32, 1 if full_loss else 0, float(weight))
    _feature.call("kdfNST", "kdfNSTWorkspaceSize", params,
                  [_feature.ptr(f_s), _feature.ptr(f_t), _feature.fptr(loss), _feature.ptr(grad_s),
                   _feature.fptr(grad_loss), ctypes.c_float(grad_scale), 1 if accumulate else 0], device, backend)
    return loss, grad_s
