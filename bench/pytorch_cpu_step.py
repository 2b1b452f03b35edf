#!/usr/bin/env python3
"""PyTorch on the CPU timing the step our benchmark times (issue 28), for bench/cpu.sh.

The model is bench/pytorch_reference.py's ResNet9 (imported, not copied) at a width multiplier,
and the step is the one of its training loop and of src/bench.rs: batch preparation (random
crop of the reflect-padded images, flip, normalise, cutout), forward, cross-entropy, backward,
SGD with Nesterov momentum and weight decay 5e-4. Random images, as the page's benchmark
without data (the step does the same work whatever the pixels are). `--warmup` steps are run
first and not timed; the clock then covers `--steps` steps.

usage: pytorch_cpu_step.py --width 0.125 --batch 32 [--steps 20] [--warmup 5] [--threads 1]
                           [--json out.json]
Prints one line: ms/step and images/s, with the thread count PyTorch used.
"""
import argparse
import json
import os
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_reference import ResNet9, augment  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=float, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (intra-op threads)")
    ap.add_argument("--images", type=int, default=2000, help="random images the batches are drawn from")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    # One inter-op thread: the step is one chain of operations; only intra-op threads matter.
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (args.images,), generator=gen)
    mean = images.float().mean((0, 2, 3)).view(1, 3, 1, 1)
    std = images.float().std((0, 2, 3)).view(1, 3, 1, 1)
    padded = nn.functional.pad(images.float(), (4, 4, 4, 4), mode="reflect").to(torch.uint8)

    # As pytorch_reference.py trains: channels_last, Nesterov SGD, weight decay 5e-4.
    model = ResNet9(args.width).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.0055, momentum=0.9, nesterov=True, dampening=0, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step(i):
        idx = (torch.arange(args.batch) + i * args.batch) % args.images
        x = augment(padded, idx, mean, std, gen).contiguous(memory_format=torch.channels_last)
        loss = loss_fn(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for i in range(args.warmup):
        step(i)
    t0 = time.perf_counter()
    for i in range(args.steps):
        loss = step(args.warmup + i)
    loss.item()
    ms = (time.perf_counter() - t0) * 1000 / args.steps
    result = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "width": args.width, "batch": args.batch,
        "steps": args.steps, "warmup": args.warmup, "ms_per_step": ms, "images_per_sec": args.batch * 1000 / ms,
        "mkldnn": torch.backends.mkldnn.is_available(),
    }
    print(f"pytorch {torch.__version__} cpu, {result['threads']} thread(s): {ms:.1f} ms/step · "
          f"{result['images_per_sec']:.1f} images/s · width {args.width} · batch {args.batch} · "
          f"{args.steps} steps after {args.warmup} warm-up")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
