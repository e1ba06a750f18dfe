"""Bitwise comparison of two advlab checkpoints: every dataset under /model, /optimizer and
/ema, plus /optimizer step and /train step. usage: compare_ckpt.py A.h5 B.h5"""
import sys

import h5py
import numpy as np


def items(f):
    out = {}
    for grp in ("model", "optimizer", "ema"):
        if grp in f:
            f[grp].visititems(lambda n, o: out.__setitem__(grp + "/" + n, o[()])
                              if isinstance(o, h5py.Dataset) else None)
    return out


a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
ia, ib = items(a), items(b)
if sorted(ia) != sorted(ib):
    print("compare_ckpt: FAIL: different datasets: %s" % sorted(set(ia) ^ set(ib)))
    sys.exit(1)
bad = [k for k in ia if np.asarray(ia[k]).tobytes() != np.asarray(ib[k]).tobytes()]
for k in bad[:5]:
    x, y = np.asarray(ia[k], np.float64), np.asarray(ib[k], np.float64)
    print("compare_ckpt: %s differs (max abs %.3g)" % (k, np.abs(x - y).max()))
sa, sb = int(a["train"].attrs["step"]), int(b["train"].attrs["step"])
if bad or sa != sb:
    print("compare_ckpt: FAIL: %d of %d datasets differ; steps %d vs %d" % (len(bad), len(ia), sa, sb))
    sys.exit(1)
print("compare_ckpt: ok: %d datasets bit-identical, step %d" % (len(ia), sa))
