#!/usr/bin/env bash
# The library's tests in a real browser: builds boha for wasm32-unknown-unknown and runs
# the wasm-bindgen-test suites (tests/web_*.rs) in headless Chromium on its WebGPU
# adapter (SwiftShader where there is no GPU). Installs what is missing first: Debian's
# web Rust toolchain (rustc with the standard library's sources, built here with
# -Zbuild-std since rustup ships no wasm32 std on this machine), lld, Chromium and
# chromedriver, and wasm-bindgen-cli at the version Cargo.lock pins (built once into
# .ci/cache/ and reused).
#
# Then the page itself (examples/web/, scripts/web.sh): built, served on 127.0.0.1 and
# driven headless through chromedriver on a random tiny model: a few training steps whose
# loss falls, both chats answered, a screenshot that is not blank
# (target/wasm/web-check.png).
#
# Usage: scripts/web_test.sh [extra cargo test arguments, e.g. -- a test name filter]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
need=()
for pkg in rustc-web cargo-web rust-web-src rust-web-llvm lld-22 chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# wasm-bindgen's runner must match the wasm-bindgen crate in Cargo.lock exactly.
version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
bindgen_root="$root/.ci/cache/wasm-bindgen-cli-$version"
runner="$bindgen_root/bin/wasm-bindgen-test-runner"
if [ ! -x "$runner" ]; then
  echo "building wasm-bindgen-cli $version into $bindgen_root" >&2
  # Not --locked: the CLI's own lock file fails to resolve.
  # A debug build: under a minute on 2 cores, where an optimized one takes about eight,
  # and fast enough for the few modules it processes here.
  CARGO_PROFILE_DEV_DEBUG=0 cargo install --quiet --debug --root "$bindgen_root" \
    wasm-bindgen-cli --version "$version"
fi

# Chromium without a GPU offers WebGPU (SwiftShader) only with --enable-unsafe-webgpu:
# without it there is no adapter and every test fails, so a pass ran on WebGPU. The
# machine may have no network: no background fetches, updates or sync.
mkdir -p "$root/target/wasm"
webdriver="$root/target/wasm/webdriver.json"
cat > "$webdriver" <<'JSON'
{
  "goog:chromeOptions": {
    "args": [
      "--headless=new",
      "--no-sandbox",
      "--enable-unsafe-webgpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run"
    ]
  }
}
JSON

export CHROMEDRIVER=/usr/bin/chromedriver
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-900}
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$runner"
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$webdriver"
# Only the web suites: the native test files need threads, files and a native adapter.
tests=()
for f in tests/web_*.rs; do
  tests+=(--test "$(basename "$f" .rs)")
done
PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
  /usr/bin/cargo test --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort \
  --no-default-features --no-fail-fast --profile web \
  --target-dir "$root/target/wasm" "${tests[@]}" "$@"

scripts/web.sh --build-only --profile web
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$root/target/wasm/site" \
  >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
# Bounded: one run in development hung before the page loaded (cause not found).
timeout 300 python3 scripts/web_page_check.py "http://127.0.0.1:$port/" tiny 5 \
  "$root/target/wasm/web-check.png" 32 0.05
