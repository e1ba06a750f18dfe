"""Independent check of an attack output file (formats.md §3): load the checkpoint into the
PyTorch twin (tools/torch/models.py), run a fresh forward pass on /images and require
/robust_correct to be reproduced (except points whose top-2 logit margin is below float32
noise); require |images - clean| <= eps (Linf or L2) and images in [0, 1].

usage: check_advfile.py ADV.h5 CKPT.h5 DATA.h5 [--min-clean ACC] [--min-robust ACC]"""
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools", "torch"))
import models  # noqa: E402
from convert_pt import read_advlab  # noqa: E402


def fail(msg):
    print("check_advfile: FAIL: " + msg)
    sys.exit(1)


def main():
    adv_path, ckpt, data = sys.argv[1:4]
    opts = dict(zip(sys.argv[4::2], sys.argv[5::2]))
    with h5py.File(adv_path, "r") as f:
        attrs = {k: f.attrs[k] for k in f.attrs}
        fmt = attrs["format"].decode() if isinstance(attrs["format"], bytes) else attrs["format"]
        if fmt != "advlab-adversarial" or int(attrs["format_version"]) != 1:
            fail("format attributes %r" % attrs)
        norm = attrs["norm"].decode() if isinstance(attrs["norm"], bytes) else attrs["norm"]
        eps = float(attrs["eps"])
        split = attrs["split"].decode() if isinstance(attrs["split"], bytes) else attrs["split"]
        images = f["images"][()]
        labels = f["labels"][()]
        index = f["index"][()]
        clean_c = f["clean_correct"][()]
        robust_c = f["robust_correct"][()]
    n = len(labels)
    if images.dtype != np.float32 or images.ndim != 4 or images.shape[0] != n:
        fail("images %s %s" % (images.dtype, images.shape))
    for name, a in (("index", index), ("clean_correct", clean_c), ("robust_correct", robust_c)):
        if a.shape != (n,):
            fail("%s shape %s" % (name, a.shape))
    with h5py.File(data, "r") as f:
        clean = f[split]["images"][()][index].astype(np.float32) / 255.0
        ref_labels = f[split]["labels"][()][index]
    if not np.array_equal(ref_labels, labels):
        fail("labels differ from the dataset rows named by /index")
    if images.min() < 0 or images.max() > 1 or not np.isfinite(images).all():
        fail("images outside [0,1] or non-finite")
    d = (images - clean).reshape(n, -1).astype(np.float64)
    if norm == "Linf":
        worst = np.abs(d).max()
        ok = worst <= eps + 1e-6
    else:
        worst = np.sqrt((d * d).sum(1)).max()
        ok = worst <= eps * (1 + 1e-5) + 1e-6
    if not ok:
        fail("perturbation %.9g exceeds eps %.9g (%s)" % (worst, eps, norm))

    meta, sd = read_advlab(ckpt)
    net = models.build(meta["arch"], num_classes=meta["num_classes"], in_channels=meta["in_channels"])
    net.load_state_dict(sd, strict=True)
    net = models.Normalized(net, meta["mean"], meta["std"]).eval()
    with torch.no_grad():
        logits = torch.cat([net(torch.from_numpy(images[i:i + 500])) for i in range(0, n, 500)])
        clogits = torch.cat([net(torch.from_numpy(clean[i:i + 500])) for i in range(0, n, 500)])
    lab = torch.from_numpy(labels.astype(np.int64))

    def check(name, lg, flags):
        pred_ok = (lg.argmax(1) == lab).numpy().astype(np.uint8)
        top2 = lg.topk(2, dim=1).values
        margin = (top2[:, 0] - top2[:, 1]).numpy()
        tol = 1e-4 * np.maximum(1.0, lg.abs().max(1).values.numpy())
        bad = (pred_ok != flags) & (margin > tol)
        if bad.any():
            fail("%s: %d of %d flags not reproduced by a fresh PyTorch forward (first index %d)"
                 % (name, bad.sum(), n, np.nonzero(bad)[0][0]))
        return (pred_ok != flags).sum()

    amb = check("robust_correct", logits, robust_c) + check("clean_correct", clogits, clean_c)
    ca, ra = clean_c.mean(), robust_c.mean()
    print("check_advfile: ok: n=%d clean %.4f robust %.4f max |d|_%s = %.6g (eps %.6g), "
          "%d near-tie flags" % (n, ca, ra, norm, worst, eps, amb))
    if ca < float(opts.get("--min-clean", 0)):
        fail("clean accuracy %.4f below %s" % (ca, opts["--min-clean"]))
    if ra < float(opts.get("--min-robust", 0)):
        fail("robust accuracy %.4f below %s" % (ra, opts["--min-robust"]))


if __name__ == "__main__":
    main()
