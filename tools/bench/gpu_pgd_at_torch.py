#!/usr/bin/env python3
"""gpu_pgd_at_torch.py: the PyTorch reference point for advlab's GPU training speed.

One PGD-k adversarial-training epoch (Madry / Rice et al. robust_overfitting recipe) of
PreActResNet-18 (tools/torch/models.py, advlab's preact_resnet18) on CIFAR-shaped random data,
eager mode, as a strong hand-written PyTorch user would run it:
  - data: N uint8 images (3x32x32) + labels resident on the GPU; per batch a gather, /255 and
    (default) random crop (pad 4) + horizontal flip on the GPU;
  - attack: Linf, eps 8/255, alpha 2/255, k steps (default 10), uniform random start, model in
    train mode (BN batch statistics, as robust_overfitting and advlab's pgd_at default),
    torch.autograd.grad w.r.t. the perturbation only (no weight gradients during the attack);
  - training step: CE on the adversarial batch, SGD momentum 0.9, weight decay 5e-4, lr 0.1;
  - precision bf16 (autocast, fp32 master weights), tf32 or fp32; channels_last; cudnn.benchmark.
A few warm-up batches (cuDNN autotuning, allocator) run before the timed epoch and are not
counted. Prints ONE JSON line: epoch seconds and training images per second (img/s = N /
epoch seconds, the quantity advlab's metrics.jsonl "epoch" record reports).
Used by tools/bench/gpu_bench.sh, which runs the matching `advlab train` and prints the ratio.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "torch"))
import models  # noqa: E402  (tools/torch/models.py)


def crop_flip(x, pad, gen):
    """Per-image random crop with zero padding `pad` + random horizontal flip, on the GPU
    (torchvision RandomCrop(32, padding=pad) + RandomHorizontalFlip, vectorised)."""
    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=gen)
    flip = torch.randint(0, 2, (n,), device=x.device, generator=gen).bool()
    ar_h = torch.arange(h, device=x.device)
    ar_w = torch.arange(w, device=x.device)
    rows = (dy[:, None] + ar_h[None, :])                        # (n, h)
    cols = dx[:, None] + torch.where(flip[:, None], ar_w.flip(0)[None, :], ar_w[None, :])
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    return out.permute(0, 3, 1, 2)


def main():
    ap = argparse.ArgumentParser(description="PGD-AT epoch of PreActResNet-18 in PyTorch")
    ap.add_argument("--n-train", type=int, default=50000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eps", type=float, default=8 / 255)
    ap.add_argument("--alpha", type=float, default=2 / 255)
    ap.add_argument("--precision", choices=("bf16", "tf32", "fp32"), default="bf16")
    ap.add_argument("--augment", choices=("crop_flip", "none"), default="crop_flip")
    ap.add_argument("--attack-bn", choices=("train", "eval"), default="train",
                    help="BN mode during the attack (pgd_at: train, as Rice et al.)")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"bench": "pgd_at_epoch", "impl": "torch", "skipped": "no GPU"}))
        return 77
    dev = torch.device("cuda")
    torch.manual_seed(a.seed)
    torch.backends.cudnn.benchmark = True
    tf32 = a.precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    amp = a.precision == "bf16"
    mf = torch.preserve_format if a.no_channels_last else torch.channels_last

    model = models.build("preact_resnet18", 10).to(dev).to(memory_format=mf)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator(device=dev)
    gen.manual_seed(a.seed)
    data = torch.randint(0, 256, (a.n_train, 3, 32, 32), dtype=torch.uint8, device=dev,
                         generator=gen)
    labels = torch.randint(0, 10, (a.n_train,), device=dev, generator=gen)
    eps, alpha = a.eps, a.alpha

    def step(idx):
        x = data[idx].float().div_(255)
        if a.augment == "crop_flip":
            x = crop_flip(x, 4, gen)
        x = x.contiguous(memory_format=mf)
        y = labels[idx]
        model.train(a.attack_bn == "train")
        delta = torch.empty_like(x).uniform_(-eps, eps, generator=gen)
        delta = (x + delta).clamp_(0, 1) - x
        for _ in range(a.steps):
            delta.requires_grad_(True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                loss = F.cross_entropy(model(x + delta), y)
            (g,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + alpha * g.sign()).clamp_(-eps, eps)
            delta = (x + delta).clamp_(0, 1) - x
        x_adv = (x + delta).detach()
        model.train()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x_adv), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    n_batches = math.ceil(a.n_train / a.batch)  # drop_last = 0, as advlab's default
    for i in range(a.warmup):
        step(torch.randint(0, a.n_train, (a.batch,), device=dev, generator=gen))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    perm = torch.randperm(a.n_train, device=dev, generator=gen)
    t0 = time.perf_counter()
    loss = None
    for b in range(n_batches):
        loss = step(perm[b * a.batch:(b + 1) * a.batch])
    torch.cuda.synchronize()
    sec = time.perf_counter() - t0
    print(json.dumps({
        "bench": "pgd_at_epoch", "impl": "torch", "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0), "arch": "preact_resnet18",
        "n_train": a.n_train, "batch": a.batch, "batches": n_batches, "steps": a.steps,
        "precision": a.precision, "augment": a.augment, "attack_bn": a.attack_bn,
        "channels_last": not a.no_channels_last, "warmup_batches": a.warmup,
        "epoch_s": round(sec, 3), "img_per_s": round(a.n_train / sec, 1),
        "last_loss": float(loss), "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
