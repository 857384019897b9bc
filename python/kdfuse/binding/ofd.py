"""OFD (A Comprehensive Overhaul of Feature Distillation, one layer) through kdfOFD: the loss and its gradient,
with the seed's per-batch margin or the original paper's fixed margin (ofd_margin_from_bn)."""
import ctypes

import torch

from . import _abi, _feature, _lib

_FN = "kdfuse.ofd"
_VARIANTS = {"seed": _lib.KDF_OFD_SEED, "original": _lib.KDF_OFD_ORIGINAL}


OFDParams = _abi.STRUCTS["kdfOFDParams_t"]


def _channel_vector(x, name, channels, device):
    """A float32 contiguous tensor of `channels` values on `device` ((C,) or (1, C, 1, 1))."""
    if not isinstance(x, torch.Tensor):
        raise _lib.binding_error(_lib.KDF_STATUS_INVALID_VALUE, f"{name} must be a torch.Tensor", _FN)
    if x.dtype != torch.float32 or x.device != device:
        raise _lib.binding_error(_lib.KDF_STATUS_INVALID_VALUE, f"{name} must be float32 on {device}, got {x.dtype} "
                                                                f"on {x.device}", _FN)
    if x.numel() != channels:
        raise _lib.binding_error(_lib.KDF_STATUS_SHAPE_MISMATCH, f"{name} has {x.numel()} values, expected {channels}", _FN)
    if not x.is_contiguous():
        raise _lib.binding_error(_lib.KDF_STATUS_INVALID_VALUE, f"{name} must be contiguous", _FN)
    return _feature.check_buffer(x, name, channels * 4, _FN)


def ofd(s, t, margin=None, variant="seed", weight=1.0, grad_loss=None, grad_scale=1.0, accumulate=False,
        want_loss=True, want_grad_s=True, out=None):
    """(loss, grad_s) of one OFD layer: t' = max(t, margin_c), mask = not(s <= t' <= 0),
    variant "seed": weight * mean((s - t')^2 mask) with margin_c from t's batch statistics (margin must be None);
    variant "original": weight * sum((s - t')^2 mask) / (N * 1000) with the given margin (C float32 values,
    e.g. from ofd_margin_from_bn).

    s: the connector's output, t: the teacher's pre-ReLU map, float32 N x C x H x W of one shape, planes
    contiguous. grad_loss: device float32 scalar tensor or None (= 1); grad_scale: factor on the gradient.
    accumulate=True adds into out=(loss, grad_s).
    """
    if variant not in _VARIANTS:
        raise _lib.binding_error(_lib.KDF_STATUS_INVALID_VALUE, f"variant must be one of {sorted(_VARIANTS)}, "
                                                                f"not {variant!r}", _FN)
    backend, device = _feature.same_device(_FN, s=s, t=t)
    ms, mt = _feature.feature_map(s, "s", _FN), _feature.feature_map(t, "t", _FN)
    _feature.check_shape(t, s.shape, "t", _FN)
    if margin is not None:
        if variant == "seed":
            raise _lib.binding_error(_lib.KDF_STATUS_INVALID_VALUE, "variant='seed' computes the margin from t; pass "
                                                                    "margin only with variant='original'", _FN)
        margin = _channel_vector(margin, "margin", ms.c, device)
    elif variant == "original":
        raise _lib.binding_error(_lib.KDF_STATUS_NULL_POINTER, "variant='original' needs the per-channel margin "
                                                               "(see ofd_margin_from_bn)", _FN)
    loss, grad_s = out if out is not None else (None, None)
    _feature.check_scalar(loss, "loss", _FN, device)
    _feature.check_scalar(grad_loss, "grad_loss", _FN, device)
    if loss is None and want_loss:
        loss = torch.zeros((), dtype=torch.float32, device=device)
    if grad_s is None and want_grad_s:
        grad_s = _feature.grad_like(s)
    if grad_s is not None:
        _feature.check_out(grad_s, s, "grad_s", _FN)
    params = OFDParams(ctypes.sizeof(OFDParams), ms, mt, _lib.KDF_DTYPE_FP32, _VARIANTS[variant], float(weight))
    _feature.call("kdfOFD", "kdfOFDWorkspaceSize", params,
                  [_feature.ptr(s), _feature.ptr(t), _feature.fptr(margin), _feature.fptr(loss), _feature.ptr(grad_s),
                   _feature.fptr(grad_loss), ctypes.c_float(grad_scale), 1 if accumulate else 0], device, backend)
    return loss, grad_s


def ofd_margin_from_bn(gamma, beta):
    """The original paper's per-channel margin (float32, shape (C,)) from the teacher's BN weight and bias
    (float32 tensors of C values on one device), computed by kdfOFDMarginFromBN."""
    if not isinstance(gamma, torch.Tensor):
        raise _lib.binding_error(_lib.KDF_STATUS_INVALID_VALUE, "gamma must be a torch.Tensor", _FN)
    backend, device = _feature.same_device(_FN, gamma=gamma, beta=beta)
    channels = gamma.numel()
    gamma = _channel_vector(gamma.detach(), "gamma", channels, device)
    beta = _channel_vector(beta.detach(), "beta", channels, device)
    margin = torch.empty(channels, dtype=torch.float32, device=device)
    _feature.call_without_workspace("kdfOFDMarginFromBN", [channels, _feature.fptr(gamma), _feature.fptr(beta),
                                                           _feature.fptr(margin)], device, backend)
    return margin
