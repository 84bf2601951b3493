"""Reference trajectories of torch.optim.Adam / AdamW / SGD and clip_grad_norm_ -> tests/data/optim.txt.

Two parameters, a (3, 4) and b (5,), start from fixed values. At step k (1-based) the gradient of each
coordinate i (flat index) is a deterministic function of the step and the current value, so the C++ test
(tests/unit/test_adam_reference.cpp, test_sgd_reference.cpp) reproduces it exactly:
    grad = 0.5 * p[i] + sin(1.3 * k + 0.7 * i + offset),   offset 0 for a, 2 for b
For each configuration the file holds its options, the learning rate used at every step (set before the
step, to test set_lr) and the values of a and b after every step. Run from tests/reference:
    python3 gen_optim.py
"""
import math

import torch

import refdata

STEPS = 7
OFFSETS = {"a": 0.0, "b": 2.0}


def grad_of(p, k, offset):
    i = torch.arange(p.numel(), dtype=torch.float64).reshape(p.shape)
    return 0.5 * p.detach() + torch.sin(1.3 * k + 0.7 * i + offset)


def initial():
    g = torch.Generator().manual_seed(20240607)
    a = torch.randn(3, 4, generator=g, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)
    return a, b


def run(make, lrs):
    a0, b0 = initial()
    a = a0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    opt = make([a, b])
    traj_a, traj_b = [], []
    for k in range(1, STEPS + 1):
        for group in opt.param_groups:
            group["lr"] = lrs[k - 1]
        opt.zero_grad()
        a.grad = grad_of(a, k, OFFSETS["a"])
        b.grad = grad_of(b, k, OFFSETS["b"])
        opt.step()
        traj_a.append(a.detach().clone())
        traj_b.append(b.detach().clone())
    return torch.stack(traj_a), torch.stack(traj_b)


def main():
    out = {}
    a0, b0 = initial()
    out["init.a"] = a0
    out["init.b"] = b0

    # Adam family. options: lr, beta1, beta2, eps, weight_decay, decoupled (AdamW), amsgrad
    adam_configs = {
        "adam": (0.01, 0.9, 0.999, 1e-8, 0.0, 0, 0),
        "adam_l2": (0.01, 0.9, 0.999, 1e-8, 0.1, 0, 0),
        "adamw": (0.01, 0.9, 0.999, 1e-8, 0.1, 1, 0),
        "adam_custom": (0.05, 0.8, 0.99, 1e-6, 0.01, 0, 0),
        "adamw_custom": (0.05, 0.8, 0.99, 1e-6, 0.2, 1, 0),
        "adam_amsgrad": (0.02, 0.9, 0.999, 1e-8, 0.05, 0, 1),
        "adamw_amsgrad": (0.02, 0.5, 0.9, 1e-8, 0.05, 1, 1),
    }
    lr_change = {"adam_custom": 3, "adamw_custom": 4}  # the lr is set to lr * 0.3 before this step
    for name, (lr, b1, b2, eps, wd, decoupled, amsgrad) in adam_configs.items():
        cls = torch.optim.AdamW if decoupled else torch.optim.Adam
        lrs = [lr * (0.3 if name in lr_change and k >= lr_change[name] else 1.0) for k in range(1, STEPS + 1)]
        make = lambda ps, cls=cls, lr=lr, b1=b1, b2=b2, eps=eps, wd=wd, ams=amsgrad: cls(
            ps, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, amsgrad=bool(ams))
        ta, tb = run(make, lrs)
        out[name + ".options"] = [lr, b1, b2, eps, wd, decoupled, amsgrad]
        out[name + ".lrs"] = lrs
        out[name + ".a"] = ta
        out[name + ".b"] = tb

    # SGD family. options: lr, momentum, dampening, nesterov, weight_decay
    sgd_configs = {
        "sgd": (0.1, 0.0, 0.0, 0, 0.0),
        "sgd_l2": (0.1, 0.0, 0.0, 0, 0.05),
        "sgd_momentum": (0.1, 0.9, 0.1, 0, 0.01),
        "sgd_nesterov": (0.05, 0.8, 0.0, 1, 0.05),
    }
    for name, (lr, mom, damp, nest, wd) in sgd_configs.items():
        lrs = [lr * (0.5 if k >= 5 else 1.0) for k in range(1, STEPS + 1)]
        make = lambda ps, lr=lr, mom=mom, damp=damp, nest=nest, wd=wd: torch.optim.SGD(
            ps, lr=lr, momentum=mom, dampening=damp, nesterov=bool(nest), weight_decay=wd)
        ta, tb = run(make, lrs)
        out[name + ".options"] = [lr, mom, damp, nest, wd]
        out[name + ".lrs"] = lrs
        out[name + ".a"] = ta
        out[name + ".b"] = tb

    # clip_grad_norm_: the step-1 gradients of the initial values, clipped to several max norms.
    for tag, max_norm in (("small", 0.5), ("one", 1.0), ("large", 100.0)):
        a = a0.clone().requires_grad_(True)
        b = b0.clone().requires_grad_(True)
        a.grad = grad_of(a, 1, OFFSETS["a"])
        b.grad = grad_of(b, 1, OFFSETS["b"])
        norm = torch.nn.utils.clip_grad_norm_([a, b], max_norm)
        out["clip_%s.max_norm" % tag] = [max_norm]
        out["clip_%s.norm" % tag] = [float(norm)]
        out["clip_%s.a" % tag] = a.grad
        out["clip_%s.b" % tag] = b.grad

    # Learning-rate schedule: linear warm-up (LambdaLR) for 4 steps, then CosineAnnealingLR(T_max = 12,
    # eta_min = 1e-4) from the peak 2e-3; the learning rate of each of 20 optimizer steps (the last 4 after the end).
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=2e-3)
    warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: (k + 1) / 4)
    lrs = []
    for k in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        warm.step()
    for group in opt.param_groups:
        group["lr"] = 2e-3
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=12, eta_min=1e-4)
    for k in range(16):
        lrs.append(opt.param_groups[0]["lr"] if k < 12 else 1e-4)
        opt.step()
        cos.step()
    out["schedule_warmup_cosine.options"] = [2e-3, 1e-4, 4, 16]
    out["schedule_warmup_cosine.lrs"] = lrs

    refdata.write("../data/optim.txt", out,
                  "torch %s: Adam/AdamW/SGD trajectories and clip_grad_norm_ (gen_optim.py)" % torch.__version__)


if __name__ == "__main__":
    main()
