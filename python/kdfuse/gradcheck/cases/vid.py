"""Gradient-check cases of VID (used by python -m kdfuse.gradcheck)."""
import torch

from .. import Row, compare

ENTRY = "kdfVID"

# (pred shape, target H x W, weight, grad_loss, grad_scale, pred channel padding, accumulate, log_scale)
#   log_scale: "randn" (2 * N(0, 1)), "init" (RepDistiller's init: softplus + eps = 5) or a list of values
CASES = [
    ((1, 1, 1, 1), (1, 1), 1.0, None, 1.0, 0, False, "randn"),
    ((3, 5, 7, 9), (7, 9), 1.0, None, 1.0, 0, False, "randn"),
    ((3, 5, 7, 9), (14, 18), 1.0, None, 1.0, 0, False, "randn"),
    ((3, 5, 7, 9), (10, 13), 1.0, 0.5, -2.0, 0, False, "randn"),
    ((2, 6, 5, 5), (5, 5), 1.0, None, 1.0, 0, False, [-20.0, 20.0, -80.0, 80.0, 0.0, -5.0]),
    ((4, 7, 6, 6), (13, 13), 2.5, 2.0, 1.0, 3, True, "randn"),
    ((8, 64, 16, 16), (32, 32), 1.0, None, 0.25, 0, False, "init"),
    ((2, 256, 8, 8), (8, 8), 1.0, None, 1.0, 0, False, "init"),
    ((2, 3, 72, 72), (72, 72), 1.0, None, 1.0, 0, False, "randn"),
    ((64, 128), (1, 1), 1.0, None, 1.0, 0, False, "randn"),
]


def _name(p_shape, t_hw, weight, grad_loss, grad_scale, pad, acc, ls):
    name = "x".join(map(str, p_shape))
    if len(p_shape) == 4 and tuple(t_hw) != tuple(p_shape[2:]):
        name += " <- " + "x".join(map(str, t_hw))
    name += (f" w={weight:g}" if weight != 1 else "") + (f" gl={grad_loss:g}" if grad_loss is not None else "") + \
        (f" gs={grad_scale:g}" if grad_scale != 1 else "") + (f" stride_c+{pad}" if pad else "") + (" acc" if acc else "")
    if ls == "init":
        name += " var0=5"
    elif not isinstance(ls, str):
        name += " log_scale=+-20,+-80,0"
    return name


def check(device, seed):
    from kdfuse.binding.vid import vid
    from kdfuse_ref.vid import vid_loss

    rows = []
    for i, (p_shape, t_hw, weight, grad_loss, grad_scale, pad, acc, ls_mode) in enumerate(CASES):
        name = _name(p_shape, t_hw, weight, grad_loss, grad_scale, pad, acc, ls_mode)
        g = torch.Generator().manual_seed(seed + 200 + i)
        t_shape = tuple(p_shape[:2]) + tuple(t_hw) if len(p_shape) == 4 else p_shape
        pred, target = torch.randn(*p_shape, generator=g), torch.randn(*t_shape, generator=g)
        C = p_shape[1]
        if ls_mode == "randn":
            log_scale = 2.0 * torch.randn(C, generator=g)
        elif ls_mode == "init":  # VIDLoss's init_pred_var = 5, plus noise
            log_scale = torch.full((C,), 4.993) + 0.1 * torch.randn(C, generator=g)
        else:
            log_scale = torch.tensor(ls_mode, dtype=torch.float32)
        p64 = pred.double().requires_grad_(True)
        l64 = log_scale.double().requires_grad_(True)
        pr, tr = (p64, target.double()) if len(p_shape) == 4 else (p64[:, :, None, None], target.double()[:, :, None, None])
        ref = vid_loss(pr, tr, l64, pool="hw") * weight
        (ref * (1.0 if grad_loss is None else grad_loss) * grad_scale).backward()
        ref_loss, ref_gp, ref_gl = ref.detach(), p64.grad, l64.grad
        if pad:  # pred_mean as a channel slice of a wider tensor
            wide = torch.randn(p_shape[0], C + pad, *p_shape[2:], generator=g)
            wide[:, :C] = pred
            pred = wide[:, :C]
        out = None
        if acc:
            prev_loss, prev_gp, prev_gl = (torch.randn((), generator=g), torch.randn(*p_shape, generator=g),
                                           torch.randn(C, generator=g))
            gp_buf = torch.empty_strided(pred.shape, pred.stride()).copy_(prev_gp)
            out = (prev_loss.clone().to(device), gp_buf.to(device), prev_gl.clone().to(device))
            ref_loss, ref_gp, ref_gl = ref_loss + prev_loss.double(), ref_gp + prev_gp.double(), ref_gl + prev_gl.double()
        gl = None if grad_loss is None else torch.tensor(grad_loss, dtype=torch.float32, device=device)
        try:
            loss, gp, gls = vid(pred.to(device), target.to(device), log_scale.to(device), weight=weight, grad_loss=gl,
                                grad_scale=grad_scale, accumulate=acc, out=out)
        except Exception as e:  # noqa: BLE001 - reported as a failed row
            rows.append(Row("vid", name, "call", status=f"FAIL ({type(e).__name__}: {e})"))
            continue
        rows.append(compare("vid", name, "loss", loss, ref_loss))
        rows.append(compare("vid", name, "grad_pred", gp, ref_gp))
        rows.append(compare("vid", name, "grad_log_scale", gls, ref_gl))
    return rows
