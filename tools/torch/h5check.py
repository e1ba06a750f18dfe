#!/usr/bin/env python3
"""h5check.py: an independent (h5py + numpy) checker of advlab HDF5 files against
/work/shared/design/formats.md sections 1 (dataset) and 2 (checkpoint).

    python3 tools/torch/h5check.py FILE.h5 [--strict-writer]

Exit 0 and a one-line summary when the file follows the contract; exit 1 with
"FILE:/object: problem" otherwise. --strict-writer also checks what advlab's own
writer promises beyond the contract (variable-length UTF-8 strings, int32 labels,
images chunked along N with gzip + shuffle, float32 parameters).
Used by tests/test_datasets.c and tests/test_checkpoint.c; handy for files made elsewhere.
"""
import sys

import h5py
import numpy as np


class Bad(Exception):
    pass


def need(cond, where, msg):
    if not cond:
        raise Bad(f"{where}: {msg}")


def attr_str(obj, name, where, strict):
    need(name in obj.attrs, where, f"attribute '{name}' missing")
    v = obj.attrs[name]
    if strict:
        t = obj.attrs.get_id(name).get_type()
        need(isinstance(t, h5py.h5t.TypeStringID) and t.is_variable_str(), where,
             f"attribute '{name}' is not a variable-length string")
        need(t.get_cset() == h5py.h5t.CSET_UTF8, where, f"attribute '{name}' is not UTF-8")
    if isinstance(v, bytes):
        v = v.decode()
    need(isinstance(v, str), where, f"attribute '{name}' is {type(v).__name__}, expected a string")
    return v


def attr_int(obj, name, where):
    need(name in obj.attrs, where, f"attribute '{name}' missing")
    v = np.asarray(obj.attrs[name])
    need(v.size == 1 and v.dtype.kind in "iu", where, f"attribute '{name}' is {v.dtype} {v.shape}, expected an integer")
    return int(v.reshape(()))


def check_dataset(f, path, strict):
    k = attr_int(f, "num_classes", path + ":/")
    need(k >= 1, path + ":/", f"num_classes {k}")
    attr_str(f, "name", path + ":/", strict)
    if "class_names" in f.attrs:
        cn = f.attrs["class_names"]
        need(len(cn) == k, path + ":/", f"class_names has {len(cn)} entries, expected {k}")
    splits = [s for s in f if isinstance(f[s], h5py.Group)]
    need(splits, path + ":/", "no splits")
    ood = "train" not in splits and "val" not in splits
    out = []
    for s in splits:
        im, lb = f[s].get("images"), f[s].get("labels")
        w = f"{path}:/{s}"
        need(isinstance(im, h5py.Dataset), w + "/images", "missing")
        need(isinstance(lb, h5py.Dataset), w + "/labels", "missing")
        need(im.dtype.kind in "iu" and im.ndim == 4, w + "/images", f"{im.dtype} rank {im.ndim}, expected uint8 [N,C,H,W]")
        need(lb.dtype.kind in "iu" and lb.ndim == 1 and lb.shape[0] == im.shape[0], w + "/labels",
             f"{lb.dtype} {lb.shape}, expected int32 [{im.shape[0]}]")
        if strict:
            need(im.dtype == np.uint8, w + "/images", f"dtype {im.dtype}")
            need(lb.dtype == np.int32, w + "/labels", f"dtype {lb.dtype}")
            need(im.chunks is not None and im.chunks[0] <= 256 and tuple(im.chunks[1:]) == im.shape[1:],
                 w + "/images", f"chunks {im.chunks}, expected (<=256, C, H, W)")
            need(im.compression == "gzip" and im.shuffle, w + "/images", "not gzip + shuffle")
        y = lb[...]
        lo = -1 if ood else 0
        bad = np.nonzero((y < lo) | (y >= k))[0]
        need(bad.size == 0, w + "/labels", f"label {y[bad[0]] if bad.size else 0} at index {bad[0] if bad.size else 0} outside [0,{k})")
        out.append(f"{s} {im.shape}")
    return f"dataset '{f.attrs['name']}', {k} classes: " + ", ".join(out)


def check_float_group(g, where, strict):
    for name, d in g.items():
        need(isinstance(d, h5py.Dataset), f"{where}/{name}", "is not a dataset")
        if name.endswith(".num_batches_tracked"):
            need(d.dtype.kind in "iu" and d.size == 1, f"{where}/{name}", f"{d.dtype} {d.shape}, expected int64 scalar")
            if strict:
                need(d.dtype == np.int64 and d.shape == (), f"{where}/{name}", f"{d.dtype} {d.shape}")
            continue
        need(d.dtype.kind == "f", f"{where}/{name}", f"dtype {d.dtype}, expected float32")
        if strict:
            need(d.dtype == np.float32, f"{where}/{name}", f"dtype {d.dtype}")
        need(np.all(np.isfinite(d[...])), f"{where}/{name}", "non-finite values")


def check_checkpoint(f, path, strict):
    m = f.get("model")
    need(isinstance(m, h5py.Group), path + ":/model", "missing")
    w = path + ":/model"
    attr_str(m, "arch", w, strict)
    c = attr_int(m, "in_channels", w)
    attr_int(m, "num_classes", w)
    attr_int(m, "image_size", w)
    for a in ("mean", "std"):
        if a in m.attrs or strict:
            v = np.asarray(m.attrs.get(a))
            need(v.dtype.kind == "f" and v.shape == (c,), w, f"attribute '{a}' is {v.dtype} {v.shape}, expected float32[{c}]")
    check_float_group(m, w, strict)
    params = {n for n in m if not n.endswith(".num_batches_tracked")}
    if "optimizer" in f:
        attr_int(f["optimizer"], "step", path + ":/optimizer")
        for n, d in f["optimizer"].items():
            need(n.endswith(".momentum_buffer") and n[: -len(".momentum_buffer")] in params,
                 f"{path}:/optimizer/{n}", "not <param>.momentum_buffer")
            need(d.shape == m[n[: -len(".momentum_buffer")]].shape, f"{path}:/optimizer/{n}", "shape differs from the parameter")
    if "ema" in f:
        for n, d in f["ema"].items():
            need(n in params and d.shape == m[n].shape, f"{path}:/ema/{n}", "not a parameter of the same shape")
    if "train" in f:
        t = f["train"]
        for a in ("epoch", "step", "seed"):
            attr_int(t, a, path + ":/train")
        attr_str(t, "config", path + ":/train", strict)
    if "metrics" in f:
        for n, d in f["metrics"].items():
            need(d.dtype.kind == "f" and d.ndim == 1, f"{path}:/metrics/{n}", f"{d.dtype} rank {d.ndim}")
    return f"checkpoint arch {m.attrs['arch']}, {len(params)} parameters"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    strict = "--strict-writer" in sys.argv
    if len(args) != 1:
        print("usage: python3 tools/torch/h5check.py FILE.h5 [--strict-writer]", file=sys.stderr)
        return 2
    path = args[0]
    try:
        with h5py.File(path, "r") as f:
            fmt = attr_str(f, "format", path + ":/", strict)
            need(attr_int(f, "format_version", path + ":/") == 1, path + ":/", "format_version != 1")
            if fmt == "advlab-dataset":
                print(check_dataset(f, path, strict))
            elif fmt == "advlab-checkpoint":
                print(check_checkpoint(f, path, strict))
            else:
                raise Bad(f"{path}:/: format = {fmt!r}")
    except Bad as e:
        print(e, file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
