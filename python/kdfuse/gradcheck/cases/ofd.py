"""Gradient-check cases of OFD and its BN margin (used by python -m kdfuse.gradcheck)."""
import torch

from .. import Row, compare

ENTRY = "kdfOFD"

# (shape, variant, teacher, weight, grad_loss, grad_scale, student channel padding, accumulate)
#   teacher: "randn" | "empty0" (channel 0 without negative values) | "negative" | "positive"
CASES = [
    ((1, 1, 1, 1), "seed", "randn", 1.0, None, 1.0, 0, False),
    ((3, 5, 7, 9), "seed", "randn", 1.0, None, 1.0, 0, False),
    ((3, 6, 14, 18), "seed", "empty0", 1.0, None, 1.0, 0, False),
    ((2, 16, 8, 8), "seed", "randn", 2.0, 0.5, -2.0, 0, False),
    ((4, 7, 5, 3), "seed", "randn", 1.0, 2.0, 1.0, 3, True),
    ((2, 4, 3, 3), "seed", "negative", 1.0, None, 1.0, 0, False),
    ((3, 5, 4, 4), "seed", "positive", 1.0, None, 1.0, 0, False),
    ((16, 8, 32, 32), "seed", "randn", 1.0, None, 0.25, 0, False),
    ((2, 128, 16, 16), "seed", "randn", 0.5, None, 1.0, 0, False),
    ((3, 5, 7, 9), "original", "randn", 1.0, None, 1.0, 0, False),
    ((4, 7, 5, 3), "original", "negative", 0.5, 1.5, 2.0, 3, True),
    ((8, 64, 16, 16), "original", "randn", 1.0, None, 1.0, 0, False),
]


def _teacher(shape, kind, g):
    t = torch.randn(*shape, generator=g)
    if kind == "empty0":
        t[:, 0] = t[:, 0].abs()
    elif kind == "negative":
        t = -(t.abs() + 0.1)
    elif kind == "positive":
        t = t.abs() + 0.1
    return t


def check(device, seed):
    from kdfuse.binding.ofd import ofd, ofd_margin_from_bn
    from kdfuse_ref.ofd import bn_margin, ofd_loss

    rows = []
    for i, (shape, variant, kind, weight, grad_loss, grad_scale, pad, acc) in enumerate(CASES):
        name = "x".join(map(str, shape)) + f" {variant}" + (f" t={kind}" if kind != "randn" else "") + \
            (f" w={weight:g}" if weight != 1 else "") + (f" gl={grad_loss:g}" if grad_loss is not None else "") + \
            (f" gs={grad_scale:g}" if grad_scale != 1 else "") + (f" stride_c+{pad}" if pad else "") + (" acc" if acc else "")
        g = torch.Generator().manual_seed(seed + 400 + i)
        s, t = torch.randn(*shape, generator=g), _teacher(shape, kind, g)
        margin = None
        if variant == "original":
            gamma, beta = torch.randn(shape[1], generator=g), torch.randn(shape[1], generator=g)
            margin = bn_margin(gamma, beta).float()
        s64 = s.double().requires_grad_(True)
        ref = ofd_loss(s64, t.double(), None if margin is None else margin.double(), variant=variant) * weight
        (ref * (1.0 if grad_loss is None else grad_loss) * grad_scale).backward()
        ref_loss, ref_grad = ref.detach(), s64.grad
        if pad:  # the student as a channel slice of a wider tensor
            wide = torch.randn(shape[0], shape[1] + pad, *shape[2:], generator=g)
            wide[:, : shape[1]] = s
            s = wide[:, : shape[1]]
        out = None
        if acc:
            prev_loss, prev_grad = torch.randn((), generator=g), torch.randn(*s.shape, generator=g)
            grad_buf = torch.empty_strided(s.shape, s.stride()).copy_(prev_grad)
            out = (prev_loss.clone().to(device), grad_buf.to(device))
            ref_loss, ref_grad = ref_loss + prev_loss.double(), ref_grad + prev_grad.double()
        gl = None if grad_loss is None else torch.tensor(grad_loss, dtype=torch.float32, device=device)
        try:
            loss, grad = ofd(s.to(device), t.to(device), margin=None if margin is None else margin.to(device),
                             variant=variant, weight=weight, grad_loss=gl, grad_scale=grad_scale, accumulate=acc, out=out)
        except Exception as e:  # noqa: BLE001 - reported as a failed row
            rows.append(Row("ofd", name, "call", status=f"FAIL ({type(e).__name__}: {e})"))
            continue
        rows.append(compare("ofd", name, "loss", loss, ref_loss))
        rows.append(compare("ofd", name, "grad_s", grad, ref_grad))

    # The BN margin: random gamma, beta (and gamma = 0 channels) against the reference in float64.
    g = torch.Generator().manual_seed(seed + 499)
    gamma, beta = torch.randn(96, generator=g), 2.0 * torch.randn(96, generator=g)
    gamma[::17] = 0.0
    try:
        margin = ofd_margin_from_bn(gamma.to(device), beta.to(device))
    except Exception as e:  # noqa: BLE001 - reported as a failed row
        rows.append(Row("ofd", "bn_margin C=96", "call", status=f"FAIL ({type(e).__name__}: {e})"))
    else:
        rows.append(compare("ofd", "bn_margin C=96", "margin", margin, bn_margin(gamma, beta)))
    return rows
