#!/usr/bin/env bash
# The page's CPU engine beside the CPU peers (issue 28 item 3), side by side on this machine:
# images/s of one training step (batch preparation, forward, backward, SGD with Nesterov
# momentum; warm steps, the first few excluded) of the seed's ResNet-9 at each width and batch:
#   page     the release site (scripts/build-release.sh) in headless Chromium WITHOUT
#            --enable-unsafe-webgpu and with ?device=cpu: burn-flex compiled to wasm32+SIMD128,
#            the Benchmark button (?width&batch&bench_steps&conv=burn), `bench-result`
#   native   `train --bench N` on burn-flex (release), 1 thread and all threads
#   pytorch  bench/pytorch_cpu_step.py (the model of bench/pytorch_reference.py), 1 and $(nproc) threads
#   tfjs     TF.js 4.22's `cpu` backend, bench/peer/tfjs.html?backend=cpu, in the same Chromium
# plus a DevTools CPU profile of the page's timed steps on the engine's thread at width 0.125
# batch 32, from a site built without wasm-opt (wasm function names kept), top self times printed.
# Prints one markdown table (figure, load, command, and the ratios) and writes it with every raw
# output to bench/results/cpu-engine/ (or $OUT).
#
#   bench/cpu.sh                      the full run: ~15 min of measuring on 2 quiet cores (TF.js's
#                                     cpu backend half of it), after the builds (cold: 30-40 min;
#                                     warm: ~9 min, trunk re-runs wasm-bindgen and wasm-opt each time)
#   DIST=target/cpu-dist PROFILE_DIST=target/cpu-dist-noopt bench/cpu.sh   reuse the sites built
#                                     by an earlier run (rebuild them after a change to src/)
#   STEPS=3 TFJS_STEPS=1 bench/cpu.sh a smoke run (~6 min of measuring)
# Settings (environment):
#   WIDTHS ("0.125 0.25"), BATCHES ("32 64"), STEPS (20: timed steps of page, native, PyTorch;
#   the page warms up 5 steps, `train --bench` 3, PyTorch 5), TFJS_STEPS (3), TFJS_WARMUP (1: the
#   cpu backend compiles nothing and its step takes seconds), PROFILE_STEPS ($STEPS),
#   PARTS ("page native pytorch tfjs profile": any subset), OUT (bench/results/cpu-engine; emptied
#   first), DIST (a built release site; default: built into target/cpu-dist), PROFILE_DIST (a
#   site built with WASM_OPT=0; default: built into target/cpu-dist-noopt; PROFILE_DIST=$DIST
#   saves that build but the profile then has no wasm names), WEBGPU=1 (gives Chromium WebGPU on
#   SwiftShader; ?device=cpu still keeps the page on its CPU engine, which the table checks from
#   the page's `compute-device` line).
# Measure on a quiet machine (the table gives the load before each figure): PyTorch's 2 threads
# collapse when anything else runs (its OpenMP threads spin at every operation's barrier: 575
# against 39 ms/step with OMP_WAIT_POLICY=PASSIVE at load 2.8 on the 2-core machine).
# Installs what is missing: playwright-core and TF.js from npm into the build cache's tools
# folder, torch from PyPI. Builds use the shared caches (~/.cache/cifar10-webgpu/target{,-wasm}).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
cache=${CIFAR10_WEBGPU_CACHE:-$HOME/.cache/cifar10-webgpu}
tools=$cache/tools
out=${OUT:-$root/bench/results/cpu-engine}
WIDTHS=${WIDTHS:-0.125 0.25}
BATCHES=${BATCHES:-32 64}
STEPS=${STEPS:-20}
TFJS_STEPS=${TFJS_STEPS:-3}
TFJS_WARMUP=${TFJS_WARMUP:-1}
PROFILE_STEPS=${PROFILE_STEPS:-$STEPS}
PARTS=${PARTS:-page native pytorch tfjs profile}
WEBGPU=${WEBGPU:-0}
threads=$(nproc)
has() { [[ " $PARTS " == *" $1 "* ]]; }
say() { printf '\033[1;34m[cpu.sh]\033[0m %s\n' "$*" >&2; }
load() { cut -d' ' -f1 /proc/loadavg; }
mkdir -p "$out"
find "$out" -maxdepth 1 -type f -delete

# --- tools -------------------------------------------------------------------------------------
if has page || has tfjs || has profile; then
  for pkg in playwright-core@1.64.1 @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-webgpu@4.22.0; do
    [ -d "$tools/node_modules/${pkg%@*}" ] || npm install --silent --prefix "$tools" "$pkg" >/dev/null
  done
fi
if has pytorch && ! python3 -c 'import torch' 2>/dev/null; then
  say "installing torch from PyPI"
  python3 -m pip install -q torch numpy >&2
fi

# --- builds --------------------------------------------------------------------------------------
native_target=${CARGO_TARGET_DIR:-$cache/target}
wasm_target=${WASM_TARGET_DIR:-$cache/target-wasm}
if has native; then
  say "native release build of train (shared cache $native_target)"
  CARGO_TARGET_DIR=$native_target cargo build --release --bin train >&2
  train=$native_target/release/train
  # Does the native flex build have threads? burn-flex parallelises (gemm and reductions) only
  # with its `rayon` feature; this crate enables `std` and `simd` (burn-dispatch adds only std).
  flex_features=$(cargo tree -e features -i burn-flex --offline 2>/dev/null | grep -o 'burn-flex feature "[a-z0-9-]*"' | sort -u | sed 's/burn-flex feature //' | tr -d '"' | tr '\n' ' ')
  if [[ " $flex_features " == *" rayon "* ]]; then flex_threads=rayon; else flex_threads=none; fi
  echo "burn-flex features in the native build: $flex_features(threads: $flex_threads)" > "$out/native-flex-features.txt"
fi
if has page && [ -z "${DIST:-}" ]; then
  DIST=$root/target/cpu-dist
  say "release site (wasm-opt) into $DIST"
  DIST=$DIST CARGO_TARGET_DIR=$wasm_target scripts/build-release.sh / >&2
fi
if has profile && [ -z "${PROFILE_DIST:-}" ]; then
  PROFILE_DIST=$root/target/cpu-dist-noopt
  say "release site without wasm-opt (wasm names kept, for the profile) into $PROFILE_DIST"
  WASM_OPT=0 DIST=$PROFILE_DIST CARGO_TARGET_DIR=$wasm_target scripts/build-release.sh / >&2
fi

# Native `--bench` needs images (the page's and the peers' are random; the step is the same work).
sample=
for d in "${CIFAR10_SAMPLE:-}" "${CIFAR10_SHARED:-$root/../shared/cifar10}/sample" /work/shared/cifar10/sample; do
  if [ -n "$d" ] && [ -d "$d" ]; then sample=$d; break; fi
done

# --- servers -------------------------------------------------------------------------------------
pids=()
tfjs_site=$(mktemp -d)
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tfjs_site"' EXIT
serve() { # serve DIR VAR: serves DIR on 127.0.0.1 and sets VAR to its base URL
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$1" >/dev/null 2>&1 &
  pids+=($!)
  printf -v "$2" 'http://127.0.0.1:%s' "$port"
}
cp bench/peer/tfjs.html "$tfjs_site/index.html"
cp "$tools/node_modules/@tensorflow/tfjs/dist/tf.min.js" "$tools/node_modules/@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js" "$tfjs_site/" 2>/dev/null || true
if has page; then serve "$DIST" page_url; fi
if has profile; then serve "$PROFILE_DIST" profile_url; fi
if has tfjs; then serve "$tfjs_site" tfjs_url; fi
sleep 1
export TOOLS_DIR=$tools WEBGPU

# --- the machine ---------------------------------------------------------------------------------
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' (src/ modified)')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $threads threads; $(free -g | awk '/Mem:/{print $2" GiB"}')"
  echo "uptime at start: $(uptime)"
  echo "chromium: $(chromium --version 2>/dev/null | head -1); node $(node --version)"
  if has pytorch; then echo "torch: $(python3 -c 'import torch; print(torch.__version__, "mkldnn", torch.backends.mkldnn.is_available())')"; fi
  if has native; then cat "$out/native-flex-features.txt"; fi
  if [ "$WEBGPU" = 1 ]; then echo "WEBGPU=1: Chromium had WebGPU (SwiftShader); the page still trains on the CPU (?device=cpu)"; fi
} | tee "$out/machine.txt"

# One measurement: record NAME COMMAND...: its output in $out/NAME.txt after two lines giving the
# 1-minute load average before it and the command.
record() {
  local name=$1; shift
  say "$name: $*"
  printf '# load before: %s\n# command: %s\n' "$(load)" "$*" > "$out/$name.txt"
  "$@" >> "$out/$name.txt" 2>&1 || echo "FAILED (exit $?)" >> "$out/$name.txt"
  grep -E 'ms/step|FAILED|error' "$out/$name.txt" | head -3 >&2 || true
}

for w in $WIDTHS; do
  for b in $BATCHES; do
    cfg="w$w-b$b"
    if has page; then
      record "page-$cfg" node bench/cpu_page.mjs "$page_url/?device=cpu&width=$w&batch=$b&bench_steps=$STEPS&conv=burn" "$out/page-$cfg.json"
    fi
    if has native; then
      if [ "$flex_threads" = rayon ]; then
        record "native-1t-$cfg" env RAYON_NUM_THREADS=1 "$train" --data "$sample" --width "$w" --batch "$b" --bench "$STEPS" --conv burn
        record "native-all-$cfg" "$train" --data "$sample" --width "$w" --batch "$b" --bench "$STEPS" --conv burn
      else
        record "native-1t-$cfg" "$train" --data "$sample" --width "$w" --batch "$b" --bench "$STEPS" --conv burn
      fi
    fi
    if has pytorch; then
      for t in 1 "$threads"; do
        record "pytorch-${t}t-$cfg" python3 bench/pytorch_cpu_step.py --width "$w" --batch "$b" --steps "$STEPS" --warmup 5 --threads "$t" --json "$out/pytorch-${t}t-$cfg.json"
      done
    fi
    if has tfjs; then
      record "tfjs-$cfg" node bench/cpu_page.mjs "$tfjs_url/?backend=cpu&width=$w&batch=$b&bench_steps=$TFJS_STEPS&warmup=$TFJS_WARMUP" "$out/tfjs-$cfg.json"
    fi
  done
done
if has profile; then
  record "profile-w0.125-b32" env PROFILE=1 node bench/cpu_page.mjs "$profile_url/?device=cpu&width=0.125&batch=32&bench_steps=$PROFILE_STEPS&conv=burn" "$out/profile-w0.125-b32.json"
fi
echo "uptime at end: $(uptime)" | tee -a "$out/machine.txt"

# --- the table -----------------------------------------------------------------------------------
OUT_DIR=$out WIDTHS=$WIDTHS BATCHES=$BATCHES THREADS=$threads FLEX_THREADS=${flex_threads:-} python3 - <<'EOF' | tee "$out/table.md"
import json, os, re
out = os.environ["OUT_DIR"]; threads = os.environ["THREADS"]; flex_threads = os.environ["FLEX_THREADS"]
widths = os.environ["WIDTHS"].split(); batches = os.environ["BATCHES"].split()

def read(name):
    p = os.path.join(out, name)
    return open(p).read().strip() if os.path.exists(p) else None

def figure(name, batch):
    """images/s from the step's ms (batch x 1000 / ms: the printed images/s is rounded), the step's
    ms, the load before it, its command, and a note when it failed."""
    text = read(name + ".txt")
    if text is None:
        return None
    load = re.search(r"^# load before: (.*)$", text, re.M).group(1)
    cmd = re.search(r"^# command: (.*)$", text, re.M).group(1).replace(out + "/", "$OUT/").replace(os.getcwd() + "/", "").replace(os.path.expanduser("~"), "~")
    m = re.search(r"([\d.]+) ms/step", text)
    if not m or "FAILED" in text:
        last = [l for l in text.splitlines() if l.strip()][-1:] or ["no output"]
        return dict(ips=None, ms=None, load=load, cmd=cmd, note="failed: " + last[0][:120])
    ms = float(m.group(1))
    note = ""
    if name.startswith("page") or name.startswith("profile"):
        j = json.load(open(os.path.join(out, name + ".json")))
        # The page says which device trains in `compute-device` ("Training runs on the CPU ...").
        if not re.search(r"\bCPU\b", j.get("compute_device") or ""):
            note = "NOT the CPU engine: " + (j.get("compute_device") or "the page has no compute-device line; " + (j.get("webgpu_status") or ""))[:100]
    return dict(ips=int(batch) * 1000 / ms, ms=ms, load=load, cmd=cmd, note=note)

rows = []
def row(what, w, b, f, extra=""):
    if f is None:
        return
    ips = f"{f['ips']:.1f}" if f["ips"] else "-"
    ms = f"{f['ms']:.1f}" if f["ms"] else "-"
    note = "; ".join(filter(None, [extra, f["note"]]))
    rows.append(f"| {what} | {w} | {b} | {ips} | {ms} | {f['load']} | `{f['cmd']}`{' (' + note + ')' if note else ''} |")

figs = {}
for w in widths:
    for b in batches:
        c = f"w{w}-b{b}"
        fs = figs[c] = {k: figure(f"{k}-{c}", b) for k in ["page", "native-1t", "native-all", "pytorch-1t", f"pytorch-{threads}t", "tfjs"]}
        if fs["native-all"] is None and fs["native-1t"] is not None and flex_threads == "none":
            fs["native-all"] = dict(fs["native-1t"], note="the same run: burn-flex here is built without its rayon feature, so it has no threads")
        row("page CPU engine (wasm32 SIMD128, 1 thread, worker)", w, b, fs["page"])
        row("native `train` flex, 1 thread", w, b, fs["native-1t"])
        row(f"native `train` flex, all threads ({threads})", w, b, fs["native-all"])
        row("PyTorch CPU, 1 thread", w, b, fs["pytorch-1t"])
        if threads != "1":
            row(f"PyTorch CPU, {threads} threads", w, b, fs[f"pytorch-{threads}t"])
        row("TF.js 4.22 `cpu` backend (page's thread)", w, b, fs["tfjs"])
prof = figure("profile-w0.125-b32", 32)
row("page CPU engine, site without wasm-opt (the profiled run)", "0.125", "32", prof)

def ratio(name, a, b, target=None, when=lambda w: True):
    for c, fs in figs.items():
        w, bt = c[1:].split("-b")
        if not when(w) or not fs.get(a) or not fs.get(b) or not fs[a]["ips"] or not fs[b]["ips"]:
            continue
        r = fs[a]["ips"] / fs[b]["ips"]
        verdict = f" (target >= {target}: {'met' if r >= target else 'NOT met'})" if target else ""
        rows.append(f"| ratio: {name} | {w} | {bt} | **{r:.2f}**{verdict} | | | |")

ratio("page / native flex 1 thread", "page", "native-1t", 0.5)
ratio("native flex 1 thread / PyTorch 1 thread", "native-1t", "pytorch-1t", 0.5, lambda w: w == "0.125")
if threads != "1":
    ratio(f"native flex all threads / PyTorch {threads} threads", "native-all", f"pytorch-{threads}t", 0.5, lambda w: w == "0.125")
ratio("page / TF.js cpu", "page", "tfjs")

print("| what | width | batch | images/s | ms/step | load (1 min) before | command |")
print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
print("\n".join(rows))
if prof is not None and os.path.exists(os.path.join(out, "profile-w0.125-b32.json")):
    p = json.load(open(os.path.join(out, "profile-w0.125-b32.json"))).get("profile")
    if p:
        print(f"\nProfile of the page's timed steps (width 0.125, batch 32, {p['steps']} steps, {p['thread']}): "
              f"busy {p['busy_ms']} ms; top self time:\n")
        print("| self % | ms | function |\n| ---: | ---: | --- |")
        for r in p["self"][:15]:
            # Rust's hash suffix and the script's file name (the JSON keeps both).
            name = re.sub(r"::h[0-9a-f]{16}\b", "", r["name"]).replace("_bg.wasm", ".wasm")
            print(f"| {r['share']} | {r['ms']} | `{name}` |")
EOF
