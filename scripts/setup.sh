#!/usr/bin/env bash
# Installs every tool the project needs, from crates.io and Debian only. Idempotent: a second
# run only checks versions. Nothing is downloaded from GitHub: trunk runs offline and finds
# wasm-bindgen on PATH at exactly the version in Cargo.lock.
set -euo pipefail
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

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || ! pkg-config --exists openssl 2>/dev/null; then
  say "installing chromium, chromium-driver and libssl-dev (Debian)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver libssl-dev pkg-config python3 >/dev/null
fi

if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (must equal Cargo.lock)"
  # --locked fails here: a pinned dependency version is not served by crates.io.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

if [ "$(trunk --version 2>/dev/null | awk '{print $2}')" != "$TRUNK_VERSION" ]; then
  say "installing trunk $TRUNK_VERSION (about 12 minutes on 2 cores)"
  cargo install trunk --version "$TRUNK_VERSION" --locked --force
fi

# Dependencies are fetched once so trunk (offline = true) and cargo --offline never need the
# network again.
cargo fetch --locked >/dev/null 2>&1 || cargo fetch
say "tools ready: $(trunk --version), wasm-bindgen $WASM_BINDGEN_VERSION, $(chromium --version 2>/dev/null | head -1)"
