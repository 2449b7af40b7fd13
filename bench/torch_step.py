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
multiply-adds of conv and linear layers x 2.  peak_rss_bytes is the
process's peak resident set size after the timed steps (getrusage): with
several --models that of the largest so far, so bench/memory.sh runs one
model per process.

  /usr/bin/python3 bench/torch_step.py --models lenet_bn,resnet18 --threads 2
  /usr/bin/python3 bench/torch_step.py --models densenet --batch 16 --resize 96 --steps 2

--batch and --resize default to the seed's values (those of models/NAME.net);
bench/run.sh passes the values `netc bench` reports so that both sides run
the same step.  Needs PyTorch (Debian: python3-torch).

On a GPU (tests/gpu/check.sh): --device cuda runs the step there (timed
between synchronisations, peak_device_bytes from
torch.cuda.max_memory_allocated), --tf32 lets matrix products and
convolutions use tf32, --compile wraps the network in torch.compile.
"""
import argparse
import os
import sys
import json
import resource
import time

import torch
from torch import nn
from torch.nn import functional as F


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from seed_models import SEED as MODELS  # noqa: E402



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


def peak_rss_bytes():
    """This process's peak resident set size so far (ru_maxrss: KiB on
    Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def bench(name, steps, warmup, batch, resize, seed, device="cpu", tf32=False, compile_=False):
    build, res, bs, lr = MODELS[name]
    bs = batch or bs
    res = resize or res
    torch.manual_seed(seed)
    net = build()
    x = torch.rand(bs, 1, res, res)  # pixels in [0, 1], as netc bench feeds
    y = torch.arange(bs) % 10
    flops = forward_flops(net, x)
    gpu = device != "cpu"
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        net, x, y = net.to(device), x.to(device), y.to(device)
        torch.cuda.reset_peak_memory_stats()
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    run = torch.compile(net) if compile_ else net
    loss_fn = nn.CrossEntropyLoss()
    net.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(run(x), y)
        loss.backward()
        opt.step()
        return loss

    def sync():
        if gpu:
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync()
    dt = (time.perf_counter() - t0) / steps
    rss = peak_rss_bytes()
    gflop_img = 3 * flops / 1e9
    extra = {}
    if gpu:
        extra = dict(gpu=torch.cuda.get_device_name(), tf32=tf32, compiled=compile_,
                     peak_device_bytes=torch.cuda.max_memory_allocated())
    return dict(framework="pytorch", model=name, torch=torch.__version__, device=device, **extra,
                threads=torch.get_num_threads(), batch=bs, resize=res, steps=steps, warmup=warmup,
                images_per_sec=round(bs / dt, 2), ms_per_step=round(dt * 1e3, 2),
                gflop_per_sec=round(gflop_img * bs / dt, 2), train_gflop_per_img=round(gflop_img, 4),
                warmup_sec=round(first, 3), loss=round(float(loss), 5),
                params=sum(p.numel() for p in net.parameters()), peak_rss_bytes=rss)


def main():
    ap = argparse.ArgumentParser(description="PyTorch CPU training-step reference for netc bench")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated, of: " + ",".join(MODELS))
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--batch", type=int, default=0, help="batch size (0: the seed's)")
    ap.add_argument("--resize", type=int, default=0, help="image side (0: the seed's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (a GPU)")
    ap.add_argument("--tf32", action="store_true", help="on a GPU: tf32 matrix products and convolutions")
    ap.add_argument("--compile", action="store_true", help="torch.compile the network")
    a = ap.parse_args()
    names = [m for m in a.models.split(",") if m]
    bad = [m for m in names if m not in MODELS]
    if bad or a.steps < 1 or a.warmup < 0:
        ap.error("unknown model %s (known: %s)" % (",".join(bad), ",".join(MODELS)) if bad
                 else "--steps must be >= 1 and --warmup >= 0")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    for name in names:
        print(json.dumps(bench(name, a.steps, a.warmup, a.batch, a.resize, a.seed, a.device, a.tf32, a.compile)),
              flush=True)


if __name__ == "__main__":
    main()
