"""Golden cases for RKD (see golden.py for the format).

kdfRKD defines the distance term of N = 1 (no positive distance) as 0, the reference's
empty_mean="zero", and holds zero differences (duplicate rows) at u = 0 in the angle gradient, the
reference's degenerate_grad="zero"; every forward value is the seed's.
"""
import numpy as np
import torch

from .golden import feature_case, prebuilt_case, write_case
from .rkd import rkd_loss

# RepDistiller's resnet32x4 -> resnet8x4 feature maps (C, H, W) of layers 1-3: the same for both networks.
RESNET_LAYERS = [(64, 32, 32), (128, 16, 16), (256, 8, 8)]


def _fn(w_d=25.0, w_a=50.0):
    return lambda e_s, e_t: rkd_loss(e_s, e_t, w_d, w_a, empty_mean="zero", degenerate_grad="zero")


def _case(root, name, shapes, seed, w_d=25.0, w_a=50.0, **kw):
    feature_case(root, "rkd", name, _fn(w_d, w_a), shapes, seed, grad_inputs=("e_s",),
                 params={"w_d": repr(w_d), "w_a": repr(w_a)}, **kw)


def _special(root, name, e_s, e_t, **kw):
    prebuilt_case(root, "rkd", name, _fn(), {"e_s": e_s, "e_t": e_t}, grad_inputs=("e_s",),
                  params={"w_d": repr(25.0), "w_a": repr(50.0)}, **kw)


def multilayer_case(root, name, n, layers, weights, seed):
    """Several layer pairs (flattened maps) summed into one loss: e_s<l>, e_t<l>, weight<l> in, the total
    loss and each layer's gradient out."""
    g = torch.Generator().manual_seed(seed)
    inputs, outputs, params = {}, {}, {"layers": str(len(layers))}
    total = torch.zeros((), dtype=torch.float64)
    for l, (shape, w) in enumerate(zip(layers, weights)):
        d = int(np.prod(shape))
        e_s, e_t = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
        s64 = e_s.double().requires_grad_(True)
        loss = rkd_loss(s64, e_t.double()) * w
        loss.backward()
        total = total + loss.detach()
        inputs[f"e_s{l}"], inputs[f"e_t{l}"] = e_s, e_t
        outputs[f"grad_e_s{l}"] = s64.grad
        params[f"weight{l}"] = repr(float(w))
    outputs["loss"] = total.reshape(-1)
    write_case(root, "rkd", name, params, inputs, outputs)


def cases(root):
    _case(root, "1x4_1x6", {"e_s": (1, 4), "e_t": (1, 6)}, seed=0)
    _case(root, "2x3_2x5", {"e_s": (2, 3), "e_t": (2, 5)}, seed=1)
    _case(root, "3x7_3x4", {"e_s": (3, 7), "e_t": (3, 4)}, seed=2)
    _case(root, "17x9_17x5_weighted", {"e_s": (17, 9), "e_t": (17, 5)}, seed=3, w_d=2.0, w_a=3.0, weight=1.5,
          grad_loss=0.5, grad_scale=-2.0)
    _case(root, "64x256_64x256", {"e_s": (64, 256), "e_t": (64, 256)}, seed=4)
    _case(root, "23x130_23x37_large_values", {"e_s": (23, 130), "e_t": (23, 37)}, seed=5, scale=1e3)
    g = torch.Generator().manual_seed(6)
    e_s, e_t = torch.randn(6, 11, generator=g), torch.randn(6, 7, generator=g)
    e_t[4] = e_t[0]  # duplicated teacher rows (the student's duplicates: see below)
    e_s[2] = 0       # a zero student row
    e_s[5] = e_s[1]  # duplicated student rows: the angle gradient divides by 1e-12 (the seed)
    _special(root, "6x11_6x7_zero_and_duplicated_rows", e_s, e_t)
    e_s = torch.tensor([[1.0, -2.0, 0.5, 3.0, 0.25]]).repeat(4, 1)  # all identical: distances clamp to 1e-6
    _special(root, "4x5_4x3_identical_student_rows", e_s, torch.randn(4, 3, generator=g), grad_loss=0.25)
    multilayer_case(root, "multilayer_resnet32x4_n3", 3, RESNET_LAYERS, [1.0, 0.5, 2.0], seed=7)
