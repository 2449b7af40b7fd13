"""PyTorch modules of the networks in models/extra/, written from their
papers as torchvision writes them (one input channel, ten classes), for the
cross-check: ResNet-34 (He et al. 2016) and DenseNet-121 (Huang et al.
2017).  Layers are created in the order the forward pass uses them, so that
crosscheck.py can match their parameters to netc's by order of use."""
import torch
from torch import nn
from torch.nn import functional as F
from seed_models import Residual  # tools/ (crosscheck.py puts it on the path)


class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.downsample is not None:
            x = self.downsample(x)
        return F.relu(y + x)


def resnet34():
    layers = [nn.Conv2d(1, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for n, planes, stride in ((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)):
        for i in range(n):
            layers.append(BasicBlock(cin, planes, stride if i == 0 else 1))
            cin = planes
    layers += [nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(512, 10)]
    return nn.Sequential(*layers)


class DenseLayer(nn.Module):
    def __init__(self, cin, growth, bn_size):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv1(F.relu(self.norm1(x)))
        y = self.conv2(F.relu(self.norm2(y)))
        return torch.cat((x, y), 1)


def densenet121(growth=32, config=(6, 12, 24, 16), bn_size=4):
    layers = [nn.Conv2d(1, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    c = 64
    for i, n in enumerate(config):
        for _ in range(n):
            layers.append(DenseLayer(c, growth, bn_size))
            c += growth
        if i != len(config) - 1:
            layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2, 2)]
            c //= 2
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(c, 10)]
    return nn.Sequential(*layers)


def resnet_odd():
    """models/extra/resnet_odd.net: a small ResNet at awkward sizes, of the
    seed's Residual blocks (convolutions with bias)."""
    layers = [nn.Conv2d(1, 9, 3, 2, 1), nn.BatchNorm2d(9), nn.ReLU(),
              Residual(9, 9), Residual(9, 13, True, 2), Residual(13, 70, True),
              nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(70, 10)]
    return nn.Sequential(*layers)


class OddDenseLayer(nn.Module):
    """densenet_odd.net's layer: batch norm, relu, 1x1 conv to 2 * growth + 1
    channels, batch norm, relu, 3x3 conv to growth; concatenated."""

    def __init__(self, cin, growth):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 2 * growth + 1, 1)
        self.norm2 = nn.BatchNorm2d(2 * growth + 1)
        self.conv2 = nn.Conv2d(2 * growth + 1, growth, 3, padding=1)

    def forward(self, x):
        y = self.conv1(F.relu(self.norm1(x)))
        y = self.conv2(F.relu(self.norm2(y)))
        return torch.cat((x, y), 1)


def densenet_odd(growth=5, config=(3, 2)):
    """models/extra/densenet_odd.net: a small DenseNet at awkward sizes."""
    layers = [nn.Conv2d(1, 7, 3, 2, 1), nn.BatchNorm2d(7), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    c = 7
    for i, n in enumerate(config):
        for _ in range(n):
            layers.append(OddDenseLayer(c, growth))
            c += growth
        if i != len(config) - 1:
            layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1), nn.AvgPool2d(2, 2)]
            c //= 2
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(c, 10)]
    return nn.Sequential(*layers)
