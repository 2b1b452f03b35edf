#!/usr/bin/env bash
# Runs every test: native (cargo test on burn's flex CPU backend), browser (wasm-bindgen-test
# in headless Chromium on a real WebGPU adapter) and end-to-end (the built site, served by a
# plain static server under a sub-path, driven in headless Chromium through chromedriver and
# in headless Firefox ESR through geckodriver). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
# Each step's wall time, printed at the end (README, "Tests": the split of a cold run).
t0=$(date +%s); last=$t0; split=""
step() {
  local now; now=$(date +%s)
  [ -n "${current:-}" ] && split+=$(awk -v s="$current" -v d=$((now - last)) 'BEGIN {printf "%-62.62s %5.1f min", s, d / 60}')$'\n'
  last=$now; current="$*"
  printf '\n\033[1;32m== %s\033[0m\n' "$*"
}

step "0/5 set-up (tools: scripts/setup.sh --tests)"
scripts/setup.sh --tests

# Build caches outside the clone, so a fresh clone does not rebuild burn from scratch.
cache=${CIFAR10_WEBGPU_CACHE:-$HOME/.cache/cifar10-webgpu}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
wasm_target=${WASM_TARGET_DIR:-$cache/target-wasm}

# The real CIFAR-10 files: samples and the full tarball, rebuilt once from ../shared.
# ../shared beside the checkout (or $CIFAR10_SHARED; /work/shared where CI clones elsewhere).
for dir in "${CIFAR10_SHARED:-}" "$root/../shared/cifar10" /work/shared/cifar10; do
  if [ -n "$dir" ] && [ -x "$dir/build.sh" ]; then export CIFAR10_SHARED=$(cd "$dir" && pwd); break; fi
done
[ -n "${CIFAR10_SHARED:-}" ] || { echo "CIFAR-10 files not found: set CIFAR10_SHARED" >&2; exit 1; }
export CIFAR10_TARBALL=${CIFAR10_TARBALL:-$("$CIFAR10_SHARED/build.sh" | tail -n 1)}
export CHROMEDRIVER=${CHROMEDRIVER:-$(command -v chromedriver)}

# The release site is the one wasm build of the suite: the browser tests (step 2) compile in
# the same profile, features and flags, so they reuse its dependencies, and the end-to-end
# journeys (step 4) serve it. It builds while the native tests run (its cargo build leaves a
# core idle in long single-crate stretches), and its wasm-opt (one core, ~6 min) runs while
# the browser tests do: their cargo waits for the site's cargo (one build directory, one lock)
# and starts as soon as it ends.
dist="$root/target/e2e-dist"
site_log="$root/target/site-build.log"
mkdir -p "$root/target"
# In a process group of its own, so that an early exit stops trunk and cargo too (killing the
# subshell alone left them building into the clone's dist, where the next run met them).
(CIFAR10_TARBALL= DIST="$dist" CARGO_TARGET_DIR="$wasm_target" exec setsid scripts/build-release.sh /cifar10-webgpu/ >"$site_log" 2>&1) &
site=$!
trap 'kill -- -$site 2>/dev/null || true' EXIT

step "1/5 native tests (flex CPU backend, real CIFAR-10 files), the release site building beside them"
cargo test --release --lib --bins --test config --test data --test engine --test pytorch_fixture --test fuzz --test selftest --test cli --test conv_choice --test replicas

step "2/5 browser tests (wasm-bindgen-test, headless Chromium, WebGPU; the site's release build, its wasm-opt beside them)"
fixtures=$(mktemp -d)
ln -s "$CIFAR10_SHARED/sample" "$fixtures/sample"
ln -s "$(dirname "$CIFAR10_TARBALL")" "$fixtures/full"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 scripts/cors_server.py "$port" "$fixtures" &
server=$!
trap 'kill $server 2>/dev/null || true; kill -- -$site 2>/dev/null || true; rm -rf "$fixtures"' EXIT
CIFAR10_TEST_URL="http://127.0.0.1:$port" WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-1800} \
  CARGO_TARGET_DIR="$wasm_target" cargo test --release --target wasm32-unknown-unknown --test web -- --nocapture

step "3/5 the release site (scripts/build-release.sh under /cifar10-webgpu/, wasm-opt -Oz): waiting for the rest of its build"
if ! wait $site; then
  cat "$site_log"; echo "the release site did not build" >&2; exit 1
fi
trap 'kill $server 2>/dev/null || true; rm -rf "$fixtures"' EXIT
tail -n 3 "$site_log"

step "4/5 end-to-end (the release site from a static server; Chromium and Firefox, engine in its worker and on the page's thread)"
# Every journey in Chromium (chromium::), those whose path differs with the engine on the
# page's thread (chromium_page_thread::, ?worker=0), the main ones in Firefox (firefox::,
# firefox_page_thread::); the bundled-data journey adds the stand-in tarball to a copy.
e2e_log="$root/target/e2e.log"
E2E_DIST="$dist" cargo test --release --test e2e -- --test-threads 1 --nocapture --skip serve_command 2>&1 | tee "$e2e_log"
grep -o 'E2E-TIME.*' "$e2e_log" || true
grep -o 'E2E-TIME.*' "$e2e_log" | sed -E 's/.*: ([0-9]+) s.*/\1/' | awk '{t += $1} END {printf "end-to-end journeys: %d tests, %.1f min\n", NR, t / 60}'
echo "screenshot of the dashboard: target/dashboard.png"

step "5/5 the README's run command, scripts/serve.sh, from a fresh git clone"
# A clone holds only tracked files: a step that works here only thanks to an untracked folder
# (.bench, .gl, data/) fails. The build reuses the release cache of step 3.
clone_dir=$(mktemp -d)
git clone -q "$root" "$clone_dir/clone"
serve_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
serve_log="$clone_dir/serve.log"
(cd "$clone_dir/clone" && PORT=$serve_port CARGO_TARGET_DIR="$wasm_target" exec setsid scripts/serve.sh >"$serve_log" 2>&1) &
serve_pid=$!
stop_serve() { kill -- -"$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; rm -rf "$clone_dir"; }
trap 'kill $server 2>/dev/null || true; rm -rf "$fixtures"; stop_serve' EXIT
SERVE_URL="http://127.0.0.1:$serve_port/" SERVE_PID=$serve_pid SERVE_LOG="$serve_log" \
  cargo test --release --test e2e serve_command -- --nocapture
stop_serve
trap 'kill $server 2>/dev/null || true; rm -rf "$fixtures"' EXIT
if ps -eo args | grep -v grep | grep -q "trunk serve --release --address 127.0.0.1 --port $serve_port"; then
  echo "scripts/serve.sh left a process behind" >&2; exit 1
fi
step "all tests passed"
printf '%s' "$split"
awk -v d=$(($(date +%s) - t0)) 'BEGIN {printf "%-62s %5.1f min\n", "total", d / 60}'
