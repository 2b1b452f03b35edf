# Sourced by the CPU benchmarks that time the page (bench/workers.sh, bench/direct.sh):
#   page_site NAME   installs playwright-core into the build cache's tools folder if missing,
#                    builds the release site into target/NAME-dist unless DIST names a built one,
#                    serves it on 127.0.0.1 under PUBLIC_PATH (default /; the path the site was
#                    built for) and sets `page_url` to its address (ending in /); the server
#                    and its folder go at exit.
# Needs `root`, `cache`, `tools` and `say` from the script that sources it.
page_site() {
  [ -d "$tools/node_modules/playwright-core" ] || npm install --silent --prefix "$tools" playwright-core@1.64.1 >/dev/null
  if [ -z "${DIST:-}" ]; then
    DIST=$root/target/$1-dist
    say "release site (wasm-opt) into $DIST"
    DIST=$DIST CARGO_TARGET_DIR=${WASM_TARGET_DIR:-$cache/target-wasm} scripts/build-release.sh / >&2
  fi
  local port public=${PUBLIC_PATH:-/}
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  page_served=$(mktemp -d)
  mkdir -p "$page_served$(dirname "${public%/}")"
  if [ "$public" = / ]; then rmdir "$page_served"; ln -s "$DIST" "$page_served"; else ln -s "$DIST" "$page_served${public%/}"; fi
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$page_served" >/dev/null 2>&1 &
  page_server=$!
  trap 'kill $page_server 2>/dev/null || true; rm -rf "$page_served"' EXIT
  page_url=http://127.0.0.1:$port$public
  sleep 1
}
