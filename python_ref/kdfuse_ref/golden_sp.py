"""Golden cases for SP (see golden.py for the format). Inputs are N x D (2-D) or N x C x H x W (flattened
per sample by the loss); the C tests pass them as N x D rows."""
import torch

from .golden import feature_case, prebuilt_case
from .sp import sp_loss

# resnet32x4 -> resnet8x4 feature maps after the first stage (CIFAR-100), as C x H x W.
RESNET_LAYERS = ((64, 32, 32), (128, 16, 16), (256, 8, 8))
LAYER_WEIGHTS = (1.0, 3000.0, 0.5)


def _layers(f_s0, f_t0, f_s1, f_t1, f_s2, f_t2):
    pairs = ((f_s0, f_t0), (f_s1, f_t1), (f_s2, f_t2))
    return sum(w * sp_loss(s, t) for w, (s, t) in zip(LAYER_WEIGHTS, pairs))


def cases(root):
    fn = lambda f_s, f_t: sp_loss(f_s, f_t)  # noqa: E731
    feature_case(root, "sp", "1x5_vs_1x7", fn, {"f_s": (1, 5), "f_t": (1, 7)}, seed=0)
    feature_case(root, "sp", "2x3", fn, {"f_s": (2, 3), "f_t": (2, 3)}, seed=1)
    feature_case(root, "sp", "3x5x7x9_vs_3x6x14x18", fn, {"f_s": (3, 5, 7, 9), "f_t": (3, 6, 14, 18)}, seed=2)
    feature_case(root, "sp", "17x13_vs_17x30_weighted", fn, {"f_s": (17, 13), "f_t": (17, 30)}, seed=3,
                 weight=3000.0, grad_loss=0.5, grad_scale=-2.0)
    feature_case(root, "sp", "64x256", fn, {"f_s": (64, 256), "f_t": (64, 256)}, seed=4)
    # Gram matrices split into column slices with a shorter last one (common/gram_split.h): 130 = 2 x 44 + 42,
    # 67 = 34 + 33.
    feature_case(root, "sp", "5x130_vs_5x67_split", fn, {"f_s": (5, 130), "f_t": (5, 67)}, seed=6)
    feature_case(root, "sp", "8x32x8x8_vs_8x64x8x8", fn, {"f_s": (8, 32, 8, 8), "f_t": (8, 64, 8, 8)}, seed=5)
    g = torch.Generator().manual_seed(6)
    f_s, f_t = torch.randn(5, 9, generator=g), torch.randn(5, 6, generator=g)
    f_s[3] = f_s[1]  # duplicated rows (identical Gram rows)
    f_t[4] = f_t[0]
    prebuilt_case(root, "sp", "5x9_vs_5x6_duplicated_rows", fn, {"f_s": f_s, "f_t": f_t}, grad_inputs=("f_s",))
    g = torch.Generator().manual_seed(7)
    f_s, f_t = torch.randn(4, 7, generator=g), torch.randn(4, 5, generator=g)
    f_s[2] = 0.0  # a zero student row: its Gram row is 0 and F.normalize divides it by 1e-12
    f_t[1] = 0.0
    prebuilt_case(root, "sp", "4x7_vs_4x5_zero_rows", fn, {"f_s": f_s, "f_t": f_t}, grad_inputs=("f_s",))
    g = torch.Generator().manual_seed(8)
    shapes = {}
    for i, chw in enumerate(RESNET_LAYERS):
        shapes[f"f_s{i}"] = (2,) + chw
        shapes[f"f_t{i}"] = (2,) + chw
    inputs = {k: torch.randn(*s, generator=g) for k, s in shapes.items()}
    prebuilt_case(root, "sp", "resnet8x4_3_layers_n2", _layers, inputs, grad_inputs=("f_s0", "f_s1", "f_s2"),
                  params={f"weight{i}": repr(w) for i, w in enumerate(LAYER_WEIGHTS)})
