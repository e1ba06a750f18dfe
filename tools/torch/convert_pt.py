#!/usr/bin/python3
"""convert_pt.py: PyTorch state_dict files <-> advlab checkpoints (formats.md section 2).

  convert_pt.py to-advlab   IN.pt OUT.h5 --arch A [--num-classes K] [--mean M..] [--std S..]
  convert_pt.py from-advlab IN.h5 OUT.pt

to-advlab reads a .pt/.pth file (a plain state_dict, or one under 'state_dict' /
'model_state_dict' / 'model' / 'net'; `module.` (DataParallel) and `model.` prefixes are
stripped), checks it against the arch's PyTorch twin in models.py (names, shapes, then a strict
load_state_dict) and writes float32 datasets under their PyTorch names, num_batches_tracked as
int64 scalars. from-advlab writes the plain state_dict back (torch.save). Both write
atomically: OUT.tmp, fsync, rename. Failures print one line, "convert_pt.py: error: ...",
and exit 1. Needs Debian's /usr/bin/python3 (torch, h5py).

Also importable: read_advlab(), write_advlab(), load_torch_state_dict(), check_arch().
"""
import argparse
import os
import sys
from collections import OrderedDict

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402

FORMAT = "advlab-checkpoint"
FORMAT_VERSION = 1
NBT = "num_batches_tracked"


class ConvertError(Exception):
    """A user-caused failure; str() is the one-line message."""


def _shape(t):
    return "[" + ", ".join(str(d) for d in t.shape) + "]"


# ---------------------------------------------------------------- PyTorch side

def _strip_prefixes(sd):
    """Strip `module.` / `model.` while every key carries it (DataParallel, wrappers)."""
    changed = True
    while changed and sd:
        changed = False
        for prefix in ("module.", "model."):
            if all(k.startswith(prefix) for k in sd):
                sd = OrderedDict((k[len(prefix):], v) for k, v in sd.items())
                changed = True
    return sd


def load_torch_state_dict(path):
    """The state_dict inside a torch.save file, as an OrderedDict of CPU tensors."""
    try:
        obj = torch.load(path, map_location="cpu")
    except FileNotFoundError:
        raise ConvertError("%s: no such file" % path)
    except Exception as e:  # pickle / zip errors: one line
        raise ConvertError("%s: not a readable torch.save file (%s)" % (path, str(e).splitlines()[0]))
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "net"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or \
            not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConvertError("%s: no state_dict found (expected a dict of tensors, or one under "
                           "'state_dict' / 'model_state_dict' / 'model')" % path)
    return _strip_prefixes(OrderedDict(obj))


def _classifier_key(arch):
    if models.parse_wrn(arch):
        return "fc.weight"
    return {"smallcnn": "classifier.fc3.weight"}.get(arch, "linear.weight")


def _first_conv_key(arch):
    return "feature_extractor.conv1.weight" if arch == "smallcnn" else "conv1.weight"


def infer_geometry(arch, sd, what="state_dict"):
    """(num_classes, in_channels) read off the classifier and first conv of a state_dict."""
    ck, fk = _classifier_key(arch), _first_conv_key(arch)
    if ck not in sd or fk not in sd:
        raise ConvertError("%s does not look like arch %s: no '%s' / '%s'" % (what, arch, fk, ck))
    return int(sd[ck].shape[0]), int(sd[fk].shape[1])


def check_arch(arch, sd, num_classes, in_channels, what="state_dict"):
    """Verify sd matches models.build(arch); returns the model with sd loaded (strict).
    Missing num_batches_tracked entries are allowed (old checkpoints) and filled with 0."""
    try:
        model = models.build(arch, num_classes, in_channels)
    except ValueError as e:
        raise ConvertError(str(e))
    ref = model.state_dict()
    missing = [k for k in ref if k not in sd and not k.endswith(NBT)]
    extra = [k for k in sd if k not in ref]
    bad = ["%s %s, expected %s" % (k, _shape(sd[k]), _shape(ref[k]))
           for k in ref if k in sd and tuple(sd[k].shape) != tuple(ref[k].shape)]
    if missing or extra or bad:
        parts = []
        if missing:
            parts.append("missing %d (%s%s)" % (len(missing), ", ".join(missing[:3]),
                                                ", ..." if len(missing) > 3 else ""))
        if extra:
            parts.append("unexpected %d (%s%s)" % (len(extra), ", ".join(extra[:3]),
                                                   ", ..." if len(extra) > 3 else ""))
        if bad:
            parts.append("shape %s%s" % (bad[0], " (+%d more)" % (len(bad) - 1) if len(bad) > 1 else ""))
        raise ConvertError("%s does not match arch %s (num_classes %d, in_channels %d): %s"
                           % (what, arch, num_classes, in_channels, "; ".join(parts)))
    full = OrderedDict()
    for k, v in ref.items():
        if k in sd:
            full[k] = sd[k].to(v.dtype) if k.endswith(NBT) else sd[k].to(torch.float32)
        else:
            full[k] = torch.zeros((), dtype=torch.int64)
    try:
        model.load_state_dict(full, strict=True)
    except RuntimeError as e:
        raise ConvertError("%s does not load into arch %s: %s" % (what, arch, str(e).splitlines()[0]))
    return model, full


# ---------------------------------------------------------------- advlab side

def _fsync_replace(tmp, out):
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, out)
    dfd = os.open(os.path.dirname(os.path.abspath(out)), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_advlab(path, sd, arch, num_classes, in_channels, image_size, mean=None, std=None):
    """Write sd (PyTorch names) as an advlab checkpoint, atomically."""
    mean = np.zeros(in_channels, np.float32) if mean is None else np.asarray(mean, np.float32)
    std = np.ones(in_channels, np.float32) if std is None else np.asarray(std, np.float32)
    if mean.shape != (in_channels,) or std.shape != (in_channels,):
        raise ConvertError("mean/std need %d values each (one per input channel), got %d / %d"
                           % (in_channels, mean.size, std.size))
    if not np.all(std > 0):
        raise ConvertError("std must be > 0, got %s" % std.tolist())
    tmp = path + ".tmp"
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = np.int32(FORMAT_VERSION)
            g = f.create_group("model")
            g.attrs["arch"] = arch
            g.attrs["num_classes"] = np.int32(num_classes)
            g.attrs["in_channels"] = np.int32(in_channels)
            g.attrs["image_size"] = np.int32(image_size)
            g.attrs["mean"] = mean
            g.attrs["std"] = std
            for k, v in sd.items():
                if k.endswith(NBT):
                    g.create_dataset(k, data=np.int64(v.item()))
                else:
                    g.create_dataset(k, data=v.detach().cpu().to(torch.float32).numpy())
        _fsync_replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise ConvertError("%s: write failed (%s)" % (path, e))


def _attr_str(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):  # fixed-length string stored as a 1-element array
        return _attr_str(v.reshape(-1)[0])
    return str(v)


def read_advlab(path):
    """(meta, state_dict) of an advlab checkpoint. meta: arch, num_classes, in_channels,
    image_size, mean, std (numpy float32). state_dict: float32 tensors, int64 scalars for
    num_batches_tracked, in file order."""
    try:
        f = h5py.File(path, "r")
    except (OSError, FileNotFoundError) as e:
        raise ConvertError("%s: cannot open as HDF5 (%s)" % (path, str(e).splitlines()[0]))
    with f:
        fmt = _attr_str(f.attrs.get("format", ""))
        if fmt != FORMAT:
            raise ConvertError("%s: attribute format = '%s', expected '%s'" % (path, fmt, FORMAT))
        ver = int(np.asarray(f.attrs.get("format_version", -1)).reshape(-1)[0])
        if ver != FORMAT_VERSION:
            raise ConvertError("%s: format_version %d, expected %d" % (path, ver, FORMAT_VERSION))
        if "model" not in f:
            raise ConvertError("%s: no /model group" % path)
        g = f["model"]
        meta = {"arch": _attr_str(g.attrs["arch"])}
        for k in ("num_classes", "in_channels", "image_size"):
            if k not in g.attrs:
                raise ConvertError("%s:/model: attribute %s missing" % (path, k))
            meta[k] = int(np.asarray(g.attrs[k]).reshape(-1)[0])
        c = meta["in_channels"]
        meta["mean"] = np.asarray(g.attrs.get("mean", np.zeros(c)), np.float32).reshape(-1)
        meta["std"] = np.asarray(g.attrs.get("std", np.ones(c)), np.float32).reshape(-1)
        sd = OrderedDict()

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                a = obj[()]
                if name.endswith(NBT):
                    sd[name] = torch.tensor(int(np.asarray(a).reshape(-1)[0]), dtype=torch.int64)
                else:
                    if obj.dtype != np.float32:
                        raise ConvertError("%s:/model/%s: dtype %s, expected float32"
                                           % (path, name, obj.dtype))
                    sd[name] = torch.from_numpy(np.array(a, dtype=np.float32, copy=True))

        g.visititems(visit)
    return meta, sd


# ---------------------------------------------------------------- commands

def _floats(vals, what):
    out = []
    for v in vals or []:
        for s in str(v).replace(",", " ").split():
            try:
                out.append(float(s))
            except ValueError:
                raise ConvertError("%s: '%s' is not a number" % (what, s))
    return out or None


def to_advlab(args):
    sd = load_torch_state_dict(args.input)
    arch = args.arch
    try:
        image_size = models.geometry(arch)[1]
    except ValueError as e:
        raise ConvertError(str(e))
    mean, std = _floats(args.mean, "--mean"), _floats(args.std, "--std")
    # normalisation stored with the weights by some wrappers (RobustBench style mu / sigma)
    if "mu" in sd and "sigma" in sd:
        mu, sigma = sd.pop("mu").reshape(-1).tolist(), sd.pop("sigma").reshape(-1).tolist()
        mean, std = mean or mu, std or sigma
    dead = []
    if models.parse_wrn(arch):
        # TRADES' WideResNet (and RobustBench's with sub_block1=True) builds an extra block
        # that forward never calls: its tensors carry no information, drop them
        dead = [k for k in sd if k.startswith("sub_block1.")]
        for k in dead:
            del sd[k]
    num_classes, in_c = infer_geometry(arch, sd, args.input)
    if args.num_classes is not None and args.num_classes != num_classes:
        raise ConvertError("%s: --num-classes %d but the classifier has %d outputs"
                           % (args.input, args.num_classes, num_classes))
    if args.image_size is not None:
        image_size = args.image_size
    _, full = check_arch(arch, sd, num_classes, in_c, what=args.input)
    if (mean is None) != (std is None):
        raise ConvertError("--mean and --std go together")
    write_advlab(args.output, full, arch, num_classes, in_c, image_size, mean, std)
    if models.parse_wrn(arch) and dead:
        print("convert_pt.py: note: dropped %d sub_block1.* tensors (TRADES / RobustBench "
              "WideResNet: built but never called in forward)" % len(dead), file=sys.stderr)
    print("%s -> %s: arch %s, %d classes, %d tensors, %d floats"
          % (args.input, args.output, arch, num_classes, len(full),
             sum(v.numel() for k, v in full.items() if not k.endswith(NBT))))


def from_advlab(args):
    meta, sd = read_advlab(args.input)
    arch = meta["arch"]
    _, full = check_arch(arch, sd, meta["num_classes"], meta["in_channels"],
                         what="%s:/model" % args.input)
    tmp = args.output + ".tmp"
    try:
        torch.save(full, tmp)
        _fsync_replace(tmp, args.output)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise ConvertError("%s: write failed (%s)" % (args.output, e))
    mean, std = meta["mean"], meta["std"]
    norm = "" if not (np.any(mean != 0) or np.any(std != 1)) else \
        " (normalisation mean %s std %s is not part of a state_dict)" % (
            [float("%.7g" % v) for v in mean], [float("%.7g" % v) for v in std])
    print("%s -> %s: arch %s, %d tensors%s" % (args.input, args.output, arch, len(full), norm))


def main(argv=None):
    p = argparse.ArgumentParser(prog="convert_pt.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("to-advlab", help="PyTorch state_dict file -> advlab checkpoint")
    t.add_argument("input")
    t.add_argument("output")
    t.add_argument("--arch", required=True, help="smallcnn, preact_resnet18, resnet18, wrn-D-W")
    t.add_argument("--num-classes", type=int, default=None,
                   help="expected classes (default: read off the classifier)")
    t.add_argument("--image-size", type=int, default=None, help="default: the arch's (28 or 32)")
    t.add_argument("--mean", nargs="+", default=None, help="per-channel input mean")
    t.add_argument("--std", nargs="+", default=None, help="per-channel input std")
    f = sub.add_parser("from-advlab", help="advlab checkpoint -> PyTorch state_dict file")
    f.add_argument("input")
    f.add_argument("output")
    args = p.parse_args(argv)
    try:
        (to_advlab if args.cmd == "to-advlab" else from_advlab)(args)
    except ConvertError as e:
        print("convert_pt.py: error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
