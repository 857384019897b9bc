"""Golden cases for FitNet (see golden.py for the format)."""
import torch

from .fitnet import fitnet_loss
from .golden import feature_case


def cases(root):
    fn = lambda f_s, f_t: fitnet_loss(f_s, f_t)  # noqa: E731
    feature_case(root, "fitnet", "1x1x1x1", fn, {"f_s": (1, 1, 1, 1), "f_t": (1, 1, 1, 1)}, seed=0)
    feature_case(root, "fitnet", "2x3x5x7", fn, {"f_s": (2, 3, 5, 7), "f_t": (2, 3, 5, 7)}, seed=1)
    feature_case(root, "fitnet", "4x32x8x8_weighted", fn, {"f_s": (4, 32, 8, 8), "f_t": (4, 32, 8, 8)}, seed=2,
                 weight=100.0, grad_loss=0.5, grad_scale=-2.0)
    feature_case(root, "fitnet", "3x17x9x11_large_values", fn, {"f_s": (3, 17, 9, 11), "f_t": (3, 17, 9, 11)},
                 seed=3, scale=1e3)
    feature_case(root, "fitnet", "8x64x16x16", fn, {"f_s": (8, 64, 16, 16), "f_t": (8, 64, 16, 16)}, seed=4)
