"""Golden cases for PKT (see golden.py for the format).

kdfPKT defines the gradient of an all-zero student row as 0 (the seed's is NaN there, see pkt.py), so
the expected gradients of such rows are written as 0. At N = 1 both probability matrices are [[1]] and the
exact gradient is 0; the float64 reference leaves rounding residue (~1e-24), written as 0.
"""
import pathlib

import numpy as np
import torch

from .golden import feature_case, prebuilt_case, write_case
from .pkt import pkt_loss

# RepDistiller's resnet32x4 -> resnet8x4 feature maps (C, H, W) of layers 1-3: the same for both networks.
RESNET_LAYERS = [(64, 32, 32), (128, 16, 16), (256, 8, 8)]


def _fn(f_s, f_t):
    return pkt_loss(f_s, f_t)


def _zero_row_grads(root, name):
    """The kernel's value for the seed's NaN gradient of an all-zero student row: 0."""
    p = pathlib.Path(root) / "pkt" / name / "grad_f_s.npy"
    g = np.load(p)
    f_s = np.load(p.parent / "f_s.npy")
    g[np.all(f_s == 0, axis=1)] = 0.0
    if f_s.shape[0] == 1:
        g[:] = 0.0
    np.save(p, g, allow_pickle=False)


def _special(root, name, f_s, f_t, **kw):
    prebuilt_case(root, "pkt", name, _fn, {"f_s": f_s, "f_t": f_t}, grad_inputs=("f_s",), **kw)
    _zero_row_grads(root, name)


def multilayer_case(root, name, n, layers, weights, seed):
    """Several layer pairs (flattened maps) summed into one loss: f_s<l>, f_t<l>, weight<l> in, the total
    loss and each layer's gradient out."""
    g = torch.Generator().manual_seed(seed)
    inputs, outputs, params = {}, {}, {"layers": str(len(layers))}
    total = torch.zeros((), dtype=torch.float64)
    for l, (shape, w) in enumerate(zip(layers, weights)):
        d = int(np.prod(shape))
        f_s, f_t = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
        s64 = f_s.double().requires_grad_(True)
        loss = pkt_loss(s64, f_t.double()) * w
        loss.backward()
        total = total + loss.detach()
        inputs[f"f_s{l}"], inputs[f"f_t{l}"] = f_s, f_t
        outputs[f"grad_f_s{l}"] = s64.grad
        params[f"weight{l}"] = repr(float(w))
    outputs["loss"] = total.reshape(-1)
    write_case(root, "pkt", name, params, inputs, outputs)


def cases(root):
    feature_case(root, "pkt", "1x5_1x3", _fn, {"f_s": (1, 5), "f_t": (1, 3)}, seed=0)
    _zero_row_grads(root, "1x5_1x3")
    feature_case(root, "pkt", "2x3_2x3", _fn, {"f_s": (2, 3), "f_t": (2, 3)}, seed=1)
    feature_case(root, "pkt", "3x7_3x4", _fn, {"f_s": (3, 7), "f_t": (3, 4)}, seed=2)
    feature_case(root, "pkt", "17x9_17x5_weighted", _fn, {"f_s": (17, 9), "f_t": (17, 5)}, seed=3, weight=30000.0,
                 grad_loss=0.5, grad_scale=-2.0)
    feature_case(root, "pkt", "64x256_64x256", _fn, {"f_s": (64, 256), "f_t": (64, 256)}, seed=4)
    feature_case(root, "pkt", "64x130_64x37_large_values", _fn, {"f_s": (64, 130), "f_t": (64, 37)}, seed=5, scale=1e3)
    g = torch.Generator().manual_seed(6)
    f_s, f_t = torch.randn(6, 11, generator=g), torch.randn(6, 7, generator=g)
    f_s[3], f_t[4] = f_s[1], f_t[0]  # duplicated rows in both
    _special(root, "6x11_6x7_duplicated_rows", f_s, f_t)
    f_s, f_t = torch.randn(5, 6, generator=g), torch.randn(5, 9, generator=g)
    f_s[2], f_t[0] = 0, 0  # an all-zero student row and teacher row
    _special(root, "5x6_5x9_zero_rows", f_s, f_t, grad_loss=2.0)
    multilayer_case(root, "multilayer_resnet32x4_n2", 2, RESNET_LAYERS, [30000.0, 0.5, 2.0], seed=7)
