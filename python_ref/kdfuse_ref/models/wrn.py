"""Wide ResNet for 32x32 inputs as RepDistiller's `wrn_<depth>_<k>` (pre-activation blocks, dropout 0).

Layout: 3x3 stem to 16 channels, three groups of n = (depth - 4) / 6 pre-activation blocks with 16k, 32k, 64k
channels at 32x32, 16x16, 8x8 (BN-ReLU-conv3x3-BN-ReLU-conv3x3, identity shortcut or a 1x1 conv on the activated
input when the shape changes), final BN + ReLU, 8x8 average pool, linear classifier.

forward(x, is_feat=True, preact=False) returns ([f0, f1, f2, f3, f4], logits): f0 the stem output, f1..f3 the
group outputs, f4 the pooled vector. preact=True replaces f1, f2, f3 by the BN that follows them (the next
group's first BN, the final BN for f3), i.e. the map just before its ReLU, as RepDistiller does.
wrn_40_2: k = 2, six blocks per group; wrn_16_2: k = 2, two blocks per group.
"""
import torch.nn as nn
import torch.nn.functional as F


class PreActBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.project = None if (c_in == c_out and stride == 1) else nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x):
        a = F.relu(self.bn1(x))
        y = self.conv2(F.relu(self.bn2(self.conv1(a))))
        return y + (x if self.project is None else self.project(a))


class WideResNet(nn.Module):
    def __init__(self, depth, k, num_classes=100):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        widths = (16, 16 * k, 32 * k, 64 * k)
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        groups, c_in = [], widths[0]
        for g, c_out in enumerate(widths[1:]):
            groups.append(nn.Sequential(*[PreActBlock(c_in if b == 0 else c_out, c_out, 2 if (g > 0 and b == 0) else 1)
                                          for b in range(n)]))
            c_in = c_out
        self.groups = nn.ModuleList(groups)
        self.bn_final = nn.BatchNorm2d(c_in)
        self.fc = nn.Linear(c_in, num_classes)

    def get_bn_before_relu(self):
        """The BN applied to f1, f2, f3 before their ReLU (the preact features are these BNs' outputs)."""
        return [self.groups[1][0].bn1, self.groups[2][0].bn1, self.bn_final]

    def forward(self, x, is_feat=False, preact=False):
        x = self.conv1(x)
        feats = [x]
        for group in self.groups:
            x = group(x)
            feats.append(x)
        x = F.relu(self.bn_final(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        logits = self.fc(x)
        if preact:
            feats = [feats[0]] + [bn(f) for bn, f in zip(self.get_bn_before_relu(), feats[1:])]
        feats.append(x)
        return (feats, logits) if is_feat else logits


def wrn_40_2(num_classes=100):
    return WideResNet(40, 2, num_classes)


def wrn_16_2(num_classes=100):
    return WideResNet(16, 2, num_classes)
