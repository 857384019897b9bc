"""Golden cases for AB (see golden.py for the format).

Inputs: s (the connector's pre-ReLU output) and t (the teacher's pre-ReLU map), float32 N x C x H x W;
outputs: loss (1 value) and grad_s. case.txt: weight, grad_scale, margin, seed_scaling. The multi-layer case
holds s0, t0, s1, t1, ... and grad_s0, grad_s1, ... with the seed module's sum over layers (ABLoss weights).
"""
import torch

from .ab import ABLoss, ab_loss
from .golden import prebuilt_case


def randn(shape, seed, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _ab(root, name, shape, seed, margin=1.0, seed_scaling=True, s_scale=2.0, **kw):
    fn = lambda s, t: ab_loss(s, t, margin, scale=seed_scaling)  # noqa: E731
    inputs = {"s": randn(shape, seed, s_scale), "t": randn(shape, seed + 1000)}
    prebuilt_case(root, "ab", name, fn, inputs, params={"margin": repr(float(margin)),
                                                         "seed_scaling": int(seed_scaling)}, **kw)


def cases(root):
    _ab(root, "1x1x1x1", (1, 1, 1, 1), seed=0)
    _ab(root, "2x3x5x7", (2, 3, 5, 7), seed=1)
    _ab(root, "3x5x7x9", (3, 5, 7, 9), seed=2)
    _ab(root, "2x6x14x14_margin0.5_raw_weighted", (2, 6, 14, 14), seed=3, margin=0.5, seed_scaling=False,
        weight=0.25, grad_loss=0.5, grad_scale=-2.0)
    _ab(root, "4x32x8x8_margin0", (4, 32, 8, 8), seed=4, margin=0.0, grad_loss=1.5, grad_scale=3.0)
    _ab(root, "3x17x9x11_large_values", (3, 17, 9, 11), seed=5, s_scale=1e3)
    _ab(root, "8x64x16x16", (8, 64, 16, 16), seed=6)
    # Three layers at the resnet8x4 shapes (RepDistiller feeds AB feat[1:-1]: 64x32x32, 128x16x16, 256x8x8),
    # N = 2, summed with the seed module's weights 2^(i - L + 1) = 1/4, 1/2, 1.
    shapes = [(2, 64, 32, 32), (2, 128, 16, 16), (2, 256, 8, 8)]
    inputs = {}
    for i, shape in enumerate(shapes):
        inputs[f"s{i}"] = randn(shape, 100 + i, 2.0)
        inputs[f"t{i}"] = randn(shape, 200 + i)
    names = [f"s{i}" for i in range(len(shapes))]

    def total(**x):
        layers = ABLoss(len(shapes))([x[f"s{i}"] for i in range(len(shapes))],
                                     [x[f"t{i}"] for i in range(len(shapes))])
        return sum(layers)

    prebuilt_case(root, "ab", "resnet8x4_3layers_n2", total, inputs, params={"margin": "1.0", "seed_scaling": 1},
                  grad_inputs=names)
