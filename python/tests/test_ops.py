"""The PyTorch custom ops (python/kdfuse/ops.py, torch.ops.kdfuse.*) on the SIMT build: torch.library.opcheck on
every op, each public function's loss and gradients (with a grad_output != 1) against kdfuse_ref in float64, the
loss-only path, teacher inputs, pooling rules, dtypes, devices, double backward and the CRD state. Skipped when the
SIMT library is not built."""
import math
import warnings

import pytest
import torch

from kdfuse import draw_contrast, ops
from kdfuse.gradcheck.cases.kdsvd import KERNEL, draw
from kdfuse_ref.ab import ab_loss
from kdfuse_ref.at import at_loss
from kdfuse_ref.cc import cc_loss
from kdfuse_ref.crd import crd_loss, l2_normalize
from kdfuse_ref.fitnet import fitnet_loss
from kdfuse_ref.fsp import fsp_loss
from kdfuse_ref.ft import ft_loss
from kdfuse_ref.kd import kd_loss
from kdfuse_ref.kdsvd import kdsvd_loss
from kdfuse_ref.nst import nst_loss
from kdfuse_ref.ofd import bn_margin, ofd_loss
from kdfuse_ref.pkt import pkt_loss
from kdfuse_ref.rkd import rkd_loss
from kdfuse_ref.sp import sp_loss
from kdfuse_ref.vid import vid_loss

from simt_library import load_or_skip

LIB = load_or_skip("kdfCRD")

RTOL = 1e-4
GRAD_OUTPUT = -1.7  # the upstream gradient of every comparison: not 1


def rand(*shape, seed, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def assert_close(got, ref, what=""):
    """|got - ref| <= 1e-6 max|ref| + 1e-4 |ref| elementwise (the gradient check's rule)."""
    ref = ref.detach().to(torch.float64)
    atol = 1e-6 * max(1.0, ref.abs().max().item()) if ref.numel() else 0.0
    torch.testing.assert_close(got.detach().to(torch.float64), ref, rtol=RTOL, atol=atol, msg=lambda m: f"{what}: {m}")


class Case:
    """A loss call on small CPU inputs: `call(*inputs)` (kdfuse.ops), `ref(*inputs)` (kdfuse_ref, float64),
    the inputs that get gradients (`grads`, positions) and the op's arguments for opcheck (`op_args(*inputs)`,
    given the inputs with requires_grad set)."""

    def __init__(self, op, inputs, grads, call, ref, op_args):
        self.op, self.inputs, self.grads, self.call, self.ref, self.op_args = op, inputs, grads, call, ref, op_args

    def leaves(self, dtype=torch.float32):
        return [x.detach().to(dtype).requires_grad_(i in self.grads) for i, x in enumerate(self.inputs)]


def _square(n, c, h, seed, scale=1.0):
    return rand(n, c, h, h, seed=seed, scale=scale)


def _margin():
    return bn_margin(rand(4, seed=31).abs() + 0.5, rand(4, seed=32)).float()


def _kdsvd_case(n, layers, k, kind, seed):
    """KDSVD on well-posed maps (kdfuse.gradcheck.cases.kdsvd.draw): inputs the student maps then the teacher maps, the loss a
    1-D tensor of the pair losses (the reference's list stacked)."""
    g_s, g_t = draw(n, layers, k, kind, torch.Generator().manual_seed(seed))
    m = len(layers)
    return Case("kdsvd", g_s + g_t, tuple(range(m)),
                lambda *f: ops.kdsvd(list(f[:m]), list(f[m:]), k=k),
                lambda *f: torch.stack(kdsvd_loss(list(f[:m]), list(f[m:]), k, **KERNEL)),
                lambda *f: (list(f[:m]), list(f[m:]), k, KERNEL["gap_rtol"]))


CASES = {
    "kd": Case("kd", [rand(6, 10, seed=1, scale=3), rand(6, 10, seed=2, scale=3)], (0, 1),
               lambda ys, yt: ops.kd(ys, yt, T=4.0), lambda ys, yt: kd_loss(ys, yt, 4.0),
               lambda ys, yt: (ys, yt, None, 4.0, "batchmean", True, True)),
    "kd_none_weight": Case("kd", [rand(6, 10, seed=3, scale=3), rand(6, 10, seed=4, scale=3)], (0,),
                           lambda ys, yt: ops.kd(ys, yt, T=2.0, weight=torch.linspace(0, 1.5, 6), reduction="none"),
                           lambda ys, yt: kd_loss(ys, yt, 2.0, torch.linspace(0, 1.5, 6, dtype=ys.dtype), "none"),
                           lambda ys, yt: (ys, yt, torch.linspace(0, 1.5, 6), 2.0, "none", True, False)),
    "fitnet": Case("fitnet", [rand(3, 4, 5, 5, seed=5), rand(3, 4, 5, 5, seed=6)], (0,),
                   ops.fitnet, fitnet_loss, lambda a, b: (a, b, True)),
    "at": Case("at", [_square(3, 4, 8, 7), _square(3, 6, 4, 8)], (0,),
               lambda a, b: ops.at(a, b, p=2), lambda a, b: at_loss(a, b, 2), lambda a, b: (a, b, 2.0, True)),
    "at_hw": Case("at", [rand(3, 5, 7, 9, seed=9), rand(3, 6, 14, 18, seed=10)], (0,),
                  lambda a, b: ops.at(a, b, p=2, pool="hw"), lambda a, b: at_loss(a, b, 2, pool="hw"),
                  lambda a, b: (a, b, 2.0, True)),
    "ft": Case("ft", [_square(3, 4, 6, 11), _square(3, 5, 6, 12)], (0,),
               lambda a, b: ops.ft(a, b), lambda a, b: ft_loss(a, b), lambda a, b: (a, b, 2.0, 1.0, True)),
    "ab": Case("ab", [rand(3, 4, 5, 5, seed=13, scale=1.5), rand(3, 4, 5, 5, seed=14)], (0,),
               lambda s, t: ops.ab(s, t, margin=1.0), lambda s, t: ab_loss(s, t, 1.0),
               lambda s, t: (s, t, 1.0, True, True)),
    "ofd": Case("ofd", [rand(3, 4, 5, 5, seed=15), rand(3, 4, 5, 5, seed=16)], (0,),
                lambda s, t: ops.ofd(s, t), lambda s, t: ofd_loss(s, t), lambda s, t: (s, t, None, "seed", True)),
    "ofd_original": Case("ofd", [rand(3, 4, 5, 5, seed=17), rand(3, 4, 5, 5, seed=18)], (0,),
                         lambda s, t: ops.ofd(s, t, margin=_margin(), variant="original"),
                         lambda s, t: ofd_loss(s, t, _margin().to(s.dtype), "original"),
                         lambda s, t: (s, t, _margin(), "original", True)),
    "vid": Case("vid", [_square(3, 4, 4, 19), _square(3, 4, 8, 20), rand(4, seed=21)], (0, 2),
                lambda p, t, ls: ops.vid(p, t, ls, eps=1e-5), lambda p, t, ls: vid_loss(p, t, ls, 1e-5),
                lambda p, t, ls: (p, t, ls, 1e-5, True, True)),
    "sp": Case("sp", [rand(5, 3, 4, 4, seed=22), rand(5, 6, 2, 2, seed=23)], (0,), ops.sp, sp_loss,
               lambda a, b: (a, b, True)),
    "cc": Case("cc", [rand(5, 12, seed=24), rand(5, 9, seed=25)], (0,), ops.cc, cc_loss,
               lambda a, b: (a, b, "seed", True, False)),
    "cc_repdistiller": Case("cc", [rand(5, 8, seed=26), rand(5, 8, seed=27)], (0, 1),
                            lambda a, b: ops.cc(a, b, "repdistiller"), lambda a, b: cc_loss(a, b, "repdistiller"),
                            lambda a, b: (a, b, "repdistiller", True, True)),
    "pkt": Case("pkt", [rand(6, 7, seed=28), rand(6, 5, seed=29)], (0,), ops.pkt, pkt_loss,
                lambda a, b: (a, b, True)),
    "rkd": Case("rkd", [rand(6, 7, seed=30), rand(6, 5, seed=33)], (0,), lambda a, b: ops.rkd(a, b, 25, 50),
                lambda a, b: rkd_loss(a, b, 25, 50), lambda a, b: (a, b, 25.0, 50.0, True)),
    "nst": Case("nst", [_square(2, 3, 4, 34), _square(2, 5, 8, 35)], (0,), ops.nst, nst_loss,
                lambda a, b: (a, b, True, True)),
    "nst_rank3": Case("nst", [rand(2, 3, 10, seed=64), rand(2, 5, 10, seed=65)], (0,), ops.nst, nst_loss,
                      lambda a, b: (a.unsqueeze(2), b.unsqueeze(2), True, True)),
    "fsp": Case("fsp", [_square(2, 3, 6, 36), _square(2, 4, 3, 37), _square(2, 3, 6, 38), _square(2, 4, 3, 39)],
                (0, 1), ops.fsp, lambda sb, st, tb, tt: fsp_loss([sb, st], [tb, tt])[0],
                lambda sb, st, tb, tt: (sb, st, tb, tt, True, True)),
    "kdsvd": _kdsvd_case(3, [(5, 3), (16, 2), (7, 4)], 2, "spectral", 76),  # tall, wide, tall
    "kdsvd_relu": _kdsvd_case(2, [(6, 4), (12, 3), (20, 2)], 1, "relu", 77),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_and_gradients_match_reference(name):
    """loss and d(GRAD_OUTPUT * loss)/d(inputs) against the float64 reference, from one fused call."""
    case = CASES[name]
    leaves = case.leaves()
    loss = case.call(*leaves)
    ref_leaves = case.leaves(torch.float64)
    ref = case.ref(*ref_leaves)
    assert loss.shape == ref.shape and loss.dtype == torch.float32
    assert_close(loss, ref, "loss")
    go = torch.full_like(loss, GRAD_OUTPUT) if loss.dim() == 0 else torch.linspace(-2, 1, loss.numel())
    wanted = [leaves[i] for i in case.grads]
    grads = torch.autograd.grad(loss, wanted, go)
    ref_grads = torch.autograd.grad(ref, [ref_leaves[i] for i in case.grads], go.double())
    for i, g, r in zip(case.grads, grads, ref_grads):
        assert g.shape == leaves[i].shape
        assert_close(g, r, f"grad of input {i}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_opcheck(name):
    """torch.library.opcheck: schema (no undeclared mutation), autograd registration, the fake kernel against the
    real one, and AOT dispatch with dynamic shapes (forward and the device-multiply backward)."""
    case = CASES[name]
    torch.library.opcheck(getattr(torch.ops.kdfuse, case.op).default, case.op_args(*case.leaves()))


def test_opcheck_gradient_not_requested():
    """need_grad_* False: an empty (0,) output instead of the gradient, in the real and the fake kernel."""
    f_s, f_t = rand(3, 4, 5, 5, seed=40), rand(3, 4, 5, 5, seed=41)
    torch.library.opcheck(torch.ops.kdfuse.fitnet.default, (f_s, f_t, False))
    loss, grad = torch.ops.kdfuse.fitnet(f_s, f_t, False)
    assert grad.shape == (0,)
    assert_close(loss, fitnet_loss(f_s.double(), f_t.double()))


def test_no_grad_mode_computes_the_loss_only():
    y_s = rand(6, 10, seed=42).requires_grad_()
    y_t = rand(6, 10, seed=43)
    with torch.no_grad():
        loss = ops.kd(y_s, y_t, 3.0)
    assert not loss.requires_grad
    assert_close(loss, kd_loss(y_s.double(), y_t.double(), 3.0))


def test_gradient_not_computed_is_an_error_not_a_zero():
    """Calling the op directly with need_grad_s=False on an input that requires grad: backward raises."""
    f_s = rand(3, 4, 5, 5, seed=44).requires_grad_()
    loss = torch.ops.kdfuse.fitnet(f_s, rand(3, 4, 5, 5, seed=45), False)[0]
    with pytest.raises(RuntimeError, match="need_grad_s=False"):
        loss.backward()


def test_backward_is_a_device_multiply():
    """The backward of a loss op is saved_gradient * grad_output: the gradient scales with any grad_output (here a
    tensor computed by another op, never read on the host)."""
    f_s = rand(3, 4, 5, 5, seed=46).requires_grad_()
    f_t = rand(3, 4, 5, 5, seed=47)
    loss = ops.fitnet(f_s, f_t)
    g1, = torch.autograd.grad(loss, f_s, torch.tensor(1.0), retain_graph=True)
    scale = torch.tensor(2.0).exp()
    g2, = torch.autograd.grad(loss, f_s, scale)
    torch.testing.assert_close(g2, g1 * scale)
    torch.testing.assert_close(g1, 2 * (f_s - f_t).detach() / f_s.numel())


def test_loss_weight_through_autograd():
    """beta * loss (RepDistiller's weighting) scales the gradients through grad_output."""
    y_s = rand(4, 7, seed=48).requires_grad_()
    y_t = rand(4, 7, seed=49)
    (0.25 * ops.kd(y_s, y_t)).backward()
    ys = y_s.detach().double().requires_grad_()
    (0.25 * kd_loss(ys, y_t.double(), 4.0)).backward()
    assert_close(y_s.grad, ys.grad)


def test_teacher_requiring_grad_is_a_constant_with_a_warning():
    f_s = rand(3, 4, 5, 5, seed=50).requires_grad_()
    f_t = rand(3, 4, 5, 5, seed=51).requires_grad_()
    ops._warned.discard(("fitnet", "f_t"))
    with pytest.warns(UserWarning, match="treats it as a constant"):
        loss = ops.fitnet(f_s, f_t)
    loss.backward()
    assert f_t.grad is None and f_s.grad is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ops.fitnet(f_s, f_t)  # warned once


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_kd_takes_16bit_logits_as_they_are(dtype):
    """KD's kernel reads fp16 / bf16 logits: the loss is float32, the gradients come back in the logits' dtype (the
    fp32 result rounded), also when a mixed-dtype pair is promoted to float32; opcheck holds for the 16-bit op."""
    y_s = rand(4, 9, seed=52, scale=3).to(dtype).requires_grad_()
    y_t = rand(4, 9, seed=53, scale=3).to(dtype).requires_grad_()
    loss = ops.kd(y_s, y_t)
    loss.backward(torch.tensor(GRAD_OUTPUT))
    assert loss.dtype == torch.float32 and y_s.grad.dtype == dtype and y_t.grad.dtype == dtype
    ys, yt = (x.detach().double().requires_grad_() for x in (y_s, y_t))
    ref = kd_loss(ys, yt, 4.0)
    assert_close(loss, ref, "loss")
    ref_gs, ref_gt = torch.autograd.grad(ref, (ys, yt), torch.tensor(GRAD_OUTPUT, dtype=torch.float64))
    for g, r in ((y_s.grad, ref_gs), (y_t.grad, ref_gt)):
        torch.testing.assert_close(g.double(), r, rtol=2.0 ** -6, atol=1e-6 * r.abs().max().item() + 2.0 ** -24)
    torch.library.opcheck(torch.ops.kdfuse.kd.default, (y_s, y_t, None, 4.0, "batchmean", True, True))
    mixed = rand(4, 9, seed=54).requires_grad_()
    ops.kd(mixed, y_t.detach()).backward()
    assert mixed.grad.dtype == torch.float32


def test_half_inputs_are_cast_to_float32_by_the_other_losses():
    f_s = rand(3, 4, 5, 5, seed=55).half().requires_grad_()
    f_t = rand(3, 4, 5, 5, seed=56).half()
    loss = ops.fitnet(f_s, f_t)
    loss.backward()
    assert loss.dtype == torch.float32 and f_s.grad.dtype == torch.float16
    fs = f_s.detach().double().requires_grad_()
    fitnet_loss(fs, f_t.double()).backward()
    torch.testing.assert_close(f_s.grad.double(), fs.grad, rtol=1e-3, atol=1e-4)
    with pytest.raises(TypeError, match="float32"):
        ops.kd(f_s.double().flatten(1), f_t.double().flatten(1))


def test_strided_inputs():
    """A channel slice (non-contiguous) works: the op makes it contiguous; the gradient lands in the slice."""
    wide = rand(3, 8, 5, 5, seed=54).requires_grad_()
    f_t = rand(3, 4, 5, 5, seed=55)
    ops.fitnet(wide[:, 2:6], f_t).backward()
    ref = torch.zeros(3, 8, 5, 5, dtype=torch.float64)
    ref[:, 2:6] = 2 * (wide[:, 2:6].detach().double() - f_t.double()) / f_t.numel()
    assert_close(wide.grad, ref)


def test_seed_pooling_refuses_where_kdfuse_differs():
    """pool="seed" pools the larger map to a square; kdfuse to the smaller map's (H, W). Identical for a square
    smaller map (tested above); refused otherwise, with pool="hw" the way to kdfuse's rule."""
    a, b = rand(2, 3, 7, 9, seed=56), rand(2, 3, 14, 18, seed=57)
    with pytest.raises(ValueError, match="pool='hw'"):
        ops.at(a, b)
    with pytest.raises(ValueError, match="pool='hw'"):
        ops.nst(a, b)
    with pytest.raises(ValueError, match="equal H"):
        ops.ft(rand(2, 3, 4, 4, seed=58), rand(2, 3, 4, 6, seed=59))
    with pytest.raises(ValueError, match="pool='hw'"):
        ops.vid(rand(2, 3, 4, 5, seed=60), rand(2, 3, 8, 10, seed=61), torch.zeros(3))


def test_rkd_single_row():
    """N = 1: the seed's NaN (empty_mean="nan", default) or kdfuse's 0 (empty_mean="zero")."""
    e_s, e_t = rand(1, 5, seed=62), rand(1, 4, seed=63)
    assert math.isnan(ops.rkd(e_s, e_t).item())
    assert ops.rkd(e_s, e_t, empty_mean="zero").item() == 0.0


# ---- CRD: the stateful op -------------------------------------------------------------------------------------

class CRDProblem:
    def __init__(self, n=6, k=9, d=16, n_data=40, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.n, self.k, self.d, self.n_data = n, k, d, n_data
        self.u_s = torch.randn(n, d, generator=g)
        self.u_t = torch.randn(n, d, generator=g)
        stdv = 1.0 / math.sqrt(d / 3)
        self.memory_s = torch.rand(n_data, d, generator=g) * (2 * stdv) - stdv
        self.memory_t = torch.rand(n_data, d, generator=g) * (2 * stdv) - stdv
        self.idx = torch.randperm(n_data, generator=g)[:n]
        self.contrast_idx = torch.randint(0, n_data, (n, k + 1), generator=g)
        self.contrast_idx[:, 0] = self.idx


def test_crd_opcheck():
    p = CRDProblem()
    u_s, u_t = p.u_s.clone(), p.u_t.clone()
    z = torch.tensor([-1.0, -1.0])
    philox = torch.tensor([7, 0])
    common = (p.k, 0.07, 0.5, "once", 0.99, True, True, True, True)
    torch.library.opcheck(torch.ops.kdfuse.crd.default, (u_s, u_t, p.memory_s.clone(), p.memory_t.clone(), p.idx,
                                                         p.contrast_idx, z.clone(), philox.clone(), *common))
    torch.library.opcheck(torch.ops.kdfuse.crd.default, (u_s, u_t, p.memory_s.clone(), p.memory_t.clone(), p.idx,
                                                         None, z.clone(), philox.clone(), *common))
    loss, gs, gt = torch.ops.kdfuse.crd(u_s, u_t, p.memory_s.clone(), p.memory_t.clone(), p.idx, p.contrast_idx,
                                        z.clone(), philox.clone(), *common)
    torch.library.opcheck(torch.ops.kdfuse.attach_grads.default,
                          (loss, u_s.requires_grad_(), u_t.requires_grad_(), gs, gt))


@pytest.mark.parametrize("drawn", [False, True], ids=["given", "drawn"])
@pytest.mark.parametrize("z_mode", ["once", "ema"])
def test_crd_state_over_steps(drawn, z_mode):
    """Three steps on one state: loss, both gradients (grad_output != 1), banks and Z against crd_loss; drawn
    contrasts are kdfuse.draw_contrast's for the counter of each step (advanced by the op)."""
    p = CRDProblem(seed=1)
    ms, mt = p.memory_s.clone(), p.memory_t.clone()
    params = torch.tensor([p.k, 0.07, -1, -1, 0.5])  # ContrastMemory's buffer: Z is params[2:4]
    philox = torch.tensor([1234, 5])
    r_ms, r_mt, r_zs, r_zt = p.memory_s.double(), p.memory_t.double(), None, None
    for step in range(3):
        u_s = (p.u_s + 0.1 * step).requires_grad_()
        u_t = (p.u_t - 0.1 * step).requires_grad_()
        if drawn:
            cidx = draw_contrast(p.idx, p.n_data, p.k, seed=1234, offset=5 + step)
            loss = ops.crd(u_s, u_t, ms, mt, p.idx, params[2:4], philox=philox, k=p.k, normalize_inputs=True,
                           z_mode=z_mode)
        else:
            cidx = p.contrast_idx
            loss = ops.crd(u_s, u_t, ms, mt, p.idx, params[2:4], contrast_idx=cidx, normalize_inputs=True,
                           z_mode=z_mode)
        gs, gt = torch.autograd.grad(loss, (u_s, u_t), torch.tensor(GRAD_OUTPUT))
        rs = u_s.detach().double().requires_grad_()
        rt = u_t.detach().double().requires_grad_()
        ref, r_ms, r_mt, r_zs, r_zt = crd_loss(rs, rt, r_ms, r_mt, p.idx, cidx, r_zs, r_zt, T=0.07, momentum=0.5,
                                               normalize_inputs=True, z_mode=z_mode)
        rgs, rgt = torch.autograd.grad(ref, (rs, rt), torch.tensor(GRAD_OUTPUT, dtype=torch.float64))
        assert_close(loss, ref, f"step {step} loss")
        assert_close(gs, rgs, f"step {step} grad_s")
        assert_close(gt, rgt, f"step {step} grad_t")
        assert_close(ms, r_ms, f"step {step} memory_s")
        assert_close(mt, r_mt, f"step {step} memory_t")
        assert_close(params[2:4], torch.stack([r_zs, r_zt]), f"step {step} Z")
        assert philox.tolist() == [1234, 5 + (step + 1 if drawn else 0)]
    assert params[[0, 1, 4]].tolist() == pytest.approx([p.k, 0.07, 0.5])  # untouched


def test_crd_only_student_gradient():
    p = CRDProblem(seed=2)
    v_s = l2_normalize(p.u_s).requires_grad_()
    v_t = l2_normalize(p.u_t)
    z = torch.tensor([-1.0, -1.0])
    loss = ops.crd(v_s, v_t, p.memory_s.clone(), p.memory_t.clone(), p.idx, z, contrast_idx=p.contrast_idx)
    loss.backward()
    rs = v_s.detach().double().requires_grad_()
    ref = crd_loss(rs, v_t.double(), p.memory_s.double(), p.memory_t.double(), p.idx, p.contrast_idx, None, None)[0]
    ref.backward()
    assert_close(loss, ref)
    assert_close(v_s.grad, rs.grad)


# ---- devices --------------------------------------------------------------------------------------------------

# the public function's names of each case's inputs
INPUT_NAMES = {"kd": ("y_s", "y_t"), "ab": ("source", "target"), "ofd": ("s", "t"),
               "vid": ("pred_mean", "target", "log_scale"), "fsp": ("s_bot", "s_top", "t_bot", "t_top"),
               "kdsvd": ("g_s[0]", "g_s[1]", "g_s[2]", "g_t[0]", "g_t[1]", "g_t[2]")}


def _crd_call():
    """(ops.crd with given contrasts, its positional tensor arguments, their names)."""
    p = CRDProblem(seed=3)
    args = [p.u_s, p.u_t, p.memory_s.clone(), p.memory_t.clone(), p.idx, torch.tensor([-1.0, -1.0])]
    return (lambda *a: ops.crd(*a, contrast_idx=p.contrast_idx, normalize_inputs=True), args,
            ("v_s", "v_t", "memory_s", "memory_t", "idx", "z"))


def _public_call(op):
    if op == "crd":
        return _crd_call()
    case = CASES[op]
    return case.call, case.inputs, INPUT_NAMES.get(op, ("f_s", "f_t"))


@pytest.mark.parametrize("op", sorted(name for name in ops.OPS
                                      if name not in ("attach_grads", "kdsvd_backward", "kdsvd_sum")))
def test_tensors_on_different_devices_raise(op):
    """One argument on the meta device, the others on the CPU: the function refuses the call, naming itself and the
    arguments' devices (the dispatcher would run the fake kernel and return uninitialised memory)."""
    call, inputs, names = _public_call(op)
    for i, name in enumerate(names):
        args = [x.clone() for x in inputs]
        args[i] = args[i].to("meta")
        with pytest.raises(ValueError, match=rf"kdfuse\.ops\.{op}: all tensor arguments must be on one device") as e:
            call(*args)
        assert f"{name} on meta" in str(e.value) and "on cpu" in str(e.value)


@pytest.mark.parametrize("op", sorted(ops.OPS))
def test_ops_called_directly_refuse_mixed_devices(op):
    """torch.ops.kdfuse.<op> itself (its fake kernel, which a meta argument selects) refuses the mixed call."""
    if op == "crd":
        p = CRDProblem(seed=4)
        args = (p.u_s, p.u_t, p.memory_s.clone(), p.memory_t.clone(), p.idx, p.contrast_idx, torch.tensor([-1.0, -1.0]),
                torch.tensor([7, 0]), p.k, 0.07, 0.5, "once", 0.99, True, True, True, True)
    elif op == "attach_grads":
        a, b = rand(3, 4, seed=66), rand(3, 4, seed=67)
        args = (torch.tensor(1.0), a, b, torch.ones_like(a), torch.ones_like(b))
    elif op == "kdsvd_backward":
        case = CASES["kdsvd"]
        args = case.op_args(*case.inputs) + (torch.ones(2), [True, False, True])
    elif op == "kdsvd_sum":
        case = CASES["kdsvd"]
        args = case.op_args(*case.inputs) + ([True, False, True],)
    else:
        case = next(CASES[name] for name in sorted(CASES) if CASES[name].op == op)
        args = case.op_args(*case.leaves())
    # (position, None) of a tensor argument, (position, index) of a tensor in a list argument
    slots = [(i, None) for i, x in enumerate(args) if isinstance(x, torch.Tensor) and not (op == "crd" and i == 7)]
    slots += [(i, j) for i, x in enumerate(args) if isinstance(x, list) for j, t in enumerate(x)
              if isinstance(t, torch.Tensor)]
    for i, j in slots:  # crd's philox (position 7) is a CPU tensor beside device ones by design
        moved = list(args)
        moved[i] = args[i].detach().to("meta") if j is None else [
            t.detach().to("meta") if m == j else t for m, t in enumerate(args[i])]
        with pytest.raises(ValueError, match=rf"torch\.ops\.kdfuse\.{op}: all tensor arguments must be on one device"):
            getattr(torch.ops.kdfuse, op)(*moved)


def test_meta_tensors_alone_give_shapes():
    """All arguments on meta: the fake kernel's shapes, no error (meta is a supported device for shape inference)."""
    loss = ops.kd(torch.empty(4, 10, device="meta"), torch.empty(4, 10, device="meta"))
    assert loss.device.type == "meta" and loss.shape == ()


# ---- double backward ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CASES) + ["crd"])
def test_double_backward_raises_naming_the_op(name):
    """create_graph=True gives the usual first-order gradients; differentiating them raises a kdfuse error naming the
    loss (they are not constants: treating them so would make a second-order result silently wrong)."""
    if name == "crd":
        call, inputs, _ = _crd_call()
        leaves = [x.requires_grad_(i < 2) for i, x in enumerate(inputs)]
        loss, op, wanted = call(*leaves), "crd", leaves[:2]
    else:
        case = CASES[name]
        leaves = case.leaves()
        loss, op, wanted = case.call(*leaves), case.op, [leaves[i] for i in case.grads]
        first = torch.autograd.grad(case.call(*leaves), wanted, torch.ones_like(loss))
    grads = torch.autograd.grad(loss, wanted, torch.ones_like(loss), create_graph=True)
    assert all(g.requires_grad for g in grads)
    if name != "crd":  # CRD's state moved on between the calls
        for g, f in zip(grads, first):
            assert torch.equal(g.detach(), f)
    with pytest.raises(RuntimeError, match=rf"kdfuse\.{op}: double backward is not supported"):
        sum(g.sum() for g in grads).backward()


def test_backward_without_create_graph_is_unchanged():
    """Without create_graph the gradients are plain tensors (no extra node)."""
    f_s = rand(3, 4, 5, 5, seed=68).requires_grad_()
    g, = torch.autograd.grad(ops.fitnet(f_s, rand(3, 4, 5, 5, seed=69)), f_s)
    assert not g.requires_grad and g.grad_fn is None


def test_nst_ranks():
    """N x C x L maps of equal L run as N x C x 1 x L (tested against the reference above); of different L they are
    refused (the seed would pool a 3-D tensor over its channels), as are other ranks and mixed ranks."""
    with pytest.raises(ValueError, match="same L"):
        ops.nst(rand(2, 3, 10, seed=70), rand(2, 5, 6, seed=71))
    with pytest.raises(ValueError, match="both be N x C x H x W or both N x C x L"):
        ops.nst(rand(2, 3, seed=72), rand(2, 3, seed=73))
    with pytest.raises(ValueError, match="both be N x C x H x W or both N x C x L"):
        ops.nst(rand(2, 3, 4, seed=74), rand(2, 3, 2, 2, seed=75))


# ---- KDSVD ----------------------------------------------------------------------------------------------------

def test_kdsvd_backward_opcheck():
    """The op of KDSVD's backward: the gradients of the maps that need one, an empty (0,) tensor for the others."""
    case = CASES["kdsvd"]
    args = case.op_args(*case.inputs) + (torch.tensor([-2.0, 1.0]), [True, False, True])
    torch.library.opcheck(torch.ops.kdfuse.kdsvd_backward.default, args)
    grads = torch.ops.kdfuse.kdsvd_backward(*args)
    assert [tuple(g.shape) for g in grads] == [tuple(args[0][0].shape), (0,), tuple(args[0][2].shape)]


def test_kdsvd_sum_is_one_call_with_the_sums_gradients():
    """reduction="sum": the sum of the pair losses, with the gradients from the forward's one library call (the
    backward scales them): equal to summing the per-pair losses; opcheck of torch.ops.kdfuse.kdsvd_sum; a map whose
    gradient was not computed raises at the backward; the double backward raises."""
    case = CASES["kdsvd"]
    g_s = [f.clone().requires_grad_() for f in case.inputs[:3]]
    g_t = case.inputs[3:]
    per_pair = ops.kdsvd(g_s, g_t, k=2).sum()
    want = torch.autograd.grad(per_pair * -1.7, g_s)
    total = ops.kdsvd(g_s, g_t, k=2, reduction="sum")
    assert total.shape == () and torch.equal(total, per_pair)
    for got, ref in zip(torch.autograd.grad(total * -1.7, g_s), want):  # scaled after the call, not inside: rounding
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-8)
    args = case.op_args(*case.inputs) + ([True, False, True],)
    torch.library.opcheck(torch.ops.kdfuse.kdsvd_sum.default, args)
    loss, grads = torch.ops.kdfuse.kdsvd_sum(*args)
    assert [tuple(g.shape) for g in grads] == [tuple(args[0][0].shape), (0,), tuple(args[0][2].shape)]
    direct = torch.ops.kdfuse.kdsvd_sum(g_s, g_t, 2, 1e-5, [True, False, True])[0]
    with pytest.raises(RuntimeError, match=r"need_grad_s\[1\]=False"):
        direct.backward()
    first = torch.autograd.grad(ops.kdsvd(g_s, g_t, k=2, reduction="sum"), g_s, create_graph=True)
    with pytest.raises(RuntimeError, match="kdfuse.kdsvd: double backward is not supported"):
        sum(g.sum() for g in first).backward()
    with pytest.raises(ValueError, match="reduction must be 'none' or 'sum'"):
        ops.kdsvd(g_s, g_t, reduction="mean")


def test_kdsvd_gradient_of_some_student_maps_only():
    """Only the student maps that require grad get one (here a channel slice of a wider tensor: the gradient lands in
    the slice); a teacher map that requires grad is a constant, with a warning; under no_grad the loss alone."""
    case = CASES["kdsvd"]
    g_s, g_t = case.inputs[:3], case.inputs[3:]
    wide = torch.cat([g_s[0], rand(3, 2, 3, 3, seed=78)], 1).requires_grad_()
    teacher = [t.clone().requires_grad_(i == 1) for i, t in enumerate(g_t)]
    ops._warned.discard(("kdsvd", "g_t[1]"))
    with pytest.warns(UserWarning, match=r"g_t\[1\] requires grad, but kdfuse treats it as a constant"):
        loss = ops.kdsvd([wide[:, :5], g_s[1], g_s[2]], teacher, k=2)
    go = torch.tensor([0.5, -1.5])
    loss.backward(go)
    assert all(t.grad is None for t in teacher)
    s64 = [f.double().requires_grad_(i == 0) for i, f in enumerate(g_s)]
    ref = torch.stack(kdsvd_loss(s64, [t.double() for t in g_t], 2, **KERNEL))
    ref_grad, = torch.autograd.grad(ref, s64[0], go.double())
    assert_close(loss, ref, "loss")
    assert_close(wide.grad[:, :5], ref_grad, "grad of g_s[0]")
    assert torch.equal(wide.grad[:, 5:], torch.zeros(3, 2, 3, 3))
    with torch.no_grad():
        assert not ops.kdsvd([wide[:, :5], g_s[1], g_s[2]], [t.detach() for t in g_t], k=2).requires_grad


def test_kdsvd_bad_inputs():
    """Refused by kdfuse.ops (lists, ranks) or by the library (the status in the message; NotImplementedError for
    what it does not support, ValueError for bad arguments): non-square maps and maps whose Gram would exceed
    128 x 128 (not supported), student and teacher channels that differ, k above a teacher map's C or H*W."""
    f = [rand(2, 4, 3, 3, seed=79), rand(2, 6, 2, 2, seed=80)]
    with pytest.raises(ValueError, match="same length >= 2"):
        ops.kdsvd(f[:1], f[:1])
    with pytest.raises(ValueError, match="same length >= 2"):
        ops.kdsvd(f, f[:1])
    with pytest.raises(TypeError, match="lists of maps"):
        ops.kdsvd(f[0], f[0])
    with pytest.raises(ValueError, match=r"g_t\[1\] must be an N x C x H x W map"):
        ops.kdsvd(f, [f[0], f[1].flatten(2)])
    for g_s, g_t, k, error, status in [
        ([f[0], rand(2, 6, 2, 3, seed=81)], [f[0], rand(2, 6, 2, 3, seed=82)], 1, NotImplementedError,
         "KDF_STATUS_NOT_SUPPORTED"),
        ([f[0], rand(2, 130, 12, 12, seed=83)], [f[0], rand(2, 130, 12, 12, seed=84)], 1, NotImplementedError,
         "KDF_STATUS_NOT_SUPPORTED"),
        (f, [f[0], rand(2, 5, 2, 2, seed=85)], 1, ValueError, "KDF_STATUS_SHAPE_MISMATCH"),
        (f, f, 5, ValueError, "KDF_STATUS_INVALID_VALUE"),  # k > the 4 channels of g_t[0] (and the 4 pixels of g_t[1])
    ]:
        with pytest.raises(error, match=rf"torch\.ops\.kdfuse\.kdsvd: {status}: kdfKDSVD"):
            ops.kdsvd(g_s, g_t, k=k)


def _aten_ops_of(call):
    """The aten ops `call` dispatches (the profiler records the ops the C++ kernels call too)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        call()
    return {event.name for event in prof.events()}


COPIES = {"aten::clone", "aten::contiguous", "aten::copy_"}


def test_strided_inputs_without_a_gradient_are_read_in_place():
    """An input the call computes no gradient for (a teacher) that is a slice of a larger tensor is read with its
    strides, no copy; the values equal those of a contiguous copy. One the C API cannot describe (channels_last
    planes, transposed rows) is copied. Inputs that get a gradient are made contiguous (their gradient's layout)."""
    f_s = rand(4, 6, 5, 5, seed=90).requires_grad_()
    wide = rand(4, 12, 5, 5, seed=91)
    e_s = rand(6, 8, seed=92).requires_grad_()
    e_wide = rand(6, 20, seed=93)
    y_s = rand(5, 10, seed=94).requires_grad_()
    y_wide = rand(5, 16, seed=95)
    maps = [
        ("fitnet", lambda t: torch.ops.kdfuse.fitnet(f_s, t, True)),
        ("at", lambda t: torch.ops.kdfuse.at(f_s, t, 2.0, True)),
        ("ft", lambda t: torch.ops.kdfuse.ft(f_s, t, 2.0, 1.0, True)),
        ("ab", lambda t: torch.ops.kdfuse.ab(f_s, t, 1.0, True, True)),
        ("ofd", lambda t: torch.ops.kdfuse.ofd(f_s, t, None, "seed", True)),
        ("nst", lambda t: torch.ops.kdfuse.nst(f_s, t, True, True)),
        ("vid", lambda t: torch.ops.kdfuse.vid(f_s, t, torch.zeros(6), 1e-5, True, True)),
        ("fsp", lambda t: torch.ops.kdfuse.fsp(f_s, f_s, t, t, True, True)),
    ]
    rows = [
        ("sp", lambda t: torch.ops.kdfuse.sp(e_s, t, True)),
        ("pkt", lambda t: torch.ops.kdfuse.pkt(e_s, t, True)),
        ("rkd", lambda t: torch.ops.kdfuse.rkd(e_s, t, 25.0, 50.0, True)),
        ("cc", lambda t: torch.ops.kdfuse.cc(e_s, t, "seed", True, False)),
    ]
    cases = ([(name, call, wide[:, 3:9], wide[:, 3:9].contiguous(memory_format=torch.channels_last))
              for name, call in maps]
             + [(name, call, e_wide[:, 4:12], e_wide[:, 4:12].t().contiguous().t()) for name, call in rows]
             + [("kd", lambda t: torch.ops.kdfuse.kd(y_s, t, None, 4.0, "batchmean", True, False), y_wide[:, 2:12],
                 y_wide[:, 2:12].t().contiguous().t())])
    for name, call, sliced, uncopyable in cases:
        assert not sliced.is_contiguous() and not uncopyable.is_contiguous()
        want = call(sliced.contiguous())
        assert not COPIES & _aten_ops_of(lambda: call(sliced)), name
        for got, ref in zip(call(sliced), want):
            assert torch.equal(got, ref), name
        assert COPIES & _aten_ops_of(lambda: call(uncopyable)), name
        for got, ref in zip(call(uncopyable), want):
            assert torch.equal(got, ref), name
