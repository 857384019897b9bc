"""Gradient-check cases of KD (used by python -m kdfuse.gradcheck)."""
import torch

from .. import Row, compare

ENTRY = "kdfKD"

KD_CASES = [
    (1, 1, 4.0, None, "batchmean", None, 1.0, True, 0, ""),
    (1, 1, 1.0, "rand", "none", "vec", 2.0, False, 0, ""),
    (3, 7, 4.0, None, "batchmean", None, 1.0, False, 0, ""),
    (3, 7, 1.0, "zeros", "none", "vec", 0.5, True, 0, ""),
    (3, 7, 0.5, None, "batchmean", 2.5, 1.0, False, 0, ""),
    (64, 100, 4.0, "rand", "batchmean", None, 1.0, False, 0, ""),
    (64, 100, 10.0, None, "none", None, 1.0, False, 0, ""),
    (64, 100, 1.0, None, "batchmean", -0.75, 3.0, True, 13, ""),
    (64, 100, 4.0, "zeros", "batchmean", 1.5, 0.25, True, 0, "acc"),
    (37, 1031, 4.0, None, "batchmean", None, 1.0, False, 0, ""),
    (37, 1031, 0.5, "zeros", "none", "vec", 1.0, False, 0, ""),
    (37, 1031, 4.0, "nanmask", "batchmean", 0.5, 2.0, True, 9, ""),
    (37, 1031, 10.0, "rand", "none", None, 0.125, True, 0, "acc"),
    (8, 50000, 4.0, None, "batchmean", None, 1.0, True, 0, ""),
    (8, 50000, 1.0, "zeros", "none", "vec", 0.5, False, 3, ""),
]


# 16-bit logits (dtype, case): the vector and scalar loads, the shared-memory cache and the long-row path,
# grad_t, strided rows, masks and accumulation into 16-bit gradients.
KD_16BIT_CASES = [
    (torch.bfloat16, (3, 7, 4.0, None, "batchmean", None, 1.0, True, 0, "")),
    (torch.float16, (3, 7, 1.0, "zeros", "none", "vec", 0.5, True, 0, "")),
    (torch.bfloat16, (64, 100, 1.0, None, "batchmean", -0.75, 3.0, True, 12, "")),
    (torch.float16, (64, 100, 4.0, "zeros", "batchmean", 1.5, 0.25, True, 0, "acc")),
    (torch.bfloat16, (37, 1031, 4.0, "nanmask", "batchmean", 0.5, 2.0, True, 9, "")),
    (torch.float16, (37, 1031, 10.0, "rand", "none", None, 0.125, True, 0, "acc")),
    (torch.bfloat16, (8, 50000, 4.0, None, "batchmean", None, 1.0, True, 0, "acc")),
    (torch.float16, (8, 50000, 1.0, "zeros", "none", "vec", 0.5, False, 4, "")),
]

_DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16"}


def _kd_case_name(n, c, T, weight, reduction, grad_loss, grad_scale, grad_t, pad, extra):
    parts = [f"{n}x{c}", f"T={T:g}", reduction]
    if weight:
        parts.append(f"w={weight}")
    if grad_loss is not None:
        parts.append("gl=vec" if grad_loss == "vec" else f"gl={grad_loss:g}")
    if grad_scale != 1.0:
        parts.append(f"gs={grad_scale:g}")
    if grad_t:
        parts.append("+grad_t")
    if pad:
        parts.append(f"ld={c + pad}")
    if extra:
        parts.append(extra)
    return " ".join(parts)


def check(device, seed):
    from kdfuse import kd
    from kdfuse_ref.kd import kd_loss

    rows = []
    cases = [(torch.float32, case) for case in KD_CASES] + KD_16BIT_CASES
    for i, (dtype, (n, c, T, weight, reduction, grad_loss, grad_scale, grad_t, pad, extra)) in enumerate(cases):
        name = _kd_case_name(n, c, T, weight, reduction, grad_loss, grad_scale, grad_t, pad, extra)
        if dtype in _DTYPE_NAMES:
            name += " " + _DTYPE_NAMES[dtype]
        g = torch.Generator().manual_seed(seed + i)
        wide_s = (torch.randn(n, c + pad, generator=g) * 3.0).to(dtype)
        wide_t = (torch.randn(n, c + pad, generator=g) * 3.0).to(dtype)
        y_s, y_t = wide_s[:, :c], wide_t[:, :c]
        w = None
        if weight is not None:
            w = torch.rand(n, generator=g) * 2.0
            if weight in ("zeros", "nanmask"):
                w[::3] = 0.0
        gl_ref = None
        gl_dev = None
        if grad_loss == "vec":
            gl_ref = torch.randn(n, generator=g, dtype=torch.float32)
        elif grad_loss is not None:
            gl_ref = torch.tensor(float(grad_loss), dtype=torch.float32)
        # float64 reference from the float32 / 16-bit inputs (masked rows: finite stand-ins, they weigh 0)
        ys64 = y_s.double().clone().requires_grad_(True)
        yt64 = y_t.double().clone().requires_grad_(True)
        w64 = None if w is None else w.double()
        ref_loss = kd_loss(ys64, yt64, T, w64, reduction)
        upstream = torch.ones_like(ref_loss) if gl_ref is None else gl_ref.double().reshape(ref_loss.shape)
        ref_gs, ref_gt = torch.autograd.grad((ref_loss * upstream).sum() * grad_scale, (ys64, yt64))
        if weight == "nanmask":
            wide_s[w == 0] = float("nan")
            wide_t[w == 0] = float("nan")
        acc = None  # accumulate: outputs pre-filled with random values (gradients as slices, ld = c + pad)
        if extra == "acc":
            acc = (torch.randn(ref_loss.shape, generator=g), torch.randn(n, c + pad, generator=g).to(dtype),
                   torch.randn(n, c + pad, generator=g).to(dtype) if grad_t else None)
        # to the device
        to = lambda t: None if t is None else t.to(device)  # noqa: E731
        d_wide_s, d_wide_t = to(wide_s), to(wide_t)
        d_ys, d_yt = d_wide_s[:, :c], d_wide_t[:, :c]
        if gl_ref is not None:
            gl_dev = to(gl_ref)
        out = None
        if acc is not None:  # copies: the library adds into them in place
            out = (acc[0].to(device, copy=True), acc[1].to(device, copy=True)[:, :c],
                   None if acc[2] is None else acc[2].to(device, copy=True)[:, :c])
        try:
            loss, gs, gt = kd(d_ys, d_yt, T=T, weight=to(w), reduction=reduction, grad_loss=gl_dev,
                              grad_scale=grad_scale, accumulate=acc is not None, want_grad_t=grad_t, out=out)
        except Exception as e:  # noqa: BLE001 - reported as a failed row
            rows.append(Row("kd", name, "call", tol="", status=f"FAIL ({type(e).__name__}: {e})"))
            continue
        ref_loss = ref_loss.detach()
        if acc is not None:
            ref_loss = ref_loss + acc[0].double()
            ref_gs = ref_gs + acc[1][:, :c].double()
            if grad_t:
                ref_gt = ref_gt + acc[2][:, :c].double()
        rows.append(compare("kd", name, "loss", loss, ref_loss))
        rows.append(compare("kd", name, "grad_s", gs, ref_gs))
        if grad_t:
            rows.append(compare("kd", name, "grad_t", gt, ref_gt))
    return rows
