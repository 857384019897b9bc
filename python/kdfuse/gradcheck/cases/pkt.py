"""Gradient-check cases of PKT (used by python -m kdfuse.gradcheck)."""
import torch

from .. import Row, compare

ENTRY = "kdfPKT"

# (N, D_s, D_t, weight, grad_loss, grad_scale, student row padding, accumulate, special rows)
CASES = [
    (1, 5, 3, 1.0, None, 1.0, 0, False, ""),
    (2, 3, 3, 1.0, None, 1.0, 0, False, ""),
    (3, 7, 4, 1.0, 2.0, 1.0, 0, False, ""),
    (17, 9, 5, 30000.0, 0.5, -2.0, 3, False, ""),
    (17, 33, 12, 1.0, None, 1.0, 0, True, "dup"),
    (64, 256, 256, 30000.0, None, 1.0, 0, False, ""),
    (64, 130, 37, 1.0, None, 0.25, 5, True, ""),
]


def check(device, seed):
    from kdfuse.binding.pkt import pkt
    from kdfuse_ref.pkt import pkt_loss

    rows = []
    for i, (n, ds, dt, weight, grad_loss, grad_scale, pad, acc, special) in enumerate(CASES):
        name = f"{n}x{ds} vs {n}x{dt}" + (f" w={weight:g}" if weight != 1 else "") + \
            (f" gl={grad_loss:g}" if grad_loss is not None else "") + (f" gs={grad_scale:g}" if grad_scale != 1 else "") + \
            (f" ld+{pad}" if pad else "") + (" acc" if acc else "") + (f" {special}" if special else "")
        g = torch.Generator().manual_seed(seed + 200 + i)
        f_s, f_t = torch.randn(n, ds, generator=g), torch.randn(n, dt, generator=g)
        if special == "dup":
            f_s[5], f_t[7] = f_s[2], f_t[1]
        s64 = f_s.double().requires_grad_(True)
        ref = pkt_loss(s64, f_t.double()) * weight
        (ref * (1.0 if grad_loss is None else grad_loss) * grad_scale).backward()
        ref_loss, ref_grad = ref.detach(), s64.grad
        if n == 1:
            ref_grad = torch.zeros_like(ref_grad)  # exactly 0; the float64 reference leaves ~1e-24 residue
        if pad:  # the student as a column slice of a wider matrix (row stride ds + pad)
            wide = torch.randn(n, ds + pad, generator=g)
            wide[:, :ds] = f_s
            f_s = wide[:, :ds]
        out = None
        if acc:
            prev_loss, prev_grad = torch.randn((), generator=g), torch.randn(n, ds + pad, generator=g)
            out = (prev_loss.clone().to(device), prev_grad.clone().to(device)[:, :ds])
            ref_loss, ref_grad = ref_loss + prev_loss.double(), ref_grad + prev_grad[:, :ds].double()
        gl = None if grad_loss is None else torch.tensor(grad_loss, dtype=torch.float32, device=device)
        try:
            loss, grad = pkt(f_s.to(device), f_t.to(device), weight=weight, grad_loss=gl, grad_scale=grad_scale,
                             accumulate=acc, out=out)
        except Exception as e:  # noqa: BLE001 - reported as a failed row
            rows.append(Row("pkt", name, "call", status=f"FAIL ({type(e).__name__}: {e})"))
            continue
        rows.append(compare("pkt", name, "loss", loss, ref_loss))
        rows.append(compare("pkt", name, "grad_s", grad, ref_grad))
    return rows
