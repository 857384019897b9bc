"""PyTorch ops for every kdfuse loss: ``torch.ops.kdfuse.<loss>``, with autograd and fake (meta) kernels, so the
losses work in eager mode and under ``torch.compile`` (no graph breaks).

The ops are defined in C++ (python/csrc, loaded by kdfuse._extension): their schemas, device kernels and autograd.
Each op makes ONE call of the C library, which returns the loss and, in the same fused pass, the gradients of the
inputs that need one (the ``need_grad_*`` flags). The op returns them as extra outputs; its autograd node saves them
and its backward is ``saved_gradient * grad_output``, a multiply on the device (no ``.item()``, no host
synchronisation; any grad_output, not only 1). A gradient that is not needed is not computed and comes back as an
empty tensor of shape (0,). The fake kernels are in kdfuse._meta.

KDSVD is the exception: its output is one loss per pair of consecutive layers, and a middle layer's gradient mixes
the grad_output of its two pairs, which one saved gradient cannot follow. ``torch.ops.kdfuse.kdsvd`` computes the
losses only; its backward is a second call, ``torch.ops.kdfuse.kdsvd_backward``, that passes grad_output to the
library (the per-pair upstream gradients, read on the device) and computes the student gradients then.

The public functions here (``kd``, ``fitnet``, ..., ``crd``) take tensors, decide the flags from
``requires_grad`` and the grad mode, call the op and return the loss only::

    loss = kdfuse.ops.kd(y_s, y_t, T=4.0)        # a 0-dim tensor; loss.backward() works as usual

Devices: CPU tensors run on the SIMT build (libkdfuse_sim: the CUDA kernels emulated on the CPU, slow, for
tests and debugging), CUDA tensors on the CUDA build (libkdfuse) on PyTorch's current stream, with workspace
from PyTorch's caching allocator. Inputs are float32; KD also takes float16 / bfloat16 logits as they are (the
kernel computes in fp32 and writes the gradients in the logits' dtype), the other losses cast float16 / bfloat16
inputs (e.g. under autocast) to float32 first. An input that gets a gradient is made contiguous (a copy when it is
not); the others are read with their strides when the C API can describe them (no copy), else copied.

Teacher inputs: kdfuse differentiates the teacher side only where the loss needs it (KD's y_t, CC's f_t in
the "repdistiller" variant, CRD's v_t). Elsewhere the teacher is a constant; a teacher tensor that requires
grad there is detached, with a one-time warning.

Devices: all tensor arguments of a call must be on one device, cpu or cuda (meta: shapes only, through the fake
kernels); anything else raises ValueError naming the op and the arguments. Arguments the library refuses raise
ValueError (TypeError for a dtype, NotImplementedError for what the library does not support) with the library's
status name and detail.

First-order only: the backward is not itself differentiable. With create_graph=True the gradients come out
attached to a node that raises "kdfuse.<loss>: double backward is not supported" when they are differentiated
(instead of standing as constants, which would make a second-order result silently wrong).

CRD is stateful: ``torch.ops.kdfuse.crd`` updates the memory banks, Z and the Philox counter in place
(declared in its schema). An op that mutates its inputs carries no autograd formula, so its gradients are attached
by a second, functional op, ``torch.ops.kdfuse.attach_grads``.
"""
import warnings

import torch
from torch import Tensor

from . import _extension, _meta
from ._meta import listed as _listed, one_device as _one_device

__all__ = ["kd", "fitnet", "at", "ft", "ab", "ofd", "vid", "sp", "cc", "pkt", "rkd", "nst", "fsp", "crd", "kdsvd",
           "OPS", "check_pool"]

#: every op, by loss name (the keys are the torch.ops.kdfuse names)
OPS = {name: getattr(torch.ops.kdfuse, name).default
       for name in ("kd", "fitnet", "at", "ft", "ab", "ofd", "vid", "sp", "cc", "pkt", "rkd", "nst", "fsp", "crd",
                    "attach_grads", "kdsvd", "kdsvd_backward", "kdsvd_sum")}

# ---- public functions: flags from requires_grad, the loss only ------------------------------------------------

_warned = set()


def _float32(x, loss, name, keep_16bit=False):
    """x as float32; float16 / bfloat16 are cast (differentiably: the gradient is cast back) unless keep_16bit
    (a loss whose kernel reads them)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"kdfuse.ops.{loss}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype == torch.float32:
        return x
    if x.dtype in (torch.float16, torch.bfloat16):
        return x if keep_16bit else x.float()
    raise TypeError(f"kdfuse.ops.{loss}: {name} must be float32 (float16 / bfloat16 are cast to float32), "
                    f"got {x.dtype}")


def _wants(x):
    return x.requires_grad and torch.is_grad_enabled()


def _constant(x, loss, name):
    """A teacher input the loss does not differentiate: detached (warned once when it requires grad)."""
    x = _float32(x, loss, name)
    if _wants(x):
        if (loss, name) not in _warned:
            _warned.add((loss, name))
            warnings.warn(f"kdfuse.ops.{loss}: {name} requires grad, but kdfuse treats it as a constant (no gradient "
                          f"flows to it); detach it to silence this warning", stacklevel=3)
        x = x.detach()
    return x


def check_pool(loss, pool, small_or_a, b):
    """pool="seed" (the RepDistiller rule, reference default): the map with the larger H is pooled to the square
    (H_min, H_min), comparing H only. kdfuse implements pool="hw" (the larger map, at least as large in H and W,
    is pooled to the smaller map's (H, W)); the two agree when the smaller map is square and the larger is at
    least as wide. For pool="seed" this raises ValueError where they would differ (or where the seed fails)."""
    if pool == "hw":
        return
    if pool != "seed":
        raise ValueError(f"kdfuse.ops.{loss}: pool must be 'seed' or 'hw', not {pool!r}")
    (ah, aw), (bh, bw) = tuple(small_or_a.shape[-2:]), tuple(b.shape[-2:])
    if ah == bh:
        if aw != bw:
            raise ValueError(f"kdfuse.ops.{loss}: pool='seed' does not pool maps of equal H ({ah}), and their W "
                             f"differ ({aw} vs {bw}); the seed fails here too. pool='hw' pools along W")
        return
    (sh, sw), (lh, lw) = sorted(((ah, aw), (bh, bw)))
    if sh != sw or lw < sw:
        raise ValueError(f"kdfuse.ops.{loss}: pool='seed' pools the {lh} x {lw} map to the square ({sh}, {sh}); "
                         f"kdfuse pools it to the smaller map's ({sh}, {sw}) (pool='hw'), which agrees with the seed "
                         f"only when the smaller map is square and the larger at least as wide. Pass pool='hw' to "
                         f"use kdfuse's rule")


def kd(y_s, y_t, T=4.0, weight=None, reduction="batchmean"):
    """KD loss (RepDistiller's DistillKL): T^2 / N sum_i w_i KL(softmax(y_t/T) || softmax(y_s/T)); y_s, y_t N x C.
    weight: N row weights (not differentiated) or None; reduction "batchmean" (0-dim) or "none" (N)."""
    y_s, y_t = _float32(y_s, "kd", "y_s", keep_16bit=True), _float32(y_t, "kd", "y_t", keep_16bit=True)
    if y_s.dtype != y_t.dtype:  # one dtype per call: the common float32
        y_s, y_t = y_s.float(), y_t.float()
    if weight is not None:
        weight = _constant(weight, "kd", "weight")
    _one_device("kdfuse.ops.kd", y_s=y_s, y_t=y_t, weight=weight)
    return torch.ops.kdfuse.kd(y_s, y_t, weight, float(T), reduction, _wants(y_s), _wants(y_t))[0]


def fitnet(f_s, f_t):
    """FitNet hint loss (HintLoss): mean((f_s - f_t)^2), same shapes."""
    f_s, f_t = _float32(f_s, "fitnet", "f_s"), _constant(f_t, "fitnet", "f_t")
    _one_device("kdfuse.ops.fitnet", f_s=f_s, f_t=f_t)
    if f_s.shape != f_t.shape:
        raise ValueError(f"f_s and f_t must have the same shape, got {tuple(f_s.shape)} and {tuple(f_t.shape)}")
    return torch.ops.kdfuse.fitnet(f_s, f_t, _wants(f_s))[0]


def at(f_s, f_t, p=2, pool="seed"):
    """AT loss of one layer pair (Attention): mean((a(f_s) - a(f_t))^2), a(f) = normalize(mean_C f^p)."""
    f_s, f_t = _float32(f_s, "at", "f_s"), _constant(f_t, "at", "f_t")
    _one_device("kdfuse.ops.at", f_s=f_s, f_t=f_t)
    check_pool("at", pool, f_s, f_t)
    return torch.ops.kdfuse.at(f_s, f_t, float(p), _wants(f_s))[0]


def ft(f_s, f_t, p1=2, p2=1, pool="seed"):
    """FT loss (FactorTransfer): mean|factor_s - factor_t| (p2 = 1) or mean (factor_s - factor_t)^p2."""
    f_s, f_t = _float32(f_s, "ft", "f_s"), _constant(f_t, "ft", "f_t")
    _one_device("kdfuse.ops.ft", f_s=f_s, f_t=f_t)
    check_pool("ft", pool, f_s, f_t)
    return torch.ops.kdfuse.ft(f_s, f_t, float(p1), float(p2), _wants(f_s))[0]


def ab(source, target, margin=1.0, scale=True):
    """AB loss of one layer with weight 1 (ABLoss's per-layer term): L / N / 1000 * 3, or the raw sum L when
    scale=False. source: the connector's pre-ReLU output, target: the teacher's pre-ReLU map, same shape."""
    s, t = _float32(source, "ab", "source"), _constant(target, "ab", "target")
    _one_device("kdfuse.ops.ab", source=s, target=t)
    return torch.ops.kdfuse.ab(s, t, float(margin), bool(scale), _wants(s))[0]


def ofd(s, t, margin=None, variant="seed"):
    """OFD partial L2 loss of the connector output s against the teacher's pre-ReLU map t (N x C x H x W).
    variant "seed": margin from t's batch statistics (margin None), mean; "original": margin (C values),
    sum / N / 1000."""
    s, t = _float32(s, "ofd", "s"), _constant(t, "ofd", "t")
    if margin is not None:
        margin = _constant(margin, "ofd", "margin").reshape(-1)
    _one_device("kdfuse.ops.ofd", s=s, t=t, margin=margin)
    return torch.ops.kdfuse.ofd(s, t, margin, variant, _wants(s))[0]


def _check_vid_pool(pool, pred_mean, target):
    p_h, p_w = pred_mean.shape[-2:]
    t_h, t_w = target.shape[-2:]
    if pool == "hw":
        return
    if pool != "seed":
        raise ValueError(f"kdfuse.ops.vid: pool must be 'seed' or 'hw', not {pool!r}")
    if p_h > t_h:
        raise ValueError(f"pred_mean's H ({p_h}) is larger than the target's ({t_h}): pool the student input before "
                         "the regressor (VIDLoss does it)")
    if p_h == t_h and p_w != t_w:
        raise ValueError(f"pred_mean and target differ in shape: {tuple(pred_mean.shape)} vs {tuple(target.shape)} "
                         "(pool='seed' does not pool maps of equal H; pool='hw' pools along W)")
    if p_h < t_h and (p_w != p_h or t_w < p_w):
        raise ValueError(f"kdfuse.ops.vid: pool='seed' pools the target to the square ({p_h}, {p_h}); kdfuse pools it "
                         f"to pred_mean's ({p_h}, {p_w}) (pool='hw'): they agree only for a square pred_mean. Pass "
                         "pool='hw' to use kdfuse's rule")


def vid(pred_mean, target, log_scale, eps=1e-5, pool="seed"):
    """VID loss after the regressor: mean(0.5 ((pred_mean - t)^2 / var + log var)), var = softplus(log_scale) + eps
    per channel, t = target pooled to pred_mean's size when larger. Gradients for pred_mean and log_scale."""
    pred_mean = _float32(pred_mean, "vid", "pred_mean")
    target = _constant(target, "vid", "target")
    log_scale = _float32(log_scale, "vid", "log_scale")
    _one_device("kdfuse.ops.vid", pred_mean=pred_mean, target=target, log_scale=log_scale)
    _check_vid_pool(pool, pred_mean, target)
    return torch.ops.kdfuse.vid(pred_mean, target, log_scale, float(eps), _wants(pred_mean), _wants(log_scale))[0]


def sp(f_s, f_t):
    """SP loss of one layer pair (Similarity), a 0-dim tensor (the module returns shape (1,) as the seed)."""
    f_s, f_t = _float32(f_s, "sp", "f_s"), _constant(f_t, "sp", "f_t")
    _one_device("kdfuse.ops.sp", f_s=f_s, f_t=f_t)
    return torch.ops.kdfuse.sp(f_s, f_t, _wants(f_s))[0]


def cc(f_s, f_t, variant="seed"):
    """CC loss, 0-dim. variant "seed": Gram form, f_t constant; "repdistiller": RepDistiller's shipped
    consecutive-row form on N x D embeddings, gradients for both (the default of kdfuse.nn.Correlation)."""
    f_s = _float32(f_s, "cc", "f_s")
    if variant == "repdistiller":
        f_t = _float32(f_t, "cc", "f_t")
        if f_s.dim() != 2 or f_t.dim() != 2:
            raise ValueError("kdfuse.ops.cc: variant='repdistiller' takes N x D embeddings (the shipped code sums "
                             f"dim 1 only), got {tuple(f_s.shape)} and {tuple(f_t.shape)}")
    elif variant == "seed":
        f_t = _constant(f_t, "cc", "f_t")
    else:
        raise ValueError(f"variant must be one of ('seed', 'repdistiller'), not {variant!r}")
    _one_device("kdfuse.ops.cc", f_s=f_s, f_t=f_t)
    return torch.ops.kdfuse.cc(f_s, f_t, variant, _wants(f_s), _wants(f_t))[0]


def pkt(f_s, f_t, eps=1e-7):
    """PKT loss (PKT.cosine_similarity_loss); eps is fixed at the seed's 1e-7 in the kernel."""
    if eps != 1e-7:
        raise ValueError(f"kdfuse.ops.pkt: the kernel uses the seed's eps = 1e-7, got {eps}")
    f_s, f_t = _float32(f_s, "pkt", "f_s"), _constant(f_t, "pkt", "f_t")
    _one_device("kdfuse.ops.pkt", f_s=f_s, f_t=f_t)
    return torch.ops.kdfuse.pkt(f_s, f_t, _wants(f_s))[0]


def rkd(f_s, f_t, w_d=25, w_a=50, empty_mean="nan"):
    """RKD loss w_d L_d + w_a L_a (RKDLoss). empty_mean "nan" (the seed): N = 1 gives NaN; "zero": 0 (the kernel's
    own value). Duplicate rows: the kernel's gradient is the reference's degenerate_grad="zero"."""
    f_s, f_t = _float32(f_s, "rkd", "f_s"), _constant(f_t, "rkd", "f_t")
    _one_device("kdfuse.ops.rkd", f_s=f_s, f_t=f_t)
    if empty_mean not in ("nan", "zero"):
        raise ValueError(f"empty_mean must be one of ('nan', 'zero'), not {empty_mean!r}")
    loss = torch.ops.kdfuse.rkd(f_s, f_t, float(w_d), float(w_a), _wants(f_s))[0]
    if empty_mean == "nan" and f_s.shape[0] == 1:
        loss = loss * float("nan")  # the seed's mean over an empty set of distances
    return loss


def nst(f_s, f_t, full_loss=True, pool="seed"):
    """NST loss of one layer pair (NSTLoss.nst_loss): maps N x C x H x W, or N x C x L. The seed works on
    f.view(N, C, -1) after pooling the map with the larger shape[2]; for rank-3 maps that pooling
    (adaptive_avg_pool2d of a 3-D tensor) would average an unbatched C x L image over its channels, not pool the
    maps, so a rank-3 pair must have the same L (ValueError otherwise) and runs as N x C x 1 x L maps."""
    f_s, f_t = _float32(f_s, "nst", "f_s"), _constant(f_t, "nst", "f_t")
    _one_device("kdfuse.ops.nst", f_s=f_s, f_t=f_t)
    if (f_s.dim(), f_t.dim()) == (3, 3):
        if f_s.shape[2] != f_t.shape[2]:
            raise ValueError(f"kdfuse.ops.nst: N x C x L maps must have the same L, got {tuple(f_s.shape)} and "
                             f"{tuple(f_t.shape)} (the seed's adaptive_avg_pool2d would pool a 3-D map over its "
                             f"channels, not along L)")
        f_s, f_t = f_s.unsqueeze(2), f_t.unsqueeze(2)
    elif (f_s.dim(), f_t.dim()) != (4, 4):
        raise ValueError(f"kdfuse.ops.nst: f_s and f_t must both be N x C x H x W or both N x C x L maps, got shapes "
                         f"{tuple(f_s.shape)} and {tuple(f_t.shape)}")
    check_pool("nst", pool, f_s, f_t)
    return torch.ops.kdfuse.nst(f_s, f_t, bool(full_loss), _wants(f_s))[0]


def fsp(s_bot, s_top, t_bot, t_top, pool="seed"):
    """FSP loss of one pair of consecutive maps: mean((G_s - G_t)^2), G = FSP matrix of (bot, top). Gradients for
    both student maps (a middle map of a chain gets both pairs' contributions through autograd)."""
    s_bot, s_top = _float32(s_bot, "fsp", "s_bot"), _float32(s_top, "fsp", "s_top")
    t_bot, t_top = _constant(t_bot, "fsp", "t_bot"), _constant(t_top, "fsp", "t_top")
    _one_device("kdfuse.ops.fsp", s_bot=s_bot, s_top=s_top, t_bot=t_bot, t_top=t_top)
    check_pool("fsp", pool, s_bot, s_top)
    check_pool("fsp", pool, t_bot, t_top)
    return torch.ops.kdfuse.fsp(s_bot, s_top, t_bot, t_top, _wants(s_bot), _wants(s_top))[0]


def crd(v_s, v_t, memory_s, memory_t, idx, z, contrast_idx=None, philox=None, k=None, temperature=0.07, momentum=0.5,
        z_mode="once", z_momentum=0.99, normalize_inputs=False, update_memory=True):
    """CRD loss of embeddings v_s, v_t (N x D) against the banks; updates the state in place.

    memory_s, memory_t: n_data x D float32 banks (RepDistiller's memory_v1 / memory_v2), updated at idx.
    z: 2 float32 {Z_s, Z_t} (< 0 = unset), e.g. a view of ContrastMemory.params[2:4]; written back.
    idx: N dataset indices (int64 or int32). contrast_idx: N x (K+1) indices (column 0 the positive), or None to
      draw them on the device from Philox: then philox (a CPU int64 tensor [seed, offset], advanced by one per
      call) and k are required.
    normalize_inputs: v_s, v_t are the raw linear outputs, L2-normalised inside (no eps, as the seed's Embed).
    Gradients for v_s and v_t (both heads train in RepDistiller)."""
    v_s, v_t = _float32(v_s, "crd", "v_s"), _float32(v_t, "crd", "v_t")
    _one_device("kdfuse.ops.crd", v_s=v_s, v_t=v_t, memory_s=memory_s, memory_t=memory_t, idx=idx, z=z,
                contrast_idx=contrast_idx)
    if contrast_idx is None:
        if philox is None or k is None:
            raise ValueError("kdfuse.ops.crd: contrast_idx=None draws the contrasts on the device: give philox "
                             "(CPU int64 [seed, offset]) and k")
    else:
        if idx is not None and contrast_idx.dtype != idx.dtype:
            contrast_idx = contrast_idx.to(idx.dtype)
        k = contrast_idx.shape[1] - 1
    if philox is None:
        philox = torch.zeros(2, dtype=torch.int64)
    if philox.device.type != "cpu" or philox.dtype != torch.int64 or philox.numel() != 2:
        raise ValueError("kdfuse.ops.crd: philox must be a CPU int64 tensor [seed, offset] (read on the host without "
                         "a device synchronisation)")
    need_s, need_t = _wants(v_s), _wants(v_t)
    loss, grad_s, grad_t = torch.ops.kdfuse.crd(v_s.detach(), v_t.detach(), memory_s, memory_t, idx, contrast_idx, z,
                                                philox, int(k), float(temperature), float(momentum), z_mode,
                                                float(z_momentum), bool(normalize_inputs), bool(update_memory),
                                                need_s, need_t)
    if need_s or need_t:
        loss = torch.ops.kdfuse.attach_grads(loss, v_s, v_t, grad_s, grad_t)
    return loss


def _kdsvd_maps_ready(g_s, g_t):
    """Whether KDSVD's maps need nothing done: float32 4-D tensors on one device, no teacher requiring grad."""
    device = g_s[0].device if isinstance(g_s[0], Tensor) else None
    for f in (*g_s, *g_t):
        if not isinstance(f, Tensor) or f.dtype != torch.float32 or f.dim() != 4 or f.device != device:
            return False
    return not any(_wants(f) for f in g_t)


def _kdsvd_maps(g_s, g_t):
    """KDSVD's maps checked (TypeError / ValueError naming the map), cast to float32, teachers detached."""
    g_s = [_float32(f, "kdsvd", f"g_s[{i}]") for i, f in enumerate(g_s)]
    g_t = [_constant(f, "kdsvd", f"g_t[{i}]") for i, f in enumerate(g_t)]
    _one_device("kdfuse.ops.kdsvd", **_listed("g_s", g_s), **_listed("g_t", g_t))
    for name, f in (_listed("g_s", g_s) | _listed("g_t", g_t)).items():
        if f.dim() != 4:
            raise ValueError(f"kdfuse.ops.kdsvd: {name} must be an N x C x H x W map, got shape {tuple(f.shape)}")
    return g_s, g_t


def kdsvd(g_s, g_t, k=1, gap_rtol=1e-5, reduction="none"):
    """KDSVD losses (RepDistiller's KDSVD with kdfuse's definition, docs/losses/kdsvd.md) of the consecutive layer pairs
    of g_s, g_t (lists of L >= 2 student / teacher maps N x C_l x H_l x H_l: square, the same N throughout, the same C
    in a student and its teacher map). k: the teacher's singular vectors; gap_rtol: eigenvalue gaps
    <= gap_rtol * s_0^2 dropped from the singular-vector derivative. Gradients for the student maps; the teacher maps
    are constants.

    reduction "none": a 1-D tensor of the L - 1 pair losses; its backward is a second library call that takes each
    pair's grad_output (torch.ops.kdfuse.kdsvd_backward). "sum": their sum (0-dim), with the gradients computed in
    the same call as the losses (torch.ops.kdfuse.kdsvd_sum) and a backward that scales them: one library call per
    step, for the usual summed loss."""
    if reduction not in ("none", "sum"):
        raise ValueError(f"kdfuse.ops.kdsvd: reduction must be 'none' or 'sum', not {reduction!r}")
    if not isinstance(g_s, (list, tuple)) or not isinstance(g_t, (list, tuple)):
        raise TypeError(f"kdfuse.ops.kdsvd: g_s and g_t must be lists of maps, got {type(g_s).__name__} and "
                        f"{type(g_t).__name__}")
    if len(g_s) != len(g_t) or len(g_s) < 2:
        raise ValueError(f"kdfuse.ops.kdsvd: g_s and g_t must be lists of the same length >= 2 (the losses are "
                         f"between consecutive layers), got {len(g_s)} and {len(g_t)}")
    if not _kdsvd_maps_ready(g_s, g_t):  # the per-map checks, casts and messages only when something needs them
        g_s, g_t = _kdsvd_maps(g_s, g_t)
    if reduction == "sum":
        return torch.ops.kdfuse.kdsvd_sum(g_s, g_t, int(k), float(gap_rtol), [_wants(f) for f in g_s])[0]
    return torch.ops.kdfuse.kdsvd(g_s, g_t, int(k), float(gap_rtol))
