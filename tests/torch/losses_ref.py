#!/usr/bin/env python3
"""PyTorch reference for tests/test_losses.c (run by the test through Debian's /usr/bin/python3).

Usage: losses_ref.py IN.bin OUT.bin N K BETA WEIGHT
IN.bin  (written by the C test): float32 z_nat (N,K), z_nat2 (N,K), z_adv (N,K),
        int32 labels (N), int32 targets (N).
OUT.bin (read by the C test): float64 values concatenated in the order of the sections below.

The float32 inputs are promoted to float64 and each loss is written the way its official code
writes it (TRADES trades.py @6e8e11b, MART mart.py @2d83e17), gradients by autograd, so the
reference carries no float32 error of its own (float32 softmax underflows at +-80 logits).
"""
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def main():
    inp, outp = sys.argv[1], sys.argv[2]
    n, k = int(sys.argv[3]), int(sys.argv[4])
    beta, weight = float(sys.argv[5]), float(sys.argv[6])
    raw = open(inp, "rb").read()
    f32 = np.frombuffer(raw, dtype=np.float32, count=3 * n * k)
    i32 = np.frombuffer(raw, dtype=np.int32, count=2 * n, offset=3 * n * k * 4)
    zn0 = torch.from_numpy(f32[: n * k].astype(np.float64)).view(n, k)
    zk0 = torch.from_numpy(f32[n * k: 2 * n * k].astype(np.float64)).view(n, k)
    za0 = torch.from_numpy(f32[2 * n * k:].astype(np.float64)).view(n, k)
    y = torch.from_numpy(i32[:n].astype(np.int64))
    t = torch.from_numpy(i32[n:].astype(np.int64))
    out = []

    def leaf(z):
        return z.clone().requires_grad_(True)

    def put(*ts):
        for x in ts:
            out.append(torch.as_tensor(x).detach().reshape(-1).to(torch.float64))

    # 1. cross-entropy (mean) * weight; per-sample CE unweighted
    z = leaf(zn0)
    loss = weight * F.cross_entropy(z, y)
    loss.backward()
    put(loss, F.cross_entropy(zn0, y, reduction="none"), z.grad)

    # 2. argmax accuracy
    corr = (zn0.argmax(1) == y)
    put(corr.sum(), corr.to(torch.float64))

    # 3. TRADES training loss with two clean forwards (trades.py: CE on f(x), KL target f(x) again)
    criterion_kl = nn.KLDivLoss(reduction="sum")
    zn, zk, za = leaf(zn0), leaf(zk0), leaf(za0)
    ce = F.cross_entropy(zn, y)
    kl = (1.0 / n) * criterion_kl(F.log_softmax(za, dim=1), F.softmax(zk, dim=1))
    loss = ce + beta * kl
    loss.backward()
    put(loss, ce, kl, zn.grad, zk.grad, za.grad)

    # 4. TRADES with one clean forward shared by CE and the KL target
    zn, za = leaf(zn0), leaf(za0)
    loss = F.cross_entropy(zn, y) + beta * (1.0 / n) * criterion_kl(
        F.log_softmax(za, dim=1), F.softmax(zn, dim=1))
    loss.backward()
    put(loss, zn.grad, za.grad)

    # 5. TRADES attack objective: KL sum, p_nat detached
    za = leaf(za0)
    per = nn.KLDivLoss(reduction="none")(F.log_softmax(za, dim=1),
                                         F.softmax(zn0, dim=1)).sum(1)
    loss = criterion_kl(F.log_softmax(za, dim=1), F.softmax(zn0, dim=1))
    loss.backward()
    put(loss, per, za.grad)

    # 6. MART (mart.py, verbatim from the logits on; nothing detached)
    zn, za = leaf(zn0), leaf(za0)
    kl_none = nn.KLDivLoss(reduction="none")
    adv_probs = F.softmax(za, dim=1)
    tmp1 = torch.argsort(adv_probs, dim=1)[:, -2:]
    new_y = torch.where(tmp1[:, -1] == y, tmp1[:, -2], tmp1[:, -1])
    loss_adv = F.cross_entropy(za, y) + F.nll_loss(torch.log(1.0001 - adv_probs + 1e-12), new_y)
    nat_probs = F.softmax(zn, dim=1)
    true_probs = torch.gather(nat_probs, 1, (y.unsqueeze(1)).long()).squeeze(1)
    loss_robust = (1.0 / n) * torch.sum(
        torch.sum(kl_none(torch.log(adv_probs + 1e-12), nat_probs), dim=1) * (1.0000001 - true_probs))
    loss = loss_adv + float(beta) * loss_robust
    loss.backward()
    put(loss, loss_adv, loss_robust, zn.grad, za.grad)

    # 7./8. CW margin, untargeted (labels y) and targeted (labels t), mean over n
    for lab, targeted in ((y, False), (t, True)):
        z = leaf(zn0)
        other = z.masked_fill(F.one_hot(lab, k).bool(), float("-inf")).max(1).values
        zy = z.gather(1, lab[:, None])[:, 0]
        m = (zy - other) if targeted else (other - zy)
        m.mean().backward()
        put(m.mean(), m, z.grad)

    np.concatenate([o.numpy() for o in out]).astype(np.float64).tofile(outp)


if __name__ == "__main__":
    main()
