"""Gradient-check cases of CC, both variants (used by python -m kdfuse.gradcheck)."""
import torch

from .. import Row, compare

ENTRY = "kdfCC"

# (variant, student shape, teacher shape, weight, grad_loss, grad_scale, student row padding, accumulate)
# The seed variant's gradient is a small difference of Gram-sized terms: D is kept moderate (the SIMT cuBLAS
# shim sums a GEMM's D products sequentially in fp32).
CASES = [
    ("seed", (1, 5), (1, 3), 1.0, None, 1.0, 0, False),
    ("seed", (2, 3), (2, 3), 1.0, None, 1.0, 0, False),
    ("seed", (3, 5, 3, 3), (3, 6, 4, 4), 1.0, None, 1.0, 0, False),
    ("seed", (17, 13), (17, 30), 0.02, 0.5, -2.0, 3, True),
    ("seed", (64, 128), (64, 128), 1.0, None, 1.0, 0, False),
    ("repdistiller", (2, 3), (2, 3), 1.0, None, 1.0, 0, False),
    ("repdistiller", (17, 13), (17, 13), 0.02, 0.5, -2.0, 3, True),
    ("repdistiller", (64, 128), (64, 128), 1.0, None, 1.0, 0, False),
    ("repdistiller", (70, 33), (70, 33), 1.0, 2.0, 1.0, 0, False),
]


def check(device, seed):
    from kdfuse.binding.cc import cc
    from kdfuse_ref.cc import cc_loss

    rows = []
    for i, (variant, ss, ts, weight, grad_loss, grad_scale, pad, acc) in enumerate(CASES):
        ship = variant == "repdistiller"
        name = variant + " " + "x".join(map(str, ss)) + " vs " + "x".join(map(str, ts)) + \
            (f" w={weight:g}" if weight != 1 else "") + (f" gl={grad_loss:g}" if grad_loss is not None else "") + \
            (f" gs={grad_scale:g}" if grad_scale != 1 else "") + (f" ld+{pad}" if pad else "") + (" acc" if acc else "")
        g = torch.Generator().manual_seed(seed + 600 + i)
        f_s, f_t = torch.randn(*ss, generator=g), torch.randn(*ts, generator=g)
        s64 = f_s.double().requires_grad_(True)
        t64 = f_t.double().requires_grad_(ship)
        ref = cc_loss(s64, t64, variant) * weight
        (ref * (1.0 if grad_loss is None else grad_loss) * grad_scale).backward()
        ref_loss, ref_gs = ref.detach(), s64.grad
        ref_gt = t64.grad if ship else None
        if pad:  # the student as a column slice of a wider N x (D + pad) matrix
            wide = torch.randn(ss[0], ss[1] + pad, generator=g)
            wide[:, : ss[1]] = f_s
            f_s = wide[:, : ss[1]]
        out = None
        if acc:
            prev_loss = torch.randn((), generator=g)
            prev_gs = torch.randn(*f_s.shape, generator=g)
            gs_buf = torch.empty_strided(f_s.shape, f_s.stride()).copy_(prev_gs)
            gt_buf = None
            if ship:
                prev_gt = torch.randn(*f_t.shape, generator=g)
                gt_buf = prev_gt.clone().to(device)
                ref_gt = ref_gt + prev_gt.double()
            out = (prev_loss.clone().to(device), gs_buf.to(device), gt_buf)
            ref_loss, ref_gs = ref_loss + prev_loss.double(), ref_gs + prev_gs.double()
        gl = None if grad_loss is None else torch.tensor(grad_loss, dtype=torch.float32, device=device)
        try:
            loss, grad_s, grad_t = cc(f_s.to(device), f_t.to(device), variant=variant, weight=weight, grad_loss=gl,
                                      grad_scale=grad_scale, accumulate=acc, want_grad_t=ship, out=out)
        except Exception as e:  # noqa: BLE001 - reported as a failed row
            rows.append(Row("cc", name, "call", status=f"FAIL ({type(e).__name__}: {e})"))
            continue
        rows.append(compare("cc", name, "loss", loss, ref_loss))
        rows.append(compare("cc", name, "grad_s", grad_s, ref_gs))
        if ship:
            rows.append(compare("cc", name, "grad_t", grad_t, ref_gt))
    return rows
