#!/usr/bin/env python3
"""PyTorch reference for tests/test_ancra.c (Debian's /usr/bin/python3 with torch + h5py).

A transcription (read, not copied) of changzhang777/ANCRA @b3ebc8e TRADES-ANCRA:
  models/resnet.py           BasicBlock, RA_Block, ResNet_RA (forward(x, y, _eval))
  train_CIFAR10_ResNet.py    loss_fn_ori, loss_fn, the loss part of trades_loss_with_ANC
kept as close to the official statements as a reference allows; evaluated in float64.

  ancra_ref.py loss IN.bin OUT.bin N K BETA ZETA CR_BETA ALPHA
      IN: float32 logits (3 heads [final, aux0, aux1] x 3 forwards [nat, adv, neg] x N x K),
      int32 labels (N). OUT: float64 [loss, d loss / d logits in the same layout].
  ancra_ref.py model CKPT.h5 IO.h5 REF.h5
      CKPT: an advlab checkpoint of ancra-resnet18 / ancra-small; IO: x (N,C,H,W), y (N),
      seed0..2 (N, K) gradient seeds of (logits, aux0, aux1). Writes train/{logits,aux0,aux1,dx,
      grad/<param>} (train mode, label mask, one BN update) and eval/{logits,aux0,aux1,dx}
      (eval mode, argmax mask) in float64.
"""
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


# ---------------------------------------------------------------- models/resnet.py

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion * planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class RA_Block(BasicBlock):
    def forward(self, x, label=None, fc=None):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        fc_in1 = F.avg_pool2d(out, 4)
        fc_out1 = fc(fc_in1.view(fc_in1.size(0), -1))          # auxiliary "p"
        N, C, H, W = out.shape
        if self.training:
            mask = fc.weight[label, :]
        else:
            pred_label = torch.max(fc_out1, dim=1)[1]
            mask = fc.weight[pred_label, :]
        out = out * mask.view(N, C, 1, 1)                       # "z'"
        fc_in2 = F.avg_pool2d(out, 4)
        f_out2 = fc(fc_in2.view(fc_in2.size(0), -1))
        return out, fc_out1, f_out2


class ResNet_RA(nn.Module):
    """The official ResNet_RA; `small` gives advlab's project arch ancra-small (conv1 stride 2,
    one 16->32 block, RA blocks of 32 channels) with the same RA tail."""

    def __init__(self, num_classes=10, in_c=3, small=False):
        super().__init__()
        if small:
            self.in_planes = 16
            self.conv1 = nn.Conv2d(in_c, 16, kernel_size=3, stride=2, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.layer1 = nn.Sequential(BasicBlock(16, 32, 2))
            self.in_planes = 32
            self.trunk = [self.layer1]
            planes = 32
        else:
            self.in_planes = 64
            self.conv1 = nn.Conv2d(in_c, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.layer1 = self._make_layer(BasicBlock, 64, 2, stride=1)
            self.layer2 = self._make_layer(BasicBlock, 128, 2, stride=2)
            self.layer3 = self._make_layer(BasicBlock, 256, 2, stride=2)
            self.trunk = [self.layer1, self.layer2, self.layer3]
            planes = 512
        self.layer4 = self._make_layer_(RA_Block, planes, 2, stride=2)
        self.fc = nn.Linear(planes, num_classes)

    def _make_layer(self, block, planes, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def _make_layer_(self, block, planes, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.ModuleList(layers)

    def forward(self, x, y=None, _eval=None):
        if _eval == False:  # noqa: E712 (the official test)
            self.train()
        else:
            self.eval()
        class_wise_output = []
        out = F.relu(self.bn1(self.conv1(x)))
        for layer in self.trunk:
            out = layer(out)
        for layer in self.layer4:
            out, layer4_out, f_out = layer(out, y, self.fc)
            class_wise_output.append(layer4_out)
        if _eval is None:
            return f_out
        return f_out, class_wise_output


# ---------------------------------------------------------------- train_CIFAR10_ResNet.py

def loss_fn_ori(logit1, logit2):
    value1, indice1 = torch.max(logit1, dim=-1)
    value2, indice2 = torch.max(logit2, dim=-1)
    indices = torch.nonzero(indice1 == indice2)
    loss = torch.zeros(())
    for index in indices:
        idx = index[0]
        loss = loss + (value1[idx] * value2[idx]) ** 0.5
    return loss


def make_loss_fn(alpha):
    def loss_fn(logit1, logit2):
        return alpha * loss_fn_ori(logit1.detach(), logit2) + (1 - alpha) * loss_fn_ori(logit2.detach(), logit1)
    return loss_fn


def ancra_loss(logits, extra_nat, output_adv, extra_adv, output_t, extra_t, y, beta, zeta, cr_beta,
               alpha):
    """The loss of trades_loss_with_ANC from the three forwards' outputs on."""
    loss_fn = make_loss_fn(alpha)
    batch_size = len(y)
    criterion_kl = nn.KLDivLoss(reduction='sum')
    loss_natural = F.cross_entropy(logits, y)
    extra_loss_natural = 0.
    for output in extra_nat:
        extra_loss_natural += F.cross_entropy(output, y)
    extra_loss_natural /= len(extra_nat)
    loss_natural += cr_beta * extra_loss_natural
    loss_robust = (1.0 / batch_size) * criterion_kl(F.log_softmax(output_adv, dim=1),
                                                    F.softmax(logits, dim=1))
    extra_loss_robust = 0.
    for i in range(len(extra_adv)):
        extra_loss_robust += (1.0 / batch_size) * criterion_kl(F.log_softmax(extra_adv[i], dim=1),
                                                               F.softmax(extra_nat[i], dim=1))
    extra_loss_robust /= len(extra_adv)
    loss_robust += cr_beta * extra_loss_robust
    loss_robust_t = (1.0 / batch_size) * loss_fn(F.softmax(logits, dim=1), F.softmax(output_t, dim=1))
    extra_loss_robust_t = 0.
    for i in range(len(extra_t)):
        extra_loss_robust_t += (1.0 / batch_size) * loss_fn(F.softmax(extra_nat[i], dim=1),
                                                            F.softmax(extra_t[i], dim=1))
    extra_loss_robust_t /= len(extra_t)
    loss_robust_t += cr_beta * extra_loss_robust_t
    return loss_natural + beta * loss_robust + zeta * loss_robust_t


def cmd_loss(inp, outp, n, k, beta, zeta, cr_beta, alpha):
    raw = open(inp, "rb").read()
    z = np.frombuffer(raw, dtype=np.float32, count=9 * n * k).reshape(3, 3, n, k)
    y = torch.from_numpy(np.frombuffer(raw, dtype=np.int32, count=n, offset=9 * n * k * 4).astype(np.int64))
    t = [[torch.from_numpy(z[h, s].astype(np.float64)).requires_grad_(True) for s in range(3)]
         for h in range(3)]
    loss = ancra_loss(t[0][0], [t[1][0], t[2][0]], t[0][1], [t[1][1], t[2][1]], t[0][2],
                      [t[1][2], t[2][2]], y, beta, zeta, cr_beta, alpha)
    loss.backward()
    out = [loss.detach().reshape(-1)] + [t[h][s].grad.reshape(-1) for h in range(3) for s in range(3)]
    torch.cat(out).numpy().astype(np.float64).tofile(outp)


# ---------------------------------------------------------------- model

def cmd_model(ckpt, io, ref):
    with h5py.File(ckpt, "r") as f:
        g = f["model"]
        arch = g.attrs["arch"]
        arch = arch.decode() if isinstance(arch, bytes) else str(arch)
        k = int(np.asarray(g.attrs["num_classes"]).reshape(-1)[0])
        c = int(np.asarray(g.attrs["in_channels"]).reshape(-1)[0])
        sd = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                sd[name] = torch.from_numpy(np.asarray(obj[()]))
        g.visititems(visit)
    net = ResNet_RA(k, c, small=(arch == "ancra-small"))
    own = net.state_dict()
    missing = [n for n in own if n not in sd and not n.endswith("num_batches_tracked")]
    if missing:
        raise SystemExit("ancra_ref.py: %s lacks %s" % (ckpt, missing[:5]))
    extra = [n for n in sd if n not in own and not n.endswith("num_batches_tracked")]
    if extra:
        raise SystemExit("ancra_ref.py: %s has parameters the reference lacks: %s" % (ckpt, extra[:5]))
    net.load_state_dict({n: sd[n].to(own[n].dtype).reshape(own[n].shape) if n in sd else own[n]
                         for n in own})
    net = net.double()
    with h5py.File(io, "r") as f:
        x = torch.from_numpy(f["x"][()]).double()
        y = torch.from_numpy(f["y"][()].astype(np.int64))
        seeds = [torch.from_numpy(f["seed%d" % s][()]).double() for s in range(3)]
    res = {}
    for tag, ev in (("train", False), ("eval", True)):
        xs = x.clone().requires_grad_(True)
        net.zero_grad(set_to_none=True)
        logits, aux = net(xs, y if not ev else None, _eval=ev)
        obj = (logits * seeds[0]).sum() + (aux[0] * seeds[1]).sum() + (aux[1] * seeds[2]).sum()
        obj.backward()
        res[tag + "/logits"], res[tag + "/aux0"], res[tag + "/aux1"] = logits, aux[0], aux[1]
        res[tag + "/dx"] = xs.grad
        if not ev:
            for name, p in net.named_parameters():
                res["train/grad/" + name] = p.grad.clone()
    tmp = ref + ".tmp"
    with h5py.File(tmp, "w") as f:
        for name, v in res.items():
            f.create_dataset(name, data=v.detach().numpy().astype(np.float64))
    os.replace(tmp, ref)


def main(argv):
    if len(argv) == 10 and argv[1] == "loss":
        cmd_loss(argv[2], argv[3], int(argv[4]), int(argv[5]), float(argv[6]), float(argv[7]),
                 float(argv[8]), float(argv[9]))
    elif len(argv) == 5 and argv[1] == "model":
        cmd_model(argv[2], argv[3], argv[4])
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
