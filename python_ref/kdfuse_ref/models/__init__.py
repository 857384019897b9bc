"""Small re-implementations of RepDistiller's CIFAR-100 networks, to produce realistic distillation inputs.

    from kdfuse_ref import models
    net = models.network("resnet32x4")                 # seeded weights, BatchNorm calibrated, eval mode
    feats, logits = net(models.images(16), is_feat=True, preact=False)

Every network has RepDistiller's layer and feature shapes and its `forward(x, is_feat=False, preact=False)`
convention (features f0 .. f_{L-1}, the pooled vector last, then the logits) and `get_bn_before_relu()`.
Nothing is trained: weights are seeded random (He-normal convolutions, BatchNorm affine drawn around (1, 0)),
the BatchNorm running statistics are calibrated on synthetic 32x32 images (train mode, cumulative average,
`common.calibrate_bn`) before the network is switched to eval mode, and the classifier is scaled so that the
logits have a trained network's range (per-row standard deviation 3, `common.scale_classifier`). See
docs/accuracy.md.

Differences from RepDistiller's code (none changes a feature shape): every network is written from its
description, not copied; the initialisation is ours (the classifier He-normal, then scaled as above); global
average pooling where the seed uses a fixed-size pool (the same value at 32x32); MobileNetV2 only as
`mobile_half`, ShuffleNetV2 only at net size 1, no ShuffleNetV1.
"""
import functools

from . import common
from .mobilenetv2 import mobile_half
from .resnet import resnet8x4, resnet32x4
from .shufflenetv2 import shufflev2
from .vgg import vgg8, vgg13
from .wrn import wrn_16_2, wrn_40_2

BUILDERS = {
    "resnet8x4": resnet8x4,
    "resnet32x4": resnet32x4,
    "wrn_16_2": wrn_16_2,
    "wrn_40_2": wrn_40_2,
    "vgg8": vgg8,
    "vgg13": vgg13,
    "MobileNetV2": mobile_half,
    "ShuffleV2": shufflev2,
}

# RepDistiller's CIFAR-100 teacher -> student pairs covered here.
PAIRS = (
    ("resnet32x4", "resnet8x4"),
    ("wrn_40_2", "wrn_16_2"),
    ("vgg13", "vgg8"),
    ("vgg13", "MobileNetV2"),
    ("resnet32x4", "ShuffleV2"),
)

CALIBRATION_IMAGES = 128  # two batches of 64
CALIBRATION_SEED = 1000


def _seed_of(name):
    return 17 + sorted(BUILDERS).index(name)


@functools.lru_cache(maxsize=None)
def network(name, calibration_images=CALIBRATION_IMAGES):
    """The network `name` with seeded random weights and calibrated BatchNorm, in eval mode (cached)."""
    images = common.synthetic_images(calibration_images, CALIBRATION_SEED)
    return common.build(BUILDERS[name], _seed_of(name), images)


def images(n, seed=0):
    """n synthetic normalised 32x32 images (common.synthetic_images), distinct from the calibration set."""
    return common.synthetic_images(n, 2000 + seed)


__all__ = ["BUILDERS", "PAIRS", "network", "images", "common"]
