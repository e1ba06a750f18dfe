"""Make gradient-masking variants of an advlab SmallCNN checkpoint (tests/e2e/autoattack.sh).

usage: mask_ckpt.py IN.h5 OUT.h5 MODE
  prob   classifier.fc3 weight = 0, bias = 0.1: every output row is the constant probability
         vector (0.1, ..., 0.1) and the input gradient is exactly zero (softmax-output and
         zero-gradient flags)
  scale  classifier.fc3 weight and bias x 1e4: predictions unchanged, but the softmax saturates
         so the cross-entropy gradient underflows to exactly 0 on confident points; APGD-CE
         stalls while a score-based attack (Square) does not (the Square flag)"""
import shutil
import sys

import h5py
import numpy as np


def main():
    src, dst, mode = sys.argv[1:4]
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        w = f["model/classifier.fc3.weight"]
        b = f["model/classifier.fc3.bias"]
        if mode == "prob":
            w[...] = np.zeros(w.shape, np.float32)
            b[...] = np.full(b.shape, 0.1, np.float32)
        elif mode == "scale":
            w[...] = w[()] * np.float32(1e4)
            b[...] = b[()] * np.float32(1e4)
        else:
            sys.exit("mask_ckpt.py: unknown mode %r (prob, scale)" % mode)
    print("mask_ckpt: wrote %s (%s)" % (dst, mode))


if __name__ == "__main__":
    main()
