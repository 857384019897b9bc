"""Golden cases for OFD (see golden.py for the format).

Loss cases (loss "ofd"): inputs s, t (float32 N x C x H x W) and, for variant original, margin (C floats);
outputs loss (1 value) and grad_s; case.txt: weight, grad_scale, variant. The multi-layer case holds s0, t0,
s1, t1, ... and grad_s0, ...: the sum over layers of weight_i * ofd_loss, with case.txt weight0, weight1, ...
BN margin cases (loss "ofd_bn"): inputs gamma, beta (C floats), output margin (bn_margin in float64).
"""
import torch

from .golden import prebuilt_case, write_case
from .golden_ab import randn
from .ofd import bn_margin, ofd_loss


def _ofd(root, name, shape, seed, variant="seed", t_map=None, s_map=None, **kw):
    s, t = randn(shape, seed), randn(shape, seed + 1000)
    if t_map is not None:
        t = t_map(t)
    if s_map is not None:
        s = s_map(s)
    inputs = {"s": s, "t": t}
    if variant == "original":
        g = torch.Generator().manual_seed(seed + 2000)
        gamma, beta = torch.randn(shape[1], generator=g), torch.randn(shape[1], generator=g)
        inputs["margin"] = bn_margin(gamma.float(), beta.float()).float()
        fn = lambda s, t, margin: ofd_loss(s, t, margin, variant="original")  # noqa: E731
    else:
        fn = lambda s, t: ofd_loss(s, t)  # noqa: E731
    prebuilt_case(root, "ofd", name, fn, inputs, params={"variant": variant}, **kw)


def _no_negatives_in_channel0(t):
    t = t.clone()
    t[:, 0] = t[:, 0].abs()
    return t


def cases(root):
    _ofd(root, "1x1x1x1", (1, 1, 1, 1), seed=0)
    _ofd(root, "2x3x5x7", (2, 3, 5, 7), seed=1)
    _ofd(root, "3x5x7x9", (3, 5, 7, 9), seed=2)
    _ofd(root, "3x6x14x18_empty_channel", (3, 6, 14, 18), seed=3, t_map=_no_negatives_in_channel0)
    _ofd(root, "4x32x8x8_weighted", (4, 32, 8, 8), seed=4, weight=2.0, grad_loss=0.5, grad_scale=-2.0)
    _ofd(root, "8x64x16x16", (8, 64, 16, 16), seed=5)
    # The margin kernel splits the batch: 4 splits of 4 samples (16 x 1024 values a channel), and 3 uneven
    # splits of 5 samples with H*W odd (scalar loads in the margin kernel).
    _ofd(root, "16x8x32x32_split", (16, 8, 32, 32), seed=6)
    _ofd(root, "5x3x41x43_uneven_split", (5, 3, 41, 43), seed=7)
    # All-negative teacher (every margin a mean of the whole channel), and fully masked (s below t' everywhere:
    # loss and gradient exactly 0); all-positive teacher (margins 0: plain MSE).
    _ofd(root, "2x4x3x3_all_negative", (2, 4, 3, 3), seed=8, t_map=lambda t: -(t.abs() + 0.1))
    _ofd(root, "2x4x3x3_all_masked", (2, 4, 3, 3), seed=9, t_map=lambda t: -(t.abs() + 0.1),
         s_map=lambda s: -100.0 - s.abs())
    _ofd(root, "3x5x4x4_all_positive", (3, 5, 4, 4), seed=10, t_map=lambda t: t.abs() + 0.1)
    _ofd(root, "3x5x7x9_original", (3, 5, 7, 9), seed=11, variant="original")
    _ofd(root, "4x32x8x8_original_weighted", (4, 32, 8, 8), seed=12, variant="original", weight=0.5, grad_loss=2.0,
         grad_scale=0.25)
    _ofd(root, "2x4x3x3_original_all_negative", (2, 4, 3, 3), seed=13, variant="original",
         t_map=lambda t: -(t.abs() + 0.1))

    # Three layers at the resnet8x4 shapes, N = 2, seed variant, weights 1/4, 1/2, 1 (the original's 1/2^(L-i-1)).
    shapes = [(2, 64, 32, 32), (2, 128, 16, 16), (2, 256, 8, 8)]
    weights = [0.25, 0.5, 1.0]
    inputs = {}
    for i, shape in enumerate(shapes):
        inputs[f"s{i}"] = randn(shape, 100 + i)
        inputs[f"t{i}"] = randn(shape, 200 + i)

    def total(**x):
        return sum(w * ofd_loss(x[f"s{i}"], x[f"t{i}"]) for i, w in enumerate(weights))

    prebuilt_case(root, "ofd", "resnet8x4_3layers_n2", total, inputs,
                  params={"variant": "seed", **{f"weight{i}": repr(w) for i, w in enumerate(weights)}},
                  grad_inputs=[f"s{i}" for i in range(len(shapes))])

    # BN margins: random gamma, beta; then the edge cases (gamma 0 with beta < 0, = 0, > 0; negative gamma;
    # Phi(-m/s) just above and below 1e-3; deep tail).
    g = torch.Generator().manual_seed(14)
    gamma, beta = torch.randn(257, generator=g), 2.0 * torch.randn(257, generator=g)
    write_case(root, "ofd_bn", "257_random", {}, {"gamma": gamma, "beta": beta},
               {"margin": bn_margin(gamma.float(), beta.float())})
    gamma = torch.tensor([0.0, 0.0, 0.0, -2.0, 1.0, 1.0, 1.0, 1.0, 0.5, 3.0])
    beta = torch.tensor([-0.7, 0.0, 0.5, 1.0, 0.0, 3.0, 3.2, 40.0, -0.3, -5.0])
    write_case(root, "ofd_bn", "10_edges", {}, {"gamma": gamma, "beta": beta},
               {"margin": bn_margin(gamma.float(), beta.float())})
