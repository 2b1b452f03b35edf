#!/usr/bin/env bash
# Times scripts/test.sh as CI meets it (issue 31): a fresh `git clone` of this checkout's HEAD
# and an empty HOME (no cargo registry, no tools, no build caches, no data); only the machine's
# Rust toolchain (rustup's, through RUSTUP_HOME) and the Debian packages already installed are
# kept. Takes the whole machine for about 50 minutes; prints the split by step at the end.
#   bench/cold-suite.sh [WORKDIR]     (default /tmp/cold; removed first)
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/cold}
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
proxies=$(dirname "$(command -v rustup)")
rm -rf "$work"; mkdir -p "$work/home" "$work/bin"
for t in cargo rustc rustup rustdoc; do ln -s "$proxies/$t" "$work/bin/$t"; done
git clone -q "$repo" "$work/cifar10-webgpu"
cd "$work/cifar10-webgpu"
echo "cold run of $(git log --oneline -1) on $(nproc) cores, $(date -u +%FT%TZ)"
start=$(date +%s)
env -i HOME="$work/home" RUSTUP_HOME="$rustup_home" TERM=xterm LANG=C.UTF-8 \
  SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
  PATH="$work/bin:$HOME/.pyenv/shims:$HOME/.pyenv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  bash -c 'if command -v trunk wasm-bindgen geckodriver; then echo "tools found: not a cold run" >&2; exit 2; fi; exec .ci/run'
rc=$?
echo "exit $rc after $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s"
exit $rc
