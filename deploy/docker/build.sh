#!/usr/bin/env bash
# Builds the recd-node image from this checkout without pulling anything:
#   1. cargo build --release -p recd-node
#   2. stage a root filesystem: the binary, every shared library `ldd` lists (and the
#      dynamic loader), /etc/passwd and /etc/group with the recd user (10001), configs/
#   3. docker build FROM scratch on that context, tagged recd-node:$TAG (default 0.1.0)
# Usage: deploy/docker/build.sh [TAG]     Env: CARGO_TARGET_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG=${1:-0.1.0}
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -p recd-node
BIN="$TARGET/release/recd-node"

CTX=$(mktemp -d)
trap 'rm -rf "$CTX"' EXIT
ROOT="$CTX/rootfs"
mkdir -p "$ROOT/usr/local/bin" "$ROOT/etc/recd" "$ROOT/tmp" "$CTX/data"
cp "$BIN" "$ROOT/usr/local/bin/recd-node"
strip --strip-debug "$ROOT/usr/local/bin/recd-node"
# every library the binary loads, at the path the loader looks for it
ldd "$BIN" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
  mkdir -p "$ROOT$(dirname "$lib")"
  cp -L "$lib" "$ROOT$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nrecd:x:10001:10001:recd:/var/lib/recd:/sbin/nologin\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\nrecd:x:10001:\n' >"$ROOT/etc/group"
cp configs/*.yaml "$ROOT/etc/recd/"
# the A/B scenarios are referenced relative to the working directory in the configs
mkdir -p "$CTX/data/configs"
cp configs/ab_scenarios.yaml "$CTX/data/configs/"
chmod 1777 "$ROOT/tmp"

cp deploy/docker/Dockerfile "$CTX/Dockerfile"
test -x "$ROOT/lib64/ld-linux-x86-64.so.2" || test -n "$(find "$ROOT" -name 'ld-linux*')" ||
  { echo "build.sh: the dynamic loader was not staged" >&2; exit 1; }
docker build -t "recd-node:$TAG" "$CTX"
# the image must start: its own probe command, no network needed
docker run --rm "recd-node:$TAG" --version >/dev/null
docker image inspect "recd-node:$TAG" --format 'built {{.RepoTags}} {{.Size}} bytes'
