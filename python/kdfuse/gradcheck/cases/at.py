"""Gradient-check cases of AT (used by python -m kdfuse.gradcheck); check_ft.py reuses `run_cases`.

AT's gradients are divided by N*h*w*C: at weight 1 they sit far below the check's absolute floor (1e-6),
which would pass anything. So the weight defaults to RepDistiller's beta, and a case without an explicit
grad_scale gets the power of two that brings max |grad| into [0.5, 1) (shown as gs= in the case name).
"""
import math

import torch

from .. import Row, compare

ENTRY = "kdfAT"

# (student shape, teacher shape, options). Options: pool ("hw" for the reference when the maps are not
# square; the library always pools to the smaller map's h x w), weight (default: beta), grad_loss,
# grad_scale (default: automatic, see above), pad (the
# student is a channel slice of a tensor with `pad` more channels), acc (accumulate into random outputs),
# positive (absolute values, for a non-integer power); any other key is the loss's own (p here).
CASES = [
    ((1, 1, 1, 1), (1, 1, 1, 1), {}),
    ((3, 5, 7, 9), (3, 6, 14, 18), {"pool": "hw"}),
    ((3, 6, 14, 18), (3, 5, 7, 9), {"pool": "hw"}),
    ((2, 3, 11, 13), (2, 5, 4, 5), {"pool": "hw", "grad_scale": 0.5}),
    ((1, 2, 9, 2050), (1, 1, 4, 1025), {"pool": "hw"}),  # pooled student staged in two row tiles
    ((4, 16, 8, 8), (4, 32, 8, 8), {"weight": 1.0, "grad_loss": 0.5, "grad_scale": -8192.0}),
    ((2, 8, 16, 16), (2, 4, 8, 8), {"p": 3.0, "pad": 3, "acc": True}),
    ((4, 7, 5, 6), (4, 3, 5, 6), {"pad": 2, "acc": True, "grad_loss": 2.0}),
    ((2, 32, 32, 32), (2, 64, 16, 16), {"p": 2.5, "positive": True}),
    ((8, 64, 16, 16), (8, 128, 16, 16), {}),
    ((64, 64, 8, 8), (64, 64, 8, 8), {}),
]
BETA = 1000.0


def _name(s_shape, t_shape, weight, grad_loss, grad_scale, pad, acc, positive, extra):
    parts = ["x".join(map(str, s_shape)) + " vs " + "x".join(map(str, t_shape))]
    parts += [f"{k}={v:g}" for k, v in extra.items()]
    parts.append(f"w={weight:g}")
    if grad_loss is not None:
        parts.append(f"gl={grad_loss:g}")
    if grad_scale != 1:
        parts.append(f"gs={grad_scale:g}")
    if pad:
        parts.append(f"stride_c+{pad}")
    if acc:
        parts.append("acc")
    if positive:
        parts.append("positive")
    return " ".join(parts)


def _auto_scale(grad):
    top = grad.abs().max().item()
    return 1.0 if top == 0.0 or not math.isfinite(top) else 2.0 ** -math.floor(math.log2(top) + 1)


def run_cases(loss_name, cases, fn, ref, device, seed, beta):
    """Rows of `cases`: the library's fn(f_s, f_t, weight=, grad_loss=, grad_scale=, accumulate=, out=,
    **extra) against the float64 reference ref(f_s, f_t, pool=, **extra) * weight (weight default: beta)."""
    rows = []
    for i, (s_shape, t_shape, opt) in enumerate(cases):
        extra = dict(opt)
        pool = extra.pop("pool", "seed")
        weight = extra.pop("weight", beta)
        grad_loss = extra.pop("grad_loss", None)
        grad_scale = extra.pop("grad_scale", None)
        pad = extra.pop("pad", 0)
        acc = extra.pop("acc", False)
        positive = extra.pop("positive", False)
        g = torch.Generator().manual_seed(seed + 300 + i)
        f_s, f_t = torch.randn(*s_shape, generator=g), torch.randn(*t_shape, generator=g)
        if positive:
            f_s, f_t = f_s.abs(), f_t.abs()
        s64 = f_s.double().requires_grad_(True)
        ref_loss = ref(s64, f_t.double(), pool=pool, **extra) * weight
        upstream = 1.0 if grad_loss is None else grad_loss
        if grad_scale is None:
            grad_scale = _auto_scale(torch.autograd.grad(ref_loss * upstream, s64, retain_graph=True)[0])
        (ref_loss * upstream * grad_scale).backward()
        ref_loss, ref_grad = ref_loss.detach(), s64.grad
        name = _name(s_shape, t_shape, weight, grad_loss, grad_scale, pad, acc, positive, extra)
        if pad:  # the student as a channel slice of a wider tensor
            wide = torch.randn(s_shape[0], s_shape[1] + pad, *s_shape[2:], generator=g)
            wide[:, : s_shape[1]] = f_s
            f_s = wide[:, : s_shape[1]]
        f_s, f_t = f_s.to(device), f_t.to(device)
        out = None
        if acc:
            prev_loss, prev_grad = torch.randn((), generator=g), torch.randn(*s_shape, generator=g)
            grad_buf = torch.empty_strided(f_s.shape, f_s.stride(), device=device).copy_(prev_grad)
            out = (prev_loss.clone().to(device), grad_buf)
            ref_loss, ref_grad = ref_loss + prev_loss.double(), ref_grad + prev_grad.double()
        gl = None if grad_loss is None else torch.tensor(grad_loss, dtype=torch.float32, device=device)
        try:
            loss, grad = fn(f_s, f_t, weight=weight, grad_loss=gl, grad_scale=grad_scale, accumulate=acc, out=out, **extra)
        except Exception as e:  # noqa: BLE001 - reported as a failed row
            rows.append(Row(loss_name, name, "call", status=f"FAIL ({type(e).__name__}: {e})"))
            continue
        rows.append(compare(loss_name, name, "loss", loss, ref_loss))
        rows.append(compare(loss_name, name, "grad_s", grad, ref_grad))
    return rows


def check(device, seed):
    from kdfuse.binding.at import at
    from kdfuse_ref.at import at_loss

    return run_cases("at", CASES, at, at_loss, device, seed, BETA)
