"""VID (RepDistiller's VIDLoss after the regressor) through kdfVID: the loss, the gradient of pred_mean and
the gradient of log_scale in one fused call."""
import ctypes

import torch

from . import _abi, _feature, _lib

_FN = "kdfuse.vid"


VIDParams = _abi.STRUCTS["kdfVIDParams_t"]


def _check_channels(t, name, channels, device):
    """log_scale / grad_log_scale: C contiguous float32 values on `device`."""
    if not isinstance(t, torch.Tensor):
        raise _lib.binding_error(_lib.KDF_STATUS_INVALID_VALUE, f"{name} must be a torch.Tensor", _FN)
    if t.dtype != torch.float32:
        raise _lib.binding_error(_lib.KDF_STATUS_INVALID_VALUE, f"{name} must be float32, got {t.dtype}", _FN)
    if t.device != device:
        raise _lib.binding_error(_lib.KDF_STATUS_INVALID_VALUE, f"{name} is on {t.device}, pred_mean on {device}", _FN)
    if t.numel() != channels:
        raise _lib.binding_error(_lib.KDF_STATUS_SHAPE_MISMATCH,
                                 f"{name} has {t.numel()} elements, expected C = {channels}", _FN)
    if not t.is_contiguous():
        raise _lib.binding_error(_lib.KDF_STATUS_INVALID_VALUE, f"{name} must be contiguous", _FN)
    _feature.check_buffer(t, name, channels * 4, _FN)


def vid(pred_mean, target, log_scale, eps=1e-5, weight=1.0, grad_loss=None, grad_scale=1.0, accumulate=False,
        want_loss=True, want_grad_pred=True, want_grad_log_scale=True, out=None):
    """(loss, grad_pred, grad_log_scale) of weight * mean(0.5 ((pred_mean - t)^2 / var + log var)),
    var = softplus(log_scale) + eps per channel, t = target adaptive-avg-pooled to pred_mean's H x W when
    larger. pred_mean (N x C x H x W), target (N x C x H' x W', H' >= H, W' >= W): float32, planes
    contiguous; log_scale: C float32 values. grad_loss: device float32 scalar tensor or None (= 1);
    grad_scale: factor on the gradients. accumulate=True adds into out=(loss, grad_pred, grad_log_scale);
    outputs not wanted (want_*=False, or None in out) are not computed."""
    backend, device = _feature.same_device(_FN, pred_mean=pred_mean, target=target, log_scale=log_scale)
    mp, mt = _feature.feature_map(pred_mean, "pred_mean", _FN), _feature.feature_map(target, "target", _FN)
    _check_channels(log_scale, "log_scale", mp.c, device)
    loss, grad_pred, grad_ls = out if out is not None else (None, None, None)
    _feature.check_scalar(loss, "loss", _FN, device)
    _feature.check_scalar(grad_loss, "grad_loss", _FN, device)
    if out is None:
        if want_loss:
            loss = torch.zeros((), dtype=torch.float32, device=device)
        if want_grad_pred:
            grad_pred = _feature.grad_like(pred_mean)
        if want_grad_log_scale:
            grad_ls = torch.zeros(log_scale.shape, dtype=torch.float32, device=device)
    if grad_pred is not None:
        _feature.check_out(grad_pred, pred_mean, "grad_pred", _FN)
    if grad_ls is not None:
        _check_channels(grad_ls, "grad_log_scale", mp.c, device)
    params = VIDParams(ctypes.sizeof(VIDParams), mp, mt, _lib.KDF_DTYPE_FP32, float(eps), float(weight))
    _feature.call("kdfVID", "kdfVIDWorkspaceSize", params,
                  [_feature.ptr(pred_mean), _feature.ptr(target), _feature.fptr(log_scale), _feature.fptr(loss),
                   _feature.ptr(grad_pred), _feature.fptr(grad_ls), _feature.fptr(grad_loss), ctypes.c_float(grad_scale),
                   1 if accumulate else 0], device, backend)
    return loss, grad_pred, grad_ls
