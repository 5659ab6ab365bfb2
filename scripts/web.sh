#!/usr/bin/env bash
# Builds the web page (examples/web/) and serves it on http://127.0.0.1:${PORT:-8000}/:
# choose a GGUF model, fine-tune BoHA with a live loss curve, chat with the base and the
# adapted model, download the adapter. Needs a browser with WebGPU (Chromium without a
# GPU: --enable-unsafe-webgpu). The toolchain is the one scripts/web_test.sh installs.
#
# Usage: scripts/web.sh [--build-only] [--profile NAME]
#   --profile: the cargo profile (default release; scripts/web_test.sh builds with `web`,
#   the profile of its tests, so that the dependencies compile once)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
bindgen="$root/.ci/cache/wasm-bindgen-cli-$version/bin/wasm-bindgen"
if [ ! -x "$bindgen" ] || ! command -v /usr/bin/rustc >/dev/null; then
  echo "the web toolchain is missing: run scripts/web_test.sh once (it installs it)" >&2
  exit 1
fi

build_only=0
profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --build-only) build_only=1 ;;
    --profile) profile=$2; shift ;;
    *) echo "scripts/web.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done

PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
  /usr/bin/cargo build --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort \
  --no-default-features --profile "$profile" --target-dir "$root/target/wasm" --example web
site="$root/target/wasm/site"
mkdir -p "$site"
"$bindgen" --target web --out-dir "$site/pkg" --out-name boha_web \
  "$root/target/wasm/wasm32-unknown-unknown/$profile/examples/web.wasm"
cp examples/web/index.html examples/web/app.js "$site/"
echo "built $site"
[ "$build_only" = 1 ] && exit 0

port=${PORT:-8000}
echo "serving http://127.0.0.1:$port/ (Ctrl-C stops)"
exec python3 -m http.server "$port" --bind 127.0.0.1 --directory "$site"
