#!/usr/bin/env python3
"""Writes the PyTorch gradient fixture that every backend and convolution algorithm must match.

Synthetic inputs from a fixed seed (no CIFAR-10 bytes, so the output may be committed):
a narrow ResNet-9 (the exact module of pytorch_reference.py), three batches of random images
and labels, and what PyTorch computes for them with the recipe's step (train-mode BatchNorm,
mean cross-entropy, SGD Nesterov with dampening 0 and L2 weight decay on every parameter,
One-Cycle LR and momentum stepped after every batch):

  tests/fixtures/pytorch_init.safetensors   the initial state_dict (the README's PyTorch names,
                                             num_batches_tracked dropped): importable weights
  tests/fixtures/pytorch_fast.safetensors   the `fast` preset's tricks on the same net and batches:
                                             fast.loss (logits x 1/8, label smoothing 0.2) and
                                             fgrad1.<name> of batch 0 (raw, before the BatchNorm
                                             rules); fgradK.<name> of six free-running steps
                                             (batches 0,1,2,0,1,2) and fstep6.<name>, every
                                             parameter after them (frozen BatchNorm scales, bias
                                             LR x64, Lookahead at step 5 and the end); tta.L =
                                             the initial net's eval-mode logits of img (uint8,
                                             normalised by norm_mean/norm_std) at TTA level L
  tests/fixtures/pytorch_steps.safetensors  x.K / y.K (batch K = 0, 1, 2), logits and loss of
                                             batch 0, gradK.<name> = every parameter's gradient
                                             at step K (1, 2, 3), step1.<name> = BatchNorm
                                             running statistics after the first step,
                                             step3.<name> = every tensor after 3 steps, lr /
                                             momentum used by each step; the settings and the
                                             measured conditioning are in the header's metadata

usage: make_fixture.py [--out tests/fixtures] [--search N]   (CPU, float32, deterministic; ~10 s)
"""
import argparse
import copy
import os

import torch
from safetensors.torch import save_file
from torch import nn

from pytorch_reference import PRESETS, Lookahead, ResNet9, tta_logits

SETTINGS = {
    "width": 0.125,  # channels 8, 16, 32, 64
    "batch": 8,
    "epochs": 2,  # One-Cycle over epochs x steps_per_epoch optimiser steps
    "steps_per_epoch": 3,
    "peak_epoch": 0.5,  # the peak falls between step 0 and step 1: the three steps see a rise and a fall
    "max_lr": 0.005,  # higher LRs make this tiny random-data run chaotic by step 3 (see below)
    "weight_decay": 5e-4,
    "seed": 7,  # chosen by --search: the first seed whose results are well-conditioned
}

# Why the seed, the batch of 8 and the low LR: this net routes each channel's whole gradient
# through one position per image (the final 4x4 max-pool), so one ReLU input near 0 at such a
# position flips a large share of the gradient when the forward pass moves by float32 rounding.
# Perturbing the weights by 1e-6 (about the difference between two correct float32
# implementations: ours and PyTorch's logits differ by 4e-6) moved the first gradients by up to
# 1e-1 for most seeds at batch 16, and the weights after three steps at max LR 0.1 by up to 15%.
# --search N measures that for seeds 0..N-1; seed 7 (batch 8, max LR 0.005) was the first whose
# gradients move < 1e-4 and whose three-step weights move < 1e-3 under four such perturbations.
# The test also checks each block alone (blk.* / vjp.*), which no other block can disturb.
PERTURBATION = 1e-6


def one_cycle(opt, s, total):
    """The recipe's schedule over the fixture's steps."""
    return torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=s["max_lr"], total_steps=total, pct_start=s["peak_epoch"] / s["epochs"],
        anneal_strategy="linear", div_factor=25.0, final_div_factor=1e4, three_phase=False,
        cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
    )


def trajectory(s, seed, perturb=0.0, noise_seed=0):
    """The fixture's run: initial state, batches, per-step LR/momentum/gradients, final state."""
    torch.manual_seed(seed)
    model = ResNet9(s["width"])
    xs = torch.randn(3, s["batch"], 3, 32, 32)
    ys = torch.randint(0, 10, (3, s["batch"]))
    if perturb:
        g = torch.Generator().manual_seed(noise_seed)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1 + perturb * torch.randn(p.shape, generator=g))
    init = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    opt = torch.optim.SGD(model.parameters(), lr=s["max_lr"], momentum=0.9, nesterov=True, dampening=0,
                          weight_decay=s["weight_decay"])
    total = s["epochs"] * s["steps_per_epoch"]
    sched = one_cycle(opt, s, total)
    loss_fn = nn.CrossEntropyLoss()
    out = {}
    lrs, moms = [], []
    model.train()
    if not perturb:
        out.update(block_vjps(model, xs[0], ys[0], loss_fn))
    for k in range(3):
        x, y = xs[k], ys[k]
        out[f"x.{k}"] = x.contiguous()
        out[f"y.{k}"] = y.to(torch.int64).contiguous()
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        logits = model(x)
        loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if k == 0:
            out["logits"] = logits.detach().clone()
            out["loss"] = loss.detach().reshape(1).clone()
        for name, p in model.named_parameters():
            out[f"grad{k + 1}.{name}"] = p.grad.detach().clone().contiguous()
        opt.step()
        sched.step()
        if k == 0:
            for name, t in model.state_dict().items():
                if name.endswith("running_mean") or name.endswith("running_var"):
                    out[f"step1.{name}"] = t.detach().clone().contiguous()
    for name, t in model.state_dict().items():
        if not name.endswith("num_batches_tracked"):
            out[f"step3.{name}"] = t.detach().clone().contiguous()
    out["lr"] = torch.tensor(lrs, dtype=torch.float64)
    out["momentum"] = torch.tensor(moms, dtype=torch.float64)
    return init, out


BLOCKS = ["prep", "layer1", "res1.0", "res1.1", "layer2", "layer3", "res2.0", "res2.1", "head"]


def block_vjps(model, x, y, loss_fn):
    """Each block on its own, fed what it receives in the whole net on batch 0: its input
    (blk.B.x), the gradient of the loss with respect to its output (blk.B.dy), and what
    PyTorch's backward of that block alone gives: the input gradient (blk.B.dx) and its
    parameters' gradients (vjp.<name>). Comparing block by block keeps a float32 difference
    in one block from flipping a ReLU or max-pool decision in another: the whole-net gradient
    is that sensitive (see above), a block alone is not."""
    model = copy.deepcopy(model)  # the block forwards below must not touch the run's statistics
    model.train()
    mods = {"prep": model.prep, "layer1": model.layer1, "res1.0": model.res1[0], "res1.1": model.res1[1],
            "layer2": model.layer2, "layer3": model.layer3, "res2.0": model.res2[0], "res2.1": model.res2[1],
            "head": model.pool}
    seen = {}

    def hook(name):
        def f(mod, inputs, output):
            seen[name] = [inputs[0].detach().clone(), None]
            output.register_hook(lambda g: seen[name].__setitem__(1, g.detach().clone()))
        return f

    handles = [m.register_forward_hook(hook(n)) for n, m in mods.items()]
    probe = copy.deepcopy(model)  # hooks see the same values; statistics change only in the copy
    for h in handles:
        h.remove()
    handles = [m.register_forward_hook(hook(n)) for n, m in
               {"prep": probe.prep, "layer1": probe.layer1, "res1.0": probe.res1[0], "res1.1": probe.res1[1],
                "layer2": probe.layer2, "layer3": probe.layer3, "res2.0": probe.res2[0], "res2.1": probe.res2[1],
                "head": probe.pool}.items()]
    loss_fn(probe(x), y).backward()
    for h in handles:
        h.remove()
    out = {}
    for name in BLOCKS:
        xin, dy = seen[name]
        xin = xin.clone().requires_grad_(True)
        if name == "head":
            fn = lambda t: model.fc(model.pool(t).flatten(1))
            params = [("fc.weight", model.fc.weight), ("fc.bias", model.fc.bias)]
            # the logits' gradient: the head's output is the logits
            logits = fn(xin)
            dy = torch.autograd.grad(loss_fn(logits, y), logits)[0]
        else:
            fn = mods[name]
            params = [(f"{name}.{n}", p) for n, p in fn.named_parameters()]
        result = fn(xin)
        grads = torch.autograd.grad(result, [xin] + [p for _, p in params], dy)
        out[f"blk.{name}.x"] = xin.detach().contiguous()
        out[f"blk.{name}.dy"] = dy.contiguous()
        out[f"blk.{name}.dx"] = grads[0].contiguous()
        for (pname, _), g in zip(params, grads[1:]):
            out[f"vjp.{pname}"] = g.contiguous()
    return out


def global_relative(a, b, prefix):
    keys = [k for k in b if k.startswith(prefix) and "running" not in k]
    diff = torch.cat([(a[k] - b[k]).flatten() for k in keys])
    ref = torch.cat([b[k].flatten() for k in keys])
    return (diff.norm() / ref.norm()).item()


def sensitivity(s, seed, draws=4):
    """How far the first gradients (worst tensor, max |difference| / max |value|) and the
    three-step weights (one vector) move under PERTURBATION."""
    _, base = trajectory(s, seed)
    worst_grad, worst_step3 = 0.0, 0.0
    for d in range(draws):
        _, moved = trajectory(s, seed, PERTURBATION, d)
        worst_grad = max(worst_grad, max(((moved[k] - base[k]).abs().max() / base[k].abs().max()).item()
                                         for k in base if k.startswith("grad1.")))
        worst_step3 = max(worst_step3, global_relative(moved, base, "step3."))
    return worst_grad, worst_step3


# Every trick on, whether or not the `fast` preset uses it (the proxy sweep left the BatchNorm
# rules off there): each must match PyTorch to be offered at all.
FAST_TRICKS = dict(PRESETS["fast"], bn_freeze_scale=1, bn_bias_lr=64.0)


def fast_trajectory(s, seed):
    """The fast preset's tricks on the fixture's net and batches (see the module docstring)."""
    torch.manual_seed(seed)
    model = ResNet9(s["width"])
    xs = torch.randn(3, s["batch"], 3, 32, 32)
    ys = torch.randint(0, 10, (3, s["batch"]))
    fast = FAST_TRICKS
    out = {}
    # The initial net in eval mode, under test-time augmentation, on integer images.
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (4, 3, 32, 32), generator=g, dtype=torch.uint8)
    mean = torch.tensor([125.3, 123.0, 113.9]).view(1, 3, 1, 1)
    std = torch.tensor([63.0, 62.1, 66.7]).view(1, 3, 1, 1)
    probe = copy.deepcopy(model).eval()
    with torch.no_grad():
        for level in (1, 2):
            out[f"tta.{level}"] = tta_logits(probe, (img.float() - mean) / std, level).contiguous()
    out["img"] = img.contiguous()
    out["norm_mean"], out["norm_std"] = mean.flatten().contiguous(), std.flatten().contiguous()
    # The BatchNorm rules, the raw gradient of each bias kept for the fixture.
    raw = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.requires_grad_(False)
            module.bias.register_hook(lambda g, n=f"{name}.bias": (raw.__setitem__(n, g.detach().clone()), g * fast["bn_bias_lr"])[1])
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=s["max_lr"], momentum=0.9, nesterov=True, dampening=0,
                          weight_decay=s["weight_decay"])
    total = s["epochs"] * s["steps_per_epoch"]
    sched = one_cycle(opt, s, total)
    lookahead = Lookahead(model)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=fast["label_smoothing"])
    model.train()
    for step in range(1, total + 1):
        x, y = xs[(step - 1) % 3], ys[(step - 1) % 3]
        loss = loss_fn(model(x) * fast["logit_scale"], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step == 1:
            out["fast.loss"] = loss.detach().reshape(1).clone()
        for name, p in model.named_parameters():
            if p.requires_grad:
                out[f"fgrad{step}.{name}"] = (raw[name] if name in raw else p.grad).detach().clone().contiguous()
        opt.step()
        sched.step()
        if step % 5 == 0:
            lookahead.update(0.95 ** 5 * (step / total) ** 3)
    lookahead.update(1.0)
    for name, p in model.named_parameters():
        out[f"fstep{total}.{name}"] = p.detach().clone().contiguous()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    ap.add_argument("--search", type=int, default=0, help="try seeds 0..N-1 and report their conditioning")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    s = dict(SETTINGS)
    if args.search:
        for seed in range(args.search):
            g, w = sensitivity(s, seed)
            print(f"seed {seed}: gradients move {g:.1e}, three-step weights move {w:.1e}"
                  f"{'  (well-conditioned)' if g < 1e-4 and w < 1e-3 else ''}", flush=True)
        return
    g, w = sensitivity(s, s["seed"])
    init, out = trajectory(s, s["seed"])
    meta = {k: str(v) for k, v in s.items()}
    meta["torch"] = torch.__version__
    meta["sensitivity_grad"] = f"{g:.3e}"
    meta["sensitivity_step3"] = f"{w:.3e}"
    os.makedirs(args.out, exist_ok=True)
    save_file(init, os.path.join(args.out, "pytorch_init.safetensors"))
    save_file(out, os.path.join(args.out, "pytorch_steps.safetensors"), metadata=meta)
    fast = fast_trajectory(s, s["seed"])
    fast_meta = dict(meta, **{f"fast_{k}": str(v) for k, v in FAST_TRICKS.items()})
    save_file(fast, os.path.join(args.out, "pytorch_fast.safetensors"), metadata=fast_meta)
    print(f"torch {torch.__version__}: loss {out['loss'].item():.6f}, lrs {out['lr'].tolist()}, "
          f"momenta {out['momentum'].tolist()}; under a {PERTURBATION:g} weight perturbation the gradients "
          f"move {g:.1e} and the three-step weights {w:.1e} -> {args.out}")


if __name__ == "__main__":
    main()
