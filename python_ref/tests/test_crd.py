import math
import types

import pytest
import torch
from torch import nn

import kdfuse_ref.crd as ref
from kdfuse_ref.crd import (ContrastMemory, Embed, crd_loss, crd_normalization_constant, crd_scores,
                            crd_update_memory, contrast_nce_loss, l2_normalize)

eps = 1e-7


# ---- the seed's code verbatim (ContrastLoss, CRDLoss); Embed and ContrastMemory are not in the seed
# document and come from kdfuse_ref.crd (RepDistiller's crd/ semantics, checked below by an oracle).

class ContrastLoss(nn.Module):
    """
    contrastive loss, corresponding to Eq (18)
    """
    def __init__(self, n_data):
        super(ContrastLoss, self).__init__()
        self.n_data = n_data

    def forward(self, x):
        bsz = x.shape[0]
        m = x.size(1) - 1
        # noise distribution
        Pn = 1 / float(self.n_data)
        # loss for positive pair
        P_pos = x.select(1, 0)
        log_D1 = torch.div(P_pos, P_pos.add(m * Pn + eps)).log_()
        # loss for K negative pair
        P_neg = x.narrow(1, 1, m)
        log_D0 = torch.div(P_neg.clone().fill_(m * Pn), P_neg.add(m * Pn + eps)).log_()
        loss = - (log_D1.sum(0) + log_D0.view(-1, 1).sum(0)) / bsz
        return loss


class CRDLoss(nn.Module):
    def __init__(self, opt):
        super(CRDLoss, self).__init__()
        self.embed_s = Embed(opt.s_dim, opt.feat_dim)
        self.embed_t = Embed(opt.t_dim, opt.feat_dim)
        self.contrast = ContrastMemory(opt.feat_dim, opt.n_data, opt.nce_k, opt.nce_t, opt.nce_m)
        self.criterion_t = ContrastLoss(opt.n_data)
        self.criterion_s = ContrastLoss(opt.n_data)

    def forward(self, f_s, f_t, idx, contrast_idx=None):
        f_s = self.embed_s(f_s)
        f_t = self.embed_t(f_t)
        out_s, out_t = self.contrast(f_s, f_t, idx, contrast_idx)
        s_loss = self.criterion_s(out_s)
        t_loss = self.criterion_t(out_t)
        loss = s_loss + t_loss
        return loss


# ---- an independent, loop-based oracle of one CRD step (RepDistiller's ContrastMemory + ContrastLoss)

def oracle_step(v_s, v_t, M_s, M_t, idx, cidx, z_s, z_t, T, m, n_data):
    N, K1 = cidx.shape
    out_s = torch.empty(N, K1, dtype=torch.float64)
    out_t = torch.empty(N, K1, dtype=torch.float64)
    for i in range(N):
        for k in range(K1):
            j = int(cidx[i, k])
            out_t[i, k] = math.exp(float(torch.dot(M_s[j], v_t[i])) / T)  # student bank x teacher embedding
            out_s[i, k] = math.exp(float(torch.dot(M_t[j], v_s[i])) / T)  # teacher bank x student embedding
    if z_s is None or z_s < 0:
        z_s = float(out_s.mean()) * n_data
    if z_t is None or z_t < 0:
        z_t = float(out_t.mean()) * n_data
    K, Pn = K1 - 1, 1.0 / n_data

    def nce(P):
        total = 0.0
        for i in range(N):
            total += math.log(P[i, 0] / (P[i, 0] + K * Pn + eps))
            for k in range(1, K1):
                total += math.log(K * Pn / (P[i, k] + K * Pn + eps))
        return -total / N

    loss = nce(out_s / z_s) + nce(out_t / z_t)
    new_s, new_t = M_s.clone(), M_t.clone()
    for i in range(N):  # sequential writes from the PRE-update bank: the last duplicate wins
        j = int(idx[i])
        for new, M, v in ((new_s, M_s, v_s), (new_t, M_t, v_t)):
            p = M[j] * m + v[i] * (1 - m)
            new[j] = p / p.norm()
    return loss, new_s, new_t, z_s, z_t


def unit(*shape):
    return l2_normalize(torch.randn(*shape, dtype=torch.float64))


def problem(N, K, D=5, n_data=23):
    M_s, M_t = unit(n_data, D), unit(n_data, D)
    idx = torch.randperm(n_data)[:N]
    cidx = torch.randint(0, n_data, (N, K + 1))
    cidx[:, 0] = idx
    return unit(N, D), unit(N, D), M_s, M_t, idx, cidx


@pytest.mark.parametrize("N,K", [(1, 1), (2, 3), (3, 1), (17, 8)])
@pytest.mark.parametrize("T", [0.07, 0.5])
def test_matches_oracle(N, K, T):
    v_s, v_t, M_s, M_t, idx, cidx = problem(N, K)
    M_s0, M_t0 = M_s.clone(), M_t.clone()
    loss, new_s, new_t, z_s, z_t = crd_loss(v_s, v_t, M_s, M_t, idx, cidx, -1.0, None, T=T)
    o_loss, o_s, o_t, o_zs, o_zt = oracle_step(v_s, v_t, M_s, M_t, idx, cidx, -1.0, -1.0, T, 0.5, 23)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(o_loss, rel=1e-11)
    assert z_s.item() == pytest.approx(o_zs, rel=1e-12) and z_t.item() == pytest.approx(o_zt, rel=1e-12)
    assert torch.allclose(new_s, o_s, rtol=1e-12, atol=1e-15) and torch.allclose(new_t, o_t, rtol=1e-12, atol=1e-15)
    assert torch.equal(M_s, M_s0) and torch.equal(M_t, M_t0)  # the inputs are not modified
    # Second step, Z given (kept in "once" mode), banks threaded.
    v_s2, v_t2 = unit(N, 5), unit(N, 5)
    loss2, *_ = crd_loss(v_s2, v_t2, new_s, new_t, idx, cidx, z_s, z_t, T=T)
    o_loss2, *_ = oracle_step(v_s2, v_t2, o_s, o_t, idx, cidx, o_zs, o_zt, T, 0.5, 23)
    assert loss2.item() == pytest.approx(o_loss2, rel=1e-11)


def test_normalize_inputs():
    v_s, v_t, M_s, M_t, idx, cidx = problem(3, 4)
    raw_s, raw_t = v_s * torch.tensor([[2.0], [0.5], [3.0]], dtype=torch.float64), v_t * 7.0
    a = crd_loss(raw_s, raw_t, M_s, M_t, idx, cidx, -1, -1, normalize_inputs=True)
    b = crd_loss(v_s, v_t, M_s, M_t, idx, cidx, -1, -1)
    for x, y in zip(a, b):
        assert torch.allclose(x, y, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("N,K", [(1, 1), (2, 4), (17, 16)])
def test_contrast_loss_matches_seed(N, K):
    x = torch.rand(N, K + 1, 1, dtype=torch.float64) * 1e-2
    seed = ContrastLoss(31)(x)
    assert seed.shape == (1,)
    assert torch.allclose(contrast_nce_loss(x, 31), seed[0], rtol=1e-13)
    assert torch.allclose(ref.ContrastLoss(31)(x), seed, rtol=1e-13)
    assert ref.ContrastLoss(31)(x).shape == (1,)


def make_opt(**kw):
    opt = dict(s_dim=6, t_dim=7, feat_dim=5, nce_k=3, nce_t=0.07, nce_m=0.5, n_data=11)
    opt.update(kw)
    return types.SimpleNamespace(**opt)


def test_module_matches_seed_module_and_function_over_two_calls():
    opt = make_opt()
    torch.manual_seed(1)
    seed = CRDLoss(opt).double()
    torch.manual_seed(1)
    ours = ref.CRDLoss(opt).double()
    N = 4
    f_s, f_t = torch.randn(N, 6, dtype=torch.float64), torch.randn(N, 7, dtype=torch.float64)
    idx = torch.tensor([3, 7, 0, 3])  # a duplicate: the last occurrence wins (see the dedicated test)
    cidx = torch.randint(0, 11, (N, 4))
    cidx[:, 0] = idx
    T = ours.contrast.params[1].item()  # float32(0.07), as the module
    assert T == pytest.approx(0.07, rel=1e-7) and T != 0.07
    state = (ours.contrast.memory_v1.clone(), ours.contrast.memory_v2.clone(), -1.0, -1.0)
    for step in range(2):
        v_s, v_t = ours.embed_s(f_s), ours.embed_t(f_t)
        expected = crd_loss(v_s, v_t, state[0], state[1], idx, cidx, state[2], state[3], T=T, n_data=11)
        l_seed = seed(f_s, f_t, idx, cidx)
        l_ours = ours(f_s, f_t, idx, cidx)
        assert l_ours.shape == l_seed.shape == (1,)
        assert torch.allclose(l_ours, l_seed, rtol=1e-12)
        assert torch.allclose(l_ours[0], expected[0], rtol=1e-12)
        assert torch.allclose(ours.contrast.memory_v1, expected[1], rtol=1e-12, atol=1e-15)
        assert torch.allclose(ours.contrast.memory_v2, expected[2], rtol=1e-12, atol=1e-15)
        assert ours.contrast.params[2].item() == pytest.approx(expected[3].item(), rel=1e-12)
        assert ours.contrast.params[3].item() == pytest.approx(expected[4].item(), rel=1e-12)
        state = tuple(e.detach() for e in expected[1:])
        f_s, f_t = f_s + 0.1, f_t - 0.1


def test_module_sampling_path():
    opt = make_opt(n_data=50, nce_k=6)
    crd = ref.CRDLoss(opt)
    idx = torch.tensor([1, 5, 9])
    loss = crd(torch.randn(3, 6), torch.randn(3, 7), idx)
    assert loss.shape == (1,) and torch.isfinite(loss).all()
    draws = crd.contrast.multinomial.draw(1000)
    assert draws.min() >= 0 and draws.max() < 50
    # A non-uniform distribution: only outcomes with mass are drawn.
    sampler = ref.AliasMethod(torch.tensor([0.0, 1.0, 3.0, 0.0]))
    assert set(sampler.draw(500).tolist()) <= {1, 2}


def test_hand_checked_n1_k1_and_pre_update_bank_scores():
    # D = 2, T = 0.5, n_data = 4, idx = [2], contrast_idx = [[2, 0]] (positive 2, one negative 0).
    T, n = 0.5, 4
    M = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]], dtype=torch.float64)
    v_s = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    v_t = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    idx, cidx = torch.tensor([2]), torch.tensor([[2, 0]])
    loss, new_s, new_t, z_s, z_t = crd_loss(v_s, v_t, M, M.clone(), idx, cidx, -1, -1, T=T)
    # Scores from the PRE-update row M[2] = (0.6, 0.8):
    # out_t = exp(<M_s[.], v_t>/T) = [e^1.6, e^0]; out_s = exp(<M_t[.], v_s>/T) = [e^1.2, e^2].
    zt, zs = (math.exp(1.6) + 1) / 2 * n, (math.exp(1.2) + math.exp(2)) / 2 * n
    assert z_t.item() == pytest.approx(zt, rel=1e-14) and z_s.item() == pytest.approx(zs, rel=1e-14)
    c = 1 * 0.25 + eps  # m Pn + eps with m = K = 1

    def nce(p_pos, p_neg):
        return -(math.log(p_pos / (p_pos + c)) + math.log(0.25 / (p_neg + c)))

    expected = nce(math.exp(1.6) / zt, 1 / zt) + nce(math.exp(1.2) / zs, math.exp(2) / zs)
    assert loss.item() == pytest.approx(expected, rel=1e-13)
    # Updated rows: normalize(0.5 (0.6, 0.8) + 0.5 v): student bank with v_s, teacher bank with v_t.
    assert torch.allclose(new_s[2], torch.tensor([2.0, 1.0], dtype=torch.float64) / math.sqrt(5), atol=1e-15)
    assert torch.allclose(new_t[2], torch.tensor([1.0, 3.0], dtype=torch.float64) / math.sqrt(10), atol=1e-15)
    assert torch.equal(new_s[[0, 1, 3]], M[[0, 1, 3]])
    # The update does not affect this call's scores.
    no_update = crd_loss(v_s, v_t, M, M.clone(), idx, cidx, -1, -1, T=T, update_memory=False)
    assert torch.equal(no_update[0], loss)
    assert no_update[1] is M
    # Scoring with the post-update banks would give a different loss.
    post = crd_loss(v_s, v_t, new_s, new_t, idx, cidx, -1, -1, T=T)[0]
    assert abs(post.item() - loss.item()) > 1e-3


def test_z_once_vs_ema_over_two_calls():
    v_s, v_t, M_s, M_t, idx, cidx = problem(3, 5)
    v_s2, v_t2 = unit(3, 5), unit(3, 5)
    results = {}
    for mode in ("once", "ema"):
        l1, ms, mt, zs1, zt1 = crd_loss(v_s, v_t, M_s, M_t, idx, cidx, -1, -1, z_mode=mode)
        l2, _, _, zs2, zt2 = crd_loss(v_s2, v_t2, ms, mt, idx, cidx, zs1, zt1, z_mode=mode)
        results[mode] = (l1, zs1, zt1, l2, zs2, zt2, ms, mt)
    once, ema = results["once"], results["ema"]
    # First call: "ema" initialises exactly as "once".
    for a, b in zip(once[:3], ema[:3]):
        assert torch.equal(a, b)
    out_s, out_t = crd_scores(v_s, v_t, M_s, M_t, cidx, 0.07)
    assert once[1].item() == pytest.approx(out_s.mean().item() * 23, rel=1e-14)
    assert once[2].item() == pytest.approx(out_t.mean().item() * 23, rel=1e-14)
    # Second call: "once" keeps Z; "ema" moves it by 1% toward this batch's estimate (post-update banks).
    assert torch.equal(once[4], once[1]) and torch.equal(once[5], once[2])
    out_s2, out_t2 = crd_scores(v_s2, v_t2, once[6], once[7], cidx, 0.07)
    assert ema[4].item() == pytest.approx(0.99 * once[1].item() + 0.01 * out_s2.mean().item() * 23, rel=1e-14)
    assert ema[5].item() == pytest.approx(0.99 * once[2].item() + 0.01 * out_t2.mean().item() * 23, rel=1e-14)
    # The updated Z is the one used for the second call's loss.
    o_ema = oracle_step(v_s2, v_t2, once[6], once[7], idx, cidx, ema[4].item(), ema[5].item(), 0.07, 0.5, 23)
    o_once = oracle_step(v_s2, v_t2, once[6], once[7], idx, cidx, once[1].item(), once[2].item(), 0.07, 0.5, 23)
    assert ema[3].item() == pytest.approx(o_ema[0], rel=1e-11)
    assert once[3].item() == pytest.approx(o_once[0], rel=1e-11)
    # The constant itself, with another momentum.
    assert crd_normalization_constant(out_s2, 10.0, 23, "ema", 0.9).item() == pytest.approx(
        0.9 * 10.0 + 0.1 * out_s2.mean().item() * 23, rel=1e-14)
    with pytest.raises(ValueError):
        crd_loss(v_s, v_t, M_s, M_t, idx, cidx, -1, -1, z_mode="always")


def test_module_ema_mode():
    opt = make_opt(nce_z_mode="ema", nce_z_momentum=0.9)
    crd = ref.CRDLoss(opt).double()
    idx = torch.tensor([0, 4])
    cidx = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    f_s, f_t = torch.randn(2, 6, dtype=torch.float64), torch.randn(2, 7, dtype=torch.float64)
    crd(f_s, f_t, idx, cidx)
    z1 = crd.contrast.params[2].item()
    M1 = crd.contrast.memory_v2.clone()
    v_s = crd.embed_s(f_s)
    crd(f_s, f_t, idx, cidx)
    out_s, _ = crd_scores(v_s, v_s, M1, M1, cidx, crd.contrast.params[1].item())
    assert crd.contrast.params[2].item() == pytest.approx(0.9 * z1 + 0.1 * out_s.mean().item() * 11, rel=1e-12)


def test_duplicate_indices_last_occurrence_wins():
    M = unit(6, 3)
    v = unit(3, 3)
    idx = torch.tensor([4, 1, 4])
    new = crd_update_memory(M, idx, v, 0.5)
    p = M[4] * 0.5 + v[2] * 0.5  # from the PRE-update row 4 and the LAST occurrence's v
    assert torch.allclose(new[4], p / p.norm(), atol=1e-15)
    p1 = M[1] * 0.5 + v[1] * 0.5
    assert torch.allclose(new[1], p1 / p1.norm(), atol=1e-15)
    assert torch.equal(new[[0, 2, 3, 5]], M[[0, 2, 3, 5]])
    # The seed's index_copy_ with duplicates: PyTorch leaves the winner undefined; on the CPU it is one
    # of the two candidates (the last one with the current sequential kernel).
    seed_bank = M.clone()
    pos = torch.index_select(M, 0, idx) * 0.5 + v * 0.5
    seed_bank.index_copy_(0, idx, pos / pos.pow(2).sum(1, keepdim=True).pow(0.5))
    first = (M[4] * 0.5 + v[0] * 0.5) / (M[4] * 0.5 + v[0] * 0.5).norm()
    assert torch.allclose(seed_bank[4], new[4], atol=1e-15) or torch.allclose(seed_bank[4], first, atol=1e-15)
    # In place (the module's path) gives the same bank.
    M2 = M.clone()
    assert crd_update_memory(M2, idx, v, 0.5, inplace=True) is M2
    assert torch.equal(M2, new)


def test_gradcheck_v_s_and_v_t():
    v_s, v_t, M_s, M_t, idx, cidx = problem(3, 2, D=4, n_data=9)
    # Z must be given (set): an unset Z is estimated from the batch under no_grad, which the finite
    # differences of gradcheck would see but the analytic gradient (correctly, as the seed) ignores.
    _, _, _, z_s, z_t = crd_loss(v_s, v_t, M_s, M_t, idx, cidx, -1, -1, T=0.5)
    for T in (0.5, 0.07):
        for norm_in in (False, True):
            a = (v_s * 1.5).requires_grad_()
            b = (v_t * 0.7).requires_grad_()
            f = lambda x, y: crd_loss(x, y, M_s, M_t, idx, cidx, z_s, z_t, T=T, normalize_inputs=norm_in)[0]
            assert torch.autograd.gradcheck(f, (a, b))


def test_returned_state_is_detached():
    v_s, v_t, M_s, M_t, idx, cidx = problem(2, 3)
    a, b = v_s.clone().requires_grad_(), v_t.clone().requires_grad_()
    loss, ms, mt, zs, zt = crd_loss(a, b, M_s, M_t, idx, cidx, -1, -1)
    assert loss.requires_grad
    assert not (ms.requires_grad or mt.requires_grad or zs.requires_grad or zt.requires_grad)
    loss.backward()
    assert a.grad.abs().max() > 0 and b.grad.abs().max() > 0
