"""Inputs of the accuracy comparison: real-network features (kdfuse_ref.models) passed through the seeded
loss-side modules RepDistiller puts in front of each loss, and adversarial embeddings.

Everything here runs in float32 under no_grad and is cached: the networks are built once per process
(kdfuse_ref.models.network), their features once per network and batch.
"""
import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

BATCH = 32        # images per real batch: N of the batch-relational losses (KD, SP, CC, RKD, PKT, CRD)
MAP_BATCH = 16    # N of the feature-map losses (AT, FitNet, FT, AB, OFD, VID, FSP): the batch's first images
NST_BATCH = 4     # N of NST: its C x C Gram per sample is the costliest kernel under the SIMT backend
CRD_DATA = 128    # CRD: dataset size n_data (bank rows)
CRD_K = 1023      # CRD: negatives per row (drawn uniformly with replacement, as the seed's sampler)
EMBED_DIM = 128   # CC's and CRD's embedding size (RepDistiller's feat_dim)


def _models():
    from kdfuse_ref import models
    return models


def _seeded(seed):
    return _models().common.seeded(seed)


@functools.lru_cache(maxsize=None)
def forward(name, n=BATCH, seed=0, flip=False, preact=False):
    """(feats, logits) of network `name` on n synthetic images (`flip`: mirrored left-right), cached."""
    models = _models()
    x = models.images(n, seed)
    if flip:
        x = x.flip(3)
    with torch.no_grad():
        return models.network(name)(x, is_feat=True, preact=preact)


def features(name):
    """(feats, preact_feats, logits) of network `name` on the batch (BATCH images)."""
    feats, logits = forward(name)
    return feats, forward(name, preact=True)[0], logits


def maps(name, preact=False, n=MAP_BATCH):
    """The feature list of network `name` (pre-ReLU variants with preact) on the batch's first n images."""
    return [f[:n] for f in features(name)[1 if preact else 0]]


def network(name):
    return _models().network(name)


def _train_mode_bn(channels):
    """A fresh BatchNorm (weight 1, bias 0) in train mode: the loss-side modules are trained with the student,
    so their BN normalises with the batch's statistics."""
    return nn.BatchNorm2d(channels).train()


@torch.no_grad()
def conv_reg(f_s, t_shape, seed, relu=True):
    """RepDistiller's ConvReg (FitNet's regressor, AB's connector) applied to f_s, seeded default initialisation:
    a 3x3 stride-2 conv when the student map is twice the teacher's, a 4x4 stride-2 transposed conv when it is
    half, else a (1 + s_H - t_H) x (1 + s_W - t_W) conv (1x1 for equal sizes); then BN (batch statistics) and,
    with relu, ReLU."""
    _, s_c, s_h, s_w = f_s.shape
    _, t_c, t_h, t_w = t_shape
    with _seeded(seed):
        if s_h == 2 * t_h:
            conv = nn.Conv2d(s_c, t_c, 3, 2, 1)
        elif 2 * s_h == t_h:
            conv = nn.ConvTranspose2d(s_c, t_c, 4, 2, 1)
        elif s_h >= t_h:
            conv = nn.Conv2d(s_c, t_c, (1 + s_h - t_h, 1 + s_w - t_w))
        else:
            raise ValueError(f"ConvReg: student {tuple(f_s.shape)} vs teacher {tuple(t_shape)}")
    y = _train_mode_bn(t_c)(conv(f_s))
    return F.relu(y) if relu else y


@torch.no_grad()
def factor_module(f, channels, seed):
    """FT's paraphraser (teacher) / translator (student), reduced to one seeded 1x1 conv + BN (batch statistics)
    + LeakyReLU(0.1) to `channels` factor channels."""
    with _seeded(seed):
        conv = nn.Conv2d(f.shape[1], channels, 1)
    return F.leaky_relu(_train_mode_bn(channels)(conv(f)), 0.1)


@torch.no_grad()
def vid_regressor(f_s, t_channels, seed):
    """VIDLoss's regressor (1x1 conv, ReLU, 1x1 conv, ReLU, 1x1 conv, no biases, mid channels = teacher
    channels), seeded default initialisation."""
    with _seeded(seed):
        convs = [nn.Conv2d(f_s.shape[1], t_channels, 1, bias=False), nn.Conv2d(t_channels, t_channels, 1, bias=False),
                 nn.Conv2d(t_channels, t_channels, 1, bias=False)]
    y = F.relu(convs[0](f_s))
    y = F.relu(convs[1](y))
    return convs[2](y)


@torch.no_grad()
def linear_embed(f, dim, seed):
    """A seeded nn.Linear(D, dim) (default initialisation) on f flattened: CC's LinearEmbed, CRD's Embed before its
    normalisation."""
    with _seeded(seed):
        lin = nn.Linear(f[0].numel(), dim)
    return lin(f.reshape(f.shape[0], -1))


def vid_log_scale(channels, seed):
    """VID's log_scale: uniform in [-1, 5] (pred_var = softplus + eps from 0.31, a fitted variance, to 5, the
    seed's initial value)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(channels, generator=g) * 6.0 - 1.0


# ---- adversarial rows ----------------------------------------------------------------------------------------

ADVERSARIAL = ("near-duplicate", "anti-parallel", "tight anti-parallel", "large-offset")


def adversarial_rows(kind, n, d, seed):
    """n x d float32 rows of one adversarial kind:
    near-duplicate: one random base row + 1e-3 N(0, 1) per row;
    anti-parallel: rows 2i and 2i+1 are b_i and -b_i (b_i random), + 1e-3 N(0, 1) per row;
    tight anti-parallel: the same with 1e-4 N(0, 1) (cosines within ~1e-8 of -1: PKT's 1 + cos cancels);
    large-offset: 100 + N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    if kind == "near-duplicate":
        return torch.randn(1, d, generator=g) + 1e-3 * torch.randn(n, d, generator=g)
    if kind in ("anti-parallel", "tight anti-parallel"):
        b = torch.randn(n // 2, d, generator=g)
        rows = torch.stack([b, -b], dim=1).reshape(n - n % 2, d)
        if n % 2:
            rows = torch.cat([rows, torch.randn(1, d, generator=g)])
        return rows + (1e-3 if kind == "anti-parallel" else 1e-4) * torch.randn(n, d, generator=g)
    if kind == "large-offset":
        return 100.0 + torch.randn(n, d, generator=g)
    raise ValueError(f"unknown adversarial kind {kind!r}")


def adversarial_maps(kind, n, c, h, w, seed):
    """N x C x H x W maps whose C channel planes (the rows NST's Gram compares) follow `adversarial_rows` in every
    sample (independent draws per sample)."""
    return torch.stack([adversarial_rows(kind, c, h * w, seed * 1000 + i).view(c, h, w) for i in range(n)])


def crd_dataset(name, seed):
    """CRD's dataset for network `name`: the batch images sit at random positions idx of an n_data-image set
    (the batch, then more images), whose bank rows hold the L2-normalised embeddings of the mirrored images (the
    positive is another view of the same image, as in training). Returns (pooled features of the batch, pooled
    features of the mirrored set in bank order, idx)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(CRD_DATA, generator=g)[:BATCH]
    batch = features(name)[0][-1]
    flipped = torch.cat([forward(name, BATCH, 0, flip=True)[0][-1], forward(name, CRD_DATA - BATCH, 1, flip=True)[0][-1]])
    bank = torch.empty_like(flipped)
    rest = torch.ones(CRD_DATA, dtype=torch.bool)
    rest[idx] = False
    bank[idx] = flipped[:BATCH]
    bank[rest] = flipped[BATCH:]
    return batch, bank, idx


def l2_rows(x):
    return x / x.norm(dim=1, keepdim=True)
