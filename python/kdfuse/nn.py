"""Drop-in nn.Module versions of RepDistiller's distillation losses, computed by kdfuse's fused kernels.

Class names, constructor arguments, forward signatures, return shapes and parameter / buffer names are those of
the reference modules in python_ref/kdfuse_ref (which mirror RepDistiller's distiller_zoo and crd/), so a
RepDistiller training script changes only its imports and a reference state_dict loads::

    from kdfuse.nn import DistillKL, HintLoss, Attention, Similarity, Correlation, VIDLoss, RKDLoss, PKT, \
        ABLoss, FactorTransfer, KDSVD, FSP, NSTLoss, CRDLoss, OFD

Learnable parts (VIDLoss's regressor and log_scale, CRDLoss's Embed heads, OFD's connector) stay PyTorch
modules; only the loss itself runs through kdfuse (kdfuse.ops, the torch.ops.kdfuse custom ops). CRD's state
(memory_v1, memory_v2 and Z in ``params``) are buffers updated in place by the op.

``Correlation()`` is the CC code RepDistiller ships (variant "repdistiller"); the seed's Gram form is
``Correlation(variant="seed")``.

Where kdfuse's kernels define a case the seed leaves undefined or different, the modules say so: pooling of
non-square maps (``pool="seed"`` raises ValueError where the seed's square pooling and kdfuse's (H, W) pooling
would differ; ``pool="hw"`` uses kdfuse's rule), RKD's gradient at duplicate rows, PKT's gradient at an all-zero
row (0 instead of the seed's NaN), NST's N x C x L maps of different L (ValueError), KDSVD's teacher signs and
singular-vector gradient (see KDSVD), and lists of layers of different lengths (ValueError; the seed's zip drops the
extra layers without a word). Teacher inputs are constants except KD's y_t, CC's f_t (variant "repdistiller") and
CRD's teacher embedding; losses are float32, first order only (a double backward raises), on CPU (SIMT build) or
CUDA tensors of one device (see kdfuse.ops). The full list of differences from RepDistiller's modules:
docs/pytorch.md, "Differences from RepDistiller".
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import functional, ops

__all__ = ["KLDivLoss", "DistillKL", "HintLoss", "Attention", "Similarity", "Correlation", "VIDLoss", "RKDLoss", "PKT", "ABLoss",
           "FactorTransfer", "KDSVD", "FSP", "NSTLoss", "CRDLoss", "OFD", "ContrastMemory", "Embed", "Normalize"]


def _layer_pairs(g_s, g_t, name):
    """zip(g_s, g_t) of equal-length lists of layers: a student and a teacher list of different lengths is an error
    (the seed's zip silently drops the extra layers)."""
    if len(g_s) != len(g_t):
        raise ValueError(f"{name}: g_s has {len(g_s)} layers, g_t {len(g_t)}")
    return zip(g_s, g_t)


class KLDivLoss(nn.Module):
    """torch.nn.KLDivLoss for knowledge distillation, fused: forward(input, target, labels=None) ->
    kdfuse.functional.kl_div(input, target, reduction, log_target, temperature, labels, ignore_index) (its docstring
    says what differs from torch.nn.KLDivLoss: input read as logits, reduction="none" per distribution, the extra
    temperature and label masking). The distributions are along the last dimension."""

    def __init__(self, reduction="mean", log_target=False, temperature=1.0, ignore_index=-100):
        super().__init__()
        if reduction not in functional.REDUCTIONS:
            raise ValueError(f"KLDivLoss: reduction must be one of {functional.REDUCTIONS}, not {reduction!r}")
        self.reduction, self.log_target, self.temperature, self.ignore_index = (reduction, log_target, temperature,
                                                                                ignore_index)

    def forward(self, input, target, labels=None):
        return functional.kl_div(input, target, self.reduction, self.log_target, self.temperature, labels,
                                 self.ignore_index)


class DistillKL(nn.Module):
    """Distilling the Knowledge in a Neural Network: forward(y_s, y_t) -> 0-dim KD loss at temperature T (float32
    loss; float16 / bfloat16 logits are read as they are and their gradients come back in their dtype).

    Logits N x C, or N x C x ... as the seed (softmax over dim 1, the sum over all positions divided by N = shape[0]):
    dim 1 is moved last and the positions flattened to rows; the kernel's batch mean divides by the number of rows,
    so the loss is scaled by rows / N."""

    def __init__(self, T):
        super().__init__()
        self.T = T

    def forward(self, y_s, y_t):
        if y_s.dim() <= 2:
            return ops.kd(y_s, y_t, self.T)
        if y_s.shape != y_t.shape:
            raise ValueError(f"DistillKL: y_s and y_t must have the same shape, got {tuple(y_s.shape)} and "
                             f"{tuple(y_t.shape)}")
        classes = y_s.shape[1]
        rows_s = y_s.movedim(1, -1).reshape(-1, classes)
        rows_t = y_t.movedim(1, -1).reshape(-1, classes)
        return ops.kd(rows_s, rows_t, self.T) * (rows_s.shape[0] / y_s.shape[0])


class HintLoss(nn.Module):
    """Fitnets: hints for thin deep nets: forward(f_s, f_t) -> mean((f_s - f_t)^2)."""

    def __init__(self):
        super().__init__()

    def forward(self, f_s, f_t):
        return ops.fitnet(f_s, f_t)


class Attention(nn.Module):
    """Paying More Attention to Attention: forward(g_s, g_t) -> list of per-layer-pair losses."""

    def __init__(self, p=2, pool="seed"):
        super().__init__()
        self.p = p
        self.pool = pool

    def forward(self, g_s, g_t):
        return [ops.at(f_s, f_t, self.p, self.pool) for f_s, f_t in _layer_pairs(g_s, g_t, "Attention")]


class Similarity(nn.Module):
    """Similarity-Preserving Knowledge Distillation: forward(g_s, g_t) -> list of losses of shape (1,)."""

    def __init__(self):
        super().__init__()

    def forward(self, g_s, g_t):
        return [self.similarity_loss(f_s, f_t) for f_s, f_t in _layer_pairs(g_s, g_t, "Similarity")]

    def similarity_loss(self, f_s, f_t):
        return ops.sp(f_s, f_t).view(1)


class Correlation(nn.Module):
    """Correlation congruence: variant "repdistiller" (default: the code RepDistiller ships in distiller_zoo/CC.py,
    products of consecutive rows of |f_s - f_t| on N x D embeddings, 0-dim, gradients for both embeddings) or
    "seed" (the seed's Gram form, shape (1,), f_t constant)."""

    def __init__(self, variant="repdistiller"):
        super().__init__()
        if variant not in ("seed", "repdistiller"):
            raise ValueError(f"variant must be one of ('seed', 'repdistiller'), not {variant!r}")
        self.variant = variant

    def forward(self, f_s, f_t):
        if self.variant == "repdistiller":
            return ops.cc(f_s, f_t, "repdistiller")
        return self.similarity_loss(f_s, f_t)

    def similarity_loss(self, f_s, f_t):
        return ops.cc(f_s, f_t, "seed").view(1)


class VIDLoss(nn.Module):
    """Variational Information Distillation: the seed's regressor (three 1x1 convs) and log_scale parameter; the
    loss after the regressor runs through kdfuse (gradients for the regressor output and log_scale)."""

    def __init__(self, num_input_channels, num_mid_channel, num_target_channels, init_pred_var=5.0, eps=1e-5,
                 pool="seed"):
        super().__init__()
        if pool not in ("seed", "hw"):
            raise ValueError(f"pool must be 'seed' or 'hw', got {pool!r}")
        self.pool = pool

        def conv1x1(in_channels, out_channels, stride=1):
            return nn.Conv2d(in_channels, out_channels, kernel_size=1, padding=0, bias=False, stride=stride)

        self.regressor = nn.Sequential(
            conv1x1(num_input_channels, num_mid_channel),
            nn.ReLU(),
            conv1x1(num_mid_channel, num_mid_channel),
            nn.ReLU(),
            conv1x1(num_mid_channel, num_target_channels),
        )
        self.log_scale = nn.Parameter(math.log(math.exp(init_pred_var - eps) - 1.0) * torch.ones(num_target_channels))
        self.eps = eps

    def forward(self, input, target):
        s_H, t_H = input.shape[2], target.shape[2]
        if self.pool == "hw":
            s_W, t_W = input.shape[3], target.shape[3]
            if (s_H > t_H or s_W > t_W) and (s_H >= t_H and s_W >= t_W):
                input = F.adaptive_avg_pool2d(input, (t_H, t_W))
        elif s_H > t_H:
            input = F.adaptive_avg_pool2d(input, (t_H, t_H))  # square, as the seed
        pred_mean = self.regressor(input)
        return ops.vid(pred_mean, target, self.log_scale, self.eps, self.pool)


class RKDLoss(nn.Module):
    """Relational Knowledge Distillation: w_d * distance loss + w_a * angle loss."""

    def __init__(self, w_d=25, w_a=50, empty_mean="nan"):
        super().__init__()
        if empty_mean not in ("nan", "zero"):
            raise ValueError(f"empty_mean must be one of ('nan', 'zero'), not {empty_mean!r}")
        self.w_d = w_d
        self.w_a = w_a
        self.empty_mean = empty_mean

    def forward(self, f_s, f_t):
        return ops.rkd(f_s, f_t, self.w_d, self.w_a, self.empty_mean)


class PKT(nn.Module):
    """Probabilistic Knowledge Transfer: forward(f_s, f_t) -> 0-dim loss (N x D features)."""

    def __init__(self):
        super().__init__()

    def forward(self, f_s, f_t):
        return self.cosine_similarity_loss(f_s, f_t)

    @staticmethod
    def cosine_similarity_loss(output_net, target_net, eps=0.0000001):
        return ops.pkt(output_net, target_net, eps)


class ABLoss(nn.Module):
    """Activation Boundaries: forward(g_s, g_t) -> list of per-layer losses w_i * L_i / N / 1000 * 3,
    w_i = 2^(i - feat_num + 1)."""

    def __init__(self, feat_num, margin=1.0):
        super().__init__()
        self.w = [2 ** (i - feat_num + 1) for i in range(feat_num)]
        self.margin = margin

    def forward(self, g_s, g_t):
        pairs = list(_layer_pairs(g_s, g_t, "ABLoss"))
        if len(pairs) != len(self.w):
            raise ValueError(f"ABLoss: built for {len(self.w)} layers (feat_num), got {len(pairs)}")
        bsz = g_s[0].shape[0]
        losses = []
        for w, (s, t) in zip(self.w, pairs):
            if s.shape[0] != bsz:
                raise ValueError(f"all layers must have batch size {bsz}, got {s.shape[0]}")
            losses.append(w * ops.ab(s, t, self.margin))
        return losses


class FactorTransfer(nn.Module):
    """Paraphrasing Complex Network via Factor Transfer: forward(f_s, f_t) -> 0-dim loss."""

    def __init__(self, p1=2, p2=1, pool="seed"):
        super().__init__()
        self.p1 = p1
        self.p2 = p2
        self.pool = pool

    def forward(self, f_s, f_t):
        return ops.ft(f_s, f_t, self.p1, self.p2, self.pool)


class KDSVD(nn.Module):
    """Self-supervised Knowledge Distillation using Singular Value Decomposition: forward(g_s, g_t) -> list of the
    len(g_s) - 1 losses (0-dim) of consecutive layer pairs, [] for one layer (train_student.py sums the list). Maps
    N x C x H x H, the same C in a student and its teacher map.

    kdfuse computes KDSVD as the reference's KDSVD(k, sign="canonical", svd_grad="stable", gap_rtol=gap_rtol,
    spatial="hw", nonfinite="zero"), which differs from the seed (docs/losses/kdsvd.md):

    - teacher signs: each teacher singular vector is flipped so that its entry of largest magnitude (the first on
      ties) is positive. The seed keeps whatever sign the SVD library returns, and its loss depends on the relative
      sign of consecutive layers' vectors.
    - gradient: each singular vector the loss uses is differentiated on its own, dropping the eigenvalue gaps
      |s_i^2 - s_j^2| <= gap_rtol * s_0^2 (the seed's torch.svd backward divides by every gap: NaN over the sample at
      repeated singular values, e.g. two dead channels); the two agree where the seed's is finite and no gap is
      below the tolerance.
    - maps must be square (the seed's view(-1, C, H*H) mixes the samples of a non-square map) with min(C, H*W) <= 128,
      at most 8 layers: other maps raise KdfuseError KDF_STATUS_NOT_SUPPORTED. k must not exceed C or H*W of a
      teacher map (KDF_STATUS_INVALID_VALUE).
    - a sample holding a non-finite value gets zero vectors: finite losses and no gradient to that sample (the
      seed's SVD raises on it).
    - only the student maps get a gradient (the seed also gives a teacher map that requires grad one, through its
      singular values, for k >= 2; RepDistiller computes the teacher's features without grad).
    - student and teacher lists of different lengths raise ValueError (the seed's zip drops the extra layers).
    """

    def __init__(self, k=1, gap_rtol=1e-5):
        super().__init__()
        self.k = k
        self.gap_rtol = gap_rtol

    def forward(self, g_s, g_t):
        layers = list(_layer_pairs(g_s, g_t, "KDSVD"))
        if len(layers) < 2:
            return []  # no consecutive pair
        return list(ops.kdsvd(g_s, g_t, self.k, self.gap_rtol).unbind(0))


class FSP(nn.Module):
    """Flow of Solution Procedure: forward(g_s, g_t) -> list of the len(g_s) - 1 losses of consecutive pairs.
    s_shapes / t_shapes: the (N, C, H, W) shapes of the student / teacher maps (channel counts must agree)."""

    def __init__(self, s_shapes, t_shapes):
        super().__init__()
        assert len(s_shapes) == len(t_shapes), 'unequal length of feat list'
        s_c = [s[1] for s in s_shapes]
        t_c = [t[1] for t in t_shapes]
        if any(a != b for a, b in zip(s_c, t_c)):
            raise ValueError('num of channels not equal (error in FSP)')

    def forward(self, g_s, g_t):
        if any(s.shape[1] != t.shape[1] for s, t in _layer_pairs(g_s, g_t, "FSP")):
            raise ValueError("num of channels not equal (error in FSP)")
        return [ops.fsp(g_s[i], g_s[i + 1], g_t[i], g_t[i + 1]) for i in range(len(g_s) - 1)]


class NSTLoss(nn.Module):
    """Neuron Selectivity Transfer: forward(g_s, g_t) -> list of per-layer-pair losses; maps N x C x H x W, or
    N x C x L of the same L (kdfuse.ops.nst)."""

    def __init__(self, full_loss=True):
        super().__init__()
        self.full_loss = full_loss

    def forward(self, g_s, g_t):
        return [self.nst_loss(f_s, f_t) for f_s, f_t in _layer_pairs(g_s, g_t, "NSTLoss")]

    def nst_loss(self, f_s, f_t):
        return ops.nst(f_s, f_t, self.full_loss)


class OFD(nn.Module):
    """A Comprehensive Overhaul of Feature Distillation: connector (1x1 conv + BN, as the seed) then the partial
    L2 loss through kdfuse. variant "seed" (batch margin) or "original" (margin: the per-channel margin from the
    teacher's BN, e.g. kdfuse.ofd_margin_from_bn(bn.weight, bn.bias))."""

    def __init__(self, in_channels, out_channels, variant="seed", margin=None):
        super().__init__()
        if variant not in ("seed", "original"):
            raise ValueError(f"variant must be one of ('seed', 'original'), not {variant!r}")
        self.connector = nn.Sequential(*[
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(out_channels),
        ])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if variant == "original" and margin is None:
            raise ValueError("variant='original' needs the per-channel margin (see kdfuse.ofd_margin_from_bn)")
        self.variant = variant
        if margin is not None:
            margin = torch.as_tensor(margin).detach().clone()
        self.register_buffer("margin", margin)

    def forward(self, fm_s, fm_t):
        fm_s = self.connector(fm_s)
        return ops.ofd(fm_s, fm_t, self.margin, self.variant)

    def get_margin(self, fm, eps=1e-6):
        """The seed's get_margin (per-channel batch margin, 1 x C x 1 x 1), in PyTorch."""
        fm = fm.detach()
        neg = (fm < 0.0).to(fm.dtype)
        total = (fm * neg).sum(dim=(0, 2, 3), keepdim=True)
        count = neg.sum(dim=(0, 2, 3), keepdim=True)
        return torch.where(count > 0, total / (count + eps), torch.zeros_like(total))


# ---- CRD -----------------------------------------------------------------------------------------------------


class Normalize(nn.Module):
    """Normalization layer (no eps), as RepDistiller's."""

    def __init__(self, power=2):
        super().__init__()
        self.power = power

    def forward(self, x):
        norm = x.pow(self.power).sum(1, keepdim=True).pow(1. / self.power)
        return x.div(norm)


class Embed(nn.Module):
    """Embedding module: flatten, linear, L2 normalisation (RepDistiller's). CRDLoss runs only its linear layer
    and lets the kdfuse kernel normalise (the same function, fused)."""

    def __init__(self, dim_in=1024, dim_out=128):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)
        self.l2norm = Normalize(2)

    def forward(self, x):
        x = x.view(x.shape[0], -1)
        x = self.linear(x)
        return self.l2norm(x)


def _reread_host_params(module, incompatible_keys):
    module._read_host_params()


class ContrastMemory(nn.Module):
    """CRD's state, with RepDistiller's buffer names so its state_dicts load: params = [K, T, Z_v1, Z_v2, momentum]
    (Z < 0: unset), memory_v1 (student bank), memory_v2 (teacher bank), outputSize x inputSize, uniform in
    +-1/sqrt(inputSize / 3) (the same draws as RepDistiller, in the same order).

    kdfuse reads K, T and momentum from host copies (refreshed when a state_dict is loaded), and Z and the banks
    on the device; loss() updates the banks and Z in place. Contrast indices given, or drawn on the device from
    Philox with a per-module seed (drawn from torch's global generator at construction, or given) and a counter
    advanced by every drawn call, held on the CPU: neither is part of the state_dict (RepDistiller's sampler
    draws from the global generator)."""

    def __init__(self, inputSize, outputSize, K, T=0.07, momentum=0.5, z_mode="once", z_momentum=0.99, seed=None):
        super().__init__()
        if z_mode not in ("once", "ema"):
            raise ValueError(f"z_mode must be one of ('once', 'ema'), not {z_mode!r}")
        self.nLem = outputSize
        self.K = K
        self.z_mode = z_mode
        self.z_momentum = z_momentum
        self.register_buffer('params', torch.tensor([K, T, -1, -1, momentum]))
        stdv = 1. / math.sqrt(inputSize / 3)
        self.register_buffer('memory_v1', torch.rand(outputSize, inputSize).mul_(2 * stdv).add_(-stdv))
        self.register_buffer('memory_v2', torch.rand(outputSize, inputSize).mul_(2 * stdv).add_(-stdv))
        if seed is None:
            seed = int(torch.randint(0, 2 ** 62, (1,)).item())
        # [seed, offset] of the device-drawn contrasts; a plain CPU tensor (not a buffer: .to()/.cuda() keep it on
        # the host, where the op reads it without a device synchronisation)
        self.philox = torch.tensor([seed, 0], dtype=torch.int64)
        self._read_host_params()
        self.register_load_state_dict_post_hook(_reread_host_params)

    def _read_host_params(self):
        k, t, momentum = self.params[[0, 1, 4]].tolist()  # once, at construction or load: not per step
        self.K, self.T, self.momentum = int(k), t, momentum

    def loss(self, v_s, v_t, idx, contrast_idx=None, normalize_inputs=False):
        """Both NCE losses (0-dim) of embeddings v_s (scored against memory_v2) and v_t (against memory_v1), the
        banks and Z updated in place; gradients for v_s and v_t."""
        if contrast_idx is not None and contrast_idx.shape[1] != self.K + 1:
            raise ValueError(f"contrast_idx has {contrast_idx.shape[1]} columns, expected K + 1 = {self.K + 1}")
        return ops.crd(v_s, v_t, self.memory_v1, self.memory_v2, idx, self.params[2:4], contrast_idx=contrast_idx,
                       philox=self.philox, k=self.K, temperature=self.T, momentum=self.momentum, z_mode=self.z_mode,
                       z_momentum=self.z_momentum, normalize_inputs=normalize_inputs, update_memory=True)

    def forward(self, v1, v2, y, idx=None):
        raise NotImplementedError("kdfuse's ContrastMemory does not materialise the N x (K+1) scores; use "
                                  "CRDLoss.forward or ContrastMemory.loss")


class CRDLoss(nn.Module):
    """CRD loss (RepDistiller's CRDLoss): forward(f_s, f_t, idx, contrast_idx=None) -> loss of shape (1,).

    opt: s_dim, t_dim, feat_dim, nce_k, nce_t, nce_m, n_data (RepDistiller's options); optional nce_z_mode
    ("once" | "ema"), nce_z_momentum and nce_seed (the Philox seed of drawn contrasts). Submodules embed_s,
    embed_t (Embed) and contrast (ContrastMemory: buffers params, memory_v1, memory_v2) as RepDistiller's.
    contrast_idx None: the K negatives are drawn uniformly on the device (column 0 = idx), not by
    RepDistiller's AliasMethod, so the draws differ from the reference's (same distribution)."""

    def __init__(self, opt):
        super().__init__()
        self.embed_s = Embed(opt.s_dim, opt.feat_dim)
        self.embed_t = Embed(opt.t_dim, opt.feat_dim)
        self.contrast = ContrastMemory(opt.feat_dim, opt.n_data, opt.nce_k, opt.nce_t, opt.nce_m,
                                       z_mode=getattr(opt, "nce_z_mode", "once"),
                                       z_momentum=getattr(opt, "nce_z_momentum", 0.99),
                                       seed=getattr(opt, "nce_seed", None))

    def forward(self, f_s, f_t, idx, contrast_idx=None):
        u_s = self.embed_s.linear(f_s.view(f_s.shape[0], -1))
        u_t = self.embed_t.linear(f_t.view(f_t.shape[0], -1))
        return self.contrast.loss(u_s, u_t, idx, contrast_idx, normalize_inputs=True).view(1)
