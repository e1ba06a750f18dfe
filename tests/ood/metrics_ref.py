#!/usr/bin/env python3
"""Independent check of an `advlab ood --save` scores file (format: core/ood.h).

Recomputes, with numpy only and by different algorithms than core/ood.c:
  - the msp / energy scores from the stored float32 logits (float64 softmax / logsumexp);
  - AUROC by brute force over all (in, out) pairs: mean(in > out) + 0.5 mean(in == out), and
    again as sklearn builds it (ROC points at the distinct thresholds, trapezoid rule);
  - the 95%-TPR threshold by scanning the distinct in-distribution scores from the top;
  - FPR95, F1 (OOD positive, "OOD iff s < t"), precision, recall at that threshold;
  - the detection error over every distinct threshold (plus +inf);
  - the open-set macro-F1 (K known classes + unknown) from argmax predictions;
and compares them with the stored scores and the /metrics/<score> attributes: scores to 1e-12
relative, metrics to 1e-9 relative (they are ratios of integer counts: exact up to rounding).

usage: metrics_ref.py SCORES.h5 [--expect-openset] [--expect-n-in N] [--expect-n-out N]
Exit 0 = agree, 1 = mismatch, 77 = numpy/h5py missing (skip).
"""
import sys

try:
    import h5py
    import numpy as np
except ImportError as e:  # environment problem, not a bug: skip
    print(f"metrics_ref.py: skipped: {e}")
    sys.exit(77)

RTOL_SCORE, RTOL_METRIC = 1e-12, 1e-9


def msp(z):
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).max(axis=1)


def energy(z, t):
    z = z.astype(np.float64) / t
    m = z.max(axis=1, keepdims=True)
    return t * (m[:, 0] + np.log(np.exp(z - m).sum(axis=1)))


def auroc_pairs(a, b):
    # chunked so memory stays small for large sets
    gt = eq = 0
    for i in range(0, len(a), 1024):
        c = a[i:i + 1024, None]
        gt += int((c > b[None, :]).sum())
        eq += int((c == b[None, :]).sum())
    return (gt + 0.5 * eq) / (len(a) * len(b))


def auroc_trapezoid(a, b):
    # sklearn's construction: ROC points at every distinct threshold (ID positive, accept
    # s >= t), from (0, 0), integrated with trapezoids (tied thresholds become diagonals)
    ts = np.unique(np.concatenate([a, b]))[::-1]
    tpr = np.concatenate([[0.0], [(a >= t).mean() for t in ts]])
    fpr = np.concatenate([[0.0], [(b >= t).mean() for t in ts]])
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2))


def threshold95(a):
    n = len(a)
    for u in np.unique(a)[::-1]:  # distinct in-distribution scores, largest first
        if 100 * int((a >= u).sum()) >= 95 * n:
            return float(u)
    raise AssertionError("no threshold reaches 95% TPR")


def detection_error(a, b):
    cands = np.concatenate([np.unique(np.concatenate([a, b])), [np.inf]])
    return min(0.5 * (a < t).mean() + 0.5 * (b >= t).mean() for t in cands)


def openset_f1(a, pa, ya, b, pb, k, t):
    y_true = np.concatenate([ya, np.full(len(b), k)])
    y_pred = np.concatenate([np.where(a >= t, pa, k), np.where(b >= t, pb, k)])
    f1s = []
    for c in np.union1d(y_true, y_pred):
        tp = int(((y_true == c) & (y_pred == c)).sum())
        fp = int(((y_true != c) & (y_pred == c)).sum())
        fn = int(((y_true == c) & (y_pred != c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0)
    return float(np.mean(f1s))


def close(got, ref, rtol):
    if np.isnan(ref):
        return np.isnan(got)
    return abs(got - ref) <= rtol * abs(ref) + 1e-300


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    path = args[0]
    want_open = "--expect-openset" in args
    exp_n = {}
    for key in ("--expect-n-in", "--expect-n-out"):
        if key in args:
            exp_n[key] = int(args[args.index(key) + 1])
    bad = 0
    with h5py.File(path, "r") as f:
        fmt = f.attrs["format"]
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        assert fmt == "advlab-ood-scores", fmt
        assert int(f.attrs["format_version"]) == 1
        t = float(f.attrs["temperature"])
        zi, zo = f["in/logits"][()], f["out/logits"][()]
        yi, yo = f["in/labels"][()], f["out/labels"][()]
        k = zi.shape[1]
        assert zo.shape[1] == k and len(yi) == len(zi) and len(yo) == len(zo)
        if "--expect-n-in" in exp_n:
            assert len(zi) == exp_n["--expect-n-in"], (len(zi), exp_n)
        if "--expect-n-out" in exp_n:
            assert len(zo) == exp_n["--expect-n-out"], (len(zo), exp_n)
        ref_scores = {"msp": (msp(zi), msp(zo)), "energy": (energy(zi, t), energy(zo, t))}
        n_checked = 0
        for name in ("msp", "energy"):
            if name not in f["in"]:
                continue
            si, so = f["in/" + name][()], f["out/" + name][()]
            for got, ref, side in ((si, ref_scores[name][0], "in"), (so, ref_scores[name][1], "out")):
                err = np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)
                if not np.all(err <= RTOL_SCORE):
                    print(f"  MISMATCH {name} scores ({side}): max rel err {err.max():.3g}")
                    bad = 1
            a, b = si, so  # metrics are checked on the stored scores (same values C used)
            auc_pairs, auc_trap = auroc_pairs(a, b), auroc_trapezoid(a, b)
            if not close(auc_trap, auc_pairs, RTOL_METRIC):
                print(f"  reference AUROCs disagree: pairs {auc_pairs!r} trapezoid {auc_trap!r}")
                bad = 1
            thr = threshold95(a)
            tp, fp, fn = int((b < thr).sum()), int((a < thr).sum()), int((b >= thr).sum())
            ref = {
                "auroc": auc_pairs,
                "threshold": thr,
                "tpr": float((a >= thr).mean()),
                "fpr95": float((b >= thr).mean()),
                "f1": 2 * tp / (2 * tp + fp + fn),
                "precision": tp / (tp + fp) if tp + fp else 0.0,
                "recall": tp / len(b),
                "detection_error": float(detection_error(a, b)),
                "f1_openset": float("nan"),
            }
            if want_open:
                ref["f1_openset"] = openset_f1(a, zi.argmax(1), yi, b, zo.argmax(1), k, thr)
            m = f["metrics/" + name].attrs
            for key, r in ref.items():
                g = float(m[key])
                ok = close(g, r, RTOL_METRIC)
                print(f"  {name:6s} {key:16s} advlab {g:.15g}  numpy {r:.15g}  {'ok' if ok else 'MISMATCH'}")
                bad |= not ok
            n_checked += 1
        assert n_checked > 0, "no scores in the file"
    print("metrics_ref.py: " + ("MISMATCH" if bad else "agree"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
