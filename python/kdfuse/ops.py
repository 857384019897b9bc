"""PyTorch custom ops for every kdfuse loss: ``torch.ops.kdfuse.<loss>``, with autograd and fake (meta) kernels,
so the losses work in eager mode and under ``torch.compile`` (no graph breaks).

Each op makes ONE call of the ctypes binding (kdfuse.kd, kdfuse.at, ...), which returns the loss and, in the
same fused pass, the gradients of the inputs that need one (the ``need_grad_*`` flags). The op returns them as
extra outputs; autograd saves them and its backward is ``saved_gradient * grad_output``, a multiply on the
device (no ``.item()``, no host synchronisation; any grad_output, not only 1). A gradient that is not needed
is not computed and comes back as an empty tensor of shape (0,).

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
inputs (e.g. under autocast) to float32 first. A non-contiguous input is made contiguous (a copy).

Teacher inputs: kdfuse differentiates the teacher side only where the loss needs it (KD's y_t, CC's f_t in
the "repdistiller" variant, CRD's v_t). Elsewhere the teacher is a constant; a teacher tensor that requires
grad there is detached, with a one-time warning.

Devices: all tensor arguments of a call must be on one device, cpu or cuda (meta: shapes only, through the fake
kernels); anything else raises ValueError naming the op and the arguments (a mixed call would otherwise reach the
fake kernel of one of the devices and return uninitialised memory).

First-order only: the backward is not itself differentiable. With create_graph=True the gradients come out
attached to a node that raises "kdfuse.<loss>: double backward is not supported" when they are differentiated
(instead of standing as constants, which would make a second-order result silently wrong).

CRD is stateful: ``torch.ops.kdfuse.crd`` updates the memory banks, Z and the Philox counter in place
(declared in ``mutates_args``). PyTorch does not allow an autograd formula on an op that mutates its inputs,
so its gradients are attached by a second, functional op, ``torch.ops.kdfuse.attach_grads``.
"""
import warnings
from typing import List, Optional, Tuple

import torch
from torch import Tensor
from torch.library import custom_op

from .ab import ab as _ab
from .at import at as _at
from .cc import cc as _cc
from .crd import crd as _crd
from .fitnet import fitnet as _fitnet
from .fsp import fsp as _fsp
from .ft import ft as _ft
from .kd import kd as _kd
from .kdsvd import kdsvd as _kdsvd
from .nst import nst as _nst
from .ofd import ofd as _ofd
from .pkt import pkt as _pkt
from .rkd import rkd as _rkd
from .sp import sp as _sp
from .vid import vid as _vid

__all__ = ["kd", "fitnet", "at", "ft", "ab", "ofd", "vid", "sp", "cc", "pkt", "rkd", "nst", "fsp", "crd", "kdsvd",
           "OPS", "check_pool"]

# ---- helpers of the op implementations ----------------------------------------------------------------------


def _c(t):
    """A contiguous tensor (the layout the fake kernels promise for the gradients), or None."""
    return None if t is None else t.contiguous()


def _or_empty(g, like):
    """The gradient, or an empty (0,) tensor for a gradient that was not requested."""
    return like.new_empty((0,)) if g is None else g


def _fake_grad(x, need):
    return torch.empty_like(x, memory_format=torch.contiguous_format) if need else x.new_empty((0,))


_DEVICE_TYPES = ("cpu", "cuda", "meta")


def _one_device(where, **tensors):
    """Checks that the tensor arguments (None and other values skipped: their own checks report them) are on one
    device, of a type kdfuse runs on: cpu (the SIMT build), cuda (the CUDA build) or meta (shapes only: the fake
    kernels). ValueError naming `where` and the arguments otherwise: the dispatcher would pick the kernel of one of
    the devices (for a meta tensor beside real ones, the fake kernel, which returns uninitialised memory)."""
    devices = {name: t.device for name, t in tensors.items() if isinstance(t, Tensor)}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"{where}: all tensor arguments must be on one device, got {listing}")
    for name, device in devices.items():
        if device.type not in _DEVICE_TYPES:
            raise ValueError(f"{where}: {name} is on {device}; kdfuse runs on cpu (the SIMT build) and cuda (the "
                             f"CUDA build) tensors")


def _listed(name, tensors):
    """{"name[i]": tensor} of a list argument (for _one_device)."""
    return {f"{name}[{i}]": t for i, t in enumerate(tensors)}


class _FirstOrderOnly(torch.autograd.Function):
    """The gradients a kdfuse backward returns under create_graph=True, passed through (same values) and attached to
    this node, whose own backward raises `message`: a kdfuse backward (saved gradient * grad_output) is not
    differentiable, and without this node its results would be constants to a second backward, silently
    dropping the second-order terms (torch.autograd.function.once_differentiable, with kdfuse's message)."""

    @staticmethod
    def forward(ctx, message, *grads):
        ctx.message = message
        return tuple(g.detach() for g in grads)

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise RuntimeError(ctx.message)


def _first_order_only(grads, loss, op=None,
                      backward="scales the gradient the forward computed (saved gradient * grad_output)"):
    """`grads` (a list, None entries kept) as they are, or, when the backward runs with create_graph=True (grad
    mode on), attached to a _FirstOrderOnly node naming kdfuse.<loss>, its op torch.ops.kdfuse.<op> and what that
    op's backward does."""
    if not torch.is_grad_enabled() or all(g is None for g in grads):
        return grads
    message = (f"kdfuse.{loss}: double backward is not supported: the backward of torch.ops.kdfuse.{op or loss} "
               f"{backward} and is not itself differentiable; compute higher-order gradients with the PyTorch "
               f"reference (kdfuse_ref) instead")
    # inputs that require grad, so that autograd records the node
    attached = iter(_FirstOrderOnly.apply(message, *(g.detach().requires_grad_() for g in grads if g is not None)))
    return [None if g is None else next(attached) for g in grads]


def _scaled(saved, grad_output):
    """saved * grad_output on the device, in saved's dtype; grad_output is 0-dim, or one value per row (KD
    reduction="none")."""
    if grad_output.dim() > 0:
        grad_output = grad_output.reshape(grad_output.shape + (1,) * (saved.dim() - grad_output.dim()))
    return (saved * grad_output).to(saved.dtype)


def _register_autograd(op, pairs):
    """Autograd of a loss op: output i + 1 is the gradient of input pairs[i][0], computed in the forward when
    the bool input pairs[i][1] is True. Backward: saved gradient * grad_output of the loss."""
    n_inputs = len(op._opoverload._schema.arguments)
    name = op._qualname
    loss = name.split("::")[1]

    def setup_context(ctx, inputs, output):
        grads = output[1:]
        ctx.mark_non_differentiable(*grads)
        ctx.save_for_backward(*grads)
        ctx.computed = tuple(bool(inputs[flag]) for _, flag in pairs)

    def backward(ctx, grad_loss, *unused):
        result = [None] * n_inputs
        for (pos, flag), computed, saved in zip(pairs, ctx.computed, ctx.saved_tensors):
            if ctx.needs_input_grad[pos]:
                if not computed:
                    arg = op._opoverload._schema.arguments
                    raise RuntimeError(f"{name}: input {arg[pos].name} requires grad but the op was called with "
                                       f"{arg[flag].name}=False, so its gradient was not computed")
                result[pos] = _scaled(saved, grad_loss)
        return tuple(_first_order_only(result, loss))

    op.register_autograd(backward, setup_context=setup_context)


# ---- the ops ------------------------------------------------------------------------------------------------
# Naming: need_grad_<x> says whether the fused call computes the gradient of input <x>.


@custom_op("kdfuse::kd", mutates_args=())
def _kd_op(y_s: Tensor, y_t: Tensor, weight: Optional[Tensor], T: float, reduction: str, need_grad_s: bool,
           need_grad_t: bool) -> Tuple[Tensor, Tensor, Tensor]:
    loss, gs, gt = _kd(_c(y_s), _c(y_t), T=T, weight=_c(weight), reduction=reduction, want_grad_s=need_grad_s,
                       want_grad_t=need_grad_t)
    return loss, _or_empty(gs, y_s), _or_empty(gt, y_t)


@_kd_op.register_fake
def _(y_s, y_t, weight, T, reduction, need_grad_s, need_grad_t):
    _one_device("torch.ops.kdfuse.kd", y_s=y_s, y_t=y_t, weight=weight)
    loss = y_s.new_empty(() if reduction == "batchmean" else (y_s.shape[0],), dtype=torch.float32)
    return loss, _fake_grad(y_s, need_grad_s), _fake_grad(y_t, need_grad_t)


_register_autograd(_kd_op, [(0, 5), (1, 6)])


@custom_op("kdfuse::fitnet", mutates_args=())
def _fitnet_op(f_s: Tensor, f_t: Tensor, need_grad_s: bool) -> Tuple[Tensor, Tensor]:
    loss, gs = _fitnet(_c(f_s), _c(f_t), want_grad_s=need_grad_s)
    return loss, _or_empty(gs, f_s)


@_fitnet_op.register_fake
def _(f_s, f_t, need_grad_s):
    _one_device("torch.ops.kdfuse.fitnet", f_s=f_s, f_t=f_t)
    return f_s.new_empty(()), _fake_grad(f_s, need_grad_s)


_register_autograd(_fitnet_op, [(0, 2)])


@custom_op("kdfuse::at", mutates_args=())
def _at_op(f_s: Tensor, f_t: Tensor, p: float, need_grad_s: bool) -> Tuple[Tensor, Tensor]:
    loss, gs = _at(_c(f_s), _c(f_t), p=p, want_grad_s=need_grad_s)
    return loss, _or_empty(gs, f_s)


@_at_op.register_fake
def _(f_s, f_t, p, need_grad_s):
    _one_device("torch.ops.kdfuse.at", f_s=f_s, f_t=f_t)
    return f_s.new_empty(()), _fake_grad(f_s, need_grad_s)


_register_autograd(_at_op, [(0, 3)])


@custom_op("kdfuse::ft", mutates_args=())
def _ft_op(f_s: Tensor, f_t: Tensor, p1: float, p2: float, need_grad_s: bool) -> Tuple[Tensor, Tensor]:
    loss, gs = _ft(_c(f_s), _c(f_t), p1=p1, p2=p2, want_grad_s=need_grad_s)
    return loss, _or_empty(gs, f_s)


@_ft_op.register_fake
def _(f_s, f_t, p1, p2, need_grad_s):
    _one_device("torch.ops.kdfuse.ft", f_s=f_s, f_t=f_t)
    return f_s.new_empty(()), _fake_grad(f_s, need_grad_s)


_register_autograd(_ft_op, [(0, 4)])


@custom_op("kdfuse::ab", mutates_args=())
def _ab_op(s: Tensor, t: Tensor, margin: float, seed_scaling: bool, need_grad_s: bool) -> Tuple[Tensor, Tensor]:
    loss, gs = _ab(_c(s), _c(t), margin=margin, seed_scaling=seed_scaling, want_grad_s=need_grad_s)
    return loss, _or_empty(gs, s)


@_ab_op.register_fake
def _(s, t, margin, seed_scaling, need_grad_s):
    _one_device("torch.ops.kdfuse.ab", s=s, t=t)
    return s.new_empty(()), _fake_grad(s, need_grad_s)


_register_autograd(_ab_op, [(0, 4)])


@custom_op("kdfuse::ofd", mutates_args=())
def _ofd_op(s: Tensor, t: Tensor, margin: Optional[Tensor], variant: str, need_grad_s: bool) -> Tuple[Tensor, Tensor]:
    loss, gs = _ofd(_c(s), _c(t), margin=_c(margin), variant=variant, want_grad_s=need_grad_s)
    return loss, _or_empty(gs, s)


@_ofd_op.register_fake
def _(s, t, margin, variant, need_grad_s):
    _one_device("torch.ops.kdfuse.ofd", s=s, t=t, margin=margin)
    return s.new_empty(()), _fake_grad(s, need_grad_s)


_register_autograd(_ofd_op, [(0, 4)])


@custom_op("kdfuse::vid", mutates_args=())
def _vid_op(pred_mean: Tensor, target: Tensor, log_scale: Tensor, eps: float, need_grad_pred: bool,
            need_grad_log_scale: bool) -> Tuple[Tensor, Tensor, Tensor]:
    loss, gp, gl = _vid(_c(pred_mean), _c(target), _c(log_scale), eps=eps, want_grad_pred=need_grad_pred,
                        want_grad_log_scale=need_grad_log_scale)
    return loss, _or_empty(gp, pred_mean), _or_empty(gl, log_scale)


@_vid_op.register_fake
def _(pred_mean, target, log_scale, eps, need_grad_pred, need_grad_log_scale):
    _one_device("torch.ops.kdfuse.vid", pred_mean=pred_mean, target=target, log_scale=log_scale)
    return pred_mean.new_empty(()), _fake_grad(pred_mean, need_grad_pred), _fake_grad(log_scale, need_grad_log_scale)


_register_autograd(_vid_op, [(0, 4), (2, 5)])


@custom_op("kdfuse::sp", mutates_args=())
def _sp_op(f_s: Tensor, f_t: Tensor, need_grad_s: bool) -> Tuple[Tensor, Tensor]:
    loss, gs = _sp(_c(f_s), _c(f_t), want_grad_s=need_grad_s)
    return loss, _or_empty(gs, f_s)


@_sp_op.register_fake
def _(f_s, f_t, need_grad_s):
    _one_device("torch.ops.kdfuse.sp", f_s=f_s, f_t=f_t)
    return f_s.new_empty(()), _fake_grad(f_s, need_grad_s)


_register_autograd(_sp_op, [(0, 2)])


@custom_op("kdfuse::cc", mutates_args=())
def _cc_op(f_s: Tensor, f_t: Tensor, variant: str, need_grad_s: bool,
           need_grad_t: bool) -> Tuple[Tensor, Tensor, Tensor]:
    loss, gs, gt = _cc(_c(f_s), _c(f_t), variant=variant, want_grad_s=need_grad_s, want_grad_t=need_grad_t)
    return loss, _or_empty(gs, f_s), _or_empty(gt, f_t)


@_cc_op.register_fake
def _(f_s, f_t, variant, need_grad_s, need_grad_t):
    _one_device("torch.ops.kdfuse.cc", f_s=f_s, f_t=f_t)
    return f_s.new_empty(()), _fake_grad(f_s, need_grad_s), _fake_grad(f_t, need_grad_t)


_register_autograd(_cc_op, [(0, 3), (1, 4)])


@custom_op("kdfuse::pkt", mutates_args=())
def _pkt_op(f_s: Tensor, f_t: Tensor, need_grad_s: bool) -> Tuple[Tensor, Tensor]:
    loss, gs = _pkt(_c(f_s), _c(f_t), want_grad_s=need_grad_s)
    return loss, _or_empty(gs, f_s)


@_pkt_op.register_fake
def _(f_s, f_t, need_grad_s):
    _one_device("torch.ops.kdfuse.pkt", f_s=f_s, f_t=f_t)
    return f_s.new_empty(()), _fake_grad(f_s, need_grad_s)


_register_autograd(_pkt_op, [(0, 2)])


@custom_op("kdfuse::rkd", mutates_args=())
def _rkd_op(e_s: Tensor, e_t: Tensor, w_d: float, w_a: float, need_grad_s: bool) -> Tuple[Tensor, Tensor]:
    loss, gs = _rkd(_c(e_s), _c(e_t), w_d=w_d, w_a=w_a, want_grad_s=need_grad_s)
    return loss, _or_empty(gs, e_s)


@_rkd_op.register_fake
def _(e_s, e_t, w_d, w_a, need_grad_s):
    _one_device("torch.ops.kdfuse.rkd", e_s=e_s, e_t=e_t)
    return e_s.new_empty(()), _fake_grad(e_s, need_grad_s)


_register_autograd(_rkd_op, [(0, 4)])


@custom_op("kdfuse::nst", mutates_args=())
def _nst_op(f_s: Tensor, f_t: Tensor, full_loss: bool, need_grad_s: bool) -> Tuple[Tensor, Tensor]:
    loss, gs = _nst(_c(f_s), _c(f_t), full_loss=full_loss, want_grad_s=need_grad_s)
    return loss, _or_empty(gs, f_s)


@_nst_op.register_fake
def _(f_s, f_t, full_loss, need_grad_s):
    _one_device("torch.ops.kdfuse.nst", f_s=f_s, f_t=f_t)
    return f_s.new_empty(()), _fake_grad(f_s, need_grad_s)


_register_autograd(_nst_op, [(0, 3)])


@custom_op("kdfuse::fsp", mutates_args=())
def _fsp_op(s_bot: Tensor, s_top: Tensor, t_bot: Tensor, t_top: Tensor, need_grad_bot: bool,
            need_grad_top: bool) -> Tuple[Tensor, Tensor, Tensor]:
    loss, gb, gt = _fsp(_c(s_bot), _c(s_top), _c(t_bot), _c(t_top), want_grad_bot=need_grad_bot,
                        want_grad_top=need_grad_top)
    return loss, _or_empty(gb, s_bot), _or_empty(gt, s_top)


@_fsp_op.register_fake
def _(s_bot, s_top, t_bot, t_top, need_grad_bot, need_grad_top):
    _one_device("torch.ops.kdfuse.fsp", s_bot=s_bot, s_top=s_top, t_bot=t_bot, t_top=t_top)
    return s_bot.new_empty(()), _fake_grad(s_bot, need_grad_bot), _fake_grad(s_top, need_grad_top)


_register_autograd(_fsp_op, [(0, 4), (1, 5)])


@custom_op("kdfuse::crd", mutates_args=("memory_s", "memory_t", "z", "philox"))
def _crd_op(v_s: Tensor, v_t: Tensor, memory_s: Tensor, memory_t: Tensor, idx: Optional[Tensor],
            contrast_idx: Optional[Tensor], z: Tensor, philox: Tensor, k: int, temperature: float, momentum: float,
            z_mode: str, z_momentum: float, normalize_inputs: bool, update_memory: bool, need_grad_s: bool,
            need_grad_t: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """CRD loss and gradients; updates memory_s / memory_t (at idx), z and, for drawn contrasts, philox
    (a CPU int64 tensor [seed, offset]: the call uses them and then advances offset by 1)."""
    common = dict(temperature=temperature, momentum=momentum, z_mode=z_mode, z_momentum=z_momentum,
                  normalize_inputs=normalize_inputs, update_memory=update_memory, want_grad_s=need_grad_s,
                  want_grad_t=need_grad_t)
    v_s, v_t = _c(v_s), _c(v_t)
    if contrast_idx is None:
        seed, offset = (int(x) for x in philox.tolist())  # a CPU tensor: no device synchronisation
        loss, gs, gt = _crd(v_s, v_t, memory_s, memory_t, idx, None, z, seed=seed % 2 ** 64, offset=offset % 2 ** 64,
                            k=k, **common)
        philox[1] += 1
    else:
        loss, gs, gt = _crd(v_s, v_t, memory_s, memory_t, idx, contrast_idx, z, **common)
    return loss, _or_empty(gs, v_s), _or_empty(gt, v_t)


@_crd_op.register_fake
def _(v_s, v_t, memory_s, memory_t, idx, contrast_idx, z, philox, k, temperature, momentum, z_mode, z_momentum,
      normalize_inputs, update_memory, need_grad_s, need_grad_t):
    _one_device("torch.ops.kdfuse.crd", v_s=v_s, v_t=v_t, memory_s=memory_s, memory_t=memory_t, idx=idx,
                contrast_idx=contrast_idx, z=z)  # philox: a CPU tensor beside CUDA ones
    return v_s.new_empty(()), _fake_grad(v_s, need_grad_s), _fake_grad(v_t, need_grad_t)


@custom_op("kdfuse::attach_grads", mutates_args=())
def _attach_grads_op(loss: Tensor, a: Tensor, b: Tensor, grad_a: Tensor, grad_b: Tensor) -> Tensor:
    """A copy of `loss` whose gradient with respect to a (b) is grad_a (grad_b) times the upstream gradient:
    connects a mutating op's fused gradients to autograd (an empty grad_x: x must not require grad)."""
    _one_device("torch.ops.kdfuse.attach_grads", loss=loss, a=a, b=b, grad_a=grad_a, grad_b=grad_b)
    return loss.clone()


@_attach_grads_op.register_fake
def _(loss, a, b, grad_a, grad_b):
    _one_device("torch.ops.kdfuse.attach_grads", loss=loss, a=a, b=b, grad_a=grad_a, grad_b=grad_b)
    return torch.empty_like(loss)


def _attach_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[3], inputs[4])


def _attach_backward(ctx, grad_output):
    grad_a, grad_b = ctx.saved_tensors
    result = [None] * 5
    for pos, g in ((1, grad_a), (2, grad_b)):
        if ctx.needs_input_grad[pos]:
            if g.numel() == 0:
                raise RuntimeError("kdfuse::attach_grads: an input that requires grad was given no gradient")
            result[pos] = _scaled(g, grad_output)
    return tuple(_first_order_only(result, "crd", "attach_grads"))  # the op's only user


_attach_grads_op.register_autograd(_attach_backward, setup_context=_attach_setup)


@custom_op("kdfuse::kdsvd", mutates_args=())
def _kdsvd_op(g_s: List[Tensor], g_t: List[Tensor], k: int, gap_rtol: float) -> Tensor:
    """The L - 1 pair losses of KDSVD over the lists of L student and teacher maps (no gradient: the backward is
    torch.ops.kdfuse.kdsvd_backward)."""
    return _kdsvd([_c(f) for f in g_s], [_c(f) for f in g_t], k=k, gap_rtol=gap_rtol, want_grad=False)[0]


@_kdsvd_op.register_fake
def _(g_s, g_t, k, gap_rtol):
    _one_device("torch.ops.kdfuse.kdsvd", **_listed("g_s", g_s), **_listed("g_t", g_t))
    return g_s[0].new_empty((len(g_s) - 1,))


@custom_op("kdfuse::kdsvd_backward", mutates_args=())
def _kdsvd_backward_op(g_s: List[Tensor], g_t: List[Tensor], k: int, gap_rtol: float, grad_losses: Tensor,
                       need_grad_s: List[bool]) -> List[Tensor]:
    """The gradients of sum_p grad_losses[p] * loss_p (the losses of torch.ops.kdfuse.kdsvd) w.r.t. the student maps
    g_s[l] with need_grad_s[l] (an empty (0,) tensor for the others), in one call."""
    _, grads = _kdsvd([_c(f) for f in g_s], [_c(f) for f in g_t], k=k, gap_rtol=gap_rtol, grad_loss=_c(grad_losses),
                      want_loss=False, want_grad=list(need_grad_s))
    return [_or_empty(g, f) for g, f in zip(grads, g_s)]


@_kdsvd_backward_op.register_fake
def _(g_s, g_t, k, gap_rtol, grad_losses, need_grad_s):
    _one_device("torch.ops.kdfuse.kdsvd_backward", **_listed("g_s", g_s), **_listed("g_t", g_t),
                grad_losses=grad_losses)
    return [_fake_grad(f, need) for f, need in zip(g_s, need_grad_s)]


def _kdsvd_setup(ctx, inputs, output):
    g_s, g_t, ctx.k, ctx.gap_rtol = inputs
    ctx.layers = len(g_s)
    ctx.save_for_backward(*g_s, *g_t)


def _kdsvd_backward(ctx, grad_losses):
    saved = [f.detach() for f in ctx.saved_tensors]
    need = list(ctx.needs_input_grad[0])
    grads = torch.ops.kdfuse.kdsvd_backward(saved[:ctx.layers], saved[ctx.layers:], ctx.k, ctx.gap_rtol, grad_losses,
                                            need)
    grads = _first_order_only([g if n else None for g, n in zip(grads, need)], "kdsvd",
                              backward="computes the gradients with torch.ops.kdfuse.kdsvd_backward")
    return grads, [None] * ctx.layers, None, None


_kdsvd_op.register_autograd(_kdsvd_backward, setup_context=_kdsvd_setup)

#: every op, by loss name (the keys are the torch.ops.kdfuse names)
OPS = {"kd": _kd_op, "fitnet": _fitnet_op, "at": _at_op, "ft": _ft_op, "ab": _ab_op, "ofd": _ofd_op, "vid": _vid_op,
       "sp": _sp_op, "cc": _cc_op, "pkt": _pkt_op, "rkd": _rkd_op, "nst": _nst_op, "fsp": _fsp_op, "crd": _crd_op,
       "attach_grads": _attach_grads_op, "kdsvd": _kdsvd_op, "kdsvd_backward": _kdsvd_backward_op}

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


def kdsvd(g_s, g_t, k=1, gap_rtol=1e-5):
    """KDSVD losses (RepDistiller's KDSVD with kdfuse's definition, docs/losses/kdsvd.md): a 1-D tensor of the L - 1
    losses of the consecutive layer pairs of g_s, g_t (lists of L >= 2 student / teacher maps N x C_l x H_l x H_l:
    square, the same N throughout, the same C in a student and its teacher map). k: the teacher's singular vectors;
    gap_rtol: eigenvalue gaps <= gap_rtol * s_0^2 dropped from the singular-vector derivative. Gradients for the
    student maps (each of its pairs' grad_output); the teacher maps are constants."""
    if not isinstance(g_s, (list, tuple)) or not isinstance(g_t, (list, tuple)):
        raise TypeError(f"kdfuse.ops.kdsvd: g_s and g_t must be lists of maps, got {type(g_s).__name__} and "
                        f"{type(g_t).__name__}")
    if len(g_s) != len(g_t) or len(g_s) < 2:
        raise ValueError(f"kdfuse.ops.kdsvd: g_s and g_t must be lists of the same length >= 2 (the losses are "
                         f"between consecutive layers), got {len(g_s)} and {len(g_t)}")
    g_s = [_float32(f, "kdsvd", f"g_s[{i}]") for i, f in enumerate(g_s)]
    g_t = [_constant(f, "kdsvd", f"g_t[{i}]") for i, f in enumerate(g_t)]
    _one_device("kdfuse.ops.kdsvd", **_listed("g_s", g_s), **_listed("g_t", g_t))
    for name, f in (_listed("g_s", g_s) | _listed("g_t", g_t)).items():
        if f.dim() != 4:
            raise ValueError(f"kdfuse.ops.kdsvd: {name} must be an N x C x H x W map, got shape {tuple(f.shape)}")
    return torch.ops.kdfuse.kdsvd(g_s, g_t, int(k), float(gap_rtol))
