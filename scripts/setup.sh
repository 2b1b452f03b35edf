#!/usr/bin/env bash
# Installs every tool the project needs, from crates.io and Debian only. Idempotent: a second
# run only checks versions. Nothing is downloaded from GitHub: trunk runs offline and finds
# wasm-bindgen on PATH at exactly the version in Cargo.lock.
#   scripts/setup.sh           what building and serving need (and Chromium)
#   scripts/setup.sh --tests   also Firefox ESR, Mesa's Vulkan drivers (lavapipe: WebGPU on the
#                              CPU for Firefox) and geckodriver, for the end-to-end tests
set -euo pipefail
tests=0
[ "${1:-}" = --tests ] && tests=1
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

TRUNK_VERSION=0.21.14   # trunk 0.22 needs a newer rustc than 1.95
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# Debian packages: the browser and its driver (tests), libssl-dev (the WebDriver client),
# python3 (static servers in the tests), npm (binaryen's wasm-opt for the release build), curl
# (the official data download in serve.sh).
missing=()
for tool in chromium chromedriver python3 npm curl pkg-config; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
if [ $tests = 1 ]; then
  command -v firefox-esr >/dev/null || missing+=(firefox-esr)
  ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers)
fi
if [ ${#missing[@]} -gt 0 ]; then
  say "installing from Debian: ${missing[*]}"
  pkgs=()
  for tool in "${missing[@]}"; do
    case "$tool" in
      chromedriver) pkgs+=(chromium-driver) ;;
      npm) pkgs+=(nodejs npm) ;;
      *) pkgs+=("$tool") ;;
    esac
  done
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (must equal Cargo.lock)"
  # --locked fails here: a pinned dependency version is not served by crates.io.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

# trunk builds itself with fat LTO and one codegen unit (7.4 min here); it only runs cargo,
# wasm-bindgen and wasm-opt, hashes and copies files and serves them, so cargo's ordinary
# release settings do (4.8 min). Without its default features (rustls, update check) it has
# nothing to download with: it runs offline anyway (Trunk.toml).
if [ "$(trunk --version 2>/dev/null | awk '{print $2}')" != "$TRUNK_VERSION" ]; then
  say "installing trunk $TRUNK_VERSION (about 5 minutes on 2 cores)"
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install trunk --version "$TRUNK_VERSION" --locked --no-default-features --force
fi

# WebDriver for Firefox (Debian has no package). Built without optimisation: it only relays
# WebDriver commands, and the debug build needs 86 s of CPU (about a minute on 2 cores) where
# the release build takes about 8 minutes.
GECKODRIVER_VERSION=0.37.1
if [ $tests = 1 ] && [ "$(geckodriver --version 2>/dev/null | awk 'NR==1{print $2}')" != "$GECKODRIVER_VERSION" ]; then
  say "installing geckodriver $GECKODRIVER_VERSION"
  CARGO_PROFILE_DEV_DEBUG=0 cargo install geckodriver --version "$GECKODRIVER_VERSION" --locked --debug --force
fi

# Dependencies are fetched once so trunk (offline = true) and cargo --offline never need the
# network again.
cargo fetch --locked >/dev/null 2>&1 || cargo fetch
say "tools ready: $(trunk --version), wasm-bindgen $WASM_BINDGEN_VERSION, $(chromium --version 2>/dev/null | head -1)"
if [ $tests = 1 ]; then
  say "test browsers: $(firefox-esr --version 2>/dev/null), $(geckodriver --version 2>/dev/null | sed -n 1p)"
fi
