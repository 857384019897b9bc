"""KDSVD: self-supervised knowledge distillation using singular value decomposition (Lee et al., ECCV 2018),
as RepDistiller's KDSVD (distiller_zoo/KDSVD.py; train_student.py feeds it feat[1:-1], the outputs of the
residual stages: for resnet32x4 -> resnet8x4, 64x32x32, 128x16x16 and 256x8x8 maps, both networks).

Seed. Inputs: two lists g_s, g_t of feature maps (N, C_l, H_l, W_l). For every layer l and network:

- X = feat.view(-1, C, H*H).transpose(-2, -1): one (H*H) x C matrix per sample, X[p, c] = feat[b, c, p]
  (rows are pixels, columns channels). Note H*H, not H*W (quirk below).
- torch.svd(X) (reduced: K = min(H*H, C) triplets, singular values descending) gives U (B, HW, K),
  S (B, K), V (B, C, K), X = U diag(S) V^T; removenan replaces every non-finite entry of U, S and V by 0.
- the first n columns / values are kept (fewer when K < n) and each is F.normalize'd (p = 2, eps 1e-12):
  the columns of U and V over their length (they are unit vectors already: a no-op up to rounding), and
  the n singular values as one vector: s_hat = s[:n] / max(|s[:n]|, 1e-12). n = k for the teacher,
  n = k + 3 for the student (k = 1 in RepDistiller: the teacher's s_hat is then exactly 1 for any
  sample whose largest singular value exceeds 1e-12, and s0 / 1e-12 < 1 below that; 0 for a zero map).
- align_rsv: cos = V_s^T V_t ((k+3) x k per sample); for each teacher vector j the student vectors l with
  |cos[l, j]| equal to the column's maximum get weight sign(cos[l, j]), the others 0; the student's aligned
  vectors are w_j = sum_l V_s[:, l] * mask[l, j] (C x k). The student vector closest to teacher vector j,
  with its sign flipped to agree; the mask is a constant (no gradient through the selection).
- both are scaled by the teacher's s_hat: a_t[:, j] = s_hat_t[j] * v_t[:, j], a_s[:, j] = s_hat_t[j] * w_j.
- for every consecutive pair (l-1, l), l >= 1, per sample b, channel c of layer l, channel c' of layer
  l-1 and component j < k (element-wise in j, NOT summed over j):
      R[b, c, c', j] = exp(-(a_l[b, c, j] - a_{l-1}[b, c', j])^2 / 8)   for student and teacher,
      loss_l = sum_{b, c, c', j} (R_s - R_t)^2 / N,   N = g_s[0].shape[0],
  the squared differences masked by torch.isfinite (non-finite entries count 0).
- the output is the list of the len - 1 losses (zip truncates to the shorter of g_s and g_t; one layer
  gives []); train_student.py sums them.

Gradients. The student maps get gradients through their V (the student's U and S are unused): through
F.normalize (a projection orthogonal to each unit vector), the alignment (a fixed signed selection) and the
RBF of both of the student's consecutive-pair terms (a middle layer gets both). Only R_t is detached: the
teacher's s_hat multiplies the student's vectors, so a teacher map that requires grad receives gradient
through its singular values (identically 0 for k = 1, since s0 / |s0| is constant; nonzero for k >= 2).
RepDistiller computes the teacher's features under no_grad, so that path is dead in training.

Quirks kept (pinned in tests/test_kdsvd.py):
- H*H: the view uses size[2] * size[2]. For square maps (every RepDistiller network) this is H*W. For a
  non-square map the view regroups the N*C*H*W numbers into (N*C*H*W) / (C*H*H) "samples" of H*H pixels,
  mixing samples, and fails when that does not divide; the division is still by N. spatial="seed" (default)
  reproduces this (raising ValueError where the seed's view raises RuntimeError); spatial="hw" uses H*W.
  The seed's .view also rejects non-contiguous maps; reshape here accepts them (same values).
- signs: LAPACK / cuSOLVER return each singular vector up to sign. The student's sign is irrelevant (the
  alignment flips it to the teacher's), but the RBF compares layer l with layer l-1, so the loss depends on
  the RELATIVE sign of the teacher's vectors of consecutive layers, which the seed leaves to the SVD
  library. Observed with torch 2.x on the CPU (LAPACK gesdd) for non-negative (post-ReLU-like) maps, whose
  top vector is single-signed: all-negative for the tall 64x32x32 and 128x16x16 maps, all-positive for
  the wide 256x8x8 map, mixed from sample to sample at 16x32x32. At the resnet32x4 shapes the seed's
  layer-2/layer-3 pair therefore compares opposite-signed vectors (exp(-(|a_3| + |a_2|)^2 / 8)), and that
  loss came out 8x larger (0.30 vs 0.038, one draw of random post-ReLU maps, N = 8) than with consistent
  signs; CUDA (cuSOLVER) may choose otherwise. sign="seed" (default) takes whatever torch.linalg.svd returns;
  sign="canonical" (an extension) flips each teacher vector so that its entry of largest magnitude (the
  first such entry on ties) is positive: a deterministic definition that a kernel can reproduce. The two
  agree whenever the library's signs of consecutive layers agree in that sense.
- fewer vectors than asked: a layer with K = min(H*H, C) < n keeps K columns. For the student that only
  narrows the alignment's choice; a teacher layer with K < k has fewer than k vectors and the RBF
  broadcasts (K = 1) or fails (the seed's broadcasting, kept).
- alignment ties: |cos| is compared for exact equality with the column maximum, so two student vectors with
  the same |cos| are both selected and ADDED (the aligned vector has norm sqrt 2), and a teacher vector
  orthogonal to all k + 3 student vectors (maximum 0, sign(0) = 0) aligns to the zero vector (no loss
  gradient reaches that student layer through it).
- removenan and the isfinite mask: torch.linalg.svd on the CPU raises on non-finite input, so for finite
  inputs removenan never fires, and after it every a is finite, R is in (0, 1] and the
  mask never fires either. nonfinite="raise" (default) keeps torch's error; nonfinite="zero" (an extension:
  what an SVD that propagates NaN followed by the seed's removenan gives) sets U, S, V of every sample
  containing a non-finite value to 0 (a constant: no gradient to that sample); the loss stays finite.
- torch.svd is deprecated; torch.linalg.svd(X, full_matrices=False) returns the same U, S and Vh = V^T
  (bitwise: torch.svd calls it), pinned in the tests.
- the SVD gradient (torch's formula) divides by s_i^2 - s_j^2 for EVERY pair of singular values, and by s_i
  when H*H < C, even for pairs that carry no gradient: a sample whose matrix has two exactly equal singular
  values (e.g. two all-zero channels with C <= H*H, which post-ReLU maps can have) or, when H*H < C, any
  zero singular value gets a NaN gradient (0 / 0) over the whole sample, although the loss is smooth there
  (it depends only on the top k + 3 vectors). svd_grad="seed" (default) is torch's autograd;
  svd_grad="stable" (an extension, what a kernel computes) uses the derivative of each needed vector alone,
      dv_i = (s_i^2 I - X^T X)^+ dG v_i,   dG = dX^T X + X^T dX,
  so dL/dX = X (v_i y_i^T + y_i v_i^T), y_i = sum_{j != i} v_j (v_j^T g_i) / (s_i^2 - s_j^2) (+ the null-space
  term (I - V V^T) g_i / s_i^2 when H*H < C), summed over the vectors i with a gradient g_i, and drops the
  terms whose gap |s_i^2 - s_j^2| is <= gap_rtol * s_0^2 (a (near-)repeated pair: the split of a degenerate
  subspace has no derivative). Identical to autograd (to rounding) wherever the latter is finite and no gap
  is below the tolerance; gap_rtol = 0 drops exact ties only.
- N counts every sample, also a zero teacher sample (s_hat = 0: it contributes 0 and gives its student no
  gradient).

Shapes the seed requires: student and teacher maps of a layer with the same C (the alignment's matmul)
and the same number of matrices B, and the same B across layers (the RBF broadcast); kdsvd_loss raises
ValueError otherwise (the seed a RuntimeError, or a silent broadcast when one B is 1).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

SIGN = ("seed", "canonical")
SVD_GRAD = ("seed", "stable")
SPATIAL = ("seed", "hw")
NONFINITE = ("raise", "zero")


def _check(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, not {value!r}")


def removenan(x):
    """The seed's removenan: every non-finite entry becomes 0."""
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def feature_matrix(feat, spatial="seed"):
    """The seed's per-sample matrix, (B, P, C) with X[b, p, c] = feat[., c, p].

    spatial="seed": feat.view(-1, C, H*H) (B = numel / (C*H*H); only B = N for square maps).
    spatial="hw": feat.reshape(N, C, H*W) (B = N).
    """
    _check("spatial", spatial, SPATIAL)
    if feat.dim() != 4:
        raise ValueError(f"KDSVD needs 4-d feature maps (N, C, H, W), got shape {tuple(feat.shape)}")
    n, c, h, w = feat.shape
    p = h * h if spatial == "seed" else h * w
    if c * p == 0 or feat.numel() % (c * p) != 0:
        raise ValueError(f"spatial='seed': a {tuple(feat.shape)} map does not view as (-1, {c}, {h}*{h})")
    return feat.reshape(-1, c, p).transpose(-2, -1)


class _StableSVD(torch.autograd.Function):
    """Reduced SVD X = U diag(S) V^T (torch.linalg.svd's values) whose backward differentiates each singular
    vector on its own: gaps |s_i^2 - s_j^2| <= gap_rtol * s_0^2 are dropped instead of dividing by them."""

    @staticmethod
    def forward(ctx, x, gap_rtol):
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
        v = vh.transpose(-2, -1)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, u, s, v)
        ctx.gap_rtol = gap_rtol
        return u, s, v

    @staticmethod
    def backward(ctx, g_u, g_s, g_v):
        x, u, s, v = ctx.saved_tensors
        if g_u is not None and bool((g_u != 0).any()):
            raise NotImplementedError("svd_grad='stable' differentiates S and V only (KDSVD does not use U)")
        grad = torch.zeros_like(x)
        if g_s is not None:  # d s_i = u_i^T dX v_i
            grad = grad + (u * g_s.unsqueeze(-2)) @ v.transpose(-2, -1)
        if g_v is not None:
            lam = s * s                                              # eigenvalues of G = X^T X, descending
            tol = ctx.gap_rtol * lam[..., :1].unsqueeze(-1)          # (B, 1, 1)
            gap = lam.unsqueeze(-1) - lam.unsqueeze(-2)              # gap[i, j] = lam_i - lam_j
            live = gap.abs() > tol
            inv = torch.where(live, 1.0 / torch.where(live, gap, torch.ones_like(gap)), torch.zeros_like(gap))
            proj = v.transpose(-2, -1) @ g_v                         # proj[j, i] = v_j . g_i
            y = v @ (proj * inv.transpose(-2, -1))                   # y_i = sum_j v_j proj[j, i] / (lam_i - lam_j)
            if x.shape[-1] > s.shape[-1]:                            # H*W < C: null space of X, eigenvalue 0
                rest = g_v - v @ proj                                # (I - V V^T) g_i
                lam_i = lam.unsqueeze(-2)
                keep = lam_i > tol.squeeze(-1).unsqueeze(-1)
                y = y + rest * torch.where(keep, 1.0 / torch.where(keep, lam_i, torch.ones_like(lam_i)),
                                           torch.zeros_like(lam_i))
            sym = v @ y.transpose(-2, -1)
            grad = grad + x @ (sym + sym.transpose(-2, -1))          # dL/dX = X (v y^T + y v^T)
        return grad, None


def _svd(x, svd_grad, gap_rtol):
    if svd_grad == "stable":
        return _StableSVD.apply(x, float(gap_rtol))
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    return u, s, vh.transpose(-2, -1)


def kdsvd_svd(feat, n=1, svd_grad="seed", gap_rtol=0.0, spatial="seed", nonfinite="raise"):
    """The seed's KDSVD.svd: (u, s, v) of feature_matrix(feat), removenan'd; for n > 0 the first n columns of
    u and v (each normalised) and the first n singular values (normalised as one vector)."""
    _check("svd_grad", svd_grad, SVD_GRAD)
    _check("nonfinite", nonfinite, NONFINITE)
    x = feature_matrix(feat, spatial)
    bad = None
    if nonfinite == "zero":
        bad = ~torch.isfinite(x).flatten(1).all(1)
        if bool(bad.any()):
            x = torch.where(bad.view(-1, 1, 1), torch.zeros_like(x), x)
        else:
            bad = None
    u, s, v = _svd(x, svd_grad, gap_rtol)
    if bad is not None:  # the NaN an SVD would produce for such a sample, then removenan: zeros
        u = torch.where(bad.view(-1, 1, 1), torch.zeros_like(u), u)
        s = torch.where(bad.view(-1, 1), torch.zeros_like(s), s)
        v = torch.where(bad.view(-1, 1, 1), torch.zeros_like(v), v)
    u, s, v = removenan(u), removenan(s), removenan(v)
    if n > 0:
        u = F.normalize(u[:, :, :n], dim=1)
        s = F.normalize(s[:, :n], dim=1)
        v = F.normalize(v[:, :, :n], dim=1)
    return u, s, v


def canonical_sign(v):
    """Flip each column of v (B, C, n) so that its entry of largest magnitude (the first on ties) is >= 0."""
    idx = v.detach().abs().argmax(dim=1, keepdim=True)
    sign = torch.sign(torch.gather(v.detach(), 1, idx))
    return v * torch.where(sign == 0, torch.ones_like(sign), sign)


def align_rsv(a, b):
    """The seed's align_rsv: for each column j of b, the columns of a with the largest |cos| (all of them on
    exact ties), sign-flipped to agree with b[:, j], summed. Returns (aligned a (B, C, n_b), b)."""
    cosine = a.transpose(-2, -1) @ b
    max_abs_cosine, _ = torch.max(torch.abs(cosine), 1, keepdim=True)
    mask = torch.where(max_abs_cosine == torch.abs(cosine), torch.sign(cosine), torch.zeros_like(cosine))
    return a @ mask, b


def kdsvd_vectors(f_s, f_t, k=1, sign="seed", svd_grad="seed", gap_rtol=0.0, spatial="seed", nonfinite="raise"):
    """One layer's scaled vectors (a_s, a_t), each (B, C, k') with k' = min(k, K_t): the student's aligned
    right singular vectors and the teacher's top k, both times the teacher's normalised singular values."""
    _check("sign", sign, SIGN)
    if f_s.dim() == 4 and f_t.dim() == 4 and f_s.shape[1] != f_t.shape[1]:
        raise ValueError(f"student and teacher channels differ: {f_s.shape[1]} vs {f_t.shape[1]}")
    opts = dict(svd_grad=svd_grad, gap_rtol=gap_rtol, spatial=spatial, nonfinite=nonfinite)
    _, s_t, v_t = kdsvd_svd(f_t, k, **opts)
    _, _, v_s = kdsvd_svd(f_s, k + 3, **opts)
    if v_s.shape[0] != v_t.shape[0]:
        raise ValueError(f"student and teacher give {v_s.shape[0]} vs {v_t.shape[0]} matrices")
    if sign == "canonical":
        v_t = canonical_sign(v_t)
    v_s, v_t = align_rsv(v_s, v_t)
    s_t = s_t.unsqueeze(1)
    return v_s * s_t, v_t * s_t


def rbf(a, a_prev):
    """exp(-(a[b, c, j] - a_prev[b, c', j])^2 / 8): (B, C_l, C_{l-1}, k)."""
    return torch.exp(-(a.unsqueeze(2) - a_prev.unsqueeze(1)).pow(2) / 8)


def kdsvd_loss(g_s, g_t, k=1, sign="seed", svd_grad="seed", gap_rtol=0.0, spatial="seed", nonfinite="raise"):
    """KDSVD losses of the student maps g_s against the teacher maps g_t (lists of (N, C_l, H_l, W_l)).

    Returns the list of the len - 1 consecutive-pair losses (0-dim tensors; zip truncates to the shorter
    list). Options (defaults: the seed): sign ("seed" | "canonical": the teacher vectors' sign convention),
    svd_grad ("seed": torch's SVD autograd | "stable": per-vector derivative with gaps <= gap_rtol * s_0^2
    dropped), spatial ("seed": view(-1, C, H*H) | "hw"), nonfinite ("raise" | "zero"). See the module
    docstring for each.
    """
    prev = None
    losses = []
    for i, (f_s, f_t) in enumerate(zip(g_s, g_t)):
        a_s, a_t = kdsvd_vectors(f_s, f_t, k, sign, svd_grad, gap_rtol, spatial, nonfinite)
        if i > 0:
            p_s, p_t = prev
            if a_s.shape[0] != p_s.shape[0]:
                raise ValueError(f"layers {i - 1} and {i} give {p_s.shape[0]} vs {a_s.shape[0]} matrices")
            s_rbf = rbf(a_s, p_s)
            t_rbf = rbf(a_t, p_t)
            l2loss = (s_rbf - t_rbf.detach()).pow(2)
            l2loss = torch.where(torch.isfinite(l2loss), l2loss, torch.zeros_like(l2loss))
            losses.append(l2loss.sum())
        prev = (a_s, a_t)
    if not losses:
        return losses
    bsz = g_s[0].shape[0]
    return [l / bsz for l in losses]


class KDSVD(nn.Module):
    """Self-supervised Knowledge Distillation using Singular Value Decomposition (the seed's module).

    forward(g_s, g_t) returns the list of per-layer-pair losses. The extra keyword arguments are kdfuse's
    documented variants (see the module docstring); their defaults reproduce the seed."""

    def __init__(self, k=1, sign="seed", svd_grad="seed", gap_rtol=0.0, spatial="seed", nonfinite="raise"):
        super().__init__()
        _check("sign", sign, SIGN)
        _check("svd_grad", svd_grad, SVD_GRAD)
        _check("spatial", spatial, SPATIAL)
        _check("nonfinite", nonfinite, NONFINITE)
        self.k = k
        self.sign = sign
        self.svd_grad = svd_grad
        self.gap_rtol = gap_rtol
        self.spatial = spatial
        self.nonfinite = nonfinite

    def forward(self, g_s, g_t):
        return kdsvd_loss(g_s, g_t, self.k, self.sign, self.svd_grad, self.gap_rtol, self.spatial, self.nonfinite)

    def svd(self, feat, n=1):
        return kdsvd_svd(feat, n, self.svd_grad, self.gap_rtol, self.spatial, self.nonfinite)

    removenan = staticmethod(removenan)
    align_rsv = staticmethod(align_rsv)
