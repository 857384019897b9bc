"""Gradient-check cases of SP (used by python -m kdfuse.gradcheck)."""
import torch

from .. import Row, compare

ENTRY = "kdfSP"

# (student shape, teacher shape, weight, grad_loss, grad_scale, student row padding, accumulate, special)
#   special: "" | "dup" (duplicated student rows) | "zero" (a zero student row and a zero teacher row)
CASES = [
    ((1, 5), (1, 7), 1.0, None, 1.0, 0, False, ""),
    ((2, 3), (2, 3), 1.0, None, 1.0, 0, False, ""),
    ((3, 5, 7, 9), (3, 6, 14, 18), 1.0, None, 1.0, 0, False, ""),
    ((17, 13), (17, 30), 3000.0, 0.5, -2.0, 3, True, ""),
    ((64, 256), (64, 256), 1.0, None, 1.0, 0, False, ""),
    ((64, 32, 4, 4), (64, 64, 2, 2), 3000.0, None, 0.25, 0, False, ""),
    ((6, 9), (6, 10), 1.0, None, 1.0, 0, False, "dup"),
    ((5, 7), (5, 4), 1.0, 2.0, 1.0, 0, False, "zero"),
]


def check(device, seed):
    from kdfuse.binding.sp import sp
    from kdfuse_ref.sp import sp_loss

    rows = []
    for i, (ss, ts, weight, grad_loss, grad_scale, pad, acc, special) in enumerate(CASES):
        name = "x".join(map(str, ss)) + " vs " + "x".join(map(str, ts)) + (f" w={weight:g}" if weight != 1 else "") + \
            (f" gl={grad_loss:g}" if grad_loss is not None else "") + (f" gs={grad_scale:g}" if grad_scale != 1 else "") + \
            (f" ld+{pad}" if pad else "") + (" acc" if acc else "") + (f" {special}" if special else "")
        g = torch.Generator().manual_seed(seed + 500 + i)
        f_s, f_t = torch.randn(*ss, generator=g), torch.randn(*ts, generator=g)
        if special == "dup":
            f_s[4] = f_s[1]
        if special == "zero":
            f_s[2] = 0.0
            f_t[0] = 0.0
        s64 = f_s.double().requires_grad_(True)
        ref = sp_loss(s64, f_t.double()) * weight
        (ref * (1.0 if grad_loss is None else grad_loss) * grad_scale).backward()
        ref_loss, ref_grad = ref.detach(), s64.grad
        if pad:  # the student as a column slice of a wider N x (D + pad) matrix
            wide = torch.randn(ss[0], ss[1] + pad, generator=g)
            wide[:, : ss[1]] = f_s
            f_s = wide[:, : ss[1]]
        out = None
        if acc:
            prev_loss, prev_grad = torch.randn((), generator=g), torch.randn(*f_s.shape, generator=g)
            grad_buf = torch.empty_strided(f_s.shape, f_s.stride()).copy_(prev_grad)
            out = (prev_loss.clone().to(device), grad_buf.to(device))
            ref_loss, ref_grad = ref_loss + prev_loss.double(), ref_grad + prev_grad.double()
        gl = None if grad_loss is None else torch.tensor(grad_loss, dtype=torch.float32, device=device)
        try:
            loss, grad = sp(f_s.to(device), f_t.to(device), weight=weight, grad_loss=gl, grad_scale=grad_scale,
                            accumulate=acc, out=out)
        except Exception as e:  # noqa: BLE001 - reported as a failed row
            rows.append(Row("sp", name, "call", status=f"FAIL ({type(e).__name__}: {e})"))
            continue
        rows.append(compare("sp", name, "loss", loss, ref_loss))
        rows.append(compare("sp", name, "grad_s", grad, ref_grad))
    return rows
