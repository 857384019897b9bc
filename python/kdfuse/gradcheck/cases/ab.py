"""Gradient-check cases of AB (used by python -m kdfuse.gradcheck)."""
import torch

from .. import Row, compare

ENTRY = "kdfAB"

# (shape, margin, seed_scaling, weight, grad_loss, grad_scale, student channel padding, accumulate)
CASES = [
    ((1, 1, 1, 1), 1.0, True, 1.0, None, 1.0, 0, False),
    ((3, 5, 7, 9), 1.0, True, 1.0, None, 1.0, 0, False),
    ((2, 16, 8, 8), 0.5, False, 0.25, 0.5, -2.0, 0, False),
    ((4, 7, 5, 3), 1.0, True, 1.0, 2.0, 1.0, 3, True),
    ((3, 6, 14, 18), 0.0, True, 0.5, None, 1.0, 0, False),
    ((8, 64, 16, 16), 1.0, True, 1.0, None, 0.25, 0, False),
    ((2, 128, 16, 16), 1.0, True, 0.5, None, 1.0, 0, False),
    ((64, 256), 1.0, False, 1.0, None, 1.0, 0, False),
]


def check(device, seed):
    from kdfuse.binding.ab import ab
    from kdfuse_ref.ab import ab_loss

    rows = []
    for i, (shape, margin, scaling, weight, grad_loss, grad_scale, pad, acc) in enumerate(CASES):
        name = "x".join(map(str, shape)) + (f" m={margin:g}" if margin != 1 else "") + ("" if scaling else " raw") + \
            (f" w={weight:g}" if weight != 1 else "") + (f" gl={grad_loss:g}" if grad_loss is not None else "") + \
            (f" gs={grad_scale:g}" if grad_scale != 1 else "") + (f" stride_c+{pad}" if pad else "") + (" acc" if acc else "")
        g = torch.Generator().manual_seed(seed + 300 + i)
        s, t = torch.randn(*shape, generator=g) * 2.0, torch.randn(*shape, generator=g)
        s64 = s.double().requires_grad_(True)
        ref = ab_loss(s64, t.double(), margin, scale=scaling) * weight
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
            loss, grad = ab(s.to(device), t.to(device), margin=margin, weight=weight, seed_scaling=scaling, grad_loss=gl,
                            grad_scale=grad_scale, accumulate=acc, out=out)
        except Exception as e:  # noqa: BLE001 - reported as a failed row
            rows.append(Row("ab", name, "call", status=f"FAIL ({type(e).__name__}: {e})"))
            continue
        rows.append(compare("ab", name, "loss", loss, ref_loss))
        rows.append(compare("ab", name, "grad_s", grad, ref_grad))
    return rows
