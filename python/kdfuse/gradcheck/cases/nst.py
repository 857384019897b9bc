"""Gradient-check cases of NST (used by python -m kdfuse.gradcheck)."""
import torch

from .. import Row, compare

ENTRY = "kdfNST"

# (student shape, teacher shape, pool, weight, grad_loss, grad_scale, student channel padding, accumulate, full_loss)
CASES = [
    ((1, 1, 1, 1), (1, 1, 1, 1), "seed", 1.0, None, 1.0, 0, False, True),
    ((3, 5, 7, 9), (3, 6, 14, 18), "hw", 1.0, None, 1.0, 0, False, True),
    ((3, 6, 14, 18), (3, 5, 7, 9), "hw", 1.0, None, 64.0, 0, False, True),
    ((2, 16, 8, 8), (2, 32, 4, 4), "seed", 50.0, 0.5, -2.0, 0, False, True),
    ((4, 7, 5, 3), (4, 3, 5, 3), "seed", 1.0, 2.0, 1.0, 3, True, False),
    ((17, 4, 5, 5), (17, 3, 7, 7), "seed", 1.0, None, 1.0, 0, False, True),
    ((64, 8, 4, 4), (64, 6, 4, 4), "seed", 50.0, None, 1.0, 0, False, True),
    # the position form (2 (h w)^2 <= (C_s + C_t)^2)
    ((2, 24, 3, 3), (2, 20, 3, 3), "seed", 50.0, -0.5, 4.0, 0, False, True),
    ((3, 10, 4, 4), (3, 12, 2, 2), "seed", 1.0, None, 1.0, 2, True, False),
]


def check(device, seed):
    from kdfuse.binding.nst import nst
    from kdfuse_ref.nst import nst_loss

    rows = []
    for i, (s_shape, t_shape, pool, weight, grad_loss, grad_scale, pad, acc, full) in enumerate(CASES):
        name = "x".join(map(str, s_shape)) + "_vs_" + "x".join(map(str, t_shape)) + \
            (f" w={weight:g}" if weight != 1 else "") + (f" gl={grad_loss:g}" if grad_loss is not None else "") + \
            (f" gs={grad_scale:g}" if grad_scale != 1 else "") + (f" stride_c+{pad}" if pad else "") + \
            (" acc" if acc else "") + ("" if full else " no_tt")
        g = torch.Generator().manual_seed(seed + 100 + i)
        f_s, f_t = torch.randn(*s_shape, generator=g), torch.randn(*t_shape, generator=g)
        s64 = f_s.double().requires_grad_(True)
        ref = nst_loss(s64, f_t.double(), full_loss=full, pool=pool) * weight
        (ref * (1.0 if grad_loss is None else grad_loss) * grad_scale).backward()
        ref_loss, ref_grad = ref.detach(), s64.grad
        if pad:  # the student as a channel slice of a wider tensor
            wide = torch.randn(s_shape[0], s_shape[1] + pad, *s_shape[2:], generator=g)
            wide[:, : s_shape[1]] = f_s
            f_s = wide[:, : s_shape[1]]
        out = None
        if acc:
            prev_loss, prev_grad = torch.randn((), generator=g), torch.randn(*f_s.shape, generator=g)
            grad_buf = torch.empty_strided(f_s.shape, f_s.stride()).copy_(prev_grad)
            out = (prev_loss.clone().to(device), grad_buf.to(device))
            ref_loss, ref_grad = ref_loss + prev_loss.double(), ref_grad + prev_grad.double()
        gl = None if grad_loss is None else torch.tensor(grad_loss, dtype=torch.float32, device=device)
        try:
            loss, grad = nst(f_s.to(device), f_t.to(device), weight=weight, full_loss=full, grad_loss=gl,
                             grad_scale=grad_scale, accumulate=acc, out=out)
        except Exception as e:  # noqa: BLE001 - reported as a failed row
            rows.append(Row("nst", name, "call", status=f"FAIL ({type(e).__name__}: {e})"))
            continue
        rows.append(compare("nst", name, "loss", loss, ref_loss))
        rows.append(compare("nst", name, "grad_s", grad, ref_grad))
    return rows
