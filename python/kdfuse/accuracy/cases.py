"""The accuracy cases: for every loss, the layer pairs RepDistiller uses on each teacher/student pair of
kdfuse_ref.models.PAIRS, and adversarial rows for the relational / Gram losses.

A case is (loss, name, build); build() returns a Problem:
  inputs  name -> tensor (float32 values, or int64 indices), the loss's inputs as the training step sees them;
  wrt     the input names that get gradients (the student side), in the order of the gradient rows;
  ref     ref(x) -> 0-dim loss, the kdfuse_ref function(s) on the dict x, in x's dtype (float64 or float32);
  lib     lib(x) -> {"loss": ..., "grad_<name>": ...}, the kdfuse binding on the float32 inputs.
Layer losses that RepDistiller sums over several layer pairs (AT, NST, AB, OFD, VID, FSP) are one case with one
gradient per layer; every weight is RepDistiller's relative one (AB's 2^(i-L+1)), the overall factor 1.
"""
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import torch
import torch.nn.functional as F

from . import inputs as I

T_KD = 4.0
KDSVD_GAP_RTOL = 1e-5


@dataclass
class Problem:
    inputs: Dict[str, torch.Tensor]
    wrt: Tuple[str, ...]
    ref: Callable
    lib: Callable


@dataclass
class Case:
    loss: str
    name: str
    build: Callable[[], Problem]

    @property
    def id(self):
        return f"{self.loss}[{self.name}]"


def _pair_name(teacher, student):
    return f"{teacher}>{student}"


def _seed(*parts):
    """A stable seed from strings (the loss-side modules of one case)."""
    h = 0
    for p in parts:
        for ch in str(p):
            h = (h * 131 + ord(ch)) % 1000003
    return h


def _zeros_like(t):
    return torch.zeros_like(t, memory_format=torch.contiguous_format)


def _layers(fs, ft, **extra):
    """The inputs of a layered problem: s1.., t1.. (and extra per-layer lists, e.g. margin=[..] -> margin1..)."""
    x = {}
    for k, (s, t) in enumerate(zip(fs, ft)):
        x[f"s{k + 1}"] = s.contiguous()
        x[f"t{k + 1}"] = t.contiguous()
    for key, values in extra.items():
        for k, v in enumerate(values):
            x[f"{key}{k + 1}"] = v.contiguous()
    return x


def _layered(fs, ft, ref_one, lib_one, weights=None, **extra):
    """A problem summing one loss over layer pairs: ref = sum_k w_k ref_one(x, k), the lib accumulating
    lib_one(x, k, w_k, out=(loss, grad_k)) into one loss and one gradient per student layer s1, s2, ..."""
    n = len(fs)
    weights = [1.0] * n if weights is None else weights
    x = _layers(fs, ft, **extra)
    wrt = tuple(f"s{k + 1}" for k in range(n))

    def ref(x):
        return sum(w * ref_one(x, k) for k, w in enumerate(weights))

    def lib(x):
        loss = torch.zeros((), device=x["s1"].device)
        out = {"loss": loss}
        for k, w in enumerate(weights):
            g = _zeros_like(x[f"s{k + 1}"])
            lib_one(x, k, w, (loss, g))
            out[f"grad_s{k + 1}"] = g
        return out

    return Problem(x, wrt, ref, lib)


def _st(x, k):
    return x[f"s{k + 1}"], x[f"t{k + 1}"]


def _two(s, t, ref_fn, lib_fn, grad_t=False):
    """A problem on one student/teacher pair: ref_fn(s, t) and lib_fn(s, t) -> (loss, grad_s[, grad_t])."""
    x = {"s": s.contiguous(), "t": t.contiguous()}
    wrt = ("s", "t") if grad_t else ("s",)

    def ref(x):
        return ref_fn(x["s"], x["t"])

    def lib(x):
        res = lib_fn(x["s"], x["t"])
        out = {"loss": res[0], "grad_s": res[1]}
        if grad_t:
            out["grad_t"] = res[2]
        return out

    return Problem(x, wrt, ref, lib)


# ---- the losses ---------------------------------------------------------------------------------------------

def kd(teacher, student):
    from kdfuse import kd as lib_kd
    from kdfuse_ref.kd import kd_loss
    return _two(I.features(student)[2], I.features(teacher)[2], lambda s, t: kd_loss(s, t, T_KD),
                lambda s, t: lib_kd(s, t, T=T_KD)[:2])


def fitnet(teacher, student):
    """FitNet: hint layer 2, the student's map through ConvReg (with ReLU) to the teacher's shape."""
    from kdfuse import fitnet as lib_fitnet
    from kdfuse_ref.fitnet import fitnet_loss
    f_s, f_t = I.maps(student)[2], I.maps(teacher)[2]
    s = I.conv_reg(f_s, f_t.shape, _seed("fitnet", teacher, student))
    return _two(s, f_t, fitnet_loss, lambda s, t: lib_fitnet(s, t))


def at(teacher, student):
    from kdfuse import at as lib_at
    from kdfuse_ref.at import at_loss
    fs, ft = I.maps(student)[1:-1], I.maps(teacher)[1:-1]
    return _layered(fs, ft, lambda x, k: at_loss(*_st(x, k), 2),
                    lambda x, k, w, out: lib_at(*_st(x, k), p=2.0, weight=w, accumulate=True, out=out))


def nst(teacher, student):
    from kdfuse import nst as lib_nst
    from kdfuse_ref.nst import nst_loss
    fs, ft = I.maps(student, n=I.NST_BATCH)[1:-1], I.maps(teacher, n=I.NST_BATCH)[1:-1]
    return _layered(fs, ft, lambda x, k: nst_loss(*_st(x, k), full_loss=True),
                    lambda x, k, w, out: lib_nst(*_st(x, k), weight=w, full_loss=True, accumulate=True, out=out))


def ft(teacher, student):
    """FT: the penultimate maps (feat[-2]) through the translator (student) and paraphraser (teacher), both
    reduced to 1x1 conv + BN + LeakyReLU, to half the teacher's channels (RepDistiller's factor rate 0.5)."""
    from kdfuse import ft as lib_ft
    from kdfuse_ref.ft import ft_loss
    f_s, f_t = I.maps(student)[-2], I.maps(teacher)[-2]
    c = f_t.shape[1] // 2
    s = I.factor_module(f_s, c, _seed("ft-translator", teacher, student))
    t = I.factor_module(f_t, c, _seed("ft-paraphraser", teacher, student))
    return _two(s, t, lambda s, t: ft_loss(s, t, 2, 1), lambda s, t: lib_ft(s, t, p1=2.0, p2=1.0))


def ab(teacher, student):
    """AB: pre-ReLU feat[1:-1]; the student's through RepDistiller's Connector (identity for equal shapes, else
    ConvReg without ReLU); layer weights 2^(i - L + 1)."""
    from kdfuse import ab as lib_ab
    from kdfuse_ref.ab import ab_loss
    fs, ft = I.maps(student, preact=True)[1:-1], I.maps(teacher, preact=True)[1:-1]
    fs = [s if s.shape == t.shape else I.conv_reg(s, t.shape, _seed("ab", teacher, student, k), relu=False)
          for k, (s, t) in enumerate(zip(fs, ft))]
    n = len(fs)
    weights = [2.0 ** (i - n + 1) for i in range(n)]
    return _layered(fs, ft, lambda x, k: ab_loss(*_st(x, k), 1.0),
                    lambda x, k, w, out: lib_ab(*_st(x, k), margin=1.0, weight=w, seed_scaling=True, accumulate=True,
                                                out=out), weights)


def _ofd_layers(teacher, student):
    fs, ft = I.maps(student, preact=True)[1:4], I.maps(teacher, preact=True)[1:4]
    return [I.conv_reg(s, t.shape, _seed("ofd", teacher, student, k), relu=False)
            for k, (s, t) in enumerate(zip(fs, ft))], ft


def ofd(teacher, student):
    """OFD, the seed's variant: pre-ReLU f1..f3, the student's through a connector (ConvReg without ReLU), the
    margin from the teacher batch."""
    from kdfuse import ofd as lib_ofd
    from kdfuse_ref.ofd import ofd_loss
    fs, ft = _ofd_layers(teacher, student)
    return _layered(fs, ft, lambda x, k: ofd_loss(*_st(x, k), None, "seed"),
                    lambda x, k, w, out: lib_ofd(*_st(x, k), variant="seed", weight=w, accumulate=True, out=out))


def ofd_original(teacher, student):
    """OFD, the original variant: as `ofd`, the margin from the teacher's BN before each ReLU (bn_margin), an
    input rounded to float32 (float64 in the reference)."""
    from kdfuse import ofd as lib_ofd
    from kdfuse_ref.ofd import bn_margin, ofd_loss
    fs, ft = _ofd_layers(teacher, student)
    bns = I.network(teacher).get_bn_before_relu()
    margins = [bn_margin(bn.weight.detach(), bn.bias.detach()).float() for bn in bns]
    return _layered(fs, ft, lambda x, k: ofd_loss(*_st(x, k), x[f"margin{k + 1}"], "original"),
                    lambda x, k, w, out: lib_ofd(*_st(x, k), margin=x[f"margin{k + 1}"], variant="original", weight=w,
                                                 accumulate=True, out=out), margin=margins)


def vid(teacher, student):
    """VID: feat[1:-1]; the student's map (pooled to the teacher's size when larger) through the regressor;
    log_scale per layer (gradients for pred_mean and log_scale)."""
    from kdfuse import vid as lib_vid
    from kdfuse_ref.vid import vid_loss
    fs, ft = I.maps(student)[1:-1], I.maps(teacher)[1:-1]
    x, wrt = {}, []
    for k, (s, t) in enumerate(zip(fs, ft)):
        if s.shape[2] > t.shape[2]:
            s = F.adaptive_avg_pool2d(s, t.shape[2:])
        x[f"pred{k + 1}"] = I.vid_regressor(s, t.shape[1], _seed("vid", teacher, student, k)).contiguous()
        x[f"target{k + 1}"] = t.contiguous()
        x[f"log_scale{k + 1}"] = I.vid_log_scale(t.shape[1], _seed("vid-ls", teacher, student, k))
        wrt += [f"pred{k + 1}", f"log_scale{k + 1}"]
    n = len(fs)

    def ref(x):
        return sum(vid_loss(x[f"pred{k + 1}"], x[f"target{k + 1}"], x[f"log_scale{k + 1}"]) for k in range(n))

    def lib(x):
        loss = torch.zeros((), device=x["pred1"].device)
        out = {"loss": loss}
        for k in range(n):
            gp, gl = _zeros_like(x[f"pred{k + 1}"]), _zeros_like(x[f"log_scale{k + 1}"])
            lib_vid(x[f"pred{k + 1}"], x[f"target{k + 1}"], x[f"log_scale{k + 1}"], accumulate=True, out=(loss, gp, gl))
            out[f"grad_pred{k + 1}"], out[f"grad_log_scale{k + 1}"] = gp, gl
        return out

    return Problem(x, tuple(wrt), ref, lib)


def fsp(teacher, student):
    """FSP: feat[:-1] of both networks (equal channel lists), the consecutive pairs summed."""
    from kdfuse import fsp_chain
    from kdfuse_ref.fsp import fsp_loss
    fs, ft = I.maps(student)[:-1], I.maps(teacher)[:-1]
    n = len(fs)
    x = _layers(fs, ft)
    wrt = tuple(f"s{k + 1}" for k in range(n))

    def ref(x):
        return sum(fsp_loss([x[f"s{k + 1}"] for k in range(n)], [x[f"t{k + 1}"] for k in range(n)]))

    def lib(x):
        loss, grads = fsp_chain([x[f"s{k + 1}"] for k in range(n)], [x[f"t{k + 1}"] for k in range(n)])
        out = {"loss": loss}
        out.update({f"grad_s{k + 1}": g for k, g in enumerate(grads)})
        return out

    return Problem(x, wrt, ref, lib)


def kdsvd(teacher, student):
    """KDSVD: feat[1:-1] of both networks (equal channel lists), the pair losses summed (train_student.py sums the
    list), k = 1. Both the reference and the fp32 baseline take the definition the kernel computes: canonical
    teacher signs and the per-vector ("stable") SVD gradient, gaps <= 1e-5 lambda_0 dropped (torch's autograd SVD
    gradient is NaN wherever a map has two dead channels, which real post-ReLU maps have)."""
    from kdfuse.binding.kdsvd import kdsvd as lib_kdsvd
    from kdfuse_ref.kdsvd import kdsvd_loss
    fs, ft = I.maps(student)[1:-1], I.maps(teacher)[1:-1]
    n = len(fs)
    x = _layers(fs, ft)
    wrt = tuple(f"s{k + 1}" for k in range(n))

    def ref(x):
        return sum(kdsvd_loss([x[f"s{k + 1}"] for k in range(n)], [x[f"t{k + 1}"] for k in range(n)], sign="canonical",
                              svd_grad="stable", gap_rtol=KDSVD_GAP_RTOL, spatial="hw", nonfinite="zero"))

    def lib(x):
        losses, grads = lib_kdsvd([x[f"s{k + 1}"] for k in range(n)], [x[f"t{k + 1}"] for k in range(n)],
                                  gap_rtol=KDSVD_GAP_RTOL)
        out = {"loss": losses.sum()}
        out.update({f"grad_s{k + 1}": g for k, g in enumerate(grads)})
        return out

    return Problem(x, wrt, ref, lib)


def _sp_problem(s, t):
    from kdfuse import sp as lib_sp
    from kdfuse_ref.sp import sp_loss
    return _two(s, t, sp_loss, lambda s, t: lib_sp(s, t))


def sp(teacher, student):
    """SP on feat[-2], the last feature map (as RepDistiller), flattened."""
    return _sp_problem(I.features(student)[0][-2], I.features(teacher)[0][-2])


def _cc_problem(s, t, variant):
    from kdfuse import cc as lib_cc
    from kdfuse_ref.cc import cc_loss
    ship = variant == "repdistiller"
    return _two(s, t, lambda s, t: cc_loss(s, t, variant),
                lambda s, t: lib_cc(s, t, variant=variant, want_grad_t=ship), grad_t=ship)


def _cc_embeds(teacher, student):
    s = I.linear_embed(I.features(student)[0][-1], I.EMBED_DIM, _seed("cc-s", teacher, student))
    t = I.linear_embed(I.features(teacher)[0][-1], I.EMBED_DIM, _seed("cc-t", teacher, student))
    return s, t


def cc_seed(teacher, student):
    """CC (the seed's Gram variant) on the 128-d LinearEmbed outputs of the pooled features."""
    return _cc_problem(*_cc_embeds(teacher, student), "seed")


def cc_repdistiller(teacher, student):
    """CC (RepDistiller's shipped variant) on the same embeddings; both embeddings get gradients."""
    return _cc_problem(*_cc_embeds(teacher, student), "repdistiller")


def _rkd_problem(s, t):
    from kdfuse import rkd as lib_rkd
    from kdfuse_ref.rkd import rkd_loss
    # empty_mean / degenerate_grad: kdfRKD's choices; identical to the seed for N >= 2 distinct rows
    return _two(s, t, lambda s, t: rkd_loss(s, t, 25, 50, empty_mean="zero", degenerate_grad="zero"),
                lambda s, t: lib_rkd(s, t, w_d=25.0, w_a=50.0))


def rkd(teacher, student):
    """RKD on the pooled features (feat[-1]), w_d = 25, w_a = 50."""
    return _rkd_problem(I.features(student)[0][-1], I.features(teacher)[0][-1])


def _pkt_problem(s, t):
    from kdfuse import pkt as lib_pkt
    from kdfuse_ref.pkt import pkt_loss
    return _two(s, t, pkt_loss, lambda s, t: lib_pkt(s, t))


def pkt(teacher, student):
    """PKT on the pooled features (feat[-1])."""
    return _pkt_problem(I.features(student)[0][-1], I.features(teacher)[0][-1])


def _nst_problem(s, t):
    from kdfuse import nst as lib_nst
    from kdfuse_ref.nst import nst_loss
    return _two(s, t, lambda s, t: nst_loss(s, t, full_loss=True), lambda s, t: lib_nst(s, t, full_loss=True))


def crd(teacher, student):
    """CRD: the pooled features through a seeded Embed linear layer (128-d, raw: normalize_inputs=True, the
    normalisation inside the loss as kdfuse.nn does), banks of the normalised embeddings of mirrored images
    (n_data = 128, the batch at random rows idx), K = 1023 uniform negatives, T = 0.07, Z set from this batch."""
    from kdfuse import crd as lib_crd
    from kdfuse_ref.crd import crd_loss
    seed = _seed("crd", teacher, student)
    s_batch, s_bank, idx = I.crd_dataset(student, seed)
    t_batch, t_bank, _ = I.crd_dataset(teacher, seed)
    ws, wt = _seed("crd-s", teacher, student), _seed("crd-t", teacher, student)
    v_s, v_t = I.linear_embed(s_batch, I.EMBED_DIM, ws), I.linear_embed(t_batch, I.EMBED_DIM, wt)
    m_s = I.l2_rows(I.linear_embed(s_bank, I.EMBED_DIM, ws))
    m_t = I.l2_rows(I.linear_embed(t_bank, I.EMBED_DIM, wt))
    g = torch.Generator().manual_seed(seed)
    cidx = torch.randint(0, I.CRD_DATA, (I.BATCH, I.CRD_K + 1), generator=g)
    cidx[:, 0] = idx
    x = {"v_s": v_s.contiguous(), "v_t": v_t.contiguous(), "memory_s": m_s.contiguous(), "memory_t": m_t.contiguous(),
         "idx": idx, "contrast_idx": cidx}

    def ref(x):
        return crd_loss(x["v_s"], x["v_t"], x["memory_s"], x["memory_t"], x["idx"], x["contrast_idx"], None, None,
                        T=0.07, momentum=0.5, n_data=I.CRD_DATA, normalize_inputs=True, z_mode="once")[0]

    def lib(x):
        z = torch.full((2,), -1.0, device=x["v_s"].device)
        loss, gs, gt = lib_crd(x["v_s"], x["v_t"], x["memory_s"].clone(), x["memory_t"].clone(), x["idx"],
                               x["contrast_idx"], z, temperature=0.07, momentum=0.5, z_mode="once",
                               normalize_inputs=True)
        return {"loss": loss, "grad_v_s": gs, "grad_v_t": gt}

    return Problem(x, ("v_s", "v_t"), ref, lib)


# ---- adversarial ----------------------------------------------------------------------------------------------

ADV_N, ADV_D, ADV_CC_D = 32, 256, 128   # rows, embedding size (SP, RKD, PKT), CC's embedding size
ADV_SMALL = 8, 64                        # PKT's small batch ("pkt_small"), where 1 + cos cancels the most
ADV_NST = (8, 32, 64, 8, 8)             # NST: N, C_s, C_t, H, W (the channel planes are the adversarial rows)


def _adv_pair(kind, d_s, d_t, loss, n=ADV_N):
    s = I.adversarial_rows(kind, n, d_s, _seed("adv-s", loss, kind))
    t = I.adversarial_rows(kind, n, d_t, _seed("adv-t", loss, kind))
    return s, t


def adversarial(loss, kind):
    """The adversarial problem of `loss` ("sp", "cc_seed", "cc_repdistiller", "rkd", "pkt", "nst"): student and
    teacher rows both of `kind` (independent draws)."""
    if loss == "nst":
        n, c_s, c_t, h, w = ADV_NST
        s = I.adversarial_maps(kind, n, c_s, h, w, _seed("adv-s", loss, kind))
        t = I.adversarial_maps(kind, n, c_t, h, w, _seed("adv-t", loss, kind))
        return _nst_problem(s, t)
    if loss in ("cc_seed", "cc_repdistiller"):
        s, t = _adv_pair(kind, ADV_CC_D, ADV_CC_D, loss)
        return _cc_problem(s, t, loss[3:])
    if loss == "pkt_small":
        n, d = ADV_SMALL
        return _pkt_problem(*_adv_pair(kind, d, d, loss, n))
    s, t = _adv_pair(kind, ADV_D, ADV_D, loss)
    return {"sp": _sp_problem, "rkd": _rkd_problem, "pkt": _pkt_problem}[loss](s, t)


def _adv_name(loss, kind):
    if loss == "nst":
        n, c_s, c_t, h, w = ADV_NST
        return f"{kind} {n}x{c_s}x{h}x{w} vs {n}x{c_t}x{h}x{w}"
    if loss == "pkt_small":
        return f"{kind} {ADV_SMALL[0]}x{ADV_SMALL[1]}"
    d = ADV_CC_D if loss.startswith("cc") else ADV_D
    return f"{kind} {ADV_N}x{d}"


# ---- the list -------------------------------------------------------------------------------------------------

def _all_pairs():
    from kdfuse_ref.models import PAIRS
    return PAIRS


# loss label -> (builder, which pairs: None = all); FSP and KDSVD need equal channel lists (the seeds' checks)
REAL = [
    ("kd", kd, None),
    ("fitnet", fitnet, None),
    ("at", at, None),
    ("sp", sp, None),
    ("cc", cc_seed, None),
    ("cc", cc_repdistiller, None),
    ("vid", vid, None),
    ("rkd", rkd, None),
    ("pkt", pkt, None),
    ("ab", ab, None),
    ("ft", ft, None),
    ("fsp", fsp, (("resnet32x4", "resnet8x4"), ("wrn_40_2", "wrn_16_2"), ("vgg13", "vgg8"))),
    ("nst", nst, None),
    ("kdsvd", kdsvd, (("resnet32x4", "resnet8x4"), ("wrn_40_2", "wrn_16_2"), ("vgg13", "vgg8"))),
    ("crd", crd, None),
    ("ofd", ofd, None),
    ("ofd", ofd_original, None),
]
VARIANT = {cc_seed: "seed", cc_repdistiller: "repdistiller", ofd: "seed", ofd_original: "original"}
ADVERSARIAL_LOSSES = ("sp", "cc_seed", "cc_repdistiller", "rkd", "pkt", "pkt_small", "nst")


def all_cases():
    """Every case, in the order of the table: per loss, the real-feature pairs, then the adversarial rows."""
    cases = []
    for label, builder, pairs in REAL:
        for teacher, student in pairs or _all_pairs():
            name = _pair_name(teacher, student) + (f" {VARIANT[builder]}" if builder in VARIANT else "")
            cases.append(Case(label, name, lambda b=builder, t=teacher, s=student: b(t, s)))
        if label == "cc" and builder is cc_seed:
            continue
        adv_keys = [k for k in ADVERSARIAL_LOSSES if k == label or k.startswith(label + "_")]
        for key in adv_keys:
            for kind in I.ADVERSARIAL:
                name = _adv_name(key, kind) + (f" {key[3:]}" if key.startswith("cc") else "")
                cases.append(Case(label, name, lambda k=key, kind=kind: adversarial(k, kind)))
    return cases
