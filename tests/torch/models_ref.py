#!/usr/bin/python3
"""models_ref.py: PyTorch reference side of tests/test_models_torch.c.

  models_ref.py struct OUT.txt ARCH..          parameter tables, counts and init statistics
  models_ref.py grad CKPT.h5 IO.h5 REF.h5      train/eval forward + backward, float64 and float32
  models_ref.py rt-make ARCH DIR               random torch model -> .pt -> convert_pt.py to-advlab
  models_ref.py rt-check DIR                   from-advlab of DIR's checkpoints == original

grad: the model is the advlab checkpoint CKPT.h5 (read with convert_pt.read_advlab, loaded
strictly into models.py, wrapped in its input normalisation). IO.h5 (written by the C test)
holds x (N,C,H,W), dlogits (N,K), dfeat (N,D) and, for smallcnn, the train-mode dropout mask
drawn by advlab. The scalar differentiated is sum(logits * dlogits) in train mode and
sum(logits * dlogits) + sum(feat * dfeat) in eval mode (al_model_backward's dfeat input).
REF.h5 gets, under /f64 and /f32:
  train/{logits,feat,dx}  train/grad/<param>  train/state/<BN buffer> (after the forward)
  eval/{logits,feat,dx}   (eval mode, with the running stats the train forward updated)
Exit status: 0 ok, 1 on any error (message on stderr).
"""
import os
import subprocess
import sys
import zlib
from collections import OrderedDict

import h5py
import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, "..", "..", "tools", "torch")
sys.path.insert(0, TOOLS)
import convert_pt  # noqa: E402
import models  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


# ---------------------------------------------------------------- struct

def cmd_struct(out, archs):
    """One line per parameter/buffer: P arch name ndim d0 d1 d2 d3 numel trainable std tail
    const, where tail is the fraction of |w - mean| > 1.8 std (0 for a uniform draw, whose edge
    is sqrt(3) std; 7.2% for a normal one) and const is the value of a constant-initialised
    tensor (else nan); then C arch n_trainable n_state_floats. Statistics come from one torch
    init (seed 0)."""
    torch.manual_seed(0)
    lines = []
    for arch in archs:
        model = models.build(arch)
        trainable = {n for n, _ in model.named_parameters()}
        n_state = 0
        for name, t in model.state_dict().items():
            if name.endswith(convert_pt.NBT):
                continue
            shape = list(t.shape) + [1] * (4 - t.dim())
            v = t.double()
            const = v.reshape(-1)[0].item() if bool((v == v.reshape(-1)[0]).all()) else float("nan")
            sd = v.std(unbiased=False).item() if t.numel() > 1 else 0.0
            tail = ((v - v.mean()).abs() > 1.8 * sd).double().mean().item() if sd > 0 else 0.0
            lines.append("P %s %s %d %d %d %d %d %d %d %.9g %.9g %.9g" % (
                arch, name, t.dim(), *shape, t.numel(), int(name in trainable), sd, tail, const))
            n_state += t.numel()
        lines.append("C %s %d %d" % (arch, models.n_params(model), n_state))
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------- grad

class FixedMask(nn.Module):
    """Dropout with a given mask (advlab's Philox draw, already scaled by 1/(1-p))."""

    def __init__(self, mask):
        super().__init__()
        self.mask = mask

    def forward(self, x):
        return x * self.mask.to(x.dtype) if self.training else x


def _load(ckpt):
    meta, sd = convert_pt.read_advlab(ckpt)
    model, _ = convert_pt.check_arch(meta["arch"], sd, meta["num_classes"], meta["in_channels"],
                                     what=ckpt)
    return meta, models.Normalized(model, meta["mean"], meta["std"])


def _run(net, x, dlogits, dfeat, dtype):
    """Train step (forward, backward to weights and input) then eval forward/backward, the
    latter also seeding the penultimate feature's gradient with dfeat."""
    net = net.to(dtype)
    out = OrderedDict()
    net.train()
    xs = x.to(dtype).clone().requires_grad_(True)
    feat = net.features(xs)
    logits = net.head(feat)
    net.zero_grad(set_to_none=True)
    (logits * dlogits.to(dtype)).sum().backward()
    out["train/logits"], out["train/feat"], out["train/dx"] = logits, feat, xs.grad
    # clones: the eval backward below accumulates into the same .grad tensors
    for name, p in net.model.named_parameters():
        out["train/grad/" + name] = p.grad.clone()
    for name, b in net.model.named_buffers():
        out["train/state/" + name] = b.clone()
    net.eval()
    xs = x.to(dtype).clone().requires_grad_(True)
    feat = net.features(xs)
    logits = net.head(feat)
    ((logits * dlogits.to(dtype)).sum() + (feat * dfeat.to(dtype)).sum()).backward()
    out["eval/logits"], out["eval/feat"], out["eval/dx"] = logits, feat, xs.grad
    return out


def cmd_grad(ckpt, io, ref):
    meta, net = _load(ckpt)
    with h5py.File(io, "r") as f:
        x = torch.from_numpy(f["x"][()])
        dlogits = torch.from_numpy(f["dlogits"][()])
        dfeat = torch.from_numpy(f["dfeat"][()])
        mask = torch.from_numpy(f["dropout_mask"][()]) if "dropout_mask" in f else None
    if meta["arch"] == "smallcnn":
        if mask is None:
            raise SystemExit("models_ref.py: %s: smallcnn needs dropout_mask" % io)
        net.model.classifier.drop = FixedMask(mask)
    state0 = {k: v.clone() for k, v in net.state_dict().items()}
    tmp = ref + ".tmp"
    with h5py.File(tmp, "w") as f:
        for tag, dtype in (("f64", torch.float64), ("f32", torch.float32)):
            net.load_state_dict(state0)  # both runs start from the checkpoint's running stats
            for k, v in _run(net, x, dlogits, dfeat, dtype).items():
                a = v.detach().numpy()
                f.create_dataset(tag + "/" + k, data=a if a.dtype == np.int64 else a.astype(np.float64))
    os.replace(tmp, ref)


# ---------------------------------------------------------------- converter round trip

RT_N = 4  # images per round-trip batch


def _save_like_training_scripts(arch, sd, path):
    """The wrappings found in the wild, one per arch: a plain state_dict (TRADES), under
    'state_dict' with DataParallel's `module.` (fast_adversarial, RobustBench), under
    'model_state_dict' with a `model.` wrapper prefix, and RobustBench's WideResNet with the
    unused sub_block1 tensors."""
    if arch == "smallcnn":
        obj = sd
    elif arch == "resnet18":
        obj = {"epoch": 7, "model_state_dict": OrderedDict(("model." + k, v) for k, v in sd.items())}
    else:
        obj = OrderedDict(("module." + k, v) for k, v in sd.items())
        if models.parse_wrn(arch):
            obj["module.sub_block1.layer.0.bn1.weight"] = torch.ones(16)
        obj = {"epoch": 7, "state_dict": obj}
    torch.save(obj, path)


def _expect_one_line_error(cmd, what):
    r = subprocess.run(cmd, capture_output=True, text=True)
    lines = r.stderr.strip().splitlines()
    if r.returncode != 1 or len(lines) != 1 or not lines[0].startswith("convert_pt.py: error: "):
        raise SystemExit("models_ref.py: %s: expected exit 1 and one error line, got %d and %r"
                         % (what, r.returncode, r.stderr))
    print("  rejected as expected: %s" % lines[0], file=sys.stderr)


def cmd_rt_make(arch, d):
    """A torch model with every tensor random (BN affine and running stats included, so eval
    mode is not the identity), saved the way training scripts do; then the converter CLI
    (which must also reject the file for a wrong arch), then reference eval logits."""
    for name in ("orig.pt", "conv.h5", "rt_io.h5", "resaved.h5", "conv_back.pt", "resaved_back.pt"):
        if os.path.exists(os.path.join(d, name)):  # a previous run's files
            os.unlink(os.path.join(d, name))
    g = torch.Generator().manual_seed(zlib.crc32(arch.encode()))  # fixed per arch
    model = models.build(arch)
    sd = model.state_dict()
    for k, v in sd.items():
        if k.endswith(convert_pt.NBT):
            v.fill_(int(torch.randint(1, 10000, (1,), generator=g)))
        elif k.endswith("running_var"):
            v.copy_(torch.rand(v.shape, generator=g) * 1.5 + 0.5)
        elif k.endswith("running_mean") or k.endswith("bias"):
            v.copy_(torch.rand(v.shape, generator=g) * 0.4 - 0.2)
        elif v.dim() == 1:  # BN weight
            v.copy_(torch.rand(v.shape, generator=g) * 0.5 + 0.75)
        else:  # conv / linear weight: He-scaled uniform keeps activations O(1)
            fan_in = v[0].numel()
            v.copy_((torch.rand(v.shape, generator=g) * 2 - 1) * (6.0 / fan_in) ** 0.5)
    model.load_state_dict(sd)
    c, size = models.geometry(arch)
    mean = [0.4914, 0.4822, 0.4465][:c] if c == 3 else [0.1307]
    std = [0.2471, 0.2435, 0.2616][:c] if c == 3 else [0.3081]
    pt, h5 = os.path.join(d, "orig.pt"), os.path.join(d, "conv.h5")
    _save_like_training_scripts(arch, sd, pt)
    conv = [sys.executable, os.path.join(TOOLS, "convert_pt.py"), "to-advlab", pt, h5]
    wrong = {"smallcnn": "resnet18", "preact_resnet18": "resnet18",
             "resnet18": "preact_resnet18"}.get(arch, "wrn-16-4")
    _expect_one_line_error(conv + ["--arch", wrong], "%s converted as %s" % (arch, wrong))
    _expect_one_line_error(conv + ["--arch", arch, "--num-classes", "100"], "wrong --num-classes")
    if os.path.exists(h5):
        raise SystemExit("models_ref.py: a rejected conversion left %s behind" % h5)
    subprocess.run(conv + ["--arch", arch, "--mean", ",".join(map(str, mean)), "--std",
                           *map(str, std)], check=True)
    x = torch.rand((RT_N, c, size, size), generator=g)
    net = models.Normalized(model, mean, std).eval()
    with torch.no_grad(), h5py.File(os.path.join(d, "rt_io.h5"), "w") as f:
        f.create_dataset("x", data=x.numpy())
        f.create_dataset("logits_f32", data=net(x).numpy())
        f.create_dataset("logits_f64", data=net.double()(x.double()).numpy())


def cmd_rt_check(d):
    """from-advlab of the converter's file and of advlab's re-save must both give back the
    original state_dict bit for bit (float32 payloads, int64 num_batches_tracked)."""
    orig = convert_pt.load_torch_state_dict(os.path.join(d, "orig.pt"))
    # the converter drops RobustBench's unused sub_block1 (see _save_like_training_scripts)
    orig = OrderedDict((k, v) for k, v in orig.items() if not k.startswith("sub_block1."))
    bad = 0
    for src in ("conv.h5", "resaved.h5"):
        out = os.path.join(d, src.replace(".h5", "_back.pt"))
        subprocess.run([sys.executable, os.path.join(TOOLS, "convert_pt.py"), "from-advlab",
                        os.path.join(d, src), out], check=True)
        back = torch.load(out)
        if list(back.keys()) != list(orig.keys()):
            print("  %s: keys differ: %s" % (src, sorted(set(back) ^ set(orig))[:5]), file=sys.stderr)
            bad += 1
            continue
        diff = [k for k in orig if back[k].dtype != orig[k].dtype or back[k].shape != orig[k].shape
                or not torch.equal(back[k], orig[k])]
        print("  %s -> state_dict: %d tensors, %d differ%s" % (
            src, len(orig), len(diff), (" (" + ", ".join(diff[:4]) + ")") if diff else ""),
            file=sys.stderr)
        bad += bool(diff)
    return 1 if bad else 0


def main(argv):
    if len(argv) >= 3 and argv[1] == "struct":
        cmd_struct(argv[2], argv[3:])
    elif len(argv) == 5 and argv[1] == "grad":
        cmd_grad(*argv[2:])
    elif len(argv) == 4 and argv[1] == "rt-make":
        cmd_rt_make(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "rt-check":
        return cmd_rt_check(argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except convert_pt.ConvertError as e:
        print("models_ref.py: error: %s" % e, file=sys.stderr)
        sys.exit(1)
