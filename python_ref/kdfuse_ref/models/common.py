"""Shared pieces of the CIFAR networks: seeded initialisation, synthetic images, BatchNorm calibration.

Nothing here is trained. A network is built with seeded random weights (`init_weights`), then its BatchNorm
running statistics are calibrated on synthetic 32x32 images (`calibrate_bn`: train mode, cumulative averages,
no gradient), and it is used in eval mode. The BatchNorm affine parameters are drawn at random around
(1, 0) so that the pre-ReLU maps, and the margins OFD derives from them, are not all standard normal; the
classifier is scaled to the logit range of a trained network (`scale_classifier`).
"""
import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

# CIFAR-100's per-channel mean and standard deviation (the usual normalisation of RepDistiller's loaders).
CIFAR_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR_STD = (0.2673, 0.2564, 0.2762)


@contextlib.contextmanager
def seeded(seed):
    """Run the block with torch's global CPU generator seeded, restoring its state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def init_weights(model, seed):
    """Seeded random weights: convolutions He-normal on fan_out, linear layers He-normal on fan_in with zero bias,
    BatchNorm weight U(0.5, 1.5) and bias 0.25 * N(0, 1) (then `calibrate_bn` sets the running statistics)."""
    with seeded(seed):
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                with torch.no_grad():
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.25)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
    return model


def synthetic_images(n, seed, size=32):
    """n synthetic RGB images (n x 3 x size x size), normalised as CIFAR inputs.

    Each image is a sum of smooth random fields at three scales (4x4, 8x8 and 16x16 grids of uniform values,
    bilinearly upsampled) plus pixel noise, squashed to [0, 1] and normalised with CIFAR-100's mean and
    standard deviation: spatially correlated like photographs, with a per-image colour cast and contrast."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(n, 3, size, size)
    for grid, amp in ((4, 1.0), (8, 0.5), (16, 0.25)):
        field = torch.rand(n, 3, grid, grid, generator=g) * 2 - 1
        img += amp * F.interpolate(field, size=(size, size), mode="bilinear", align_corners=False)
    img += 0.1 * torch.randn(n, 3, size, size, generator=g)
    cast = torch.rand(n, 3, 1, 1, generator=g) - 0.5
    contrast = 0.5 + torch.rand(n, 1, 1, 1, generator=g)
    img = torch.sigmoid(contrast * img + cast)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return (img - mean) / std


@torch.no_grad()
def calibrate_bn(model, images, batch_size=64):
    """Set every BatchNorm's running mean and variance to the cumulative average over the batches of `images`
    (momentum None, train mode, no gradient), then put the model in eval mode. Returns the model."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for start in range(0, images.shape[0], batch_size):
        model(images[start:start + batch_size])
    model.eval()
    return model


@torch.no_grad()
def scale_classifier(model, images, row_std=3.0):
    """Scale the last linear layer so that the logits of `images` have a mean per-row standard deviation of
    row_std: a trained CIFAR-100 network's scale (confident predictions), where random weights give ~0.5-2."""
    fc = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    logits = model(images)
    factor = row_std / logits.std(dim=1).mean().item()
    fc.weight.mul_(factor)
    fc.bias.mul_(factor)
    return model


def build(cls, seed, calibration_images, *args, logit_row_std=3.0, **kwargs):
    """cls(*args, **kwargs) with seeded weights, BatchNorm calibrated on `calibration_images` and the classifier
    scaled to logit_row_std (None: not scaled), in eval mode."""
    model = cls(*args, **kwargs)
    init_weights(model, seed)
    calibrate_bn(model, calibration_images)
    if logit_row_std is not None:
        scale_classifier(model, calibration_images[:32], logit_row_std)
    return model
