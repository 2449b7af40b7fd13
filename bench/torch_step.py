#!/usr/bin/env python3
"""torch_step.py - the PyTorch reference for `bench/run.sh`.

Builds the seven networks of the modern-CNN chapter exactly as the seed does
(the parameter counts equal models/*.net), times training steps (forward,
cross-entropy, backward, plain SGD) on random Fashion-MNIST-shaped data on
the CPU with torch.set_num_threads(THREADS), and prints one JSON line per
model:

  {"framework": "pytorch", "model": "resnet18", "threads": 2, "batch": 256,
   "resize": 96, "steps": 3, "images_per_sec": 30.7, "ms_per_step": 8339.0,
   "gflop_per_sec": 58.8, "train_gflop_per_img": 1.913, "warmup_sec": 9.1, ...}

train_gflop_per_img counts what `netc bench` counts: 3 x the forward
multiply-adds of conv and linear layers x 2.

  /usr/bin/python3 bench/torch_step.py --models lenet_bn,resnet18 --threads 2
  /usr/bin/python3 bench/torch_step.py --models densenet --batch 16 --resize 96 --steps 2

--batch and --resize default to the seed's values (those of models/NAME.net);
bench/run.sh passes the values `netc bench` reports so that both sides run
the same step.  Needs PyTorch (Debian: python3-torch).
"""
import argparse
import json
import time

import torch
from torch import nn
from torch.nn import functional as F


def alexnet():
    return nn.Sequential(
        nn.Conv2d(1, 96, 11, 4, 1), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(),
        nn.Linear(6400, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 10))


def vgg_block(n, cin, cout):
    layers = []
    for _ in range(n):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
        cin = cout
    layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


def vgg(ratio=4):
    arch = [(n, c // ratio) for n, c in ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))]
    blks, cin = [], 1
    for n, c in arch:
        blks.append(vgg_block(n, cin, c))
        cin = c
    return nn.Sequential(*blks, nn.Flatten(),
                         nn.Linear(cin * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(4096, 10))


def nin_block(cin, cout, k, s, p):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, p), nn.ReLU(),
                         nn.Conv2d(cout, cout, 1), nn.ReLU(),
                         nn.Conv2d(cout, cout, 1), nn.ReLU())


def nin():
    return nn.Sequential(
        nin_block(1, 96, 11, 4, 0), nn.MaxPool2d(3, 2),
        nin_block(96, 256, 5, 1, 2), nn.MaxPool2d(3, 2),
        nin_block(256, 384, 3, 1, 1), nn.MaxPool2d(3, 2), nn.Dropout(0.5),
        nin_block(384, 10, 3, 1, 1), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())


class Inception(nn.Module):
    def __init__(self, cin, c1, c2, c3, c4):
        super().__init__()
        self.p1_1 = nn.Conv2d(cin, c1, 1)
        self.p2_1 = nn.Conv2d(cin, c2[0], 1)
        self.p2_2 = nn.Conv2d(c2[0], c2[1], 3, padding=1)
        self.p3_1 = nn.Conv2d(cin, c3[0], 1)
        self.p3_2 = nn.Conv2d(c3[0], c3[1], 5, padding=2)
        self.p4_1 = nn.MaxPool2d(3, 1, 1)
        self.p4_2 = nn.Conv2d(cin, c4, 1)

    def forward(self, x):
        p1 = F.relu(self.p1_1(x))
        p2 = F.relu(self.p2_2(F.relu(self.p2_1(x))))
        p3 = F.relu(self.p3_2(F.relu(self.p3_1(x))))
        p4 = F.relu(self.p4_2(self.p4_1(x)))
        return torch.cat((p1, p2, p3, p4), dim=1)


def googlenet():
    b1 = nn.Sequential(nn.Conv2d(1, 64, 7, 2, 3), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
    b2 = nn.Sequential(nn.Conv2d(64, 64, 1), nn.ReLU(), nn.Conv2d(64, 192, 3, padding=1),
                       nn.MaxPool2d(3, 2, 1))
    b3 = nn.Sequential(Inception(192, 64, (96, 128), (16, 32), 32),
                       Inception(256, 128, (128, 192), (32, 96), 64), nn.MaxPool2d(3, 2, 1))
    b4 = nn.Sequential(Inception(480, 192, (96, 208), (16, 48), 64),
                       Inception(512, 160, (112, 224), (24, 64), 64),
                       Inception(512, 128, (128, 256), (24, 64), 64),
                       Inception(512, 112, (144, 288), (32, 64), 64),
                       Inception(528, 256, (160, 320), (32, 128), 128), nn.MaxPool2d(3, 2, 1))
    b5 = nn.Sequential(Inception(832, 256, (160, 320), (32, 128), 128),
                       Inception(832, 384, (192, 384), (48, 128), 128),
                       nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())
    return nn.Sequential(b1, b2, b3, b4, b5, nn.Linear(1024, 10))


def lenet_bn():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6), nn.Sigmoid(), nn.MaxPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.Sigmoid(), nn.MaxPool2d(2, 2),
        nn.Flatten(), nn.Linear(256, 120), nn.BatchNorm1d(120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.BatchNorm1d(84), nn.Sigmoid(), nn.Linear(84, 10))


class Residual(nn.Module):
    def __init__(self, cin, c, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.conv3 = nn.Conv2d(cin, c, 1, stride=strides) if use_1x1conv else None
        self.bn1, self.bn2 = nn.BatchNorm2d(c), nn.BatchNorm2d(c)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.conv3 is not None:
            x = self.conv3(x)
        return F.relu(y + x)


def resnet_block(cin, c, n, first_block=False):
    return [Residual(cin, c, True, 2) if i == 0 and not first_block else Residual(c, c)
            for i in range(n)]


def resnet18():
    b1 = nn.Sequential(nn.Conv2d(1, 64, 7, 2, 3), nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(b1, nn.Sequential(*resnet_block(64, 64, 2, True)),
                         nn.Sequential(*resnet_block(64, 128, 2)),
                         nn.Sequential(*resnet_block(128, 256, 2)),
                         nn.Sequential(*resnet_block(256, 512, 2)),
                         nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(512, 10))


def conv_block(cin, c):
    return nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, c, 3, padding=1))


class DenseBlock(nn.Module):
    def __init__(self, n, cin, c):
        super().__init__()
        self.net = nn.Sequential(*[conv_block(c * i + cin, c) for i in range(n)])

    def forward(self, x):
        for blk in self.net:
            x = torch.cat((x, blk(x)), dim=1)
        return x


def transition_block(cin, c):
    return nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, c, 1),
                         nn.AvgPool2d(2, 2))


def densenet():
    b1 = nn.Sequential(nn.Conv2d(1, 64, 7, 2, 3), nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d(3, 2, 1))
    c, g, blks = 64, 32, []
    for i, n in enumerate([4, 4, 4, 4]):
        blks.append(DenseBlock(n, c, g))
        c += n * g
        if i != 3:
            blks.append(transition_block(c, c // 2))
            c //= 2
    return nn.Sequential(b1, *blks, nn.BatchNorm2d(c), nn.ReLU(),
                         nn.AdaptiveMaxPool2d((1, 1)), nn.Flatten(), nn.Linear(c, 10))


# name (as in models/NAME.net): (builder, resize, batch size, learning rate)
# as the seed trains them
MODELS = {
    "alexnet": (alexnet, 224, 128, 0.01),
    "vgg11": (vgg, 224, 128, 0.05),
    "nin": (nin, 224, 128, 0.1),
    "googlenet": (googlenet, 96, 128, 0.1),
    "lenet_bn": (lenet_bn, 28, 256, 1.0),
    "resnet18": (resnet18, 96, 256, 0.05),
    "densenet": (densenet, 96, 256, 0.1),
}


def forward_flops(net, x):
    """Multiply-adds of conv and linear layers, times 2, for one image."""
    total = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            total[0] += 2 * out.numel() // out.shape[0] * k
        elif isinstance(m, nn.Linear):
            total[0] += 2 * m.in_features * m.out_features

    hs = [m.register_forward_hook(hook) for m in net.modules()]
    net.eval()  # batch norm in training mode refuses a batch of one
    with torch.no_grad():
        net(x[:1])
    net.train()
    for h in hs:
        h.remove()
    return total[0]


def bench(name, steps, warmup, batch, resize, seed):
    build, res, bs, lr = MODELS[name]
    bs = batch or bs
    res = resize or res
    torch.manual_seed(seed)
    net = build()
    x = torch.rand(bs, 1, res, res)  # pixels in [0, 1], as netc bench feeds
    y = torch.arange(bs) % 10
    flops = forward_flops(net, x)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    net.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return loss

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    dt = (time.perf_counter() - t0) / steps
    gflop_img = 3 * flops / 1e9
    return dict(framework="pytorch", model=name, torch=torch.__version__, device="cpu",
                threads=torch.get_num_threads(), batch=bs, resize=res, steps=steps, warmup=warmup,
                images_per_sec=round(bs / dt, 2), ms_per_step=round(dt * 1e3, 2),
                gflop_per_sec=round(gflop_img * bs / dt, 2), train_gflop_per_img=round(gflop_img, 4),
                warmup_sec=round(first, 3), loss=round(float(loss), 5),
                params=sum(p.numel() for p in net.parameters()))


def main():
    ap = argparse.ArgumentParser(description="PyTorch CPU training-step reference for netc bench")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated, of: " + ",".join(MODELS))
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--batch", type=int, default=0, help="batch size (0: the seed's)")
    ap.add_argument("--resize", type=int, default=0, help="image side (0: the seed's)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    names = [m for m in a.models.split(",") if m]
    bad = [m for m in names if m not in MODELS]
    if bad or a.steps < 1 or a.warmup < 0:
        ap.error("unknown model %s (known: %s)" % (",".join(bad), ",".join(MODELS)) if bad
                 else "--steps must be >= 1 and --warmup >= 0")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    for name in names:
        print(json.dumps(bench(name, a.steps, a.warmup, a.batch, a.resize, a.seed)), flush=True)


if __name__ == "__main__":
    main()
