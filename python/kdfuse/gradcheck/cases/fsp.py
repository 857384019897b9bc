"""Gradient-check cases of FSP (used by python -m kdfuse.gradcheck)."""
import torch

from .. import Row, channel_slice, compare

ENTRY = "kdfFSP"

# (student map shapes, teacher map shapes, weights per pair, grad_scale, student channel padding, accumulate):
# the maps form a chain of consecutive pairs, one kdfFSP call per pair (pool: "hw" rule; square maps here
# except the "hw" case, where it is the seed's generalisation).
CASES = [
    ([(1, 1, 1, 1), (1, 1, 1, 1)], [(1, 1, 1, 1), (1, 1, 1, 1)], [1.0], 1.0, 0, False),
    ([(2, 3, 8, 8), (2, 5, 4, 4)], [(2, 3, 6, 6), (2, 5, 6, 6)], [1.0], 256.0, 0, False),
    ([(3, 5, 14, 18), (3, 6, 7, 9)], [(3, 5, 7, 9), (3, 6, 14, 18)], [50.0], 64.0, 2, False),
    ([(17, 4, 7, 7), (17, 3, 5, 5)], [(17, 4, 5, 5), (17, 3, 5, 5)], [1.0], 1024.0, 0, True),
    ([(2, 8, 8, 8), (2, 16, 8, 8), (2, 32, 4, 4), (2, 64, 2, 2)],
     [(2, 8, 8, 8), (2, 16, 4, 4), (2, 32, 4, 4), (2, 64, 2, 2)], [50.0, 25.0, 10.0], 256.0, 1, False),
]


def check(device, seed):
    from kdfuse.binding.fsp import fsp
    from kdfuse_ref.fsp import fsp_loss

    rows = []
    for i, (s_shapes, t_shapes, weights, grad_scale, pad, acc) in enumerate(CASES):
        name = "-".join("x".join(map(str, s)) for s in s_shapes) + (f" gs={grad_scale:g}" if grad_scale != 1 else "") + \
            (f" stride_c+{pad}" if pad else "") + (" acc" if acc else "")
        g = torch.Generator().manual_seed(seed + 200 + i)
        g_s = [torch.randn(*s, generator=g) for s in s_shapes]
        g_t = [torch.randn(*s, generator=g) for s in t_shapes]
        s64 = [f.double().requires_grad_(True) for f in g_s]
        losses = fsp_loss(s64, [f.double() for f in g_t], pool="hw")
        ref = sum(w * l for w, l in zip(weights, losses))
        (ref * grad_scale).backward()
        ref_loss, ref_grads = ref.detach(), [f.grad for f in s64]
        if pad:  # student maps as channel slices of wider tensors
            g_s = [channel_slice(f, pad, g) for f in g_s]
        loss = torch.zeros((), device=device)
        grads = [torch.empty_strided(f.shape, f.stride()).zero_().to(device) for f in g_s]
        if acc:
            prev_loss = torch.randn((), generator=g)
            prevs = [torch.randn(*f.shape, generator=g) for f in g_s]
            loss = prev_loss.clone().to(device)
            grads = [torch.empty_strided(f.shape, f.stride()).copy_(p).to(device) for f, p in zip(g_s, prevs)]
            ref_loss = ref_loss + prev_loss.double()
            ref_grads = [r + p.double() for r, p in zip(ref_grads, prevs)]
        d_s, d_t = [f.to(device) for f in g_s], [f.to(device) for f in g_t]
        try:
            for k in range(len(g_s) - 1):
                fsp(d_s[k], d_s[k + 1], d_t[k], d_t[k + 1], weight=weights[k], grad_scale=grad_scale, accumulate=True,
                    out=(loss, grads[k], grads[k + 1]))
        except Exception as e:  # noqa: BLE001 - reported as a failed row
            rows.append(Row("fsp", name, "call", status=f"FAIL ({type(e).__name__}: {e})"))
            continue
        rows.append(compare("fsp", name, "loss", loss, ref_loss))
        for k, (got, want) in enumerate(zip(grads, ref_grads)):
            rows.append(compare("fsp", name, f"grad_s{k}", got, want))
    return rows
