import math
import warnings

import numpy as np
import pytest
import torch

from kdfuse_ref.kdsvd import (KDSVD, align_rsv, canonical_sign, feature_matrix, kdsvd_loss, kdsvd_svd,
                              kdsvd_vectors, rbf, removenan)

DT = torch.float64


def rand(*shape):
    return torch.randn(*shape, dtype=DT)


def orthonormal(rows, cols, g):
    q, _ = torch.linalg.qr(torch.randn(rows, cols, dtype=DT, generator=g))
    return q


def spectral_maps(n, c, h, g, top=2.0, bottom=0.5):
    """(n, c, h, h) maps whose (h*h) x c matrices have the singular values linspace(top, bottom, K),
    K = min(c, h*h), with random singular vectors: every gap is (top - bottom) / (K - 1) >= 1.5 / 8 here,
    so the SVD is differentiable with well-conditioned 1 / (s_i^2 - s_j^2)."""
    k = min(c, h * h)
    s = torch.linspace(top, bottom, k, dtype=DT) if k > 1 else torch.tensor([top], dtype=DT)
    out = []
    for _ in range(n):
        u, v = orthonormal(h * h, k, g), orthonormal(c, k, g)
        x = u @ torch.diag(s) @ v.T                              # (h*h) x c
        out.append(x.T.reshape(c, h, h))
    return torch.stack(out)


def alignment_margin(g_s, g_t, k):
    """Smallest gap between the largest and the second largest |cos| of any teacher vector: the selection
    is locally constant (finite differences stay on one branch) when this is clearly positive."""
    margin = math.inf
    for f_s, f_t in zip(g_s, g_t):
        _, _, v_t = kdsvd_svd(f_t, k)
        _, _, v_s = kdsvd_svd(f_s, k + 3)
        cos = (v_s.transpose(-2, -1) @ v_t).abs()
        top2 = cos.topk(2, dim=1).values if cos.shape[1] > 1 else torch.cat([cos, torch.zeros_like(cos)], 1)
        margin = min(margin, (top2[:, 0] - top2[:, 1]).min().item())
    return margin


# (C, H) per layer: tall (H*H >= C) and wide (H*H < C) matrices, and a student layer with fewer than k + 3
# singular vectors (C = 3, H = 1: K = 1).
LAYERS = [(3, 2), (6, 2), (4, 3), (3, 1)]


def well_conditioned(n=2, seed=0, layers=LAYERS, k=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(20):
        g_s = [spectral_maps(n, c, h, g) for c, h in layers]
        g_t = [spectral_maps(n, c, h, g, top=3.0, bottom=1.0) for c, h in layers]
        if alignment_margin(g_s, g_t, k) > 0.05:
            return g_s, g_t
    raise AssertionError("no well-separated alignment found")


def total(losses):
    return sum(losses)


# ---------------------------------------------------------------------------------------------------------
# torch.svd (deprecated) and torch.linalg.svd


@pytest.mark.parametrize("shape", [(3, 9, 4), (3, 4, 10), (2, 4, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_linalg_svd_equals_deprecated_torch_svd(shape, dtype):
    x = torch.randn(*shape, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u, s, v = torch.svd(x)  # some=True: the reduced SVD, V (not V^T)
    u2, s2, vh = torch.linalg.svd(x, full_matrices=False)
    assert torch.equal(u, u2) and torch.equal(s, s2) and torch.equal(v, vh.transpose(-2, -1))
    # kdsvd_svd(n=0) is exactly that (removenan'd), for both gradient modes
    h = int(round(math.sqrt(shape[1])))
    feat = x.transpose(-2, -1).reshape(shape[0], shape[2], h, h)
    for svd_grad in ("seed", "stable"):
        u3, s3, v3 = kdsvd_svd(feat, 0, svd_grad=svd_grad)
        assert torch.equal(u3, u) and torch.equal(s3, s) and torch.equal(v3, v)


def test_deprecated_torch_svd_gradient_equals_linalg():
    x = rand(2, 9, 4)
    w = rand(2, 4, 4)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (torch.svd(a)[2] * w).sum().backward()
    (torch.linalg.svd(b, full_matrices=False)[2].transpose(-2, -1) * w).sum().backward()
    assert torch.allclose(a.grad, b.grad, rtol=1e-12, atol=1e-12)


def test_feature_matrix_is_the_seed_view():
    f = rand(2, 3, 4, 4)
    x = feature_matrix(f)
    assert x.shape == (2, 16, 3)
    assert torch.equal(x, f.view(-1, 3, 16).transpose(-2, -1))
    assert x[1, 5, 2] == f[1, 2, 1, 1]  # X[b, p, c] = feat[b, c, p]
    with pytest.raises(ValueError):
        feature_matrix(rand(2, 3, 4))


# ---------------------------------------------------------------------------------------------------------
# module vs function, options


@pytest.mark.parametrize("opts", [{}, {"k": 2}, {"sign": "canonical"}, {"svd_grad": "stable"},
                                  {"svd_grad": "stable", "gap_rtol": 1e-6, "k": 2}])
def test_module_matches_function(opts):
    g_s, g_t = well_conditioned(seed=1, k=opts.get("k", 1))
    a = [f.clone().requires_grad_() for f in g_s]
    b = [f.clone().requires_grad_() for f in g_s]
    mod = KDSVD(**opts)(a, g_t)
    fun = kdsvd_loss(b, g_t, **opts)
    assert len(mod) == len(fun) == len(g_s) - 1
    for x, y in zip(mod, fun):
        assert x.dim() == 0 and torch.equal(x, y)
    total(mod).backward()
    total(fun).backward()
    for x, y in zip(a, b):
        assert torch.equal(x.grad, y.grad)


def test_module_helpers():
    m = KDSVD()
    assert m.k == 1
    f = rand(2, 3, 2, 2)
    for x, y in zip(m.svd(f, 2), kdsvd_svd(f, 2)):
        assert torch.equal(x, y)
    assert m.removenan is removenan and KDSVD.align_rsv is align_rsv
    for bad in ({"sign": "lapack"}, {"svd_grad": "exact"}, {"spatial": "wh"}, {"nonfinite": "nan"}):
        with pytest.raises(ValueError):
            KDSVD(**bad)
        with pytest.raises(ValueError):
            kdsvd_loss([f, f], [f, f], **bad)


def test_shape_checks():
    f = rand(2, 3, 2, 2)
    with pytest.raises(ValueError):  # channels differ (the seed's alignment matmul fails)
        kdsvd_loss([f], [rand(2, 4, 2, 2)])
    with pytest.raises(ValueError):  # batch sizes differ
        kdsvd_loss([f], [rand(3, 3, 2, 2)])
    with pytest.raises(ValueError):  # layers with different numbers of matrices
        kdsvd_loss([f, rand(3, 3, 2, 2)], [f, rand(3, 3, 2, 2)])


# ---------------------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("svd_grad", ["seed", "stable"])
def test_gradcheck_student(k, svd_grad):
    g_s, g_t = well_conditioned(seed=2, k=k)
    xs = [f.clone().requires_grad_() for f in g_s]
    assert torch.autograd.gradcheck(lambda *a: total(kdsvd_loss(list(a), g_t, k=k, svd_grad=svd_grad)), xs)


def test_teacher_gradient_is_through_its_singular_values_only():
    # The teacher's normalised singular values scale the student's vectors (not detached), R_t is detached:
    # the teacher's gradient (k >= 2) is that of the loss with R_t, the teacher's vectors and the alignment
    # held fixed and only s_hat_t varying. (gradcheck of kdsvd_loss itself w.r.t. the teacher would see R_t
    # move, which the seed's detach hides on purpose.)
    k = 2
    g_s, g_t = well_conditioned(n=1, seed=3, layers=[(3, 2), (4, 2), (5, 3)], k=k)
    fixed = []
    for f_s, f_t in zip(g_s, g_t):
        _, _, v_t = kdsvd_svd(f_t, k)
        _, _, v_s = kdsvd_svd(f_s, k + 3)
        w, _ = align_rsv(v_s, v_t)
        a_t = kdsvd_vectors(f_s, f_t, k)[1]
        fixed.append((w, a_t))

    def through_s_hat(*ts):
        out = 0
        for i in range(1, len(ts)):
            a = [fixed[j][0] * kdsvd_svd(ts[j], k)[1].unsqueeze(1) for j in (i - 1, i)]
            out = out + (rbf(a[1], a[0]) - rbf(fixed[i][1], fixed[i - 1][1])).pow(2).sum()
        return out / ts[0].shape[0]

    ts = [f.clone().requires_grad_() for f in g_t]
    assert torch.autograd.gradcheck(through_s_hat, ts)
    for svd_grad in ("seed", "stable"):
        t1 = [f.clone().requires_grad_() for f in g_t]
        t2 = [f.clone().requires_grad_() for f in g_t]
        total(kdsvd_loss(g_s, t1, k=k, svd_grad=svd_grad)).backward()
        through_s_hat(*t2).backward()
        for a, b in zip(t1, t2):
            assert a.grad.abs().max() > 1e-6
            assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-13)


def test_teacher_gradient_zero_for_k1_and_student_unaffected():
    g_s, g_t = well_conditioned(seed=4)
    for k, teacher_grad in ((1, False), (2, True)):
        s1 = [f.clone().requires_grad_() for f in g_s]
        t1 = [f.clone().requires_grad_() for f in g_t]
        s2 = [f.clone().requires_grad_() for f in g_s]
        total(kdsvd_loss(s1, t1, k=k)).backward()
        total(kdsvd_loss(s2, g_t, k=k)).backward()
        for a, b in zip(s1, s2):
            assert torch.allclose(a.grad, b.grad, rtol=1e-13, atol=1e-15)
        grads = [t.grad for t in t1]
        assert all(g is not None for g in grads)  # the seed does not detach the teacher's SVD
        biggest = max(g.abs().max().item() for g in grads)
        if teacher_grad:
            assert biggest > 1e-6
        else:
            assert biggest < 1e-15  # s0 / |s0| is constant


def test_stable_backward_matches_autograd_on_generic_inputs():
    g = torch.Generator().manual_seed(5)
    for shape in [(3, 5, 3, 3), (3, 12, 2, 2), (2, 7, 1, 1), (2, 4, 2, 2)]:
        f = torch.randn(*shape, dtype=DT, generator=g)
        w = torch.randn(shape[0], shape[1], min(shape[1], shape[2] * shape[3]), dtype=DT, generator=g)
        ws = torch.randn(shape[0], min(shape[1], shape[2] * shape[3]), dtype=DT, generator=g)
        grads = []
        for svd_grad in ("seed", "stable"):
            x = f.clone().requires_grad_()
            _, s, v = kdsvd_svd(x, 0, svd_grad=svd_grad)
            ((v * w).sum() + (s * ws).sum()).backward()
            grads.append(x.grad)
        assert torch.allclose(grads[0], grads[1], rtol=1e-9, atol=1e-11), shape


def test_stable_svd_refuses_left_vector_gradients():
    x = rand(2, 3, 2, 2).requires_grad_()
    u, _, _ = kdsvd_svd(x, 0, svd_grad="stable")
    with pytest.raises(NotImplementedError):
        u.sum().backward()


def test_repeated_singular_values_nan_in_seed_finite_in_stable():
    # Two all-zero student channels (C = 6 <= H*W = 16): two exactly zero singular values. torch's SVD
    # backward divides 0 by s_4^2 - s_5^2 = 0 for that pair, which carries no gradient: NaN over the sample.
    # The loss depends on the top 4 vectors only, whose gaps are fine: "stable" gives the true derivative.
    g = torch.Generator().manual_seed(6)
    f_s = [torch.rand(2, 6, 4, 4, dtype=DT, generator=g), torch.rand(2, 3, 3, 3, dtype=DT, generator=g)]
    f_t = [torch.rand(2, 6, 4, 4, dtype=DT, generator=g), torch.rand(2, 3, 3, 3, dtype=DT, generator=g)]
    f_s[0][0, 4:] = 0
    assert kdsvd_svd(f_s[0], 0)[1][0, 4:].eq(0).all()
    seed = [f.clone().requires_grad_() for f in f_s]
    total(kdsvd_loss(seed, f_t)).backward()
    assert torch.isnan(seed[0].grad[0]).all() and torch.isfinite(seed[0].grad[1]).all()
    stable = [f.clone().requires_grad_() for f in f_s]
    loss = kdsvd_loss(stable, f_t, svd_grad="stable")
    total(loss).backward()
    assert all(torch.isfinite(x.grad).all() for x in stable)
    assert torch.equal(loss[0], kdsvd_loss(f_s, f_t)[0])  # forward values identical
    # the sample without ties: the same gradient as the seed
    assert torch.allclose(stable[0].grad[1], seed[0].grad[1], rtol=1e-9, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda *a: total(kdsvd_loss(list(a), f_t, svd_grad="stable")), [f.clone().requires_grad_() for f in f_s])


def test_wide_zero_singular_value_nan_in_seed_finite_in_stable():
    # H*W = 4 < C = 7: torch's backward divides by s_i for the null-space term; a zero pixel row makes one
    # singular value 0 and the whole sample's gradient NaN, although the top vectors are simple.
    g = torch.Generator().manual_seed(7)
    f_s = [torch.rand(1, 7, 2, 2, dtype=DT, generator=g), torch.rand(1, 5, 3, 3, dtype=DT, generator=g)]
    f_t = [torch.rand(1, 7, 2, 2, dtype=DT, generator=g), torch.rand(1, 5, 3, 3, dtype=DT, generator=g)]
    f_s[0][0, :, 1, 1] = 0
    seed = [f.clone().requires_grad_() for f in f_s]
    total(kdsvd_loss(seed, f_t)).backward()
    assert torch.isnan(seed[0].grad).all()
    assert torch.autograd.gradcheck(
        lambda *a: total(kdsvd_loss(list(a), f_t, svd_grad="stable")), [f.clone().requires_grad_() for f in f_s])


def test_gap_rtol_drops_only_near_ties():
    # Singular values 2, 1.9, 1.0: gaps of lambda are 0.39 and 2.61 (relative to lambda_0 = 4: ~0.1 and ~0.65).
    g = torch.Generator().manual_seed(8)
    u, v = orthonormal(4, 3, g), orthonormal(3, 3, g)
    x = (u @ torch.diag(torch.tensor([2.0, 1.9, 1.0], dtype=DT)) @ v.T).T.reshape(1, 3, 2, 2)
    wt = torch.randn(1, 3, 3, dtype=DT, generator=g)
    grads = {}
    for rtol in (0.0, 0.05, 0.5, 1.0):
        a = x.clone().requires_grad_()
        (kdsvd_svd(a, 0, svd_grad="stable", gap_rtol=rtol)[2] * wt).sum().backward()
        grads[rtol] = a.grad
    b = x.clone().requires_grad_()
    (kdsvd_svd(b, 0)[2] * wt).sum().backward()
    assert torch.allclose(grads[0.0], b.grad, rtol=1e-10) and torch.allclose(grads[0.05], b.grad, rtol=1e-10)
    assert not torch.allclose(grads[0.5], b.grad)          # the 0-1 pair (gap 0.1 lambda_0) is dropped
    assert grads[1.0].abs().max() == 0                     # every pair dropped: no vector gradient at all


# ---------------------------------------------------------------------------------------------------------
# quirks, hand-checked


def test_singular_value_normalisation():
    g = torch.Generator().manual_seed(9)
    f = spectral_maps(2, 4, 2, g, top=3.0, bottom=1.0)  # singular values 3, 2.33, 1.67, 1
    _, s1, _ = kdsvd_svd(f, 1)
    assert torch.equal(s1, torch.ones(2, 1, dtype=DT))     # k = 1: s0 / |s0| = 1
    _, s2, _ = kdsvd_svd(f, 2)
    expect = torch.tensor([3.0, 7.0 / 3.0], dtype=DT)
    assert torch.allclose(s2, (expect / expect.norm()).expand(2, 2), rtol=1e-13)
    _, s0, v0 = kdsvd_svd(torch.zeros(1, 3, 2, 2, dtype=DT), 1)
    assert s0.item() == 0.0 and v0.norm().item() == pytest.approx(1.0)  # zero map: s_hat = 0, v some unit vector
    tiny = f[:1] * 1e-14                                       # s0 = 3e-14 < eps = 1e-12: s_hat = s0 / 1e-12
    _, st, _ = kdsvd_svd(tiny, 1)
    assert st.item() == pytest.approx(3e-14 / 1e-12, rel=1e-10)
    u, s, v = kdsvd_svd(f, 7)                                  # n > K = 4: four columns
    assert u.shape == (2, 4, 4) and s.shape == (2, 4) and v.shape == (2, 4, 4)


def test_align_rsv_hand_checked():
    e = torch.eye(4, dtype=DT)
    r = 1 / math.sqrt(2)
    # Teacher vectors: b0 = -e2 (student e2 wins with |cos| 1, sign -1),
    # b1 = (e0 + e1) / sqrt 2 (student e0 and e1 tie at 1/sqrt 2: both added -> e0 + e1, norm sqrt 2),
    # b2 = e3 (orthogonal to all three student vectors: max |cos| = 0, sign(0) = 0 -> the zero vector).
    a = torch.stack([e[0], -e[1], e[2]], dim=1).unsqueeze(0)              # (1, 4, 3): student vectors
    b = torch.stack([-e[2], r * (e[0] + e[1]), e[3]], dim=1).unsqueeze(0)  # (1, 4, 3): teacher vectors
    aligned, same = align_rsv(a, b)
    assert same is b
    assert torch.allclose(aligned[0, :, 0], -e[2], rtol=0, atol=0)
    # student -e1 has cos -r with b1: flipped to +e1; e0 has +r: kept; they tie exactly here -> the sum
    assert torch.allclose(aligned[0, :, 1], e[0] + e[1], rtol=0, atol=1e-15)
    assert torch.equal(aligned[0, :, 2], torch.zeros(4, dtype=DT))


def test_canonical_sign():
    v = torch.tensor([[[0.6, -0.1], [-0.8, 0.1], [0.0, 0.0]]], dtype=DT)  # (1, 3, 2); column 1 ties
    c = canonical_sign(v)
    assert torch.equal(c[0, :, 0], torch.tensor([-0.6, 0.8, 0.0], dtype=DT))
    assert torch.equal(c[0, :, 1], torch.tensor([0.1, -0.1, 0.0], dtype=DT))  # first of the tied entries
    assert torch.equal(canonical_sign(torch.zeros(1, 3, 1, dtype=DT)), torch.zeros(1, 3, 1, dtype=DT))


def _hand_maps():
    """Layer 0 (C = 6, 3x3): student singular vectors e_c with s = 6 - c; teacher rank 1 with
    v = (e0 + e5) / sqrt 2. Layer 1 (C = 2, 2x2): student e0 (s = 2), e1 (s = 1); teacher rank 1, v = e1."""
    s0, t0 = torch.zeros(1, 6, 3, 3, dtype=DT), torch.zeros(1, 6, 3, 3, dtype=DT)
    for c in range(6):
        s0[0, c].view(-1)[c] = 6.0 - c
    t0[0, 0, 0, 0] = t0[0, 5, 0, 0] = math.sqrt(2)
    s1, t1 = torch.zeros(1, 2, 2, 2, dtype=DT), torch.zeros(1, 2, 2, 2, dtype=DT)
    s1[0, 0, 0, 0], s1[0, 1, 0, 1] = 2.0, 1.0
    t1[0, 1, 0, 0] = 1.0
    return [s0, s1], [t0, t1]


def test_hand_checked_two_layer_loss():
    # Aligned student vectors: layer 0 -> e0 (the top 4 are e0..e3; only e0 meets (e0 + e5)/sqrt 2),
    # layer 1 -> e1. k = 1: s_hat = 1. With canonical (positive) teacher signs, a_s0 = e0, a_t0 = r (e0 + e5),
    # a_s1 = a_t1 = e1, r = 1/sqrt 2. RBF entries exp(-(a1[c] - a0[c'])^2 / 8) differ only at c' in {0, 5}:
    #   c = 0: s (e^-1/8, 1) vs t (e^-1/16, e^-1/16);  c = 1: s (1, e^-1/8) vs t (e^-(1-r)^2/8 twice).
    g_s, g_t = _hand_maps()
    r = 1 / math.sqrt(2)
    e = math.exp
    q = e(-(1 - r) ** 2 / 8)
    plus = (e(-1 / 8) - e(-1 / 16)) ** 2 + (1 - e(-1 / 16)) ** 2 + (1 - q) ** 2 + (e(-1 / 8) - q) ** 2
    # Opposite relative signs of the two teacher vectors (what an SVD library may return): a0 -> -a0 for
    # both networks; c = 0 unchanged, c = 1: s (e^-1/2, e^-1/8) vs t (e^-(1+r)^2/8 twice).
    p = e(-(1 + r) ** 2 / 8)
    mixed = (e(-1 / 8) - e(-1 / 16)) ** 2 + (1 - e(-1 / 16)) ** 2 + (e(-1 / 2) - p) ** 2 + (e(-1 / 8) - p) ** 2
    canon = kdsvd_loss(g_s, g_t, sign="canonical")
    assert len(canon) == 1 and canon[0].item() == pytest.approx(plus, rel=1e-13)
    # The seed's value follows the signs torch.linalg.svd returned for the two teacher vectors.
    sig = [kdsvd_svd(t, 1)[2][0, :, 0] for t in g_t]
    relative = torch.sign(sig[0][0]) * torch.sign(sig[1][1])
    seed = kdsvd_loss(g_s, g_t)[0].item()
    assert seed == pytest.approx(plus if relative > 0 else mixed, rel=1e-13)
    # Flipping the teacher maps changes nothing for canonical signs.
    assert kdsvd_loss(g_s, [-t for t in g_t], sign="canonical")[0].item() == pytest.approx(plus, rel=1e-13)
    # The vectors themselves
    a_s, a_t = kdsvd_vectors(g_s[0], g_t[0], sign="canonical")
    assert torch.allclose(a_s[0, :, 0], torch.eye(6, dtype=DT)[0], atol=1e-15)
    assert torch.allclose(a_t[0, :, 0], r * (torch.eye(6, dtype=DT)[0] + torch.eye(6, dtype=DT)[5]), atol=1e-15)


def test_orthogonal_teacher_vector_aligns_to_zero():
    # Layer 0 as above but the teacher's vector is e5, orthogonal to the student's top 4 (e0..e3): the
    # aligned student vector is 0 (sign(0) = 0), so a_s0 = 0 and the student's layer 0 gets no gradient.
    g_s, g_t = _hand_maps()
    g_t[0].zero_()
    g_t[0][0, 5, 0, 0] = 2.0
    a_s, _ = kdsvd_vectors(g_s[0], g_t[0])
    assert torch.equal(a_s, torch.zeros_like(a_s))
    xs = [f.clone().requires_grad_() for f in g_s]
    loss = kdsvd_loss(xs, g_t, sign="canonical")[0]
    # a_s0 = 0, a_s1 = e1, a_t0 = e5, a_t1 = e1: s RBF (c, c') = exp(-a_s1[c]^2 / 8): row c = 1 is e^-1/8;
    # t RBF differs at (0, 5): e^-1/8 (s: 1) and (1, 5): 1 (s: e^-1/8).
    assert loss.item() == pytest.approx(2 * (1 - math.exp(-1 / 8)) ** 2, rel=1e-13)
    loss.backward()
    assert torch.equal(xs[0].grad, torch.zeros_like(xs[0]))
    # layer 1's gradient is 0 too, for another reason: dL/da_s1 is nonzero only at c = 1, i.e. along a_s1 = e1
    # itself, and a unit singular vector cannot move along itself (the normalisation projects that out).
    assert xs[1].grad.abs().max() < 1e-15


def test_zero_teacher_sample_counts_in_the_batch():
    g_s, g_t = well_conditioned(n=2, seed=10)
    for f in g_t:
        f[1] = 0  # s_hat = 0 for sample 1: a_s = a_t = 0, every RBF is 1, nothing to learn
    xs = [f.clone().requires_grad_() for f in g_s]
    full = kdsvd_loss(xs, g_t)
    alone = kdsvd_loss([f[:1] for f in g_s], [f[:1] for f in g_t])
    for a, b in zip(full, alone):
        assert a.item() == pytest.approx(b.item() / 2, rel=1e-13)  # divided by N = 2, not by 1
    total(full).backward()
    assert all(torch.equal(x.grad[1], torch.zeros_like(x.grad[1])) for x in xs)


def test_list_semantics():
    g_s, g_t = well_conditioned(n=2, seed=11)
    assert kdsvd_loss(g_s[:1], g_t[:1]) == []
    assert kdsvd_loss([], []) == []
    assert len(kdsvd_loss(g_s, g_t[:3])) == 2  # zip truncates
    # the divisor is g_s[0].shape[0]; the loss of the pair (l-1, l) only depends on those two layers
    out = kdsvd_loss(g_s, g_t)
    for l in range(1, len(g_s)):
        pair = kdsvd_loss(g_s[l - 1:l + 1], g_t[l - 1:l + 1])
        assert torch.equal(pair[0], out[l - 1])


def test_spatial_h_times_h_quirk():
    g = torch.Generator().manual_seed(12)
    g_s = [torch.randn(2, 3, 2, 4, dtype=DT, generator=g), torch.randn(2, 5, 2, 4, dtype=DT, generator=g)]
    g_t = [torch.randn(2, 3, 2, 4, dtype=DT, generator=g), torch.randn(2, 5, 2, 4, dtype=DT, generator=g)]
    # view(-1, C, H*H) regroups each 2x4 map's numbers into 4 "samples" of 2*2 pixels; the divisor stays N = 2.
    seed = kdsvd_loss(g_s, g_t)[0]
    regrouped = kdsvd_loss([f.reshape(4, f.shape[1], 2, 2) for f in g_s],
                           [f.reshape(4, f.shape[1], 2, 2) for f in g_t])[0]
    assert seed.item() == pytest.approx(2 * regrouped.item(), rel=1e-13)
    hw = kdsvd_loss(g_s, g_t, spatial="hw")[0]
    assert abs(hw.item() - seed.item()) > 1e-6
    # square maps: the two are the same
    sq_s, sq_t = well_conditioned(n=2, seed=13)
    for a, b in zip(kdsvd_loss(sq_s, sq_t), kdsvd_loss(sq_s, sq_t, spatial="hw")):
        assert torch.equal(a, b)
    with pytest.raises(ValueError):  # 18 numbers do not view as (-1, 3, 4)
        kdsvd_loss([rand(1, 3, 2, 3)] * 2, [rand(1, 3, 2, 3)] * 2)


def test_nonfinite_inputs():
    g_s, g_t = well_conditioned(n=3, seed=14)
    bad = [f.clone() for f in g_s]
    bad[1][2, 0, 0, 0] = float("nan")
    with pytest.raises(RuntimeError):  # the seed on the CPU: torch.linalg.svd refuses non-finite input
        kdsvd_loss(bad, g_t)
    xs = [f.clone().requires_grad_() for f in bad]
    out = kdsvd_loss(xs, g_t, nonfinite="zero")
    assert all(torch.isfinite(l) for l in out)
    total(out).backward()
    assert torch.equal(xs[1].grad[2], torch.zeros_like(xs[1].grad[2]))  # the sample's vectors are constants
    assert all(torch.isfinite(x.grad).all() for x in xs)
    # a finite batch is unaffected by the option
    for a, b in zip(kdsvd_loss(g_s, g_t), kdsvd_loss(g_s, g_t, nonfinite="zero")):
        assert torch.equal(a, b)
    # the seed's removenan itself
    x = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), -2.0])
    assert torch.equal(removenan(x), torch.tensor([1.0, 0.0, 0.0, 0.0, -2.0]))


# ---------------------------------------------------------------------------------------------------------
# an independent float64 computation (numpy.linalg.svd, loops), canonical teacher signs


def np_top_right(feat, n):
    """Top n right singular vectors (C x n') and values of one sample's (H*H) x C matrix."""
    c = feat.shape[0]
    x = feat.reshape(c, -1).T
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    return vt[:n].T.copy(), s[:n].copy()


def np_kdsvd(g_s, g_t, k=1, teacher_signs=None):
    """KDSVD from the formulas: canonical teacher signs times teacher_signs[l][b][j] when given."""
    n = g_s[0].shape[0]
    scaled = []
    for l, (fs, ft) in enumerate(zip(g_s, g_t)):
        a_s, a_t = [], []
        for b in range(n):
            vs, _ = np_top_right(fs[b], k + 3)
            vt, st = np_top_right(ft[b], k)
            for j in range(vt.shape[1]):
                big = int(np.argmax(np.abs(vt[:, j])))
                flip = 1.0 if vt[big, j] >= 0 else -1.0
                if teacher_signs is not None:
                    flip *= teacher_signs[l][b][j]
                vt[:, j] *= flip
            s_hat = st / max(np.linalg.norm(st), 1e-12)
            w = np.zeros_like(vt)
            for j in range(vt.shape[1]):
                cos = vs.T @ vt[:, j]
                best = np.max(np.abs(cos))
                for i in range(cos.shape[0]):
                    if abs(cos[i]) == best:
                        w[:, j] += np.sign(cos[i]) * vs[:, i]
            a_s.append(w * s_hat)
            a_t.append(vt * s_hat)
        scaled.append((a_s, a_t))
    losses = []
    for l in range(1, len(scaled)):
        acc = 0.0
        for b in range(n):
            cur_s, cur_t = scaled[l][0][b], scaled[l][1][b]
            pre_s, pre_t = scaled[l - 1][0][b], scaled[l - 1][1][b]
            kc, kp = cur_t.shape[1], pre_t.shape[1]  # a layer with one vector (K = 1 < k) is broadcast
            assert kc == kp or 1 in (kc, kp)
            for j in range(max(kc, kp)):
                jc, jp = (j if kc > 1 else 0), (j if kp > 1 else 0)
                rs = np.exp(-(cur_s[:, jc][:, None] - pre_s[:, jp][None, :]) ** 2 / 8)
                rt = np.exp(-(cur_t[:, jc][:, None] - pre_t[:, jp][None, :]) ** 2 / 8)
                acc += float(((rs - rt) ** 2).sum())
        losses.append(acc / n)
    return losses


def tiny_input():
    """Deterministic maps (no RNG): N = 2; layers (C, H) = (3, 2) tall, (5, 1) wide (K = 1: v = x / |x|),
    (4, 3) tall."""
    def maps(net, l, c, h):
        b, ch, i, j = np.meshgrid(np.arange(2), np.arange(c), np.arange(h), np.arange(h), indexing="ij")
        px = i * h + j
        return np.sin(1.0 + 0.9 * net + 1.7 * l + 1.3 * b + 0.77 * ch + 0.41 * px + 0.29 * ch * px + 0.05 * ch * ch)
    layers = [(3, 2), (5, 1), (4, 3)]
    return ([maps(0, l, c, h) for l, (c, h) in enumerate(layers)],
            [maps(1, l, c, h) for l, (c, h) in enumerate(layers)])


# numpy's values for tiny_input() (k = 1 and k = 2, canonical signs), pinned
PINNED = {1: [0.08471648633625656, 0.07170202236301085], 2: [0.08620750291699139, 0.08946768448713235]}


def _well_posed(np_s, np_t, k):
    # distinct singular values (gaps of s^2 >= 1e-2 relative) and a clear alignment in every sample
    for fs, ft in zip(np_s, np_t):
        for f in list(fs) + list(ft):
            s = np.linalg.svd(f.reshape(f.shape[0], -1).T, compute_uv=False)
            if len(s) > 1:
                assert np.min(-np.diff(s * s)) > 1e-2 * s[0] ** 2
        for b in range(fs.shape[0]):
            vs, _ = np_top_right(fs[b], k + 3)
            vt, _ = np_top_right(ft[b], k)
            cos = np.sort(np.abs(vs.T @ vt), axis=0)
            if cos.shape[0] > 1:
                assert np.min(cos[-1] - cos[-2]) > 1e-2


@pytest.mark.parametrize("k", [1, 2])
def test_tiny_input_matches_independent_numpy(k):
    np_s, np_t = tiny_input()
    _well_posed(np_s, np_t, k)
    expect = np_kdsvd(np_s, np_t, k)
    assert expect == pytest.approx(PINNED[k], rel=1e-12)
    g_s = [torch.from_numpy(f) for f in np_s]
    g_t = [torch.from_numpy(f) for f in np_t]
    got = [l.item() for l in kdsvd_loss(g_s, g_t, k=k, sign="canonical")]
    assert got == pytest.approx(expect, rel=1e-12)
    # sign="seed": the same formulas with the signs torch.linalg.svd returned for the teacher's vectors
    signs = []
    for t in g_t:
        v = kdsvd_svd(t, k)[2]
        idx = v.abs().argmax(dim=1, keepdim=True)
        signs.append(torch.sign(torch.gather(v, 1, idx))[:, 0, :].tolist())
    seed = [l.item() for l in kdsvd_loss(g_s, g_t, k=k)]
    assert seed == pytest.approx(np_kdsvd(np_s, np_t, k, teacher_signs=signs), rel=1e-12)


@pytest.mark.parametrize("svd_grad", ["seed", "stable"])
def test_tiny_input_gradient_matches_numpy_finite_differences(svd_grad):
    np_s, np_t = tiny_input()
    k = 1
    xs = [torch.from_numpy(f.copy()).requires_grad_() for f in np_s]
    total(kdsvd_loss(xs, [torch.from_numpy(f) for f in np_t], k=k, sign="canonical", svd_grad=svd_grad)).backward()
    h = 1e-6
    for l, f in enumerate(np_s):
        fd = np.zeros_like(f)
        for idx in np.ndindex(f.shape):
            plus = [x.copy() for x in np_s]
            minus = [x.copy() for x in np_s]
            plus[l][idx] += h
            minus[l][idx] -= h
            fd[idx] = (sum(np_kdsvd(plus, np_t, k)) - sum(np_kdsvd(minus, np_t, k))) / (2 * h)
        got = xs[l].grad.numpy()
        assert np.allclose(got, fd, rtol=1e-6, atol=1e-8 * np.abs(fd).max()), l
