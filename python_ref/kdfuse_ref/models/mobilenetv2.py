"""MobileNetV2 for 32x32 inputs as RepDistiller's `mobile_half` (expansion 6, width multiplier 0.5).

Stem: 3x3 conv stride 2 + BN + ReLU (32 * 0.5 = 16 channels, 16x16). Seven stages of inverted residual blocks
(1x1 expand + BN + ReLU, 3x3 depthwise + BN + ReLU, 1x1 project + BN; identity added when stride 1 and the
widths agree), (expansion, width, blocks, stride) = (1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
(6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1), widths times 0.5; a 1x1 conv to 1280 channels + BN + ReLU,
average pool over the 2x2 map, linear classifier.

forward(x, is_feat=True, preact=False) returns ([f0, f1, f2, f3, f4, f5], logits): f0 the stem (16@16x16), f1
after stage 1 (12@16x16), f2 after stage 2 (16@8x8), f3 after stage 4 (48@4x4), f4 after stage 6 (160@2x2),
f5 the pooled 1280-vector. preact is accepted and ignored, as the seed's (the block outputs are linear already).
"""
import torch.nn as nn
import torch.nn.functional as F

SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _conv_bn(c_in, c_out, k, stride=1, groups=1, relu=True):
    layers = [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]
    return layers + [nn.ReLU()] if relu else layers


class InvertedResidual(nn.Module):
    def __init__(self, c_in, c_out, stride, expand):
        super().__init__()
        mid = c_in * expand
        self.residual = stride == 1 and c_in == c_out
        self.body = nn.Sequential(*_conv_bn(c_in, mid, 1), *_conv_bn(mid, mid, 3, stride, groups=mid),
                                  *_conv_bn(mid, c_out, 1, relu=False))

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    def __init__(self, expansion=6, width=0.5, num_classes=100):
        super().__init__()
        c_in = int(32 * width)
        self.stem = nn.Sequential(*_conv_bn(3, c_in, 3, 2))
        stages = []
        for t, c, n, s in SETTINGS:
            c_out = int(c * width)
            blocks = []
            for b in range(n):
                blocks.append(InvertedResidual(c_in, c_out, s if b == 0 else 1, expansion if t != 1 else 1))
                c_in = c_out
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.last_channel = 1280  # the seed keeps 1280 for width multipliers <= 1
        self.head = nn.Sequential(*_conv_bn(c_in, self.last_channel, 1))
        self.classifier = nn.Linear(self.last_channel, num_classes)

    def get_bn_before_relu(self):
        return [self.stages[k][-1].body[-1] for k in (1, 2, 4, 6)]

    def forward(self, x, is_feat=False, preact=False):
        x = self.stem(x)
        feats = [x]
        for k, stage in enumerate(self.stages):
            x = stage(x)
            if k in (1, 2, 4, 6):
                feats.append(x)
        x = F.adaptive_avg_pool2d(self.head(x), 1).flatten(1)
        feats.append(x)
        logits = self.classifier(x)
        return (feats, logits) if is_feat else logits


def mobile_half(num_classes=100):
    return MobileNetV2(6, 0.5, num_classes)
