#!/usr/bin/env bash
# Headless check of the desktop demo (examples/desktop; feature `desktop-x11`, the X11-only
# subset of `desktop`, which builds fewer crates): build it,
# run it under Xvfb on lavapipe with a random tiny Llama (--tiny-model) for 3 BoHA
# steps, let it answer the chat prompt and take a screenshot, and fail unless the PNG
# exists and is a real frame (decoded here with zlib alone: size and distinct colours).
#
# Needs xvfb-run (apt-get install xvfb) and a Vulkan driver (mesa-vulkan-drivers).
# DESKTOP_PROFILE=release builds with --release (default: the dev profile, which CI's
# `cargo test` has already built boha's dependencies for).
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${DESKTOP_PROFILE:-dev}"
if [ "$profile" = release ]; then
  cargo build --release --example desktop --features desktop-x11
  bin="${CARGO_TARGET_DIR:-target}/release/examples/desktop"
else
  cargo build --example desktop --features desktop-x11
  bin="${CARGO_TARGET_DIR:-target}/debug/examples/desktop"
fi

# winit and lavapipe's window-system code want a runtime dir.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
png="$work/desktop.png"

xvfb-run -a -s "-screen 0 1280x800x24" \
  "$bin" --tiny-model --exit-after-steps 3 --screenshot "$png" --timeout 600

python3 - "$png" <<'EOF'
import struct, sys, zlib

path = sys.argv[1]
with open(path, "rb") as f:
    data = f.read()
if data[:8] != b"\x89PNG\r\n\x1a\n":
    sys.exit(f"{path}: not a PNG")
pos, idat, hdr = 8, [], None
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        hdr = struct.unpack(">IIBBBBB", body)
    elif kind == b"IDAT":
        idat.append(body)
    pos += 12 + n
width, height, depth, color = hdr[:4]
if (depth, color) != (8, 6):
    sys.exit(f"{path}: expected 8-bit RGBA, got depth {depth} colour type {color}")
raw = zlib.decompress(b"".join(idat))
bpp, stride = 4, width * 4
prev = bytearray(stride)
colors = set()
for y in range(height):
    ft = raw[y * (stride + 1)]
    line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    if ft == 1:
        for i in range(bpp, stride):
            line[i] = (line[i] + line[i - bpp]) & 255
    elif ft == 2:
        for i in range(stride):
            line[i] = (line[i] + prev[i]) & 255
    elif ft == 3:
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
    elif ft == 4:
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            line[i] = (line[i] + pred) & 255
    elif ft != 0:
        sys.exit(f"{path}: bad filter type {ft} on row {y}")
    colors.update(bytes(line[i:i + 4]) for i in range(0, stride, 4 * 3))
    prev = line
print(f"desktop_check: {path}: {width}x{height}, {len(colors)} distinct colours (every 3rd pixel)")
if width < 640 or height < 400 or len(colors) < 16:
    sys.exit("desktop_check: the screenshot is missing, too small or blank")
EOF
echo "desktop_check: ok"
