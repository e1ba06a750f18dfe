#!/usr/bin/env python3
"""e2e: `advlab ood` on real Fashion-MNIST (in-distribution) against synthetic OOD sets.

usage: e2e_ood.py ADVLAB WORKDIR FMNIST.h5
  1. trains a tiny SmallCNN (standard training, 2560 images, 1 epoch: the metrics are checked
     for consistency, not for detection quality);
  2. writes two OOD-only dataset files with h5py following formats.md §1 (only a `test` split,
     labels -1): uniform noise, and inverted Fashion-MNIST test images; plus a 3x32x32 file;
  3. runs `advlab ood --save` and checks the file with metrics_ref.py (independent numpy);
  4. in vs in (the same split twice): AUROC exactly 0.5, FPR95 == TPR, detection error 0.5;
  5. --score energy writes only energy; a shape mismatch and bad flags fail with a message.
"""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import metrics_ref  # noqa: E402


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def run(cmd, expect_rc=0):
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sys.stdout.write(p.stdout)
    sys.stdout.write(p.stderr)
    if p.returncode != expect_rc:
        fail(f"exit code {p.returncode}, expected {expect_rc}: {' '.join(cmd)}")
    return p


def write_ood(path, images, name):
    """formats.md §1 dataset file holding only a `test` split with labels -1."""
    n = images.shape[0]
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "advlab-dataset"
        f.attrs["format_version"] = np.int32(1)
        f.attrs["name"] = name
        f.attrs["num_classes"] = np.int32(10)
        g = f.create_group("test")
        g.create_dataset("images", data=images.astype(np.uint8), chunks=(min(n, 256),) + images.shape[1:],
                         compression="gzip", shuffle=True)
        g.create_dataset("labels", data=np.full(n, -1, np.int32))


def check_file(path, n, openset=True, only=None):
    args = [path, "--expect-n-in", str(n), "--expect-n-out", str(n)]
    if openset:
        args.append("--expect-openset")
    sys.argv = ["metrics_ref.py"] + args
    if metrics_ref.main() != 0:
        fail(f"{path}: metrics disagree with the numpy reference")
    with h5py.File(path, "r") as f:
        names = sorted(f["metrics"].keys())
        if only and names != [only]:
            fail(f"{path}: metrics for {names}, expected only {only}")
        return {k: dict(f["metrics"][k].attrs) for k in names}


def main():
    advlab, work, data = sys.argv[1], sys.argv[2], sys.argv[3]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    os.chdir(work)
    n = 500

    run([advlab, "train", os.path.join(SRC, "experiments/quickstart/fmnist_smallcnn_pgdat.ini"),
         "--set", "train.method=standard", "--set", f"data.dataset={data}",
         "--set", "run.out_dir=runs", "--set", "run.name=ood", "--set", "data.n_train=2560",
         "--set", "data.n_test=200", "--set", "train.epochs=1", "--set", "train.lr=0.1",
         "--set", "run.eval_every=0", "--set", "eval.attack=none"])
    ckpt = "runs/ood/checkpoint.h5"

    with h5py.File(data, "r") as f:
        test = f["test/images"][:n]
    rng = np.random.default_rng(0)
    write_ood("noise.h5", rng.integers(0, 256, size=test.shape, dtype=np.uint8), "uniform-noise")
    write_ood("inverted.h5", 255 - test, "fmnist-inverted")
    write_ood("rgb32.h5", rng.integers(0, 256, size=(8, 3, 32, 32), dtype=np.uint8), "rgb32")

    # 1. noise, both scores, --save; independent check of scores and metrics
    p = run([advlab, "ood", "--ckpt", ckpt, "--in", data, "--out", "noise.h5", "--n", str(n),
             "--save", "noise_scores.h5"])
    for needle in ("AUROC", "FPR95", "F1", "msp", "energy", "clean accuracy"):
        if needle not in p.stdout:
            fail(f"'{needle}' missing from the advlab ood report")
    check_file("noise_scores.h5", n)

    # 2. inverted images, energy only, explicit splits and temperature
    run([advlab, "ood", "--ckpt", ckpt, "--in", data, "--in-split", "test", "--out", "inverted.h5",
         "--out-split", "test", "--n", str(n), "--score", "energy", "--temperature", "2",
         "--save", "inv_scores.h5"])
    check_file("inv_scores.h5", n, only="energy")

    # 3. in vs in: identical score multisets -> chance, exactly
    run([advlab, "ood", "--ckpt", ckpt, "--in", data, "--out", data, "--n", str(n),
         "--save", "self_scores.h5"])
    for name, m in check_file("self_scores.h5", n).items():
        if m["auroc"] != 0.5 or m["fpr95"] != m["tpr"] or m["detection_error"] != 0.5:
            fail(f"in vs in ({name}): auroc {m['auroc']} fpr95 {m['fpr95']} tpr {m['tpr']} "
                 f"detection error {m['detection_error']}")

    # 4. failures are reported, not crashed through
    p = run([advlab, "ood", "--ckpt", ckpt, "--in", data, "--out", "rgb32.h5"], expect_rc=1)
    if "3x32x32" not in p.stderr + p.stdout:
        fail("shape mismatch not named in the error")
    run([advlab, "ood", "--ckpt", ckpt, "--in", data, "--out", "noise.h5", "--score", "odin"],
        expect_rc=2)
    run([advlab, "ood", "--ckpt", ckpt, "--in", data], expect_rc=2)
    run([advlab, "ood", "--ckpt", ckpt, "--in", data, "--out", "noise.h5", "--n", "-3"],
        expect_rc=2)
    print("e2e ood: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
