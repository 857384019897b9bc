"""Golden cases for KDSVD (see golden.py for the format).

A case of L layers: inputs s0..s{L-1}, t0..t{L-1} (the student and teacher maps) and, when the case has one,
grad_loss (L - 1 floats, the upstream gradient of each pair loss); outputs loss (L - 1 values: weight times
each pair's loss) and grad_s0..grad_s{L-1} (the gradient of sum_l loss_l * grad_loss_l, times grad_scale).
case.txt: layers, k, gap_rtol, weight, grad_scale.

The reference runs as the kernel computes (kdfuse.h, "KDSVD"): sign="canonical", svd_grad="stable",
spatial="hw", nonfinite="zero". Every case is drawn (from its seed, redrawn until it is) well posed in fp32:
the teacher's k vectors and the student vector each selects are simple eigenvectors with eigenvalue gaps of
at least 1e-2 lambda_0, the selection wins by at least 1e-2 in |cos|, each teacher vector's largest entry
is clear of its entries of the other sign, and every student candidate has a nonzero singular value (the
kernel's vector of a zero singular value is 0, LAPACK's an arbitrary unit vector). Samples that are zero or
not finite have no vectors and are exempt.
"""
import numpy as np
import torch

from .golden import write_case
from .kdsvd import kdsvd_loss

GAP_RTOL = float(np.float32(1e-5))  # the params' default, as the kernel reads it


def reference(g_s, g_t, k):
    return kdsvd_loss(g_s, g_t, k=k, sign="canonical", svd_grad="stable", gap_rtol=GAP_RTOL, spatial="hw",
                      nonfinite="zero")


def spectral_maps(n, c, h, values, g):
    """(n, c, h, h) float32 maps whose (h*h) x c matrices have the singular values `values` (min(c, h*h) of
    them) and random singular vectors."""
    out = []
    for _ in range(n):
        u, _ = torch.linalg.qr(torch.randn(h * h, len(values), dtype=torch.float64, generator=g))
        v, _ = torch.linalg.qr(torch.randn(c, len(values), dtype=torch.float64, generator=g))
        out.append((u @ torch.diag(torch.tensor(values, dtype=torch.float64)) @ v.T).T.reshape(c, h, h))
    return torch.stack(out).float()


def linear_spectrum(c, h, top=2.0, bottom=0.5):
    k = min(c, h * h)
    return np.linspace(top, bottom, k).tolist() if k > 1 else [top]


def relu_maps(n, c, h, g):
    """Post-ReLU-like float32 maps: max(0, standard normal)."""
    return torch.randn(n, c, h, h, generator=g).clamp_min(0.0)


def _eigen(f):
    """Eigenvalues (descending) and eigenvectors (columns) of F F^T of one (C, H, W) map, as numpy float64."""
    x = f.double().reshape(f.shape[0], -1).numpy().T
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    return s * s, vt.T


def _separated(lam, j, gap):
    return all(abs(lam[j] - lam[i]) > gap * lam[0] for i in (j - 1, j + 1) if 0 <= i < len(lam))


def well_posed(g_s, g_t, k, gap=1e-2, margin=1e-2):
    """The conditions of the module docstring, checked in float64 on the float32 maps."""
    for f_s, f_t in zip(g_s, g_t):
        for fs, ft in zip(f_s, f_t):
            if not (torch.isfinite(fs).all() and torch.isfinite(ft).all() and fs.any() and ft.any()):
                continue
            lam_t, v_t = _eigen(ft)
            lam_s, v_s = _eigen(fs)
            m = min(k + 3, len(lam_s))
            if not (lam_s[:m] > gap * lam_s[0]).all():
                return False
            for j in range(k):
                v = v_t[:, j]
                top = np.argmax(np.abs(v))
                other = np.abs(v[np.sign(v) != np.sign(v[top])])
                if not _separated(lam_t, j, gap) or (other.size and abs(v[top]) - other.max() < margin * abs(v[top])):
                    return False
                cos = np.abs(v_s[:, :m].T @ v)
                ranked = np.sort(cos)[::-1]
                if (m > 1 and ranked[0] - ranked[1] < margin) or not _separated(lam_s, int(np.argmax(cos)), gap):
                    return False
    return True


def draw(seed, k, make):
    """make(generator) -> (g_s, g_t): the first well-posed draw from the seed."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(50):
        g_s, g_t = make(g)
        if well_posed(g_s, g_t, k):
            return g_s, g_t
    raise AssertionError(f"no well-posed KDSVD draw from seed {seed}")


def kdsvd_case(root, name, g_s, g_t, k=1, weight=1.0, grad_loss=None, grad_scale=1.0, zero_student=()):
    """Writes one case. zero_student: (layer, sample) pairs whose student map is written as zeros; the kernel
    defines the vectors of a zero map as 0 (LAPACK returns an arbitrary basis), which is what the reference's
    nonfinite="zero" gives a non-finite map, so the expected values are computed with that map non-finite."""
    ref_s = [f.clone() for f in g_s]
    for layer, sample in zero_student:
        g_s[layer][sample] = 0.0
        ref_s[layer][sample] = float("nan")
    s64 = [f.double().requires_grad_(True) for f in ref_s]
    losses = torch.stack(reference(s64, [f.double() for f in g_t], k)) * weight
    upstream = torch.ones_like(losses) if grad_loss is None else torch.tensor(grad_loss, dtype=torch.float64)
    ((losses * upstream).sum() * grad_scale).backward()
    ins = {f"s{l}": f for l, f in enumerate(g_s)}
    ins.update({f"t{l}": f for l, f in enumerate(g_t)})
    if grad_loss is not None:
        ins["grad_loss"] = torch.tensor(grad_loss)
    outs = {"loss": losses.detach()}
    outs.update({f"grad_s{l}": f.grad for l, f in enumerate(s64)})
    params = {"layers": str(len(g_s)), "k": str(k), "gap_rtol": repr(GAP_RTOL), "weight": repr(float(weight)),
              "grad_scale": repr(float(grad_scale))}
    write_case(root, "kdsvd", name, params, ins, outs)


def spectral_pair(n, layers, student=linear_spectrum, teacher=lambda c, h: linear_spectrum(c, h, 3.0, 1.0)):
    """make() of draw for maps with prescribed spectra; layers: (C, student h, teacher h) per layer."""
    def make(g):
        g_s = [spectral_maps(n, c, hs, student(c, hs), g) for c, hs, _ in layers]
        g_t = [spectral_maps(n, c, ht, teacher(c, ht), g) for c, _, ht in layers]
        return g_s, g_t
    return make


def cases(root):
    # N = 1, k = 1: two tall layers (C <= h*w) of odd Gram order (5 and 7).
    k = 1
    g_s, g_t = draw(0, k, spectral_pair(1, [(5, 3, 3), (7, 3, 3)]))
    kdsvd_case(root, "n1_k1_tall_c5_c7", g_s, g_t, k)

    # k = 2, three layers: wide (h*w = 9 < C = 12: Gram order 9), tall, wide (h*w = 4); weight, a grad_loss per
    # pair and grad_scale.
    k = 2
    g_s, g_t = draw(1, k, spectral_pair(2, [(12, 3, 3), (6, 4, 4), (20, 2, 2)]))
    kdsvd_case(root, "n2_k2_wide_tall_wide_weighted", g_s, g_t, k, weight=2.5, grad_loss=[0.75, -1.5], grad_scale=-3.0)

    # Student and teacher maps of different h at a layer (a tall student with a wide teacher and the reverse).
    k = 1
    g_s, g_t = draw(2, k, spectral_pair(3, [(6, 4, 2), (10, 3, 5)]))
    kdsvd_case(root, "n3_k1_student_teacher_h_differ", g_s, g_t, k)

    # Order-1 Grams: C = 1 (tall) and h*w = 1 (wide), between two ordinary layers.
    k = 1
    g_s, g_t = draw(3, k, spectral_pair(2, [(3, 2, 2), (1, 3, 3), (5, 1, 1), (4, 3, 3)]))
    kdsvd_case(root, "n2_k1_order1_grams", g_s, g_t, k)

    # Repeated singular values outside the used ones (the student's top k + 3 = 4, the teacher's top 1).
    k = 1

    def repeated(c, h):
        return [4.0, 3.0, 2.0, 1.5] + [0.5] * (min(c, h * h) - 4)
    g_s, g_t = draw(4, k, spectral_pair(2, [(7, 3, 3), (16, 3, 3)], student=repeated,
                                        teacher=lambda c, h: [4.0] + [1.0] * (min(c, h * h) - 1)))
    kdsvd_case(root, "n2_k1_repeated_values_outside_used", g_s, g_t, k)

    # A zero teacher sample at one layer: s_hat = 0 there, so a_s = a_t = 0; the other layer's pair still
    # compares that sample's vectors with 0.
    k = 2

    def zero_teacher(g):
        g_s, g_t = spectral_pair(2, [(5, 3, 3), (8, 3, 3)])(g)
        g_t[1][1] = 0.0
        return g_s, g_t
    g_s, g_t = draw(5, k, zero_teacher)
    kdsvd_case(root, "n2_k2_zero_teacher_sample", g_s, g_t, k)

    # A zero student sample at one layer: no vectors, no gradient for it; the other samples as without it.
    k = 1
    g_s, g_t = draw(6, k, spectral_pair(3, [(6, 3, 3), (9, 2, 2)]))
    kdsvd_case(root, "n3_k1_zero_student_sample", g_s, g_t, k, zero_student=[(0, 1)])

    # Post-ReLU maps with dead units: sample 0 has two all-zero channels in a tall layer (two zero singular
    # values), sample 1 an all-zero pixel in a wide layer (a zero singular value with h*w < C). torch's SVD
    # backward divides by those zero gaps and values (NaN over the sample with this venv's torch and LAPACK);
    # the stable one, the kernel's, is finite.
    k = 1

    def dead(g):
        g_s = [relu_maps(2, 6, 4, g), relu_maps(2, 12, 3, g)]
        g_t = [relu_maps(2, 6, 4, g), relu_maps(2, 12, 3, g)]
        g_s[0][0, 4:] = 0.0
        g_s[1][1, :, 2, 2] = 0.0
        return g_s, g_t
    g_s, g_t = draw(7, k, dead)
    kdsvd_case(root, "n2_k1_dead_channels_and_pixel", g_s, g_t, k)

    # Non-finite samples: a NaN in a student map, +inf in a teacher map and -inf in another student map, each
    # in another sample: that sample's vectors are 0 at that layer (nonfinite="zero"); losses stay finite.
    k = 2

    def nonfinite(g):
        g_s, g_t = spectral_pair(3, [(5, 3, 3), (12, 3, 3), (4, 2, 2)])(g)
        g_s[0][0, 2, 1, 0] = float("nan")
        g_t[1][2, 7, 0, 2] = float("inf")
        g_s[2][1, 0, 1, 1] = -float("inf")
        return g_s, g_t
    g_s, g_t = draw(8, k, nonfinite)
    kdsvd_case(root, "n3_k2_nonfinite_samples", g_s, g_t, k)

    # RepDistiller resnet32x4 -> resnet8x4, feat[1:-1] (post-ReLU): 64x32x32, 128x16x16 (tall), 256x8x8 (wide).
    k = 1

    def resnet(g):
        shapes = [(64, 32), (128, 16), (256, 8)]
        return [relu_maps(2, c, h, g) for c, h in shapes], [relu_maps(2, c, h, g) for c, h in shapes]
    g_s, g_t = draw(9, k, resnet)
    kdsvd_case(root, "resnet32x4_n2", g_s, g_t, k)
