#!/usr/bin/python3
"""ms_ref.py: PyTorch reference side of tests/test_meansparse.c and tests/test_nofrost.c.

  ms_ref.py meansparse IO.h5 REF.h5
      The MeanSparse operator with the semantics of SPIN-UMass/MeanSparse @52e6c03
      utils_sparse.py (re-typed from reading it, not copied): forward
      where(|x - mean| < alpha * sqrt(var), mean, x) in float32, the exact backward by autograd
      through torch.where, the straight-through (BPDA) backward as an autograd.Function with
      an identity backward, and calculate_statistics over IO's stats_x in batches of
      stats_batch (float32 running sums += mean_b / B and += var_b / B, torch.var unbiased).
      IO: x (N,C,H,W), mean (C), var (C), alpha [1], dy (N,C,H,W), stats_x (M,C,H,W),
      stats_batch [1]. REF: y, dx_exact, dx_bpda, running_mean, running_var.

  ms_ref.py nfresnet CKPT.h5 IO.h5 REF.h5 WIDTH
      A float64 NF-ResNet-18 twin of core/models/nf_resnet.c written from timm's NormFreeNet
      rules (ScaledStdConv2d via F.batch_norm(training=True) over the weight rows, gain,
      gamma_relu, eps 1e-5; pre-activation blocks with alpha 0.2, beta = 1/sqrt(expected_var),
      DownsampleAvg with ceil_mode avg pool), loading the advlab checkpoint by parameter name.
      IO: x (N,C,H,W), dlogits (N,K). REF: logits, dx, grad/<param> of sum(logits * dlogits).
Exit status: 0 ok, 1 on any error (message on stderr).
"""
import math
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


# ---------------------------------------------------------------- MeanSparse

class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mean, crop):
        return torch.where(torch.abs(x - mean) < crop, mean * torch.ones_like(x), x)

    @staticmethod
    def backward(ctx, g):
        return g, None, None


def meansparse(x, mean, var, alpha, bpda=False):
    bias = mean.view(1, -1, 1, 1)
    crop = alpha * torch.sqrt(var).view(1, -1, 1, 1)
    if float(alpha) == 0.0:
        return x
    if bpda:
        return _StraightThrough.apply(x, bias, crop)
    return torch.where(torch.abs(x - bias) < crop, bias * torch.ones_like(x), x)


def cmd_meansparse(io, ref):
    with h5py.File(io, "r") as f:
        x = torch.tensor(f["x"][()], dtype=torch.float32)
        mean = torch.tensor(f["mean"][()], dtype=torch.float32)
        var = torch.tensor(f["var"][()], dtype=torch.float32)
        alpha = torch.tensor(float(f["alpha"][()][0]), dtype=torch.float32)
        dy = torch.tensor(f["dy"][()], dtype=torch.float32)
        sx = torch.tensor(f["stats_x"][()], dtype=torch.float32)
        sb = int(f["stats_batch"][()][0])
    out = {}
    for bpda in (False, True):
        xx = x.clone().requires_grad_(True)
        y = meansparse(xx, mean, var, alpha, bpda)
        (y * dy).sum().backward()
        if not bpda:
            out["y"] = y.detach()
            out["dx_exact"] = xx.grad.detach()
        else:
            out["dx_bpda"] = xx.grad.detach()
    # calculate_statistics: float32 buffers starting at 0, one increment per batch
    c = sx.shape[1]
    n_batches = (sx.shape[0] + sb - 1) // sb
    rm = torch.zeros(c, dtype=torch.float32)
    rv = torch.zeros(c, dtype=torch.float32)
    for s in range(0, sx.shape[0], sb):
        b = sx[s:s + sb]
        rm += torch.mean(b, dim=(0, 2, 3)) / n_batches
        rv += torch.var(b, dim=(0, 2, 3)) / n_batches
    out["running_mean"] = rm
    out["running_var"] = rv
    with h5py.File(ref, "w") as f:
        for k, v in out.items():
            f.create_dataset(k, data=v.numpy().astype(np.float32))


# ---------------------------------------------------------------- NF-ResNet-18

GAMMA_RELU = 1.7139588594436646
EPS = 1e-5
ALPHA = 0.2


def ws_conv(x, p, name, stride, pad):
    w = p[name + ".weight"]
    co = w.shape[0]
    fan = w[0].numel()
    scale = GAMMA_RELU * fan ** -0.5
    wh = F.batch_norm(w.reshape(1, co, -1), None, None, weight=(p[name + ".gain"] * scale).view(-1),
                      training=True, momentum=0.0, eps=EPS).reshape_as(w)
    return F.conv2d(x, wh, p[name + ".bias"], stride, pad)


def nf_resnet18(x, p, width):
    x = ws_conv(x, p, "stem.conv", 1, 1)
    in_planes = width
    expected_var = 1.0
    for s in range(4):
        planes = width << s
        for b in range(2):
            name = "stages.%d.%d" % (s, b)
            stride = 2 if (s > 0 and b == 0) else 1
            beta = 1.0 / expected_var ** 0.5
            out = F.relu(x) * beta
            shortcut = x
            if stride != 1 or in_planes != planes:
                t = F.avg_pool2d(out, 2, 2, ceil_mode=True, count_include_pad=False) if stride > 1 else out
                shortcut = ws_conv(t, p, name + ".downsample.conv", 1, 0)
            out = ws_conv(out, p, name + ".conv1", stride, 1)
            out = ws_conv(F.relu(out), p, name + ".conv2", 1, 1)
            x = out * ALPHA + shortcut
            if b == 0:
                expected_var = 1.0
            expected_var += ALPHA ** 2
            in_planes = planes
    x = F.relu(x)
    feat = x.mean(dim=(2, 3))
    return F.linear(feat, p["head.fc.weight"], p["head.fc.bias"])


def cmd_nfresnet(ckpt, io, ref, width):
    p = {}
    with h5py.File(ckpt, "r") as f:
        g = f["model"]
        mean = np.asarray(g.attrs.get("mean", [0.0]), np.float64)
        std = np.asarray(g.attrs.get("std", [1.0]), np.float64)
        for k in g.keys():
            if k.endswith("num_batches_tracked"):
                continue
            p[k] = torch.tensor(g[k][()], dtype=torch.float64, requires_grad=True)
    with h5py.File(io, "r") as f:
        x = torch.tensor(f["x"][()], dtype=torch.float64, requires_grad=True)
        dl = torch.tensor(f["dlogits"][()], dtype=torch.float64)
    c = x.shape[1]
    xn = (x - torch.tensor(mean[:c]).view(1, -1, 1, 1)) / torch.tensor(std[:c]).view(1, -1, 1, 1)
    logits = nf_resnet18(xn, p, width)
    (logits * dl).sum().backward()
    with h5py.File(ref, "w") as f:
        f.create_dataset("logits", data=logits.detach().numpy())
        f.create_dataset("dx", data=x.grad.numpy())
        for k, v in p.items():
            f.create_dataset("grad/" + k, data=v.grad.numpy())


def main(argv):
    try:
        if len(argv) == 4 and argv[1] == "meansparse":
            cmd_meansparse(argv[2], argv[3])
        elif len(argv) == 6 and argv[1] == "nfresnet":
            cmd_nfresnet(argv[2], argv[3], argv[4], int(argv[5]))
        else:
            sys.stderr.write(__doc__)
            return 1
    except Exception as e:  # one line for the C test's log
        sys.stderr.write("ms_ref.py: %s: %s\n" % (type(e).__name__, e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
