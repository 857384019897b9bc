"""ResNet for 32x32 inputs as RepDistiller's CIFAR `resnet*` family (basic blocks, three stages).

Layout: 3x3 stem (channels[0]) + BN + ReLU, then three stages of n = (depth - 2) / 6 basic blocks with
channels[1], channels[2], channels[3] at 32x32, 16x16 and 8x8 (the first block of stages 2 and 3 has stride 2;
a block whose input and output differ in shape has a 1x1 conv + BN shortcut), 8x8 average pool, linear classifier.

forward(x, is_feat=True, preact=False) returns ([f0, f1, f2, f3, f4], logits): f0 the stem output, f1..f3 the
stage outputs (preact=True: the last block's sum before its final ReLU), f4 the pooled vector.
resnet8x4: channels (32, 64, 128, 256), one block per stage; resnet32x4: the same channels, five blocks.
"""
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        """(output, pre-ReLU sum)."""
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        pre = y + (x if self.shortcut is None else self.shortcut(x))
        return F.relu(pre), pre


class CifarResNet(nn.Module):
    def __init__(self, depth, channels, num_classes=100):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, channels[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        stages, c_in = [], channels[0]
        for k, c_out in enumerate(channels[1:]):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(c_in, c_out, 2 if (k > 0 and b == 0) else 1))
                c_in = c_out
            stages.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(c_in, num_classes)

    def get_bn_before_relu(self):
        """The BN feeding each stage's last pre-ReLU sum (OFD's margin source, as RepDistiller's)."""
        return [stage[-1].bn2 for stage in self.stages]

    def forward(self, x, is_feat=False, preact=False):
        x = F.relu(self.bn1(self.conv1(x)))
        feats = [x]
        for stage in self.stages:
            for block in stage:
                x, pre = block(x)
            feats.append(pre if preact else x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        feats.append(x)
        logits = self.fc(x)
        return (feats, logits) if is_feat else logits


def resnet8x4(num_classes=100):
    return CifarResNet(8, (32, 64, 128, 256), num_classes)


def resnet32x4(num_classes=100):
    return CifarResNet(32, (32, 64, 128, 256), num_classes)
