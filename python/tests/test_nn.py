"""The drop-in modules (python/kdfuse/nn.py) against the reference modules (python_ref/kdfuse_ref) on the SIMT build:
same parameters and state (the reference's state_dict loads), same inputs, losses (values and shapes) and the
gradients of the student inputs and of the modules' own parameters, with a grad_output != 1; CRD over several
steps with its state. Skipped when the SIMT library is not built."""
import copy
import math
import types

import pytest
import torch

import kdfuse
import kdfuse.nn as knn
from kdfuse.gradcheck.cases.kdsvd import KERNEL, draw
import kdfuse_ref.ab
import kdfuse_ref.at
import kdfuse_ref.cc
import kdfuse_ref.crd
import kdfuse_ref.fitnet
import kdfuse_ref.fsp
import kdfuse_ref.ft
import kdfuse_ref.kd
import kdfuse_ref.kdsvd
import kdfuse_ref.nst
import kdfuse_ref.ofd
import kdfuse_ref.pkt
import kdfuse_ref.rkd
import kdfuse_ref.sp
import kdfuse_ref.vid

from simt_library import load_or_skip

LIB = load_or_skip("kdfCRD")

RTOL = 1e-4


def rand(*shape, seed, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def assert_close(got, ref, what=""):
    ref = ref.detach().to(torch.float64)
    atol = 1e-6 * max(1.0, ref.abs().max().item())
    torch.testing.assert_close(got.detach().to(torch.float64), ref, rtol=RTOL, atol=atol, msg=lambda m: f"{what}: {m}")


def as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def run(module, inputs, students, dtype):
    """Forward with `inputs` (a list whose items are tensors or lists of tensors) cast to dtype, students
    (positions, or (position, index) in a list) requiring grad; backward of sum_i (i + 1) * sum(loss_i) * -1.3.
    Returns (losses, student gradients, parameter gradients by name)."""
    args = [[t.detach().to(dtype) for t in x] if isinstance(x, list) else x.detach().to(dtype) for x in inputs]
    leaves = []
    for s in students:
        t = args[s] if isinstance(s, int) else args[s[0]][s[1]]
        t.requires_grad_()
        leaves.append(t)
    losses = as_list(module(*args))
    total = sum((i + 1) * loss.sum() for i, loss in enumerate(losses)) * -1.3
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(total, leaves + [p for _, p in params])
    return losses, grads[:len(leaves)], dict(zip([n for n, _ in params], grads[len(leaves):]))


def compare(kmod, rmod, inputs, students):
    """kdfuse module (float32) against the reference module (float64) holding the same state."""
    rmod.load_state_dict(kmod.state_dict())
    rmod = copy.deepcopy(rmod).double()
    losses, grads, pgrads = run(kmod, inputs, students, torch.float32)
    r_losses, r_grads, r_pgrads = run(rmod, inputs, students, torch.float64)
    assert len(losses) == len(r_losses)
    for i, (a, b) in enumerate(zip(losses, r_losses)):
        assert a.shape == b.shape, f"loss {i}: shape {tuple(a.shape)} vs the reference's {tuple(b.shape)}"
        assert_close(a, b, f"loss {i}")
    for s, a, b in zip(students, grads, r_grads):
        assert_close(a, b, f"gradient of input {s}")
    assert pgrads.keys() == r_pgrads.keys()
    for name in pgrads:
        assert_close(pgrads[name], r_pgrads[name], f"gradient of {name}")
    r_buffers = dict(rmod.named_buffers())
    for name, b in kmod.named_buffers():  # e.g. OFD's BN running statistics, updated by the forward
        if b.is_floating_point():
            assert_close(b, r_buffers[name], f"buffer {name}")


def maps(shapes, seed, scale=1.0):
    return [rand(*s, seed=seed + i, scale=scale) for i, s in enumerate(shapes)]


# student / teacher feature lists of a tiny CIFAR-like net: (N, C, H, W), smaller maps square
S_SHAPES = [(4, 4, 8, 8), (4, 6, 4, 4), (4, 8, 2, 2)]
T_SHAPES = [(4, 6, 8, 8), (4, 8, 4, 4), (4, 8, 2, 2)]


def test_distill_kl():
    compare(knn.DistillKL(4), kdfuse_ref.kd.DistillKL(4), [rand(6, 10, seed=1, scale=3), rand(6, 10, seed=2, scale=3)],
            [0, 1])


@pytest.mark.parametrize("shape", [(3, 10, 5), (2, 7, 3, 2)], ids=["rank3", "rank4"])
def test_distill_kl_rank_above_2(shape):
    """N x C x ... logits as the seed: softmax over dim 1 at every position, the sum over all positions divided by N
    (not by the N * positions rows kdfuse flattens them to); loss and both gradients against the reference."""
    y_s, y_t = rand(*shape, seed=40, scale=3), rand(*shape, seed=41, scale=3)
    compare(knn.DistillKL(4), kdfuse_ref.kd.DistillKL(4), [y_s, y_t], [0, 1])
    with pytest.raises(ValueError, match="same shape"):
        knn.DistillKL(4)(rand(3, 10, 5, seed=42), rand(3, 10, 4, seed=43))


def test_hint_loss():
    compare(knn.HintLoss(), kdfuse_ref.fitnet.HintLoss(), [rand(4, 6, 4, 4, seed=3), rand(4, 6, 4, 4, seed=4)], [0])


def test_attention():
    compare(knn.Attention(), kdfuse_ref.at.Attention(), [maps(S_SHAPES, 10), maps([(4, 6, 4, 4), (4, 8, 4, 4),
                                                                                    (4, 8, 1, 1)], 20)],
            [(0, 0), (0, 1), (0, 2)])


def test_similarity():
    compare(knn.Similarity(), kdfuse_ref.sp.Similarity(), [maps(S_SHAPES, 30), maps(T_SHAPES, 40)],
            [(0, 0), (0, 1), (0, 2)])


def test_correlation_seed():
    compare(knn.Correlation("seed"), kdfuse_ref.cc.Correlation("seed"), [rand(6, 16, seed=5), rand(6, 12, seed=6)], [0])


class ShippedCorrelation(torch.nn.Module):
    """RepDistiller's distiller_zoo/CC.py Correlation, verbatim."""

    def forward(self, f_s, f_t):
        delta = torch.abs(f_s - f_t)
        loss = torch.mean((delta[:-1] * delta[1:]).sum(1))
        return loss


def test_correlation_default_is_what_repdistiller_ships():
    """Correlation() is the consecutive-row form RepDistiller ships: 0-dim, gradients to both embeddings."""
    assert knn.Correlation().variant == "repdistiller"
    compare(knn.Correlation(), ShippedCorrelation(), [rand(6, 16, seed=7), rand(6, 16, seed=8)], [0, 1])
    compare(knn.Correlation(), kdfuse_ref.cc.Correlation("repdistiller"), [rand(5, 9, seed=9), rand(5, 9, seed=10)],
            [0, 1])


@pytest.mark.parametrize("s_h,t_h", [(8, 4), (4, 8), (4, 4)], ids=["input-pooled", "target-pooled", "equal"])
def test_vid_loss(s_h, t_h):
    """The regressor and log_scale train as in the reference (their gradients compared), whichever map is pooled."""
    torch.manual_seed(0)
    compare(knn.VIDLoss(6, 5, 4), kdfuse_ref.vid.VIDLoss(6, 5, 4),
            [rand(3, 6, s_h, s_h, seed=9), rand(3, 4, t_h, t_h, seed=10)], [0])


def test_rkd_loss():
    compare(knn.RKDLoss(), kdfuse_ref.rkd.RKDLoss(), [rand(6, 4, 2, 2, seed=11), rand(6, 12, seed=12)], [0])


def test_pkt():
    compare(knn.PKT(), kdfuse_ref.pkt.PKT(), [rand(6, 16, seed=13), rand(6, 10, seed=14)], [0])


def test_ab_loss():
    g_s = maps(T_SHAPES, 50, scale=1.5)  # connector outputs: the teacher's shapes
    compare(knn.ABLoss(3), kdfuse_ref.ab.ABLoss(3), [g_s, maps(T_SHAPES, 60)], [(0, 0), (0, 1), (0, 2)])


def test_factor_transfer():
    compare(knn.FactorTransfer(), kdfuse_ref.ft.FactorTransfer(),
            [rand(4, 5, 8, 8, seed=15), rand(4, 3, 4, 4, seed=16)], [0])


def test_fsp():
    s_shapes = [(4, 4, 8, 8), (4, 6, 4, 4), (4, 6, 4, 4)]
    t_shapes = [(4, 4, 8, 8), (4, 6, 8, 8), (4, 6, 4, 4)]
    compare(knn.FSP(s_shapes, t_shapes), kdfuse_ref.fsp.FSP(s_shapes, t_shapes),
            [maps(s_shapes, 70), maps(t_shapes, 80)], [(0, 0), (0, 1), (0, 2)])
    with pytest.raises(ValueError, match="num of channels"):
        knn.FSP(s_shapes, [(4, 5, 8, 8)] + t_shapes[1:])


def test_nst_loss():
    compare(knn.NSTLoss(), kdfuse_ref.nst.NSTLoss(), [maps(S_SHAPES, 90), maps(T_SHAPES, 100)],
            [(0, 0), (0, 1), (0, 2)])


def test_nst_loss_rank_3_maps():
    """N x C x L maps (the seed's f.view(N, C, -1) takes them as they are) of equal L; different L raise (the seed's
    adaptive_avg_pool2d would average a 3-D map over its channels)."""
    g_s, g_t = maps([(3, 4, 10), (3, 5, 6)], 150), maps([(3, 6, 10), (3, 2, 6)], 160)
    compare(knn.NSTLoss(), kdfuse_ref.nst.NSTLoss(), [g_s, g_t], [(0, 0), (0, 1)])
    with pytest.raises(ValueError, match="same L"):
        knn.NSTLoss()(maps([(3, 4, 10)], 170), maps([(3, 4, 5)], 180))


@pytest.mark.parametrize("k", [1, 2])
def test_kdsvd(k):
    """A list of len - 1 0-dim losses, each pair's with its own grad_output (a middle layer gets both of its pairs'),
    against the reference with kdfuse's definition (canonical signs, stable SVD gradient, ...); the class is
    RepDistiller's name in kdfuse.nn."""
    assert "KDSVD" in knn.__all__
    g_s, g_t = draw(3, [(6, 4), (12, 3), (20, 2)], k, "spectral", torch.Generator().manual_seed(20 + k))
    compare(knn.KDSVD(k), kdfuse_ref.kdsvd.KDSVD(k, **KERNEL), [g_s, g_t], [(0, 0), (0, 1), (0, 2)])


def test_kdsvd_one_layer_gives_no_loss():
    """One layer has no consecutive pair: [] (the seed's), which train_student.py's sum turns into 0."""
    f = rand(2, 4, 3, 3, seed=23)
    assert knn.KDSVD()([f], [f]) == [] == kdfuse_ref.kdsvd.KDSVD()([f], [f])


@pytest.mark.parametrize("module", [knn.Attention(), knn.Similarity(), knn.NSTLoss(), knn.ABLoss(3),
                                    knn.FSP(S_SHAPES, S_SHAPES), knn.KDSVD()], ids=lambda m: type(m).__name__)
def test_layer_lists_of_different_lengths_raise(module):
    """The seed's zip would drop the extra layer without a word: the modules refuse the call."""
    with pytest.raises(ValueError, match="3 layers, g_t 2"):
        module(maps(S_SHAPES, 110), maps(S_SHAPES[:2], 120))


def test_ab_loss_layer_count_must_match_feat_num():
    with pytest.raises(ValueError, match="built for 2 layers"):
        knn.ABLoss(2)(maps(T_SHAPES, 130), maps(T_SHAPES, 140))


def test_ofd_seed():
    """The connector (conv + BN in training mode) trains as in the reference; its BN statistics update alike."""
    torch.manual_seed(1)
    kmod, rmod = knn.OFD(4, 6), kdfuse_ref.ofd.OFD(4, 6)
    compare(kmod, rmod, [rand(3, 4, 4, 4, seed=17), rand(3, 6, 4, 4, seed=18)], [0])


def test_ofd_original():
    margin = kdfuse.ofd_margin_from_bn(rand(6, seed=19).abs() + 0.5, rand(6, seed=20))
    torch.manual_seed(2)
    kmod = knn.OFD(4, 6, variant="original", margin=margin)
    rmod = kdfuse_ref.ofd.OFD(4, 6, variant="original", margin=margin)
    compare(kmod, rmod, [rand(3, 4, 4, 4, seed=21), rand(3, 6, 4, 4, seed=22)], [0])


def test_state_dicts_are_interchangeable():
    """Parameter and buffer names are the reference's: each loads the other's state_dict, strictly."""
    opt = types.SimpleNamespace(s_dim=12, t_dim=10, feat_dim=8, nce_k=16, nce_t=0.07, nce_m=0.5, n_data=40)
    for k, r in ((knn.VIDLoss(6, 5, 4), kdfuse_ref.vid.VIDLoss(6, 5, 4)), (knn.OFD(4, 6), kdfuse_ref.ofd.OFD(4, 6)),
                 (knn.CRDLoss(opt), kdfuse_ref.crd.CRDLoss(opt))):
        k.load_state_dict(r.state_dict())
        r.load_state_dict(k.state_dict())
        assert list(k.state_dict()) == list(r.state_dict())


# ---- CRD -------------------------------------------------------------------------------------------------------

def crd_opt(**extra):
    return types.SimpleNamespace(**{**dict(s_dim=12, t_dim=10, feat_dim=8, nce_k=16, nce_t=0.07, nce_m=0.5, n_data=40),
                                    **extra})


def crd_step(module, f_s, f_t, idx, contrast_idx, dtype):
    f_s = f_s.to(dtype).requires_grad_()
    loss = module(f_s, f_t.to(dtype), idx, contrast_idx)
    params = [p for _, p in module.named_parameters()]
    grads = torch.autograd.grad(loss.sum() * 0.7, [f_s] + params)
    return loss, grads


@pytest.mark.parametrize("z_mode", ["once", "ema"])
def test_crd_loss_over_steps(z_mode):
    """Four steps on one state (embedding heads updated by SGD in between): the loss (shape (1,)), the gradients of
    f_s and of both heads, the banks and Z; the reference's drawn contrasts are replaced by given ones."""
    opt = crd_opt(nce_z_mode=z_mode)
    torch.manual_seed(3)
    kmod = knn.CRDLoss(opt)
    rmod = kdfuse_ref.crd.CRDLoss(opt)
    rmod.load_state_dict(kmod.state_dict())
    rmod.double()
    g = torch.Generator().manual_seed(4)
    for step in range(4):
        f_s, f_t = torch.randn(6, 12, generator=g), torch.randn(6, 10, generator=g)
        idx = torch.randperm(40, generator=g)[:6]
        cidx = torch.randint(0, 40, (6, 17), generator=g)
        cidx[:, 0] = idx
        loss, grads = crd_step(kmod, f_s, f_t, idx, cidx, torch.float32)
        r_loss, r_grads = crd_step(rmod, f_s, f_t, idx, cidx, torch.float64)
        assert loss.shape == r_loss.shape == (1,)
        assert_close(loss, r_loss, f"step {step} loss")
        for i, (a, b) in enumerate(zip(grads, r_grads)):
            assert_close(a, b, f"step {step} gradient {i}")
        for name in ("params", "memory_v1", "memory_v2"):
            assert_close(getattr(kmod.contrast, name), getattr(rmod.contrast, name), f"step {step} {name}")
        with torch.no_grad():  # one SGD step on both (the reference's weights are float64)
            for (_, p), gp, (_, rp) in zip(kmod.named_parameters(), grads[1:], rmod.named_parameters()):
                p -= 0.5 * gp
                rp.copy_(p.double())


def test_crd_drawn_contrasts():
    """contrast_idx=None: the negatives are drawn on the device from the module's Philox seed and counter (one per
    call); the reference given the same indices (kdfuse.draw_contrast) agrees."""
    torch.manual_seed(5)
    kmod = knn.CRDLoss(crd_opt(nce_seed=99))
    rmod = kdfuse_ref.crd.CRDLoss(crd_opt())
    rmod.load_state_dict(kmod.state_dict())
    rmod.double()
    g = torch.Generator().manual_seed(6)
    for step in range(2):
        f_s, f_t = torch.randn(6, 12, generator=g), torch.randn(6, 10, generator=g)
        idx = torch.randperm(40, generator=g)[:6]
        cidx = kdfuse.draw_contrast(idx, 40, 16, seed=99, offset=step)
        loss, grads = crd_step(kmod, f_s, f_t, idx, None, torch.float32)
        r_loss, r_grads = crd_step(rmod, f_s, f_t, idx, cidx, torch.float64)
        assert_close(loss, r_loss, f"step {step} loss")
        for i, (a, b) in enumerate(zip(grads, r_grads)):
            assert_close(a, b, f"step {step} gradient {i}")
        assert_close(kmod.contrast.memory_v2, rmod.contrast.memory_v2, f"step {step} memory_v2")
    assert kmod.contrast.philox.tolist() == [99, 2]
    with pytest.raises(ValueError, match="expected K"):
        kmod(f_s, f_t, idx, cidx[:, :5])


def test_crd_load_state_dict_refreshes_hyperparameters():
    """K, T and momentum live in the params buffer: loading a state_dict updates the host copies kdfuse uses."""
    kmod = knn.CRDLoss(crd_opt())
    other = kdfuse_ref.crd.CRDLoss(crd_opt(nce_t=0.2, nce_m=0.9))
    kmod.load_state_dict(other.state_dict())
    assert kmod.contrast.T == pytest.approx(0.2) and kmod.contrast.momentum == pytest.approx(0.9)
    assert kmod.contrast.K == 16
    assert math.isclose(kmod.contrast.params[1].item(), 0.2, rel_tol=1e-6)
