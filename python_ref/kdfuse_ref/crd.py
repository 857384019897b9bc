"""CRD: Contrastive Representation Distillation (Tian et al., ICLR 2020), as RepDistiller's crd/.

Modules (the seed's / RepDistiller's names and arguments): CRDLoss(opt) = Embed (linear + Normalize,
no eps) for student and teacher, ContrastMemory (two memory banks, the negatives, Z), and two
ContrastLoss (NCE). The functional form `crd_loss` takes the state (banks, Z) as arguments and returns
the new state, and takes the sampled indices as inputs (no sampling inside).

Semantics (v_s, v_t: N x D L2-normalised embeddings; M_s, M_t: n_data x D banks; memory_v1 = M_s holds
student features, memory_v2 = M_t teacher features; cidx = contrast_idx, N x (K+1), column 0 = the
positive):

- scores with the PRE-update banks, both detached (index_select(...).detach()):
      out_t[i, k] = exp(<M_s[cidx[i, k]], v_t[i]> / T)   (the student bank scores the teacher embedding)
      out_s[i, k] = exp(<M_t[cidx[i, k]], v_s[i]> / T)   (the teacher bank scores the student embedding)
  shape N x (K+1) x 1 (the seed's bmm output);
- normalisation constants Z_s (for out_s, the seed's Z_v1) and Z_t (out_t, Z_v2): a value < 0 (or None)
  means unset. z_mode="once" (seed): when unset, Z = mean(out) * n_data from this batch (detached) and
  kept for ever after. z_mode="ema" (extension, CMC issue #23: "0.99 for updating Z works well"): the
  first call initialises as "once"; every later call first updates
  Z = z_momentum * Z + (1 - z_momentum) * mean(out) * n_data (detached) and then uses the UPDATED Z
  for this batch. out = out / Z;
- NCE (ContrastLoss, eps = 1e-7, Pn = 1 / n_data, m = K):
      loss_x = -( sum_i log(P_pos_i / (P_pos_i + m Pn + eps)) + sum_{i,k>0} log(m Pn / (P_neg_ik + m Pn + eps)) ) / N
  and loss = loss(out_s) + loss(out_t);
- bank update, after the scoring, under no_grad: for each row i,
      pos = M[idx_i] * momentum + v_i * (1 - momentum);  M[idx_i] = pos / pos.pow(2).sum(1).pow(0.5)
  (no eps: a zero pos gives NaN as in the seed), for M_s with v_s and M_t with v_t. Every pos is
  computed from the pre-update bank, so duplicate indices within one batch do NOT accumulate.

Duplicate indices in idx: the seed writes with index_copy_, for which PyTorch does not define which
duplicate wins (CUDA: any, nondeterministic; the CPU kernel writes sequentially, so the last one in
practice). The reference defines it: THE LAST OCCURRENCE in the batch wins (rows for the other
occurrences are computed and dropped). Duplicates in contrast_idx are harmless (gathers).

idx is only used for the bank update; column 0 of contrast_idx is the positive for the loss whatever it
holds (the seed's sampler sets it to idx; RepDistiller's dataset does too). It is not checked.

Other quirks kept: Embed's Normalize has no eps (a zero linear output gives NaN); T, momentum and Z
live in the float32 buffer `params` of ContrastMemory (T = float32(0.07) is what the module uses; the
functional form uses the T it is given); ContrastLoss returns shape (1,) and so does CRDLoss.
The module does not print the "normalization constant Z is set" messages of RepDistiller, and moves its
sampler to the banks' device on use instead of calling .cuda() at construction.
"""
import math

import torch
import torch.nn as nn

eps = 1e-7
Z_MODES = ("once", "ema")


# --------------------------------------------------------------------------------------------------
# functional pieces (the modules below use the same functions)

def l2_normalize(x, power=2):
    """The seed's Normalize: x / x.pow(p).sum(1, keepdim=True).pow(1/p), no eps."""
    norm = x.pow(power).sum(1, keepdim=True).pow(1. / power)
    return x.div(norm)


def crd_scores(v_s, v_t, memory_s, memory_t, contrast_idx, T):
    """Unnormalised scores (out_s, out_t), each N x (K+1) x 1, from the given (pre-update) banks.

    out_t = exp(<memory_s[contrast_idx], v_t> / T), out_s = exp(<memory_t[contrast_idx], v_s> / T);
    the banks are detached.
    """
    bsz, dim = v_s.shape
    k1 = contrast_idx.shape[1]
    flat = contrast_idx.reshape(-1)
    w_s = torch.index_select(memory_s, 0, flat).detach().view(bsz, k1, dim)
    out_t = torch.exp(torch.div(torch.bmm(w_s, v_t.reshape(bsz, dim, 1)), T))
    w_t = torch.index_select(memory_t, 0, flat).detach().view(bsz, k1, dim)
    out_s = torch.exp(torch.div(torch.bmm(w_t, v_s.reshape(bsz, dim, 1)), T))
    return out_s, out_t


def _z_is_unset(z):
    return z is None or float(z) < 0


def crd_normalization_constant(out, z, n_data, z_mode="once", z_momentum=0.99):
    """The Z to divide `out` by this call (also the new state): a detached 0-dim tensor."""
    if z_mode not in Z_MODES:
        raise ValueError(f"z_mode must be one of {Z_MODES}, not {z_mode!r}")
    with torch.no_grad():
        estimate = out.mean() * n_data
        if _z_is_unset(z):
            return estimate.detach()
        z = torch.as_tensor(z, dtype=out.dtype, device=out.device).detach().reshape(())
        if z_mode == "once":
            return z.clone()
        return z_momentum * z + (1 - z_momentum) * estimate


def contrast_nce_loss(x, n_data):
    """The seed's ContrastLoss on scores x (N x (K+1) or N x (K+1) x 1), as a 0-dim tensor."""
    bsz = x.shape[0]
    x = x.reshape(bsz, -1)
    m = x.size(1) - 1
    Pn = 1 / float(n_data)
    P_pos = x[:, 0]
    log_D1 = torch.log(torch.div(P_pos, P_pos.add(m * Pn + eps)))
    P_neg = x[:, 1:]
    log_D0 = torch.log(torch.div(torch.full_like(P_neg, m * Pn), P_neg.add(m * Pn + eps)))
    return -(log_D1.sum() + log_D0.sum()) / bsz


def _last_occurrence_rows(idx):
    last = {}
    for row, i in enumerate(idx.tolist()):
        last[i] = row
    return torch.tensor(sorted(last.values()), dtype=torch.long, device=idx.device)


def crd_update_memory(memory, idx, v, momentum, inplace=False):
    """Bank after the momentum update of rows idx with embeddings v (last occurrence wins).

    Returns a new tensor, or `memory` itself updated in place with inplace=True. No gradient.
    """
    idx = idx.reshape(-1)
    with torch.no_grad():
        pos = torch.index_select(memory, 0, idx)
        pos = pos.mul(momentum).add(torch.mul(v.detach(), 1 - momentum))
        norm = pos.pow(2).sum(1, keepdim=True).pow(0.5)
        updated = pos.div(norm)
        rows = _last_occurrence_rows(idx)
        out = memory if inplace else memory.clone()
        out.index_copy_(0, idx.index_select(0, rows), updated.index_select(0, rows))
    return out


def crd_loss(v_s, v_t, memory_s, memory_t, idx, contrast_idx, z_s, z_t, T=0.07, momentum=0.5,
             n_data=None, normalize_inputs=False, z_mode="once", z_momentum=0.99, update_memory=True):
    """CRD loss with explicit state. Returns (loss, new_memory_s, new_memory_t, new_z_s, new_z_t).

    v_s, v_t: N x D embeddings, already L2-normalised (Embed's output); with normalize_inputs=True they
      are the raw linear outputs and Normalize (no eps) is applied here, so gradients are w.r.t. them.
    memory_s, memory_t: n_data x D banks (student / teacher features); not modified.
    idx: N dataset indices (the rows to update); contrast_idx: N x (K+1) long, column 0 the positive.
    z_s, z_t: Z of out_s / out_t (float, 0-dim tensor or None; < 0 or None = unset).
    n_data: the dataset size of Pn = 1 / n_data and of Z (default memory_s.shape[0]).
    update_memory=False returns the input banks themselves.
    loss is a 0-dim tensor (the seed's CRDLoss returns shape (1,)); new_z_* are detached 0-dim tensors.
    """
    if n_data is None:
        n_data = memory_s.shape[0]
    if normalize_inputs:
        v_s = l2_normalize(v_s)
        v_t = l2_normalize(v_t)
    out_s, out_t = crd_scores(v_s, v_t, memory_s, memory_t, contrast_idx, T)
    new_z_s = crd_normalization_constant(out_s, z_s, n_data, z_mode, z_momentum)
    new_z_t = crd_normalization_constant(out_t, z_t, n_data, z_mode, z_momentum)
    out_s = torch.div(out_s, new_z_s)
    out_t = torch.div(out_t, new_z_t)
    loss = contrast_nce_loss(out_s, n_data) + contrast_nce_loss(out_t, n_data)
    if update_memory:
        memory_s = crd_update_memory(memory_s, idx, v_s, momentum)
        memory_t = crd_update_memory(memory_t, idx, v_t, momentum)
    return loss, memory_s, memory_t, new_z_s, new_z_t


# --------------------------------------------------------------------------------------------------
# modules (names, arguments and buffers as RepDistiller's crd/, so its state_dicts load)

class AliasMethod(object):
    """Walker's alias method for drawing from a discrete distribution `probs` (as RepDistiller's)."""

    def __init__(self, probs):
        probs = probs.double() / probs.sum()
        n = len(probs)
        scaled = (probs * n).tolist()
        alias = [0] * n
        small = [i for i, p in enumerate(scaled) if p < 1.0]
        large = [i for i, p in enumerate(scaled) if p >= 1.0]
        while small and large:
            s, l = small.pop(), large.pop()
            alias[s] = l
            scaled[l] = scaled[l] + scaled[s] - 1.0
            (small if scaled[l] < 1.0 else large).append(l)
        for i in small + large:
            scaled[i] = 1.0
        self.prob = torch.tensor(scaled, dtype=torch.float32)
        self.alias = torch.tensor(alias, dtype=torch.long)

    def to(self, device):
        self.prob = self.prob.to(device)
        self.alias = self.alias.to(device)
        return self

    def cuda(self):
        return self.to("cuda")

    def draw(self, N):
        """Draw N samples."""
        n = self.alias.size(0)
        kk = torch.zeros(N, dtype=torch.long, device=self.prob.device).random_(0, n)
        keep = torch.bernoulli(self.prob.index_select(0, kk)).long()
        return kk * keep + self.alias.index_select(0, kk) * (1 - keep)


class ContrastMemory(nn.Module):
    """Memory buffer that supplies a large amount of negative samples (RepDistiller's ContrastMemory).

    Buffers: params = [K, T, Z_v1, Z_v2, momentum] (Z < 0: unset), memory_v1 (student bank),
    memory_v2 (teacher bank), both outputSize x inputSize, uniform in +-1/sqrt(inputSize/3).
    forward(v1, v2, y, idx=None) -> (out_v1, out_v2) = (out_s, out_t) divided by Z, N x (K+1) x 1;
    idx = contrast_idx (drawn uniformly with column 0 = y when None). Banks updated in place.
    z_mode / z_momentum: see crd_loss (extension; default "once" is the seed).
    """

    def __init__(self, inputSize, outputSize, K, T=0.07, momentum=0.5, z_mode="once", z_momentum=0.99):
        super().__init__()
        if z_mode not in Z_MODES:
            raise ValueError(f"z_mode must be one of {Z_MODES}, not {z_mode!r}")
        self.nLem = outputSize
        self.unigrams = torch.ones(self.nLem)
        self.multinomial = AliasMethod(self.unigrams)
        self.K = K
        self.z_mode = z_mode
        self.z_momentum = z_momentum
        self.register_buffer('params', torch.tensor([K, T, -1, -1, momentum]))
        stdv = 1. / math.sqrt(inputSize / 3)
        self.register_buffer('memory_v1', torch.rand(outputSize, inputSize).mul_(2 * stdv).add_(-stdv))
        self.register_buffer('memory_v2', torch.rand(outputSize, inputSize).mul_(2 * stdv).add_(-stdv))

    def forward(self, v1, v2, y, idx=None):
        K = int(self.params[0].item())
        T = self.params[1].item()
        momentum = self.params[4].item()
        batchSize = v1.size(0)
        outputSize = self.memory_v1.size(0)
        if idx is None:
            if self.multinomial.prob.device != self.memory_v1.device:
                self.multinomial.to(self.memory_v1.device)
            idx = self.multinomial.draw(batchSize * (self.K + 1)).view(batchSize, -1)
            idx.select(1, 0).copy_(y.data)
        if idx.shape[1] != K + 1:
            raise ValueError(f"contrast_idx has {idx.shape[1]} columns, expected K + 1 = {K + 1}")
        out_v1, out_v2 = crd_scores(v1, v2, self.memory_v1, self.memory_v2, idx, T)
        # Z goes through the params buffer (its dtype) and back to a Python float, as the seed.
        for slot, out in ((2, out_v1), (3, out_v2)):
            z = self.params[slot].item()
            if _z_is_unset(z) or self.z_mode == "ema":
                self.params[slot] = crd_normalization_constant(out, z, outputSize, self.z_mode, self.z_momentum)
        Z_v1 = self.params[2].item()
        Z_v2 = self.params[3].item()
        out_v1 = torch.div(out_v1, Z_v1).contiguous()
        out_v2 = torch.div(out_v2, Z_v2).contiguous()
        crd_update_memory(self.memory_v1, y, v1, momentum, inplace=True)
        crd_update_memory(self.memory_v2, y, v2, momentum, inplace=True)
        return out_v1, out_v2


class ContrastLoss(nn.Module):
    """Contrastive (NCE) loss, Eq (18) (the seed's ContrastLoss); returns shape (1,) as the seed."""

    def __init__(self, n_data):
        super().__init__()
        self.n_data = n_data

    def forward(self, x):
        return contrast_nce_loss(x, self.n_data).view(1)


class Normalize(nn.Module):
    """Normalization layer (no eps)."""

    def __init__(self, power=2):
        super().__init__()
        self.power = power

    def forward(self, x):
        return l2_normalize(x, self.power)


class Embed(nn.Module):
    """Embedding module: flatten, linear, L2 normalisation."""

    def __init__(self, dim_in=1024, dim_out=128):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)
        self.l2norm = Normalize(2)

    def forward(self, x):
        x = x.view(x.shape[0], -1)
        x = self.linear(x)
        return self.l2norm(x)


class CRDLoss(nn.Module):
    """CRD loss function (the seed's CRDLoss), two symmetric parts.

    opt: s_dim, t_dim, feat_dim, nce_k, nce_t, nce_m, n_data (as RepDistiller's options); optional
    nce_z_mode ("once" | "ema") and nce_z_momentum (extension, defaults "once" and 0.99).
    forward(f_s, f_t, idx, contrast_idx=None) -> loss of shape (1,).
    """

    def __init__(self, opt):
        super().__init__()
        self.embed_s = Embed(opt.s_dim, opt.feat_dim)
        self.embed_t = Embed(opt.t_dim, opt.feat_dim)
        self.contrast = ContrastMemory(opt.feat_dim, opt.n_data, opt.nce_k, opt.nce_t, opt.nce_m,
                                       z_mode=getattr(opt, "nce_z_mode", "once"),
                                       z_momentum=getattr(opt, "nce_z_momentum", 0.99))
        self.criterion_t = ContrastLoss(opt.n_data)
        self.criterion_s = ContrastLoss(opt.n_data)

    def forward(self, f_s, f_t, idx, contrast_idx=None):
        f_s = self.embed_s(f_s)
        f_t = self.embed_t(f_t)
        out_s, out_t = self.contrast(f_s, f_t, idx, contrast_idx)
        s_loss = self.criterion_s(out_s)
        t_loss = self.criterion_t(out_t)
        return s_loss + t_loss
