"""The fake (meta) kernels of torch.ops.kdfuse.* for torch.compile and meta tensors: output shapes and dtypes only.
The C++ library names this module (set_python_module), so a fake-tensor trace of an op imports it."""
import torch
from torch import Tensor

from . import _extension  # noqa: F401 - the ops must exist before their fake kernels are registered

_DEVICE_TYPES = ("cpu", "cuda", "meta")


def one_device(where, **tensors):
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


def listed(name, tensors):
    """{"name[i]": tensor} of a list argument (for one_device)."""
    return {f"{name}[{i}]": t for i, t in enumerate(tensors)}


def _grad(x, need):
    return torch.empty_like(x, memory_format=torch.contiguous_format) if need else x.new_empty((0,))


def _fake(name):
    return torch.library.register_fake(f"kdfuse::{name}")


@_fake("kd")
def _(y_s, y_t, weight, T, reduction, need_grad_s, need_grad_t):
    one_device("torch.ops.kdfuse.kd", y_s=y_s, y_t=y_t, weight=weight)
    loss = y_s.new_empty(() if reduction == "batchmean" else (y_s.shape[0],), dtype=torch.float32)
    return loss, _grad(y_s, need_grad_s), _grad(y_t, need_grad_t)


def _student_loss(name, *names):
    """The fake kernel of an op (student, teacher, ..., need_grad_s): a scalar loss and the student's gradient."""
    def fake(s, t, *rest):
        one_device(f"torch.ops.kdfuse.{name}", **{names[0]: s, names[1]: t})
        return s.new_empty(()), _grad(s, rest[-1])

    _fake(name)(fake)


for _name, _names in (("fitnet", ("f_s", "f_t")), ("at", ("f_s", "f_t")), ("ft", ("f_s", "f_t")), ("ab", ("s", "t")),
                      ("sp", ("f_s", "f_t")), ("pkt", ("f_s", "f_t")), ("rkd", ("e_s", "e_t")),
                      ("nst", ("f_s", "f_t"))):
    _student_loss(_name, *_names)


@_fake("ofd")
def _(s, t, margin, variant, need_grad_s):
    one_device("torch.ops.kdfuse.ofd", s=s, t=t, margin=margin)
    return s.new_empty(()), _grad(s, need_grad_s)


@_fake("vid")
def _(pred_mean, target, log_scale, eps, need_grad_pred, need_grad_log_scale):
    one_device("torch.ops.kdfuse.vid", pred_mean=pred_mean, target=target, log_scale=log_scale)
    return pred_mean.new_empty(()), _grad(pred_mean, need_grad_pred), _grad(log_scale, need_grad_log_scale)


@_fake("cc")
def _(f_s, f_t, variant, need_grad_s, need_grad_t):
    one_device("torch.ops.kdfuse.cc", f_s=f_s, f_t=f_t)
    return f_s.new_empty(()), _grad(f_s, need_grad_s), _grad(f_t, need_grad_t)


@_fake("fsp")
def _(s_bot, s_top, t_bot, t_top, need_grad_bot, need_grad_top):
    one_device("torch.ops.kdfuse.fsp", s_bot=s_bot, s_top=s_top, t_bot=t_bot, t_top=t_top)
    return s_bot.new_empty(()), _grad(s_bot, need_grad_bot), _grad(s_top, need_grad_top)


@_fake("crd")
def _(v_s, v_t, memory_s, memory_t, idx, contrast_idx, z, philox, k, temperature, momentum, z_mode, z_momentum,
      normalize_inputs, update_memory, need_grad_s, need_grad_t):
    one_device("torch.ops.kdfuse.crd", v_s=v_s, v_t=v_t, memory_s=memory_s, memory_t=memory_t, idx=idx,
               contrast_idx=contrast_idx, z=z)  # philox: a CPU tensor beside CUDA ones
    return v_s.new_empty(()), _grad(v_s, need_grad_s), _grad(v_t, need_grad_t)


@_fake("kdsvd")
def _(g_s, g_t, k, gap_rtol):
    one_device("torch.ops.kdfuse.kdsvd", **listed("g_s", g_s), **listed("g_t", g_t))
    return g_s[0].new_empty((len(g_s) - 1,))


@_fake("kdsvd_sum")
def _(g_s, g_t, k, gap_rtol, need_grad_s):
    one_device("torch.ops.kdfuse.kdsvd_sum", **listed("g_s", g_s), **listed("g_t", g_t))
    return g_s[0].new_empty(()), [_grad(f, need) for f, need in zip(g_s, need_grad_s)]


@_fake("kdsvd_backward")
def _(g_s, g_t, k, gap_rtol, grad_losses, need_grad_s):
    one_device("torch.ops.kdfuse.kdsvd_backward", **listed("g_s", g_s), **listed("g_t", g_t), grad_losses=grad_losses)
    return [_grad(f, need) for f, need in zip(g_s, need_grad_s)]
