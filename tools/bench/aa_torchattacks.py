#!/usr/bin/env python3
"""aa_torchattacks.py: AutoAttack 'standard' with torchattacks (the reference side of the
AutoAttack conformance test, tests/conformance/autoattack_ta.sh, and of the benchmark
tools/bench/aa_bench.sh), on an advlab checkpoint and dataset file.

torchattacks' own AutoAttack class does NOT run the standard protocol (its APGD/APGD-T/FAB
default to 10 iterations, torchattacks #196, and it draws a time-based seed unless one is
given), so the four attacks are built here with the settings of fra31/auto-attack 'standard'
(design notes evaluation.md A.3):
    APGD-CE   loss ce, 100 iterations, 1 restart, eot 1, rho 0.75
    APGD-T    targeted DLR, 100 iterations, 1 restart, n_classes 10 -> 9 target classes
    FAB-T     multi_targeted, 100 iterations, 1 restart, 9 target classes, alpha_max 0.1,
              eta 1.05, beta 0.9
    Square    5000 queries (--square-queries; the schedule rescales to the budget exactly as
              advlab's does), p_init 0.8, 1 restart, margin loss
    seed 0 for every attack (torchattacks re-seeds torch's RNG at every call)
and run as AutoAttack runs them: a cascade in which each attack sees only the points still
robust (clean-correct and not broken by an earlier attack), in batches of --bs in index order;
a point is broken when a fresh forward pass on the returned image misclassifies it and the
image lies in the eps-ball and [0,1] (images outside are counted in "violations" and ignored).

The model: tools/torch/convert_pt.py read_advlab -> models.build -> load_state_dict (strict)
-> models.Normalized (advlab keeps (x - mean) / std inside the model), eval mode.

Output: human-readable lines (one per stage, as advlab prints them) and, with --json FILE, one
JSON object: n, clean, robust_after {attack: count}, seconds_after {attack: cumulative s},
seconds, clean_flags / robust_flags ("0101..." per point), versions, threads, device.

usage: aa_torchattacks.py --ckpt CKPT.h5 --data DATA.h5 [--split test] [--n 200] [--eps 0.1]
         [--norm Linf] [--bs 250] [--square-queries 5000] [--threads T] [--device cpu|cuda]
         [--relabel] [--smoke] [--json OUT.json]
  --relabel   use the model's clean predictions as labels (synthetic-data speed runs only)
  --smoke     only check that torchattacks imports and that APGD, APGD-T, FAB and Square run
              (2 iterations/queries on 4 points of a random SmallCNN); exit 0 when they do
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "torch"))
import models  # noqa: E402

STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")


def build_attacks(ta, net, norm, eps, n_classes, square_queries, iters=100, seed=0):
    """The four attacks of AutoAttack 'standard' with the reference's settings."""
    return [
        ("apgd-ce", ta.APGD(net, norm=norm, eps=eps, steps=iters, n_restarts=1, seed=seed,
                            loss="ce", eot_iter=1, rho=0.75)),
        ("apgd-t", ta.APGDT(net, norm=norm, eps=eps, steps=iters, n_restarts=1, seed=seed,
                            eot_iter=1, rho=0.75, n_classes=n_classes)),
        ("fab-t", ta.FAB(net, norm=norm, eps=eps, steps=iters, n_restarts=1, alpha_max=0.1,
                         eta=1.05, beta=0.9, seed=seed, multi_targeted=True,
                         n_classes=n_classes)),
        ("square", ta.Square(net, norm=norm, eps=eps, n_queries=square_queries, n_restarts=1,
                             p_init=0.8, loss="margin", resc_schedule=True, seed=seed)),
    ]


def load_model(ckpt, device):
    from convert_pt import read_advlab
    meta, sd = read_advlab(ckpt)
    net = models.build(meta["arch"], num_classes=meta["num_classes"],
                       in_channels=meta["in_channels"])
    net.load_state_dict(sd, strict=True)
    net = models.Normalized(net, meta["mean"], meta["std"]).to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)  # input gradients only, as advlab (FAB calls .backward())
    return net, meta


def load_data(path, split, n):
    import h5py
    with h5py.File(path, "r") as f:
        g = f[split]
        n = g["labels"].shape[0] if n <= 0 else min(n, g["labels"].shape[0])
        x = g["images"][:n].astype(np.float32) / 255.0
        y = g["labels"][:n].astype(np.int64)
    return x, y


def predict(net, x, bs):
    with torch.no_grad():
        return torch.cat([net(x[i:i + bs]).argmax(1) for i in range(0, len(x), bs)])


def perturbation(norm, adv, x):
    d = (adv - x).reshape(len(x), -1).double()
    return d.abs().max(1).values if norm == "Linf" else d.norm(dim=1)


def smoke(ta):
    """torchattacks imports and each attack runs on this torch (tiny budgets)."""
    torch.manual_seed(0)
    net = models.build("smallcnn").eval()
    for p in net.parameters():
        p.requires_grad_(False)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        y = net(x).argmax(1)  # every point clean-correct, so every attack has work
    for name, atk in build_attacks(ta, net, "Linf", 0.1, 10, square_queries=2, iters=2):
        adv = atk(x, y)
        if adv.shape != x.shape or not torch.isfinite(adv).all():
            raise SystemExit("smoke: %s returned a bad tensor %s" % (name, tuple(adv.shape)))
        if perturbation("Linf", adv, x).max() > 0.1 + 1e-6:
            raise SystemExit("smoke: %s left the eps-ball" % name)
        print("smoke: %s ran (%d points)" % (name, len(x)))
    print("smoke: torchattacks %s on torch %s: APGD, APGD-T, FAB, Square run"
          % (ta.__version__, torch.__version__))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt")
    ap.add_argument("--data")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--norm", default="Linf", choices=("Linf", "L2"))
    ap.add_argument("--bs", type=int, default=250)
    ap.add_argument("--square-queries", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--relabel", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
    import torchattacks as ta
    if a.smoke:
        smoke(ta)
        return
    if not a.ckpt or not a.data:
        ap.error("--ckpt and --data are required (or --smoke)")
    dev = torch.device(a.device)
    net, meta = load_model(a.ckpt, dev)
    xn, yn = load_data(a.data, a.split, a.n)
    x = torch.from_numpy(xn).to(dev)
    y = torch.from_numpy(yn).to(dev)
    n = len(y)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    pred = predict(net, x, a.bs)
    if a.relabel:
        y = pred.clone()
    clean = (pred == y)
    robust = clean.clone()
    print("torchattacks %s, torch %s, %d threads, %s: %s on %d points of %s:/%s (%s, eps %.6g, "
          "batch %d, square %d queries)" % (ta.__version__, torch.__version__,
                                            torch.get_num_threads(), a.device, meta["arch"], n,
                                            a.data, a.split, a.norm, a.eps, a.bs,
                                            a.square_queries), flush=True)
    print("clean accuracy:  %.2f%% (%d/%d)" % (100.0 * clean.sum().item() / n, clean.sum(), n),
          flush=True)
    attacks = build_attacks(ta, net, a.norm, a.eps, meta["num_classes"], a.square_queries)
    robust_after, seconds_after, violations = {}, {}, {}
    total = 0.0
    for name, atk in attacks:
        idx = robust.nonzero().flatten()
        nviol = 0
        sync()
        t0 = time.time()
        for s in range(0, len(idx), a.bs):
            b = idx[s:s + a.bs]
            adv = atk(x[b], y[b])
            inside = (perturbation(a.norm, adv, x[b]) <= a.eps + 1e-6) & \
                (adv.reshape(len(b), -1).min(1).values >= 0) & \
                (adv.reshape(len(b), -1).max(1).values <= 1)
            with torch.no_grad():
                wrong = net(adv).argmax(1) != y[b]
            nviol += int((wrong & ~inside).sum())
            robust[b[wrong & inside]] = False
        sync()
        total += time.time() - t0
        robust_after[name] = int(robust.sum())
        seconds_after[name] = total
        violations[name] = nviol
        print("  after %-9s %.2f%% (total time %.1f s)%s" % (
            name, 100.0 * robust_after[name] / n, total,
            "" if not nviol else " [%d images outside the threat model ignored]" % nviol),
            flush=True)
    nr = int(robust.sum())
    print("robust accuracy: %.2f%% (%d/%d) under torchattacks autoattack-standard%s, %s eps %.6g "
          "(%.1f s)" % (100.0 * nr / n, nr, n,
                        "" if a.square_queries == 5000 else " (square %d)" % a.square_queries,
                        a.norm, a.eps, total), flush=True)
    if a.json:
        rec = {"impl": "torchattacks", "torchattacks": ta.__version__, "torch": torch.__version__,
               "threads": torch.get_num_threads(), "device": a.device, "arch": meta["arch"],
               "n": n, "eps": a.eps, "norm": a.norm, "bs": a.bs,
               "square_queries": a.square_queries, "clean": int(clean.sum()),
               "robust_after": robust_after, "seconds_after": seconds_after, "seconds": total,
               "violations": violations,
               "clean_flags": "".join("1" if v else "0" for v in clean.tolist()),
               "robust_flags": "".join("1" if v else "0" for v in robust.tolist())}
        with open(a.json, "w") as f:
            json.dump(rec, f)
            f.write("\n")


if __name__ == "__main__":
    main()
