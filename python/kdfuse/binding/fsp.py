"""FSP (RepDistiller's FSP) through kdfFSP: one pair of consecutive maps, weight * mean (G_s - G_t)^2 and the
gradients w.r.t. both student maps (docs/losses/fsp.md). The seed's list of L maps is L - 1 calls; `fsp_chain`
makes them, summing into one loss and accumulating each middle map's gradient."""
import ctypes

import torch

from . import _abi, _feature, _lib

_FN = "kdfuse.fsp"


FSPParams = _abi.STRUCTS["kdfFSPParams_t"]


def fsp(s_bot, s_top, t_bot, t_top, weight=1.0, grad_loss=None, grad_scale=1.0, accumulate=False, want_loss=True,
        want_grad_bot=True, want_grad_top=True, out=None):
    """(loss, grad_s_bot, grad_s_top) of FSP for one pair of consecutive maps (float32 N x C x H x W, planes
    contiguous). accumulate=True adds into out=(loss, grad_s_bot, grad_s_top)."""
    backend, device = _feature.same_device(_FN, s_bot=s_bot, s_top=s_top, t_bot=t_bot, t_top=t_top)
    maps = [_feature.feature_map(t, n, _FN) for t, n in
            ((s_bot, "s_bot"), (s_top, "s_top"), (t_bot, "t_bot"), (t_top, "t_top"))]
    loss, g_bot, g_top = out if out is not None else (None, None, None)
    _feature.check_scalar(loss, "loss", _FN, device)
    _feature.check_scalar(grad_loss, "grad_loss", _FN, device)
    if loss is None and want_loss:
        loss = torch.zeros((), dtype=torch.float32, device=device)
    if g_bot is None and want_grad_bot:
        g_bot = _feature.grad_like(s_bot)
    if g_top is None and want_grad_top:
        g_top = _feature.grad_like(s_top)
    for g, f, name in ((g_bot, s_bot, "grad_s_bot"), (g_top, s_top, "grad_s_top")):
        if g is not None:
            _feature.check_out(g, f, name, _FN)
    params = FSPParams(ctypes.sizeof(FSPParams), *maps, _lib.KDF_DTYPE_FP32, float(weight))
    _feature.call("kdfFSP", "kdfFSPWorkspaceSize", params,
                  [_feature.ptr(s_bot), _feature.ptr(s_top), _feature.ptr(t_bot), _feature.ptr(t_top),
                   _feature.fptr(loss), _feature.ptr(g_bot), _feature.ptr(g_top), _feature.fptr(grad_loss),
                   ctypes.c_float(grad_scale), 1 if accumulate else 0], device, backend)
    return loss, g_bot, g_top


def fsp_chain(g_s, g_t, weights=None, grad_scale=1.0):
    """(loss, [grad of each student map]) of sum_i weights[i] * FSP(pair i) over the consecutive pairs of the
    lists g_s, g_t (the seed's FSP summed with per-pair weights, default 1)."""
    if len(g_s) != len(g_t) or len(g_s) < 2:
        raise _lib.binding_error(_lib.KDF_STATUS_INVALID_VALUE, "g_s and g_t must be lists of the same length >= 2", _FN)
    weights = [1.0] * (len(g_s) - 1) if weights is None else list(weights)
    loss = torch.zeros((), dtype=torch.float32, device=g_s[0].device)
    grads = [_feature.grad_like(f) for f in g_s]
    for i in range(len(g_s) - 1):
        fsp(g_s[i], g_s[i + 1], g_t[i], g_t[i + 1], weight=weights[i], grad_scale=grad_scale, accumulate=True,
            out=(loss, grads[i], grads[i + 1]))
    return loss, grads
