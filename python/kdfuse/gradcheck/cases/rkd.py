"""Gradient-check cases of RKD (used by python -m kdfuse.gradcheck)."""
import torch

from .. import Row, compare

ENTRY = "kdfRKD"

# (N, D_s, D_t, w_d, w_a, weight, grad_loss, grad_scale, student row padding, accumulate, special rows)
CASES = [
    (1, 4, 6, 25.0, 50.0, 1.0, None, 1.0, 0, False, ""),
    (2, 3, 5, 25.0, 50.0, 1.0, None, 1.0, 0, True, ""),  # identically 0 at N = 2: checked on top of prior values
    (3, 7, 4, 25.0, 50.0, 1.0, 2.0, 1.0, 0, False, ""),
    (17, 9, 5, 2.0, 3.0, 1.5, 0.5, -2.0, 3, False, ""),
    (17, 33, 12, 25.0, 50.0, 1.0, None, 1.0, 0, True, "dup"),
    (32, 64, 48, 25.0, 50.0, 1.0, None, 0.25, 5, True, ""),
]


def check(device, seed):
    from kdfuse.binding.rkd import rkd
    from kdfuse_ref.rkd import rkd_loss

    rows = []
    for i, (n, ds, dt, w_d, w_a, weight, grad_loss, grad_scale, pad, acc, special) in enumerate(CASES):
        name = f"{n}x{ds} vs {n}x{dt}" + (f" wd={w_d:g} wa={w_a:g}" if (w_d, w_a) != (25, 50) else "") + \
            (f" w={weight:g}" if weight != 1 else "") + (f" gl={grad_loss:g}" if grad_loss is not None else "") + \
            (f" gs={grad_scale:g}" if grad_scale != 1 else "") + (f" ld+{pad}" if pad else "") + \
            (" acc" if acc else "") + (f" {special}" if special else "")
        g = torch.Generator().manual_seed(seed + 300 + i)
        e_s, e_t = torch.randn(n, ds, generator=g), torch.randn(n, dt, generator=g)
        if special == "dup":
            e_s[5], e_t[7] = e_s[2], e_t[1]
        s64 = e_s.double().requires_grad_(True)
        # kdfRKD's documented choices: N = 1 gives 0 (empty_mean="zero"); zero differences carry no
        # angle gradient (degenerate_grad="zero"). Forward values are the seed's otherwise.
        ref = rkd_loss(s64, e_t.double(), w_d, w_a, empty_mean="zero", degenerate_grad="zero") * weight
        (ref * (1.0 if grad_loss is None else grad_loss) * grad_scale).backward()
        ref_loss, ref_grad = ref.detach(), s64.grad
        if pad:  # the student as a column slice of a wider matrix (row stride ds + pad)
            wide = torch.randn(n, ds + pad, generator=g)
            wide[:, :ds] = e_s
            e_s = wide[:, :ds]
        out = None
        if acc:
            prev_loss, prev_grad = torch.randn((), generator=g), torch.randn(n, ds + pad, generator=g)
            out = (prev_loss.clone().to(device), prev_grad.clone().to(device)[:, :ds])
            ref_loss, ref_grad = ref_loss + prev_loss.double(), ref_grad + prev_grad[:, :ds].double()
        gl = None if grad_loss is None else torch.tensor(grad_loss, dtype=torch.float32, device=device)
        try:
            loss, grad = rkd(e_s.to(device), e_t.to(device), w_d=w_d, w_a=w_a, weight=weight, grad_loss=gl,
                             grad_scale=grad_scale, accumulate=acc, out=out)
        except Exception as e:  # noqa: BLE001 - reported as a failed row
            rows.append(Row("rkd", name, "call", status=f"FAIL ({type(e).__name__}: {e})"))
            continue
        rows.append(compare("rkd", name, "loss", loss, ref_loss))
        rows.append(compare("rkd", name, "grad_s", grad, ref_grad))
    return rows
