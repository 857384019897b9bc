"""VGG with BatchNorm for 32x32 inputs as RepDistiller's CIFAR `vgg*` family.

Five blocks of 3x3 conv + BN + ReLU (the last ReLU of each block applied outside it, so the block output is
the pre-ReLU map), 2x2 max pools after blocks 0, 1, 2 (block 3's pool is used only for 64x64 inputs, as the
seed), global average pool after block 4, linear classifier. Maps: 32x32, 16x16, 8x8, 4x4, 4x4.

forward(x, is_feat=True, preact=False) returns ([f0, f1, f2, f3, f4, f5], logits): f0 block 0 after ReLU,
f1..f3 blocks 1..3 after ReLU (preact=True: before it), f4 block 4 after ReLU, f5 the pooled vector.
vgg13: (64, 64), (128, 128), (256, 256), (512, 512), (512, 512); vgg8: one conv per block, same widths.
"""
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
}


def _block(c_in, widths):
    layers = []
    for w in widths:
        layers += [nn.Conv2d(c_in, w, 3, 1, 1), nn.BatchNorm2d(w), nn.ReLU()]
        c_in = w
    return nn.Sequential(*layers[:-1])  # the block ends before its last ReLU


class CifarVGG(nn.Module):
    def __init__(self, config, num_classes=100):
        super().__init__()
        blocks, c_in = [], 3
        for widths in config:
            blocks.append(_block(c_in, widths))
            c_in = widths[-1]
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Linear(c_in, num_classes)

    def get_bn_before_relu(self):
        """The last BN of blocks 1..3 (the preact features f1..f3 are their outputs)."""
        return [self.blocks[k][-1] for k in (1, 2, 3)]

    def forward(self, x, is_feat=False, preact=False):
        big = x.shape[2] == 64
        x = F.relu(self.blocks[0](x))
        feats = [x]
        for k in (1, 2, 3):
            pre = self.blocks[k](F.max_pool2d(x, 2))
            x = F.relu(pre)
            feats.append(pre if preact else x)
        if big:
            x = F.max_pool2d(x, 2)
        x = F.relu(self.blocks[4](x))
        feats.append(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        feats.append(x)
        logits = self.classifier(x)
        return (feats, logits) if is_feat else logits


def vgg8(num_classes=100):
    return CifarVGG(CONFIGS["vgg8"], num_classes)


def vgg13(num_classes=100):
    return CifarVGG(CONFIGS["vgg13"], num_classes)
