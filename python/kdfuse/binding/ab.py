"""AB (activation boundaries; RepDistiller's ABLoss, one layer) through kdfAB: the loss and its gradient."""
import ctypes

import torch

from . import _abi, _feature, _lib

_FN = "kdfuse.ab"


ABParams = _abi.STRUCTS["kdfABParams_t"]


def ab(s, t, margin=1.0, weight=1.0, seed_scaling=True, grad_loss=None, grad_scale=1.0, accumulate=False,
       want_loss=True, want_grad_s=True, out=None):
    """(loss, grad_s) of one AB layer: weight * sum((s + m)^2 [s > -m, t <= 0] + (s - m)^2 [s <= m, t > 0]),
    divided by N and multiplied by 3/1000 when seed_scaling (the seed's scaling), m = margin.

    s: the connector's pre-ReLU output, t: the teacher's pre-ReLU map, float32 of one shape (N x C x H x W or
    N x D), planes contiguous. weight: the layer weight (the seed's 2^(i - L + 1)). grad_loss: device float32
    scalar tensor or None (= 1); grad_scale: factor on the gradient. accumulate=True adds into out=(loss, grad_s).
    """
    backend, device = _feature.same_device(_FN, s=s, t=t)
    ms, mt = _feature.feature_map(s, "s", _FN), _feature.feature_map(t, "t", _FN)
    _feature.check_shape(t, s.shape, "t", _FN)
    loss, grad_s = out if out is not None else (None, None)
    _feature.check_scalar(loss, "loss", _FN, device)
    _feature.check_scalar(grad_loss, "grad_loss", _FN, device)
    if loss is None and want_loss:
        loss = torch.zeros((), dtype=torch.float32, device=device)
    if grad_s is None and want_grad_s:
        grad_s = _feature.grad_like(s)
    if grad_s is not None:
        _feature.check_out(grad_s, s, "grad_s", _FN)
    params = ABParams(ctypes.sizeof(ABParams), ms, mt, _lib.KDF_DTYPE_FP32, float(margin), float(weight),
                      1 if seed_scaling else 0)
    _feature.call("kdfAB", "kdfABWorkspaceSize", params,
                  [_feature.ptr(s), _feature.ptr(t), _feature.fptr(loss), _feature.ptr(grad_s),
                   _feature.fptr(grad_loss), ctypes.c_float(grad_scale), 1 if accumulate else 0], device, backend)
    return loss, grad_s
