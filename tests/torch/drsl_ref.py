#!/usr/bin/env python3
"""PyTorch reference for tests/test_drsl.c (Debian's /usr/bin/python3 with torch).

A transcription (read, not copied) of the DRSL family the DRSL authors published in their
follow-up repo karlieswift/Mattack @9f587d1 lossfunction_test.py (methods.md §4):
  DRSLX  the "original for loop" version: centre = mean of the C-1 non-label logits
  DRSL   the vectorised version: centre = sum of the non-label logits / C (mean over all C of
         the one-hot-masked row)
  loss = a * CrossEntropyLoss(pred, labels) + b * sum over batch and non-label classes of
         (z - centre)^2
The official DRSLX.forward prints debugging markers (print(1), print(2), print(3)); they are
left out. Evaluated in float64 on the float32 inputs, gradients by autograd.

  drsl_ref.py IN.bin OUT.bin N K A B
      IN: float32 logits (N, K), int32 labels (N).
      OUT: float64 [DRSLX loss, d/dlogits (N K), DRSL loss, d/dlogits (N K)].
"""
import sys

import numpy as np
import torch
from torch import nn

torch.set_default_dtype(torch.float64)


class DRSLX(nn.Module):
    def __init__(self, a=1, b=0.001):
        super().__init__()
        self.a = a
        self.b = b
        self.cross_entropy = nn.CrossEntropyLoss()

    def forward(self, pred, labels):
        ce = self.cross_entropy(pred, labels)
        labels_index = []
        for i in labels:
            labels_index.append([False if x_i == i else True for x_i in range(pred.shape[1])])
        neg_pre = pred[torch.tensor(labels_index)].reshape(-1, pred.shape[1] - 1)
        neg_pre_mean = neg_pre.mean(dim=1).reshape(neg_pre.shape[0], -1).repeat(1, neg_pre.shape[1])
        neg_loss = (neg_pre - neg_pre_mean) ** 2
        return self.a * ce + self.b * neg_loss.sum()


class DRSL(nn.Module):
    def __init__(self, a=1, b=0.001):
        super().__init__()
        self.a = a
        self.b = b
        self.cross_entropy = nn.CrossEntropyLoss()

    def forward(self, pred, labels):
        no_labels_one_hot = 1 - nn.functional.one_hot(labels, num_classes=pred.shape[1])
        ce = self.cross_entropy(pred, labels)
        neg_pre_mean = torch.mul(no_labels_one_hot, pred).mean(dim=1).reshape(-1, 1)
        neg_pre = pred[no_labels_one_hot == 1].reshape(-1, pred.shape[1] - 1)
        neg_loss = (neg_pre - neg_pre_mean) ** 2
        return self.a * ce + self.b * neg_loss.sum()


def main(argv):
    if len(argv) != 7:
        raise SystemExit(__doc__)
    inp, outp, n, k, a, b = argv[1], argv[2], int(argv[3]), int(argv[4]), float(argv[5]), float(argv[6])
    raw = open(inp, "rb").read()
    z0 = torch.from_numpy(np.frombuffer(raw, dtype=np.float32, count=n * k).astype(np.float64)).view(n, k)
    y = torch.from_numpy(np.frombuffer(raw, dtype=np.int32, count=n, offset=n * k * 4).astype(np.int64))
    out = []
    for cls in (DRSLX, DRSL):
        z = z0.clone().requires_grad_(True)
        loss = cls(a, b)(z, y)
        loss.backward()
        out += [loss.detach().reshape(-1), z.grad.reshape(-1)]
    torch.cat(out).numpy().astype(np.float64).tofile(outp)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
