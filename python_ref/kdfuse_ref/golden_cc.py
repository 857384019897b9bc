"""Golden cases for CC, both variants (see golden.py for the format). Inputs are N x D (2-D) or
N x C x H x W (flattened per sample by the seed variant); the C tests pass them as N x D rows."""
import torch

from .cc import cc_loss
from .golden import feature_case, prebuilt_case

RESNET_LAYERS = ((64, 32, 32), (128, 16, 16), (256, 8, 8))
LAYER_WEIGHTS = (1.0, 0.02, 5.0)


def _layers(f_s0, f_t0, f_s1, f_t1, f_s2, f_t2):
    pairs = ((f_s0, f_t0), (f_s1, f_t1), (f_s2, f_t2))
    return sum(w * cc_loss(s, t) for w, (s, t) in zip(LAYER_WEIGHTS, pairs))


def cases(root):
    seed = lambda f_s, f_t: cc_loss(f_s, f_t, "seed")  # noqa: E731
    ship = lambda f_s, f_t: cc_loss(f_s, f_t, "repdistiller")  # noqa: E731
    sp = {"variant": "seed"}
    rp = {"variant": "repdistiller"}
    both = ("f_s", "f_t")
    # Seed variant: Gram matrices over the Frobenius norm.
    feature_case(root, "cc", "seed_1x5_vs_1x3", seed, {"f_s": (1, 5), "f_t": (1, 3)}, seed=0, params=sp)
    feature_case(root, "cc", "seed_2x3", seed, {"f_s": (2, 3), "f_t": (2, 3)}, seed=1, params=sp)
    # D kept small: the seed gradient is a small difference of Gram-sized terms, and the SIMT cuBLAS shim
    # sums a GEMM's D products sequentially in fp32 (at D = 1512 its Gram rounding alone exceeds rtol 1e-4).
    feature_case(root, "cc", "seed_3x5x3x3_vs_3x6x4x4", seed, {"f_s": (3, 5, 3, 3), "f_t": (3, 6, 4, 4)}, seed=2,
                 params=sp)
    feature_case(root, "cc", "seed_17x13_vs_17x30_weighted", seed, {"f_s": (17, 13), "f_t": (17, 30)}, seed=3,
                 weight=0.02, grad_loss=0.5, grad_scale=-2.0, params=sp)
    feature_case(root, "cc", "seed_64x128", seed, {"f_s": (64, 128), "f_t": (64, 128)}, seed=4, params=sp)
    g = torch.Generator().manual_seed(5)
    f_s, f_t = torch.randn(5, 9, generator=g), torch.randn(5, 6, generator=g)
    f_s[3] = f_s[1]
    f_s[2] = 0.0  # a zero row (not all rows: an all-zero input is NaN, as the seed)
    f_t[4] = f_t[0]
    prebuilt_case(root, "cc", "seed_5x9_vs_5x6_duplicated_and_zero_rows", seed, {"f_s": f_s, "f_t": f_t}, params=sp,
                  grad_inputs=("f_s",))
    # RepDistiller's shipped variant: consecutive rows of |f_s - f_t|; both inputs get gradients.
    feature_case(root, "cc", "ship_2x3", ship, {"f_s": (2, 3), "f_t": (2, 3)}, seed=6, params=rp, grad_inputs=both)
    feature_case(root, "cc", "ship_3x5", ship, {"f_s": (3, 5), "f_t": (3, 5)}, seed=7, params=rp, grad_inputs=both)
    feature_case(root, "cc", "ship_17x13_weighted", ship, {"f_s": (17, 13), "f_t": (17, 13)}, seed=8, weight=0.02,
                 grad_loss=0.5, grad_scale=-2.0, params=rp, grad_inputs=both)
    feature_case(root, "cc", "ship_64x128", ship, {"f_s": (64, 128), "f_t": (64, 128)}, seed=9, params=rp,
                 grad_inputs=both)
    feature_case(root, "cc", "ship_70x33", ship, {"f_s": (70, 33), "f_t": (70, 33)}, seed=10, params=rp,
                 grad_inputs=both)
    g = torch.Generator().manual_seed(11)
    f_s, f_t = torch.randn(6, 7, generator=g), torch.randn(6, 7, generator=g)
    f_s[2] = f_s[1]
    f_t[2] = f_t[1]  # a duplicated row pair: delta rows equal
    f_s[4, :3] = f_t[4, :3]  # exact zeros of delta: d|x|/dx = 0 there
    prebuilt_case(root, "cc", "ship_6x7_duplicated_rows_and_zero_delta", ship, {"f_s": f_s, "f_t": f_t}, params=rp,
                  grad_inputs=both)
    g = torch.Generator().manual_seed(12)
    shapes = {}
    for i, chw in enumerate(RESNET_LAYERS):
        shapes[f"f_s{i}"] = (2,) + chw
        shapes[f"f_t{i}"] = (2,) + chw
    inputs = {k: torch.randn(*s, generator=g) for k, s in shapes.items()}
    prebuilt_case(root, "cc", "seed_resnet8x4_3_layers_n2", _layers, inputs, grad_inputs=("f_s0", "f_s1", "f_s2"),
                  params=dict(sp, **{f"weight{i}": repr(w) for i, w in enumerate(LAYER_WEIGHTS)}))
