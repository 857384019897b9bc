"""KDSVD (RepDistiller's KDSVD) through kdfKDSVD: every layer of both networks in one call; the L - 1
consecutive-pair losses and the gradients w.r.t. the student maps (docs/losses/kdsvd.md)."""
import ctypes

import torch

from . import _abi, _feature, _lib
from ._feature import FeatureMap

_FN = "kdfuse.kdsvd"
MAX_LAYERS = _lib.KDF_KDSVD_MAX_LAYERS
MAX_K = _lib.KDF_KDSVD_MAX_K
MAX_RANK = _lib.KDF_KDSVD_MAX_RANK


KDSVDParams = _abi.STRUCTS["kdfKDSVDParams_t"]


def kdsvd(g_s, g_t, k=1, gap_rtol=1e-5, weight=1.0, grad_loss=None, grad_scale=1.0, accumulate=False, want_loss=True,
          want_grad=True, out=None):
    """(losses, [grad of each student map]) of KDSVD over the lists g_s, g_t of float32 N x C x H x H maps (H x H
    planes contiguous). losses: L - 1 floats, one per consecutive pair; grad_loss: None or L - 1 floats (the upstream
    gradient of each). want_grad: True (every layer), False, or a list of L booleans. accumulate=True adds into
    out=(losses, grads)."""
    if not isinstance(g_s, (list, tuple)) or not isinstance(g_t, (list, tuple)) or len(g_s) != len(g_t):
        raise _lib.binding_error(_lib.KDF_STATUS_INVALID_VALUE, "g_s and g_t must be lists of the same length", _FN)
    layers = len(g_s)
    if not 2 <= layers <= MAX_LAYERS:
        raise _lib.binding_error(_lib.KDF_STATUS_INVALID_VALUE, f"KDSVD takes 2 to {MAX_LAYERS} layers, got {layers}",
                                 _FN)
    named = {f"g_s[{i}]": t for i, t in enumerate(g_s)} | {f"g_t[{i}]": t for i, t in enumerate(g_t)}
    backend, device = _feature.same_device(_FN, **named)
    maps_s = [_feature.feature_map(t, f"g_s[{i}]", _FN) for i, t in enumerate(g_s)]
    maps_t = [_feature.feature_map(t, f"g_t[{i}]", _FN) for i, t in enumerate(g_t)]
    wants = [bool(want_grad)] * layers if isinstance(want_grad, bool) else [bool(w) for w in want_grad]
    if len(wants) != layers:
        raise _lib.binding_error(_lib.KDF_STATUS_INVALID_VALUE, f"want_grad must be a bool or {layers} bools", _FN)
    losses, grads = out if out is not None else (None, None)
    grads = list(grads) if grads is not None else [None] * layers
    for t, name in ((losses, "losses"), (grad_loss, "grad_loss")):
        if t is not None and (not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or t.device != device
                              or t.numel() != layers - 1):
            raise _lib.binding_error(_lib.KDF_STATUS_INVALID_VALUE,
                                     f"{name} must be {layers - 1} float32 values on {device}", _FN)
        if t is not None:
            _feature.check_buffer(t, name, 4 * (layers - 1), _FN)
    if losses is None and want_loss:
        losses = torch.zeros(layers - 1, dtype=torch.float32, device=device)
    for i in range(layers):
        if grads[i] is None and wants[i]:
            grads[i] = _feature.grad_like(g_s[i])
        if grads[i] is not None:
            _feature.check_out(grads[i], g_s[i], f"grads[{i}]", _FN)
    params = KDSVDParams(ctypes.sizeof(KDSVDParams), layers, (FeatureMap * MAX_LAYERS)(*maps_s),
                         (FeatureMap * MAX_LAYERS)(*maps_t), _lib.KDF_DTYPE_FP32, int(k), float(gap_rtol),
                         float(weight))
    ptrs = ctypes.c_void_p * layers
    f_s = ptrs(*[_feature.ptr(t) for t in g_s])
    f_t = ptrs(*[_feature.ptr(t) for t in g_t])
    g_ptrs = ptrs(*[_feature.ptr(g) for g in grads]) if any(g is not None for g in grads) else None
    _feature.call("kdfKDSVD", "kdfKDSVDWorkspaceSize", params,
                  [f_s, f_t, _feature.fptr(losses), g_ptrs, _feature.fptr(grad_loss), ctypes.c_float(grad_scale),
                   1 if accumulate else 0], device, backend)
    return losses, grads
