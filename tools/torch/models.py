"""PyTorch twins of advlab's architectures (core/models/*.c).

Each class reproduces the module tree of its reference definition, so state_dict() names and
shapes are exactly those of the checkpoints the reference code writes (formats.md section 2):

  smallcnn         TRADES models/small_cnn.py SmallCNN (1x28x28)
  preact_resnet18  PreActResNet18 with the final `bn` (fast_adversarial / robust_overfitting)
  resnet18         RobustBench model_zoo/architectures/resnet.py ResNet18
  wrn-D-W          RobustBench model_zoo/architectures/wide_resnet.py WideResNet

Every model has features(x) (the penultimate feature advlab exposes: after pooling, before the
classifier) and forward(x) = head(features(x)). Normalized wraps a model with the input
normalisation advlab keeps inside the model ((x - mean) / std on pixels in [0, 1]); its mean
and std are non-persistent, so the wrapped model's state_dict is unchanged.

Used by tools/torch/convert_pt.py (arch check) and tests/torch/*.py (reference computations).
"""
import math
import re
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCHS = ("smallcnn", "preact_resnet18", "resnet18", "wrn-D-W")

# default input geometry of each arch family: (in_channels, image_size)
_GEOMETRY = {"smallcnn": (1, 28), "preact_resnet18": (3, 32), "resnet18": (3, 32), "wrn": (3, 32)}


class SmallCNN(nn.Module):
    """TRADES SmallCNN: 4 unpadded 3x3 convs (two 2x2 max pools), 3 linear layers, dropout."""

    def __init__(self, num_classes=10, in_channels=1, drop=0.5):
        super().__init__()
        # the reference shares one ReLU module; separate instances give the same state_dict
        # and keep named_children() (which skips repeated modules) walking every layer
        relu = nn.ReLU
        self.feature_extractor = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, 32, 3)), ("relu1", relu()),
            ("conv2", nn.Conv2d(32, 32, 3)), ("relu2", relu()),
            ("maxpool1", nn.MaxPool2d(2, 2)),
            ("conv3", nn.Conv2d(32, 64, 3)), ("relu3", relu()),
            ("conv4", nn.Conv2d(64, 64, 3)), ("relu4", relu()),
            ("maxpool2", nn.MaxPool2d(2, 2)),
        ]))
        self.classifier = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(64 * 4 * 4, 200)), ("relu1", relu()),
            ("drop", nn.Dropout(drop)),
            ("fc2", nn.Linear(200, 200)), ("relu2", relu()),
            ("fc3", nn.Linear(200, num_classes)),
        ]))
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight)  # fan_in, gain sqrt(2)
                nn.init.zeros_(mod.bias)
        nn.init.zeros_(self.classifier.fc3.weight)
        nn.init.zeros_(self.classifier.fc3.bias)

    def features(self, x):
        h = self.feature_extractor(x).flatten(1)
        for name, mod in self.classifier.named_children():
            if name == "fc3":
                break
            h = mod(h)
        return h  # fc2 + ReLU output, 200-d

    def head(self, f):
        return self.classifier.fc3(f)

    def forward(self, x):
        return self.head(self.features(x))


class PreActBlock(nn.Module):
    """Pre-activation basic block. shortcut_from_input selects what the 1x1 projection reads:
    True:  x itself (fast_adversarial / RobustBench PreActBlock; advlab's preact_resnet18),
    False: relu(bn1(x)) (robust_overfitting / kuangliu; RobustBench PreActBlockV2)."""

    def __init__(self, in_planes, planes, stride=1, shortcut_from_input=True):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut_from_input = shortcut_from_input
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x):
        a = F.relu(self.bn1(x))
        if hasattr(self, "shortcut"):
            sc = self.shortcut(x if self.shortcut_from_input else a)
        else:
            sc = x
        out = self.conv2(F.relu(self.bn2(self.conv1(a))))
        return out + sc


class PreActResNet18(nn.Module):
    def __init__(self, num_classes=10, in_channels=3, shortcut_from_input=True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        in_planes = 64
        for i, planes in enumerate((64, 128, 256, 512)):
            blocks = []
            for j in range(2):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(PreActBlock(in_planes, planes, stride, shortcut_from_input))
                in_planes = planes
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def features(self, x):
        h = self.conv1(x)
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        h = F.relu(self.bn(h))
        return F.avg_pool2d(h, 4).flatten(1)

    def head(self, f):
        return self.linear(f)

    def forward(self, x):
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    """Post-activation basic block of the CIFAR ResNet18 (projection shortcut = conv + BN)."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_planes = 64
        for i, planes in enumerate((64, 128, 256, 512)):
            blocks = []
            for j in range(2):
                blocks.append(BasicBlock(in_planes, planes, 2 if (i > 0 and j == 0) else 1))
                in_planes = planes
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*blocks))
        self.linear = nn.Linear(512, num_classes)

    def features(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return F.avg_pool2d(h, 4).flatten(1)

    def head(self, f):
        return self.linear(f)

    def forward(self, x):
        return self.head(self.features(x))


class WideBasicBlock(nn.Module):
    """WRN block. When in != out (equalInOut false) x is replaced by relu(bn1(x)) and both
    conv1 and the 1x1 convShortcut read it; otherwise the identity shortcut reads x."""

    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.equalInOut = in_planes == out_planes
        self.convShortcut = None if self.equalInOut else nn.Conv2d(
            in_planes, out_planes, 1, stride=stride, padding=0, bias=False)

    def forward(self, x):
        a = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(a))))
        return (x if self.equalInOut else self.convShortcut(a)) + out


class NetworkBlock(nn.Module):
    def __init__(self, n_blocks, in_planes, out_planes, stride):
        super().__init__()
        self.layer = nn.Sequential(*[
            WideBasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
            for i in range(n_blocks)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth=28, widen_factor=10, num_classes=10, in_channels=3):
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError("wrn depth %d is not 6n+4 >= 10" % depth)
        n = (depth - 4) // 6
        ch = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, ch[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, ch[0], ch[1], 1)
        self.block2 = NetworkBlock(n, ch[1], ch[2], 2)
        self.block3 = NetworkBlock(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU()
        self.fc = nn.Linear(ch[3], num_classes)
        self.nChannels = ch[3]
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                fan_out = mod.kernel_size[0] * mod.kernel_size[1] * mod.out_channels
                nn.init.normal_(mod.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(mod, nn.BatchNorm2d):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.Linear):
                nn.init.zeros_(mod.bias)  # weight keeps nn.Linear's default

    def features(self, x):
        h = self.block3(self.block2(self.block1(self.conv1(x))))
        h = self.relu(self.bn1(h))
        return F.avg_pool2d(h, 8).flatten(1)

    def head(self, f):
        return self.fc(f)

    def forward(self, x):
        return self.head(self.features(x))


class Normalized(nn.Module):
    """(x - mean) / std in front of a model, as advlab's first node. mean/std are
    non-persistent buffers: state_dict() is the inner model's with a `model.` prefix."""

    def __init__(self, model, mean=None, std=None):
        super().__init__()
        self.model = model
        c = model_in_channels(model)
        mean = torch.zeros(c) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        std = torch.ones(c) if std is None else torch.as_tensor(std, dtype=torch.float32)
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).clone(), persistent=False)
        self.register_buffer("std", std.reshape(1, -1, 1, 1).clone(), persistent=False)

    def features(self, x):
        return self.model.features((x - self.mean) / self.std)

    def head(self, f):
        return self.model.head(f)

    def forward(self, x):
        return self.head(self.features(x))


def parse_wrn(arch):
    """'wrn-28-10' -> (28, 10); None when arch is not of that form."""
    m = re.fullmatch(r"wrn-(\d+)-(\d+)", arch)
    return (int(m.group(1)), int(m.group(2))) if m else None


def geometry(arch):
    """Default (in_channels, image_size) of an arch."""
    if parse_wrn(arch):
        return _GEOMETRY["wrn"]
    if arch not in _GEOMETRY:
        raise ValueError("unknown arch '%s' (known: %s)" % (arch, ", ".join(ARCHS)))
    return _GEOMETRY[arch]


def build(arch, num_classes=10, in_channels=None, **kw):
    """A freshly initialised model of `arch` (reference init rules)."""
    if in_channels is None:
        in_channels = geometry(arch)[0]
    wrn = parse_wrn(arch)
    if wrn:
        return WideResNet(wrn[0], wrn[1], num_classes, in_channels)
    if arch == "smallcnn":
        return SmallCNN(num_classes, in_channels, **kw)
    if arch == "preact_resnet18":
        return PreActResNet18(num_classes, in_channels, **kw)
    if arch == "resnet18":
        return ResNet18(num_classes, in_channels)
    raise ValueError("unknown arch '%s' (known: %s)" % (arch, ", ".join(ARCHS)))


def model_in_channels(model):
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            return mod.in_channels
    raise ValueError("model has no conv layer")


def n_params(model):
    """Trainable parameter count (what papers quote)."""
    return sum(p.numel() for p in model.parameters())
