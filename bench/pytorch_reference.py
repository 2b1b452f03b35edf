#!/usr/bin/env python3
"""PyTorch reference of the project's recipe, for BENCHMARKS.md.

The identical recipe: the seed's ResNet-9 (names as in the README's safetensors table),
One-Cycle (linear, peak at epoch 5 of 24, momentum 0.95 -> 0.85 -> 0.95), SGD Nesterov
(dampening 0, weight decay 5e-4), batch 512 with the last partial batch dropped, random crop of
the reflect-padded image, flip, cutout 8x8 after normalisation; fp32 with TF32 off.

`--recipe fast` adds the tricks of src/config.rs's `fast` preset, each also a flag of its own
(a flag given overrides the preset): logits scaled before the loss, label smoothing, alternating
flip, BatchNorm scales frozen at 1 and a learning-rate multiplier on BatchNorm biases, Lookahead
(airbench's: every 5 steps, decay 0.95^5 x (step/total)^3, the slow weights copied in at the end)
and test-time augmentation (mirror, plus 1-pixel translations) at the last evaluation.

usage: pytorch_reference.py DATA_DIR [--epochs 24] [--max-lr 0.4] [--json out.json]
                            [--width 1.0] [--seed 0] [--device cuda|cpu] [--threads N]
                            [--recipe seed|fast] [--logit-scale S] [--label-smoothing A] ...
DATA_DIR holds data_batch_{1..5}.bin and test_batch.bin (the official binary layout).
On CPU (`--device cpu`) it is the reference of the quiet proxy of bench/parity.sh.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
from torch import nn


def load(data_dir, train_shards=None, test_shards=None):
    def read(names):
        raw = np.concatenate([np.fromfile(os.path.join(data_dir, n), dtype=np.uint8) for n in names])
        raw = raw.reshape(-1, 3073)
        return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)

    train = read(train_shards or [f"data_batch_{i}.bin" for i in range(1, 6)])
    test = read(test_shards or ["test_batch.bin"])
    return train, test


def conv_bn(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


def conv_pool_bn(c_in, c_out):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(c_out), nn.ReLU()
    )


def channels(width):
    """Channel counts of prep, layer1, layer2, layer3 at a width multiplier (as src/model.rs)."""
    return [max(1, int(c * width + 0.5)) for c in (64, 128, 256, 512)]


class ResNet9(nn.Module):
    def __init__(self, width=1.0):
        super().__init__()
        c0, c1, c2, c3 = channels(width)
        self.prep = conv_bn(3, c0)
        self.layer1 = conv_pool_bn(c0, c1)
        self.res1 = nn.Sequential(conv_bn(c1, c1), conv_bn(c1, c1))
        self.layer2 = conv_pool_bn(c1, c2)
        self.layer3 = conv_pool_bn(c2, c3)
        self.res2 = nn.Sequential(conv_bn(c3, c3), conv_bn(c3, c3))
        self.pool = nn.MaxPool2d(4)
        self.fc = nn.Linear(c3, 10)

    def forward(self, x):
        x = self.prep(x)
        x = self.layer1(x)
        x = x + self.res1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = x + self.res2(x)
        return self.fc(self.pool(x).flatten(1))


# The tricks of each preset, as src/config.rs's `TrainConfig::preset`.
PRESETS = {
    "seed": dict(logit_scale=1.0, label_smoothing=0.0, alternating_flip=0, bn_freeze_scale=0, bn_bias_lr=1.0,
                 lookahead=0, tta=0),
    "fast": dict(logit_scale=0.125, label_smoothing=0.2, alternating_flip=1, bn_freeze_scale=0, bn_bias_lr=1.0,
                 lookahead=1, tta=2),
}


def augment(padded, idx, mean, std, gen, flip_bits=None, epoch=0):
    """Random crop of the reflect-padded images, flip, normalise, cutout 8x8 (set to 0).

    With `flip_bits` (one fixed random bit per training image), the flip alternates instead:
    the image's own bit in even epochs, its opposite in odd ones (airbench's alternating flip).
    """
    n = idx.numel()
    dev = padded.device
    dy = torch.randint(0, 9, (n,), device=dev, generator=gen)
    dx = torch.randint(0, 9, (n,), device=dev, generator=gen)
    ar = torch.arange(32, device=dev)
    rows = (dy[:, None] + ar[None, :])[:, None, :, None]
    cols = (dx[:, None] + ar[None, :])[:, None, None, :]
    x = padded[idx]
    x = x[torch.arange(n, device=dev)[:, None, None, None], torch.arange(3, device=dev)[None, :, None, None], rows, cols]
    if flip_bits is None:
        flip = torch.rand(n, device=dev, generator=gen) < 0.5
    else:
        flip = flip_bits[idx] ^ (epoch % 2 == 1)
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    x = (x.float() - mean) / std
    cy = torch.randint(0, 32, (n,), device=dev, generator=gen)[:, None, None]
    cx = torch.randint(0, 32, (n,), device=dev, generator=gen)[:, None, None]
    ys = ar[None, :, None]
    xs = ar[None, None, :]
    hole = (ys >= cy - 4) & (ys < cy + 4) & (xs >= cx - 4) & (xs < cx + 4)
    return x.masked_fill(hole[:, None], 0.0)


def tta_logits(model, x, level):
    """Logits averaged over views: 0 the image; 1 it and its mirror; 2 those, plus the mirrored
    pair shifted one pixel up-left and one down-right (reflect padding), weighted 1/2, 1/4, 1/4."""
    mirror = lambda v: 0.5 * model(v) + 0.5 * model(v.flip(3))
    if level <= 0:
        return model(x)
    if level == 1:
        return mirror(x)
    p = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    return 0.5 * mirror(x) + 0.25 * mirror(p[:, :, 0:32, 0:32]) + 0.25 * mirror(p[:, :, 2:34, 2:34])


class Lookahead:
    """airbench's Lookahead over every float tensor of the state dict (running statistics too)."""

    def __init__(self, model):
        self.model = model
        self.slow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, decay):
        for k, v in self.model.state_dict().items():
            if k in self.slow:
                self.slow[k].lerp_(v, 1 - decay)
                v.copy_(self.slow[k])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--max-lr", type=float, default=0.4)
    ap.add_argument("--peak-epoch", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    ap.add_argument("--train-shards", default=None, help="comma-separated shard names (default: the official five)")
    ap.add_argument("--test-shards", default=None, help="comma-separated shard names (default: test_batch.bin)")
    ap.add_argument("--train-subset", type=int, default=None,
                    help="train on the first N images only (normalisation still from all of them, as `train --train-subset`)")
    ap.add_argument("--recipe", choices=sorted(PRESETS), default="seed", help="preset of the tricks below")
    ap.add_argument("--logit-scale", type=float, default=None, help="logits are multiplied by this before the loss")
    ap.add_argument("--label-smoothing", type=float, default=None)
    ap.add_argument("--alternating-flip", type=int, default=None, help="1: flip alternates per image between epochs")
    ap.add_argument("--bn-freeze-scale", type=int, default=None, help="1: BatchNorm scales stay 1 (not trained)")
    ap.add_argument("--bn-bias-lr", type=float, default=None,
                    help="learning-rate multiplier of BatchNorm biases (their weight decay divided by it)")
    ap.add_argument("--lookahead", type=int, default=None, help="1: airbench's Lookahead")
    ap.add_argument("--tta", type=int, default=None, help="test-time augmentation level at the last evaluation (0-2)")
    args = ap.parse_args()
    for key, value in PRESETS[args.recipe].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    dev_name = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    gen = torch.Generator(device=dev)
    gen.manual_seed(args.seed)

    split = lambda v: v.split(",") if v else None
    (xtr, ytr), (xte, yte) = load(args.data, split(args.train_shards), split(args.test_shards))
    mean = torch.tensor(xtr.reshape(-1, 3, 1024).transpose(1, 0, 2).reshape(3, -1).mean(1), device=dev).view(1, 3, 1, 1).float()
    std = torch.tensor(xtr.reshape(-1, 3, 1024).transpose(1, 0, 2).reshape(3, -1).std(1), device=dev).view(1, 3, 1, 1).float()
    if args.train_subset:
        xtr, ytr = xtr[:args.train_subset], ytr[:args.train_subset]
    xtr = torch.tensor(xtr, device=dev)
    padded = torch.nn.functional.pad(xtr.float(), (4, 4, 4, 4), mode="reflect").to(torch.uint8)
    ytr = torch.tensor(ytr, device=dev)
    xte = ((torch.tensor(xte, device=dev).float() - mean) / std)
    yte = torch.tensor(yte, device=dev)

    model = ResNet9(args.width).to(dev).to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            if args.bn_freeze_scale:
                module.weight.requires_grad_(False)
            if args.bn_bias_lr != 1.0:
                # Scaling the gradient before SGD adds weight decay = LR x m with decay / m.
                module.bias.register_hook(lambda g, m=args.bn_bias_lr: g * m)
    flip_bits = (torch.rand(len(ytr), device=dev, generator=gen) < 0.5) if args.alternating_flip else None
    lookahead = Lookahead(model) if args.lookahead else None
    tricks = {k: getattr(args, k) for k in PRESETS["seed"]}
    steps_per_epoch = len(ytr) // args.batch
    total = steps_per_epoch * args.epochs
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=args.max_lr, momentum=0.9, nesterov=True, dampening=0, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.max_lr, total_steps=total, pct_start=args.peak_epoch / args.epochs,
        anneal_strategy="linear", div_factor=25.0, final_div_factor=1e4, three_phase=False,
        cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    eval_loss = nn.CrossEntropyLoss()  # the test loss is plain cross-entropy in every recipe
    print(f"pytorch {torch.__version__} on {dev_name}, width {args.width}, seed {args.seed}, params {params}, {steps_per_epoch} steps/epoch, max lr {args.max_lr}")
    print(f"recipe {args.recipe}: {tricks}")
    print("epoch        lr  train time  train loss  train acc  test time  test loss  test acc  total time     img/s  gpu_mem_mib")
    log = {"device": dev_name, "torch": torch.__version__, "params": params, "max_lr": args.max_lr, "width": args.width,
           "seed": args.seed, "recipe": args.recipe, "tricks": tricks, "epochs": []}
    step = 0
    total_time = 0.0
    for epoch in range(args.epochs):
        model.train()
        sync()
        t0 = time.perf_counter()
        order = torch.randperm(len(ytr), device=dev, generator=gen)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev)
        for s in range(steps_per_epoch):
            idx = order[s * args.batch:(s + 1) * args.batch]
            x = augment(padded, idx, mean, std, gen, flip_bits, epoch).contiguous(memory_format=torch.channels_last)
            y = ytr[idx]
            out = model(x) * args.logit_scale
            loss = loss_fn(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if lookahead is not None and step % 5 == 0:
                lookahead.update(0.95 ** 5 * (step / total) ** 3)
            loss_sum += loss.detach() * len(idx)
            correct += (out.argmax(1) == y).sum()
        last = epoch + 1 == args.epochs
        if lookahead is not None and last:
            lookahead.update(1.0)
        sync()
        train_time = time.perf_counter() - t0
        n = steps_per_epoch * args.batch
        model.eval()
        level = args.tta if last else 0
        t1 = time.perf_counter()
        with torch.no_grad():
            test_loss = 0.0
            test_correct = 0
            for i in range(0, len(yte), 1000):
                out = tta_logits(model, xte[i:i + 1000].contiguous(memory_format=torch.channels_last), level)
                out = out * args.logit_scale
                test_loss += eval_loss(out, yte[i:i + 1000]).item() * len(out)
                test_correct += (out.argmax(1) == yte[i:i + 1000]).sum().item()
            # What the test-time augmentation adds, measured on the same weights.
            plain_correct = test_correct if level == 0 else sum(
                (model(xte[i:i + 1000].contiguous(memory_format=torch.channels_last)).argmax(1) == yte[i:i + 1000]).sum().item()
                for i in range(0, len(yte), 1000))
        test_time = time.perf_counter() - t1
        total_time += train_time + test_time
        row = {
            "epoch": epoch + 1, "lr": sched.get_last_lr()[0], "train_time_s": train_time,
            "train_loss": (loss_sum / n).item(), "train_acc": (correct / n).item(), "test_time_s": test_time,
            "test_loss": test_loss / len(yte), "test_acc": test_correct / len(yte), "total_time_s": total_time,
            "images_per_sec": n / train_time, "tta": level, "test_acc_plain": plain_correct / len(yte), "gpu_mem_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0,
        }
        log["epochs"].append(row)
        print(f"{row['epoch']:>5} {row['lr']:>9.4f} {train_time:>11.2f} {row['train_loss']:>11.4f} {row['train_acc']:>10.4f} "
              f"{test_time:>10.2f} {row['test_loss']:>10.4f} {row['test_acc']:>9.4f} {total_time:>11.2f} {row['images_per_sec']:>9.0f}"
              f"  {row['gpu_mem_mib']:.0f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(log, f, indent=1)


if __name__ == "__main__":
    main()
