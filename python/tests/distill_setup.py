"""A toy RepDistiller setup shared by test_compile.py and test_distill_loop.py: tiny conv nets with RepDistiller's
forward(x, is_feat, preact) interface, every distillation method's criterion and trainable heads, and one
training-step loss, written once against a "zoo" (kdfuse.nn or the reference modules) so that the two runs
differ only in their imports, as a RepDistiller script would."""
import functools
import types

import torch
import torch.nn as nn
import torch.nn.functional as F

import kdfuse.nn as kdfuse_zoo
from kdfuse_ref import ab, at, cc, crd, fitnet, fsp, ft, kd, kdsvd, nst, ofd, pkt, rkd, sp, vid

# the reference modules under the names a RepDistiller script imports; KDSVD with the definition kdfuse computes (the
# seed's teacher signs are the SVD library's, and its SVD gradient is NaN at repeated singular values)
reference_zoo = types.SimpleNamespace(
    DistillKL=kd.DistillKL, HintLoss=fitnet.HintLoss, Attention=at.Attention, Similarity=sp.Similarity,
    Correlation=cc.Correlation, VIDLoss=vid.VIDLoss, RKDLoss=rkd.RKDLoss, PKT=pkt.PKT, ABLoss=ab.ABLoss,
    FactorTransfer=ft.FactorTransfer, FSP=fsp.FSP, NSTLoss=nst.NSTLoss, CRDLoss=crd.CRDLoss, OFD=ofd.OFD,
    KDSVD=functools.partial(kdsvd.KDSVD, sign="canonical", svd_grad="stable", gap_rtol=1e-5, spatial="hw",
                            nonfinite="zero"))

METHODS = ("kd", "hint", "attention", "similarity", "correlation", "vid", "rkd", "pkt", "abound", "factor", "fsp",
           "nst", "crd", "ofd", "kdsvd")
# RepDistiller's beta (weight of the method's loss), scaled down where the toy nets would otherwise blow up
BETA = {"kd": 0.0, "hint": 10.0, "attention": 100.0, "similarity": 300.0, "correlation": 0.02, "vid": 1.0, "rkd": 0.1,
        "pkt": 3000.0, "abound": 1.0, "factor": 20.0, "fsp": 5.0, "nst": 5.0, "crd": 0.8, "ofd": 0.1, "kdsvd": 1.0}

N, N_DATA, CLASSES, NCE_K = 8, 32, 10, 12


class TinyNet(nn.Module):
    """conv 8x8 -> stride-2 conv 4x4 -> stride-2 conv 2x2 -> pool -> fc. forward(x, is_feat, preact) returns
    ([f0, f1, f2, pooled], logits) like RepDistiller's models; preact=True gives the pre-ReLU maps."""

    def __init__(self, widths):
        super().__init__()
        w0, w1, w2 = widths
        self.conv0 = nn.Conv2d(3, w0, 3, padding=1)
        self.conv1 = nn.Conv2d(w0, w1, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(w1, w2, 3, stride=2, padding=1)
        self.fc = nn.Linear(w2, CLASSES)

    def forward(self, x, is_feat=False, preact=False):
        p0 = self.conv0(x)
        p1 = self.conv1(F.relu(p0))
        p2 = self.conv2(F.relu(p1))
        f0, f1, f2 = F.relu(p0), F.relu(p1), F.relu(p2)
        pooled = f2.mean((2, 3))
        logits = self.fc(pooled)
        if not is_feat:
            return logits
        return ([p0, p1, p2, pooled] if preact else [f0, f1, f2, pooled]), logits


S_WIDTHS, T_WIDTHS = (4, 8, 8), (6, 8, 12)


def make_nets(seed=0):
    torch.manual_seed(seed)
    return TinyNet(S_WIDTHS), TinyNet(T_WIDTHS)


def make_heads(zoo, method):
    """(criterion, trainable heads as an nn.ModuleDict) of a method, built from `zoo`."""
    heads = nn.ModuleDict()
    if method == "kd":
        crit = nn.Identity()  # DistillKL is in every method's loss (train_step)
    elif method == "hint":
        heads["regress"] = nn.Conv2d(S_WIDTHS[1], T_WIDTHS[1], 1)
        crit = zoo.HintLoss()
    elif method == "attention":
        crit = zoo.Attention()
    elif method == "similarity":
        crit = zoo.Similarity()
    elif method == "correlation":
        heads["embed_s"] = nn.Linear(S_WIDTHS[2], 8)
        heads["embed_t"] = nn.Linear(T_WIDTHS[2], 8)
        crit = zoo.Correlation("repdistiller")
    elif method == "vid":
        crit = nn.ModuleList([zoo.VIDLoss(s, s, t) for s, t in zip(S_WIDTHS[:2], T_WIDTHS[:2])])
    elif method == "rkd":
        crit = zoo.RKDLoss()
    elif method == "pkt":
        crit = zoo.PKT()
    elif method == "abound":
        heads["connectors"] = nn.ModuleList([nn.Conv2d(s, t, 1) for s, t in zip(S_WIDTHS, T_WIDTHS)])
        crit = zoo.ABLoss(3)
    elif method == "factor":
        heads["translator"] = nn.Conv2d(S_WIDTHS[2], 4, 1)
        heads["paraphraser"] = nn.Conv2d(T_WIDTHS[2], 4, 1)  # RepDistiller: trained in an init phase, then fixed
        crit = zoo.FactorTransfer()
    elif method == "fsp":
        shapes = [(N, S_WIDTHS[1], 4, 4), (N, S_WIDTHS[2], 2, 2)]
        crit = zoo.FSP(shapes, [(N, T_WIDTHS[1], 4, 4), (N, S_WIDTHS[2], 2, 2)])
    elif method == "nst":
        crit = zoo.NSTLoss()
    elif method == "crd":
        opt = types.SimpleNamespace(s_dim=S_WIDTHS[2], t_dim=T_WIDTHS[2], feat_dim=8, nce_k=NCE_K, nce_t=0.07,
                                    nce_m=0.5, n_data=N_DATA, nce_seed=1)
        crit = zoo.CRDLoss(opt)
    elif method == "ofd":
        crit = zoo.OFD(S_WIDTHS[1], T_WIDTHS[1])
    elif method == "kdsvd":
        crit = zoo.KDSVD()
    else:
        raise ValueError(method)
    return crit, heads


def method_loss(method, crit, heads, feat_s, feat_t, logit_s, logit_t, idx=None, contrast_idx=None):
    """The method's distillation loss (RepDistiller's loss_kd) from student / teacher features."""
    feat_t = [f.detach() for f in feat_t]
    if method == "hint":
        return crit(heads["regress"](feat_s[1]), feat_t[1])
    if method in ("attention", "nst"):
        return sum(crit(feat_s[:-1], feat_t[:-1]))
    if method == "similarity":
        return sum(crit([feat_s[-2]], [feat_t[-2]]))
    if method == "correlation":
        return crit(heads["embed_s"](feat_s[-1]), heads["embed_t"](feat_t[-1]))
    if method == "vid":
        return sum(c(f_s, f_t) for c, f_s, f_t in zip(crit, feat_s[:2], feat_t[:2]))
    if method in ("rkd", "pkt"):
        return crit(feat_s[-1], feat_t[-1])
    if method == "abound":
        return sum(crit([c(f) for c, f in zip(heads["connectors"], feat_s[:3])], feat_t[:3]))
    if method == "factor":
        with torch.no_grad():
            factor_t = heads["paraphraser"](feat_t[2])
        return crit(heads["translator"](feat_s[2]), factor_t)
    if method == "fsp":
        return sum(crit(feat_s[1:3], [feat_t[1], feat_t[2][:, :S_WIDTHS[2]]]))
    if method == "crd":
        return crit(feat_s[-1], feat_t[-1], idx, contrast_idx).sum()
    if method == "ofd":
        return crit(feat_s[1], feat_t[1])
    if method == "kdsvd":
        # feat[:2], the teacher's first map cut to the student's channels. (On feat[1:-1], as RepDistiller, the
        # untrained teacher's top vector of the 8 x 2 x 2 map has no clear partner among the student's four vectors,
        # |cos| margins ~1e-3: the two runs' selections part after a few steps and the curves by 1e-2.)
        return sum(crit(feat_s[:2], [feat_t[0][:, :S_WIDTHS[0]], feat_t[1]]))
    raise ValueError(method)


def batches(steps, seed=1):
    """Random images, labels, dataset indices and CRD contrast indices, from one generator."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        x = torch.randn(N, 3, 8, 8, generator=g)
        y = torch.randint(0, CLASSES, (N,), generator=g)
        idx = torch.randperm(N_DATA, generator=g)[:N]
        cidx = torch.randint(0, N_DATA, (N, NCE_K + 1), generator=g)
        cidx[:, 0] = idx
        out.append((x, y, idx, cidx))
    return out


PREACT = ("abound", "ofd")  # methods on pre-ReLU features, as RepDistiller's preact


def train_step_loss(method, crit, div, heads, model_s, model_t, x, y, idx, cidx):
    """RepDistiller's loss: CE + alpha KD + beta loss_kd (alpha 0.9, gamma 1)."""
    preact = method in PREACT
    feat_s, logit_s = model_s(x, is_feat=True, preact=preact)
    with torch.no_grad():
        feat_t, logit_t = model_t(x, is_feat=True, preact=preact)
    loss = F.cross_entropy(logit_s, y) + 0.9 * div(logit_s, logit_t)
    if method != "kd":
        loss = loss + BETA[method] * method_loss(method, crit, heads, feat_s, feat_t, logit_s, logit_t, idx, cidx)
    return loss
