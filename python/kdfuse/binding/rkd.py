"""RKD (Park et al.; RepDistiller's RKDLoss) through kdfRKD: the distance and angle terms of two batches of
embeddings and the student's gradient, from Gram matrices on cuBLAS with O(N^2) workspace (no N x N x D or
N^3 tensor)."""
import ctypes

import torch

from . import _abi, _feature, _lib
from .pkt import embedding_pair, run

_FN = "kdfuse.rkd"


RKDParams = _abi.STRUCTS["kdfRKDParams_t"]


def rkd(e_s, e_t, w_d=25.0, w_a=50.0, weight=1.0, grad_loss=None, grad_scale=1.0, accumulate=False, want_loss=True,
        want_grad_s=True, out=None):
    """(loss, grad_s) of weight * (w_d L_d + w_a L_a); e_s (N x ...), e_t (N x ...) float32, flattened per
    sample (2-D with unit column stride, or contiguous per sample). N = 1 gives 0 (the seed's NaN).
    grad_loss: device float32 scalar tensor or None (= 1); grad_scale: factor on the gradient.
    accumulate=True adds into out=(loss, grad_s)."""
    loss, grad_s = out if out is not None else (None, None)
    backend, device, s2, ld_s, t2, ld_t = embedding_pair(_FN, e_s, e_t, grad_s)
    if loss is None and want_loss:
        loss = torch.zeros((), dtype=torch.float32, device=device)
    if grad_s is None and want_grad_s:
        grad_s = _feature.grad_like(e_s)
        if grad_s.stride() != e_s.stride():
            raise _lib.binding_error(_lib.KDF_STATUS_INVALID_VALUE, "e_s must be non-overlapping and dense", _FN)
    params = RKDParams(ctypes.sizeof(RKDParams), s2.shape[0], s2.shape[1], t2.shape[1], ld_s, ld_t,
                       _lib.KDF_DTYPE_FP32, float(w_d), float(w_a), float(weight))
    run(_FN, "kdfRKD", "kdfRKDWorkspaceSize", params, s2, t2, loss, grad_s, grad_loss, grad_scale, accumulate,
        device, backend)
    return loss, grad_s
