#!/usr/bin/env python3
"""gpu_synth_cifar.py OUT_DIR [--train N] [--test N] [--seed S]

Synthetic CIFAR-10-shaped data in the CIFAR-10 "binary version" layout, for the GPU benchmark
(tools/bench/gpu_bench.sh), which turns it into an advlab dataset file with
`advlab convert --format cifar10` (formats.md section 1). Standard library only: the lent GPU
machine has no h5py and no network.

Files: data_batch_1..5.bin (the train rows split over five files), test_batch.bin,
batches.meta.txt. A record is 1 label byte (0..9) + 3072 pixel bytes (1024 R, 1024 G, 1024 B,
rows of 32), as the real archive. Pixels and labels are uniform random bytes (seeded), so a
model learns nothing from them: the benchmark measures speed only.
"""
import argparse
import os
import random

RECORD = 1 + 3072
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]


def write_batch(path, n, rng):
    pixels = rng.randbytes(n * 3072)
    labels = bytes(rng.randrange(10) for _ in range(n))
    buf = bytearray(n * RECORD)
    for i in range(n):
        buf[i * RECORD] = labels[i]
        buf[i * RECORD + 1:(i + 1) * RECORD] = pixels[i * 3072:(i + 1) * 3072]
    with open(path, "wb") as f:
        f.write(buf)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--train", type=int, default=50000, help="training rows (>= 5)")
    ap.add_argument("--test", type=int, default=10000, help="test rows")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.train < 5 or a.test < 1:
        ap.error("need --train >= 5 and --test >= 1")
    os.makedirs(a.out_dir, exist_ok=True)
    rng = random.Random(a.seed)
    per = [a.train // 5 + (1 if i < a.train % 5 else 0) for i in range(5)]
    for i, n in enumerate(per):
        write_batch(os.path.join(a.out_dir, "data_batch_%d.bin" % (i + 1)), n, rng)
    write_batch(os.path.join(a.out_dir, "test_batch.bin"), a.test, rng)
    with open(os.path.join(a.out_dir, "batches.meta.txt"), "w") as f:
        f.write("\n".join(CLASSES) + "\n")
    print("gpu_synth_cifar: %d train + %d test records in %s" % (a.train, a.test, a.out_dir))


if __name__ == "__main__":
    main()
