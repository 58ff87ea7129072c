#!/usr/bin/env bash
# Builds a Redis image for the container cluster test from this machine's Debian
# redis-server (no registry needed), the way build.sh builds recd-node's: the binary and
# every library `ldd` lists, FROM scratch, run as a non-root user with the AOF fsync'd on
# every write (what recd's redis backend requires).
# Usage: deploy/docker/build-redis.sh [TAG]   (needs redis-server: apt-get install redis-server)
set -euo pipefail
cd "$(dirname "$0")"
TAG=${1:-7.0}
BIN=$(command -v redis-server) || { echo "build-redis.sh: redis-server is not installed" >&2; exit 1; }
CTX=$(mktemp -d)
trap 'rm -rf "$CTX"' EXIT
ROOT="$CTX/rootfs"
mkdir -p "$ROOT/usr/bin" "$ROOT/data" "$ROOT/tmp" "$ROOT/etc"
cp -L "$BIN" "$ROOT/usr/bin/redis-server"
ldd "$BIN" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
  mkdir -p "$ROOT$(dirname "$lib")"
  cp -L "$lib" "$ROOT$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nredis:x:10002:10002:redis:/data:/sbin/nologin\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\nredis:x:10002:\n' >"$ROOT/etc/group"
# the AOF folder and /tmp writable by the redis user (no chown in a scratch build)
chmod 1777 "$ROOT/tmp" "$ROOT/data"
cat >"$CTX/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
USER 10002:10002
EXPOSE 6379
ENTRYPOINT ["/usr/bin/redis-server"]
CMD ["--bind", "0.0.0.0", "--protected-mode", "no", "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--dir", "/data"]
DOCKERFILE
docker build -q -t "recd-redis:$TAG" "$CTX" >/dev/null
docker run --rm "recd-redis:$TAG" --version
docker image inspect "recd-redis:$TAG" --format 'built {{.RepoTags}} {{.Size}} bytes'
