#!/usr/bin/python3
"""optim_ref.py: PyTorch reference side of tests/test_optim.c.

  optim_ref.py DIR

DIR/manifest.txt, written by the C test, has one job per line:

  sgd NAME N_W N_B STEPS NESTEROV WD LR_0..LR_{S-1} MOM_0..MOM_{S-1}
      torch.optim.SGD over two tensors, w (N_W floats, weight_decay WD) and b (N_B floats,
      weight_decay 0), dampening 0. Before step s the group's lr/momentum are set to LR_s /
      MOM_s (as a scheduler would). Inputs DIR/NAME_params.f32 (N_W + N_B floats: w then b)
      and DIR/NAME_grads.f32 (STEPS x (N_W + N_B)). Output DIR/NAME_out.f32: final w, b, then
      the momentum buffers of w and b (zeros where torch keeps none).
  sched NAME KIND STEPS_PER_EPOCH EPOCHS ARGS...
      lr (and momentum) used by optimizer step s = 0 .. EPOCHS*SPE-1 under a torch scheduler,
      written to DIR/NAME_sched.f64 as STEPS lr values followed by STEPS momentum values:
        multistep LR GAMMA M1,M2,..    MultiStepLR stepped once per epoch
        cosine LR                      CosineAnnealingLR(T_max = total steps), per step
        cyclic PEAK MOM_MIN MOM        CyclicLR(0, PEAK, up = down = total/2), per step
        onecycle PEAK PCT DIV FDIV MOM_MIN MOM   OneCycleLR(total_steps = total), per step
        warmup LR W                    LinearLR(1/W, 1, total_iters = W-1), per step
Exit status: 0 ok, 77 when torch is unavailable, 1 on error.
"""
import os
import sys
import warnings

try:
    import numpy as np
    import torch
except ImportError as e:  # the C test reports the skip
    print("skipped: %s" % e)
    sys.exit(77)

torch.set_num_threads(1)
warnings.filterwarnings("ignore")


def run_sgd(d, name, n_w, n_b, steps, nesterov, wd, lrs, moms):
    n = n_w + n_b
    p0 = np.fromfile(os.path.join(d, name + "_params.f32"), dtype=np.float32)
    g = np.fromfile(os.path.join(d, name + "_grads.f32"), dtype=np.float32).reshape(steps, n)
    assert p0.size == n, (p0.size, n)
    w = torch.nn.Parameter(torch.from_numpy(p0[:n_w].copy()))
    b = torch.nn.Parameter(torch.from_numpy(p0[n_w:].copy()))
    mom0 = max(moms)
    opt = torch.optim.SGD([{"params": [w], "weight_decay": wd},
                           {"params": [b], "weight_decay": 0.0}],
                          lr=lrs[0], momentum=mom0, dampening=0, nesterov=bool(nesterov))
    for s in range(steps):
        for grp in opt.param_groups:
            grp["lr"] = lrs[s]
            grp["momentum"] = moms[s]
        w.grad = torch.from_numpy(g[s, :n_w].copy())
        b.grad = torch.from_numpy(g[s, n_w:].copy())
        opt.step()
    out = [w.detach().numpy(), b.detach().numpy()]
    for t in (w, b):
        buf = opt.state[t].get("momentum_buffer") if t in opt.state else None
        out.append(buf.numpy() if buf is not None else np.zeros(t.numel(), np.float32))
    np.concatenate(out).astype(np.float32).tofile(os.path.join(d, name + "_out.f32"))


def run_sched(d, name, kind, spe, epochs, args):
    total = spe * epochs
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    per_epoch = False
    if kind == "multistep":
        opt.param_groups[0]["lr"] = float(args[0])
        ms = [int(v) for v in args[2].split(",")]
        sch = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=ms, gamma=float(args[1]))
        per_epoch = True
    elif kind == "cosine":
        opt.param_groups[0]["lr"] = float(args[0])
        sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=0)
    elif kind == "cyclic":
        peak, mmin, mmax = (float(v) for v in args[:3])
        sch = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=0.0, max_lr=peak,
                                                step_size_up=total / 2, step_size_down=total / 2,
                                                cycle_momentum=True, base_momentum=mmin,
                                                max_momentum=mmax)
    elif kind == "onecycle":
        peak, pct, div, fdiv, mmin, mmax = (float(v) for v in args[:6])
        sch = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak, total_steps=total,
                                                  pct_start=pct, div_factor=div,
                                                  final_div_factor=fdiv, cycle_momentum=True,
                                                  base_momentum=mmin, max_momentum=mmax)
    elif kind == "warmup":
        opt.param_groups[0]["lr"] = float(args[0])
        w = int(args[1])
        sch = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / w, end_factor=1.0,
                                                total_iters=w - 1)
    else:
        raise ValueError("unknown schedule " + kind)
    lrs, moms = [], []
    for s in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        opt.step()
        if not per_epoch or (s + 1) % spe == 0:
            sch.step()
    np.array(lrs + moms, dtype=np.float64).tofile(os.path.join(d, name + "_sched.f64"))


def main():
    d = sys.argv[1]
    with open(os.path.join(d, "manifest.txt")) as f:
        for line in f:
            t = line.split()
            if not t:
                continue
            if t[0] == "sgd":
                name, n_w, n_b, steps, nest = t[1], int(t[2]), int(t[3]), int(t[4]), int(t[5])
                wd = float(t[6])
                vals = [float(v) for v in t[7:]]
                assert len(vals) == 2 * steps, (len(vals), steps)
                run_sgd(d, name, n_w, n_b, steps, nest, wd, vals[:steps], vals[steps:])
            elif t[0] == "sched":
                run_sched(d, t[1], t[2], int(t[3]), int(t[4]), t[5:])
            else:
                raise ValueError("unknown job " + t[0])


if __name__ == "__main__":
    main()
