"""ShuffleNetV2 (net size 1) for 32x32 inputs as RepDistiller's `ShuffleV2`.

Stem: 3x3 conv stride 1 to 24 channels + BN + ReLU (32x32). Three stages, each a down-sampling unit then
(3, 7, 3) basic units, with (116, 232, 464) channels at 16x16, 8x8, 4x4; a 1x1 conv to 1024 + BN + ReLU, 4x4
average pool, linear classifier. Basic unit: the channels split in halves, one half through 1x1 conv + BN +
ReLU, 3x3 depthwise + BN, 1x1 conv + BN + ReLU, concatenated with the other half, channels shuffled (2 groups).
Down-sampling unit: both branches take the whole input (left: depthwise stride 2 + BN, 1x1 + BN + ReLU; right:
1x1 + BN + ReLU, depthwise stride 2 + BN, 1x1 + BN + ReLU), concatenated, shuffled.

forward(x, is_feat=True, preact=False) returns ([f0, f1, f2, f3, f4], logits): f0 the stem, f1..f3 the stage
outputs (preact=True: the last unit's output with its final ReLU not applied), f4 the pooled 1024-vector.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def _shuffle(x, groups=2):
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class BasicUnit(nn.Module):
    def __init__(self, channels):
        super().__init__()
        half = channels // 2
        self.conv1 = nn.Conv2d(half, half, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, half, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(half)

    def forward(self, x):
        """(output, output with the branch's last ReLU not applied)."""
        keep, x = x.chunk(2, dim=1)
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        pre = self.bn3(self.conv3(y))
        return _shuffle(torch.cat([keep, F.relu(pre)], 1)), _shuffle(torch.cat([keep, pre], 1))


class DownUnit(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        mid = c_out // 2
        self.left = nn.Sequential(nn.Conv2d(c_in, c_in, 3, 2, 1, groups=c_in, bias=False), nn.BatchNorm2d(c_in),
                                  nn.Conv2d(c_in, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU())
        self.right = nn.Sequential(nn.Conv2d(c_in, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                                   nn.Conv2d(mid, mid, 3, 2, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
                                   nn.Conv2d(mid, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU())

    def forward(self, x):
        return _shuffle(torch.cat([self.left(x), self.right(x)], 1))


class ShuffleNetV2(nn.Module):
    def __init__(self, widths=(116, 232, 464), units=(3, 7, 3), num_classes=100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        c_in, stages = 24, []
        for w, n in zip(widths, units):
            stages.append(nn.ModuleList([DownUnit(c_in, w)] + [BasicUnit(w) for _ in range(n)]))
            c_in = w
        self.stages = nn.ModuleList(stages)
        self.conv2 = nn.Conv2d(c_in, 1024, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1024)
        self.fc = nn.Linear(1024, num_classes)

    def get_bn_before_relu(self):
        return [stage[-1].bn3 for stage in self.stages]

    def forward(self, x, is_feat=False, preact=False):
        x = F.relu(self.bn1(self.conv1(x)))
        feats = [x]
        for stage in self.stages:
            x = stage[0](x)
            for unit in stage[1:]:
                x, pre = unit(x)
            feats.append(pre if preact else x)
        x = F.adaptive_avg_pool2d(F.relu(self.bn2(self.conv2(x))), 1).flatten(1)
        feats.append(x)
        logits = self.fc(x)
        return (feats, logits) if is_feat else logits


def shufflev2(num_classes=100):
    return ShuffleNetV2(num_classes=num_classes)
