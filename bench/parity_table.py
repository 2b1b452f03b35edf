#!/usr/bin/env python3
"""Prints the seed table of bench/parity.sh: final test accuracy (%) of every seed, for
PyTorch and ours, with mean, standard deviation and the parity bound.

usage: parity_table.py RESULTS_DIR TAG
"""
import glob
import json
import math
import os
import statistics
import sys


def finals(results, who, tag):
    out = {}
    for path in sorted(glob.glob(os.path.join(results, f"{who}-{tag}-s*.json"))):
        seed = int(path.rsplit("-s", 1)[1].split(".")[0])
        epochs = json.load(open(path))["epochs"]
        if epochs:
            acc = epochs[-1]["test_acc"]
            out[seed] = 100 * acc if acc <= 1 else acc
    return out


def main():
    results, tag = sys.argv[1], sys.argv[2]
    rows = {who: finals(results, who, tag) for who in ("pytorch", "ours")}
    seeds = sorted(set(rows["pytorch"]) | set(rows["ours"]))
    print(f"proxy {tag}: final test accuracy, %")
    print("| seed | " + " | ".join(str(s) for s in seeds) + " | mean | std | n |")
    print("| --- |" + " ---: |" * (len(seeds) + 3))
    stats = {}
    for who in ("pytorch", "ours"):
        vals = [rows[who][s] for s in seeds if s in rows[who]]
        mean = statistics.mean(vals) if vals else float("nan")
        std = statistics.stdev(vals) if len(vals) > 1 else float("nan")
        stats[who] = (mean, std, len(vals))
        cells = " | ".join(f"{rows[who][s]:.2f}" if s in rows[who] else "" for s in seeds)
        print(f"| {who} | {cells} | {mean:.2f} | {std:.2f} | {len(vals)} |")
    (mp, sp, np_), (mo, so, no) = stats["pytorch"], stats["ours"]
    if np_ > 1 and no > 1:
        se = math.sqrt(sp ** 2 / np_ + so ** 2 / no)
        bound = max(0.5, 2 * se)
        verdict = "within" if abs(mo - mp) <= bound else "OUTSIDE"
        print(f"difference ours - PyTorch {mo - mp:+.2f} points; bound max(0.5, 2 SE = {2 * se:.2f}) = {bound:.2f}: {verdict}")


if __name__ == "__main__":
    main()
