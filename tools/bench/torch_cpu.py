"""PyTorch side of the CPU benchmarks (run by tools/bench/run_cpu.sh in .venv-bench, PyTorch 2.x
from PyPI with MKL + oneDNN). Same phases and algorithm as `advlab bench`:
  fwdbwd       train-mode forward + CE + loss.backward() (weight gradients)
  attack_step  eval-mode forward + CE + torch.autograd.grad w.r.t. the input only
  pgd_at_step  PGD-K (eval-mode BN, input grads only, sign step, project, clamp) + train
               forward/backward + SGD(momentum 0.9, wd 5e-4)
  pgd_eval     PGD-K on a batch + the final forward
Prints one JSON line per phase (median/p10/p90 ms per iteration, img/s, GFLOP/s with the same
FLOP count as advlab: conv/linear multiply-adds only)."""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "torch"))
import models  # noqa: E402


def flops_fwd(net, x):
    total = [0.0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            total[0] += 2.0 * out.numel() * mod.in_channels * k
        elif isinstance(mod, nn.Linear):
            total[0] += 2.0 * out.shape[0] * mod.in_features * mod.out_features

    hs = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net(x)
    for h in hs:
        h.remove()
    return total[0]


def pgd(net, x, y, eps, alpha, steps):
    net.eval()
    delta = (torch.rand_like(x) * 2 - 1) * eps
    xa = (x + delta).clamp(0, 1)
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = F.cross_entropy(net(xa), y)
        g, = torch.autograd.grad(loss, [xa])
        with torch.no_grad():
            xa = torch.min(torch.max(xa + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
    return xa.detach()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="smallcnn")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--phases", default="fwdbwd,attack_step,pgd_at_step,pgd_eval")
    ap.add_argument("--steps-train", type=int, default=10)
    ap.add_argument("--steps-eval", type=int, default=20)
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    in_c, size = (1, 28) if a.arch == "smallcnn" else (3, 32)
    net = models.build(a.arch, num_classes=10, in_channels=in_c)
    x = torch.rand(a.batch, in_c, size, size)
    y = torch.randint(0, 10, (a.batch,))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    F0 = flops_fwd(net, x)
    eps, alpha = 8 / 255, 2 / 255

    def once(ph):
        if ph == "fwdbwd":
            net.train()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
        elif ph == "attack_step":
            net.eval()
            xa = x.clone().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(net(xa), y), [xa])
        elif ph == "pgd_at_step":
            xa = pgd(net, x, y, eps, alpha, a.steps_train)
            net.train()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(xa), y).backward()
            opt.step()
        elif ph == "pgd_eval":
            xa = pgd(net, x, y, eps, alpha, a.steps_eval)
            with torch.no_grad():
                net(xa)

    for ph in a.phases.split(","):
        fl = {"fwdbwd": 3 * F0, "attack_step": 2 * F0, "pgd_at_step": (2 * a.steps_train + 3) * F0,
              "pgd_eval": (2 * a.steps_eval + 1) * F0}[ph]
        t0, it = time.perf_counter(), 0
        while time.perf_counter() - t0 < a.warmup or it < 2:
            once(ph)
            it += 1
        times = []
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < a.min_time or len(times) < 5:
            t1 = time.perf_counter()
            once(ph)
            times.append(time.perf_counter() - t1)
        times.sort()
        med = times[len(times) // 2]
        print(json.dumps({"bench": ph, "impl": "torch-" + torch.__version__, "arch": a.arch,
                          "batch": a.batch, "threads": torch.get_num_threads(), "device": "cpu",
                          "median_ms": 1e3 * med, "p10_ms": 1e3 * times[len(times) // 10],
                          "p90_ms": 1e3 * times[(len(times) * 9) // 10], "repeats": len(times),
                          "img_per_s": a.batch / med, "gflops": fl / med * 1e-9}), flush=True)


if __name__ == "__main__":
    main()
