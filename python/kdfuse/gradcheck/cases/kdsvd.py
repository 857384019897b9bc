"""Gradient-check cases of KDSVD (used by python -m kdfuse.gradcheck).

The reference is kdfuse_ref.kdsvd with the options that define what kdfKDSVD computes (KERNEL below). The
library decomposes fp32 Grams and selects student vectors by an exact comparison of fp32 cosines, so the inputs
are drawn until every spectrum the loss uses is well separated and every alignment is unambiguous (`draw`)."""
import torch

from .. import Row, channel_slice, compare

ENTRY = "kdfKDSVD"

KERNEL = dict(sign="canonical", svd_grad="stable", gap_rtol=1e-5, spatial="hw", nonfinite="zero")

# atol / max |ref| per kind of map: looser than the gradient check's 1e-6 because the loss amplifies the fp32 error
# of the eigenvectors (~eps lambda_0 / gap, from fp32 Grams). "spectral": student and teacher vectors unrelated,
# amplification ~10: measured max |lib - ref| / max |ref| (beyond rtol * |ref|) up to 1.0e-6 over seeds 0-19. "relu":
# the top vectors of both networks are near the positive (Perron) direction (cos ~0.99 at the resnet32x4 widths), so
# D = R_s - R_t, which scales every gradient term, depends on their small difference: a relative perturbation of
# 1e-6 of the float64 vectors moves dL/da by ~1e-5 of its maximum; measured up to 1.6e-5 for the resnet32x4 case
# (seeds 0-5) and 5e-6 for the small relu cases (seeds 0-19), on the SIMT build.
ATOL_FACTOR = {"spectral": 1e-5, "relu": 1e-4}

# (N, layers [(C, H)], k, maps, grad_loss, grad_scale, student channel padding, accumulate). The student and the
# teacher map of a layer are both N x C x H x H; a layer is tall (C <= H*H) or wide (H*H < C).
#   maps: "spectral": signed maps whose H*H x C matrices have the singular values linspace(2, 0.5) (student) /
#         linspace(3, 1) (teacher) and random singular vectors; "relu": random post-ReLU (non-negative) maps.
#   grad_loss: None (1 for every pair) or "vec" (a random value per pair).
CASES = [
    (3, [(4, 3), (6, 3)], 1, "spectral", None, 1.0, 0, False),
    (3, [(12, 2), (20, 2)], 1, "spectral", None, 1.0, 0, False),
    (2, [(5, 3), (16, 2), (7, 4)], 2, "spectral", "vec", 2.5, 0, False),
    (1, [(6, 3), (10, 2), (8, 4)], 1, "spectral", None, 1.0, 0, False),
    (3, [(9, 4), (18, 3), (24, 2)], 2, "spectral", "vec", 0.5, 3, True),
    (4, [(6, 4), (12, 3), (20, 2)], 1, "relu", None, -4.0, 2, False),
    (3, [(6, 4), (12, 3), (20, 2), (10, 2)], 2, "relu", "vec", 1.0, 0, True),
    (2, [(64, 32), (128, 16), (256, 8)], 1, "relu", None, 1.0, 0, False),
]

# A draw is used when, for every sample and layer, each teacher vector's largest |cos| with the student's vectors
# exceeds the second largest by more than MARGIN, and the eigenvalue of each vector the loss differentiates or
# compares (the teacher's k, the student's selected ones) is more than GAP * lambda_0 from every other eigenvalue.
GAP, MARGIN, DRAWS = 1e-3, 1e-2, 20
SPECTRA = {"student": (2.0, 0.5), "teacher": (3.0, 1.0)}


def _maps(n, c, h, kind, spectrum, g):
    if kind == "relu":
        return torch.randn(n, c, h, h, generator=g).relu()
    rank = min(c, h * h)
    s = torch.linspace(*spectrum, rank, dtype=torch.float64)
    v, u = (torch.linalg.qr(torch.randn(n, rows, rank, generator=g, dtype=torch.float64))[0] for rows in (c, h * h))
    return (v * s @ u.transpose(-2, -1)).reshape(n, c, h, h).float()  # F = V diag(s) U^T, C x HH


def _separated(lam, idx):
    """Whether the eigenvalues lam[b, idx[b, j]] (lam: B x K, descending) are isolated: more than GAP * lam[b, 0]
    from every other eigenvalue of their row."""
    own = torch.gather(lam, 1, idx)
    gap = (own[:, :, None] - lam[:, None, :]).abs()
    gap.scatter_(2, idx[:, :, None], float("inf"))
    return bool((gap > GAP * lam[:, :1, None]).all())


def _well_posed(g_s, g_t, k):
    from kdfuse_ref.kdsvd import canonical_sign, kdsvd_svd

    for f_s, f_t in zip(g_s, g_t):
        _, s_s, v_s = kdsvd_svd(f_s.double(), 0, spatial="hw")
        _, s_t, v_t = kdsvd_svd(f_t.double(), 0, spatial="hw")
        cos = (v_s[..., : k + 3].transpose(-2, -1) @ canonical_sign(v_t[..., :k])).abs()
        top2 = cos.topk(2, dim=1) if cos.shape[1] > 1 else None
        if top2 is not None and not bool((top2.values[:, 0] - top2.values[:, 1] > MARGIN).all()):
            return False
        selected = cos.argmax(dim=1)
        teacher = torch.arange(k).expand(s_t.shape[0], k)
        if not (_separated(s_s ** 2, selected) and _separated(s_t ** 2, teacher)):
            return False
    return True


def draw(n, layers, k, kind, g):
    """(student maps, teacher maps) of the case, the first of DRAWS draws that is well posed."""
    for _ in range(DRAWS):
        g_s = [_maps(n, c, h, kind, SPECTRA["student"], g) for c, h in layers]
        g_t = [_maps(n, c, h, kind, SPECTRA["teacher"], g) for c, h in layers]
        if _well_posed(g_s, g_t, k):
            return g_s, g_t
    raise AssertionError(f"no well-posed KDSVD input in {DRAWS} draws: {n} x {layers}, k = {k}, {kind}")


def check(device, seed):
    from kdfuse.binding.kdsvd import kdsvd
    from kdfuse_ref.kdsvd import kdsvd_loss

    rows = []
    for i, (n, layers, k, kind, grad_loss, grad_scale, pad, acc) in enumerate(CASES):
        name = f"{n}x" + "-".join(f"{c}x{h}x{h}" for c, h in layers) + f" k={k} {kind}" + \
            (" gl=vec" if grad_loss else "") + (f" gs={grad_scale:g}" if grad_scale != 1 else "") + \
            (f" stride_c+{pad}" if pad else "") + (" acc" if acc else "")
        g = torch.Generator().manual_seed(seed + 1500 + i)
        g_s, g_t = draw(n, layers, k, kind, g)
        gl = torch.randn(len(layers) - 1, generator=g) if grad_loss else torch.ones(len(layers) - 1)
        s64 = [f.double().requires_grad_(True) for f in g_s]
        ref = torch.stack(kdsvd_loss(s64, [f.double() for f in g_t], k, **KERNEL))
        ((ref * gl.double()).sum() * grad_scale).backward()
        ref_loss, ref_grads = ref.detach(), [f.grad for f in s64]
        if pad:  # student maps as channel slices of wider tensors
            g_s = [channel_slice(f, pad, g) for f in g_s]
        out = None
        if acc:
            # of the magnitude of what is added (the gradients are small at weight 1: O(1) values would hide them)
            prev_loss = torch.randn(len(layers) - 1, generator=g) * ref_loss.abs().max().item()
            prevs = [torch.randn(*f.shape, generator=g) * r.abs().max().item() for f, r in zip(g_s, ref_grads)]
            out = (prev_loss.clone().to(device), [torch.empty_strided(f.shape, f.stride()).copy_(p).to(device)
                                          for f, p in zip(g_s, prevs)])
            ref_loss = ref_loss + prev_loss.double()
            ref_grads = [r + p.double() for r, p in zip(ref_grads, prevs)]
        try:
            loss, grads = kdsvd([f.to(device) for f in g_s], [f.to(device) for f in g_t], k=k,
                                gap_rtol=KERNEL["gap_rtol"], grad_loss=gl.to(device) if grad_loss else None,
                                grad_scale=grad_scale, accumulate=acc, out=out)
        except Exception as e:  # noqa: BLE001 - reported as a failed row
            rows.append(Row("kdsvd", name, "call", status=f"FAIL ({type(e).__name__}: {e})"))
            continue
        rows.append(compare("kdsvd", name, "loss", loss, ref_loss, ATOL_FACTOR[kind]))
        for l, (got, want) in enumerate(zip(grads, ref_grads)):
            rows.append(compare("kdsvd", name, f"grad_s{l}", got, want, ATOL_FACTOR[kind]))
    return rows
