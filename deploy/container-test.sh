#!/usr/bin/env bash
# Build the real image from the unchanged Dockerfile and run it, with no Docker engine:
# buildah in chroot isolation, and local stand-ins for the base images under the exact
# names the Dockerfile uses (no registry is reachable here):
#   - python:3.11-slim-bookworm: a Debian bookworm root filesystem from debootstrap
#     (minbase, with Debian's python3, which is 3.11 in bookworm, like the real image);
#   - ghcr.io/astral-sh/uv:<version>: an image holding the uv binary from the uv wheel.
# Then: run the image's CMD as its own non-root user, check /healthz, a demo chat over
# `curl -N`, the HEALTHCHECK command, that no dev dependency or test is inside, and the size.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${CONTAINER_TEST_DIR:-/var/tmp/chat-relay-container}
IMAGE=localhost/chat-relay:test
PY_IMAGE=docker.io/library/python:3.11-slim-bookworm
UV_IMAGE=$(sed -n 's/^FROM \(ghcr.io\/astral-sh\/uv:[^ ]*\) AS uv$/\1/p' Dockerfile)
UV_VERSION=${UV_IMAGE##*:}
PORT=8000  # the Dockerfile's CMD; chroot isolation shares the host's network
export STORAGE_DRIVER=vfs  # works inside any sandbox; overlay may not
mkdir -p "$WORK"

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'CONTAINER TEST FAILED: %s\n' "$*" >&2; exit 1; }

if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null || ! command -v podman >/dev/null; then
  step "install buildah, podman, debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman debootstrap >/dev/null
fi

if ! buildah inspect --type image "$PY_IMAGE" >/dev/null 2>&1; then
  step "stand-in for $PY_IMAGE (debootstrap)"
  rm -rf "$WORK/rootfs"
  debootstrap --variant=minbase --include=python3,ca-certificates bookworm "$WORK/rootfs" \
    http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log"; fail debootstrap; }
  rm -rf "$WORK/rootfs/var/cache/apt/archives"/*.deb "$WORK/rootfs/var/lib/apt/lists"/*
  tar -C "$WORK/rootfs" -c . | podman import --change 'CMD ["python3"]' - "$PY_IMAGE" >/dev/null
fi

if ! buildah inspect --type image "$UV_IMAGE" >/dev/null 2>&1; then
  step "stand-in for $UV_IMAGE (the uv wheel's binary)"
  rm -rf "$WORK/uv" && mkdir -p "$WORK/uv"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$WORK/uv" "uv==$UV_VERSION"
  (cd "$WORK/uv" && python3 -m zipfile -e uv-*.whl x && cp x/uv-*.data/scripts/uv ./uv && chmod +x uv)
  ctr=$(buildah from scratch)
  buildah copy "$ctr" "$WORK/uv/uv" /uv >/dev/null
  buildah commit --quiet "$ctr" "$UV_IMAGE" >/dev/null
  buildah rm "$ctr" >/dev/null
fi

step "build $IMAGE from the Dockerfile"
# The host's CA bundle is mounted for the build's downloads only (TLS-intercepting egress).
buildah bud --isolation chroot --pull=never --format docker --quiet \
  --volume /etc/ssl/certs:/etc/ssl/certs:ro --build-arg SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  -t "$IMAGE" . >/dev/null

config() { buildah inspect --type image --format "$1" "$IMAGE"; }
USER_ID=$(config '{{.Docker.Config.User}}')
mapfile -t CMD < <(config '{{range .Docker.Config.Cmd}}{{println .}}{{end}}' | sed '/^$/d')
mapfile -t HEALTH < <(config '{{range .Docker.Config.Healthcheck.Test}}{{println .}}{{end}}' | sed '/^$/d')
[ "${USER_ID%%:*}" != "0" ] && [ -n "$USER_ID" ] || fail "the image runs as root"
[ "${HEALTH[0]:-}" = "CMD" ] || fail "no exec-form HEALTHCHECK"

ctr=$(buildah from --pull=never "$IMAGE")
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  # and whatever the CMD left (its workers: no PID namespace ends them here)
  pkill -KILL -u "${USER_ID%%:*}" -f -- "-m app|multiprocessing" 2>/dev/null || true
  buildah rm "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT
in_image() { buildah run --isolation chroot --user "$USER_ID" "$ctr" -- "$@"; }

step "nothing but the runtime inside"
in_image test ! -e /app/tests || fail "tests are in the image"
in_image test ! -e /app/.env || fail ".env is in the image"
for dev in pytest ruff playwright hadolint kubernetes_validate trustme; do
  ! in_image python -c "import $dev" 2>/dev/null || fail "dev dependency $dev is in the image"
done
in_image python -c "import app.main" || fail "the app does not import with the runtime dependencies"

step "run the image's CMD (${CMD[*]}) as $USER_ID"
! curl -s "http://127.0.0.1:$PORT/healthz" >/dev/null || fail "port $PORT is already in use"
buildah run --isolation chroot --user "$USER_ID" "$ctr" -- "${CMD[@]}" >"$WORK/server.log" 2>&1 &
server=$!
for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$PORT/healthz" || { cat "$WORK/server.log"; fail "no /healthz"; }
echo
listener=$(ss -Htlnp "sport = :$PORT" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
uid=$(awk '/^Uid:/ {print $2}' "/proc/$listener/status")
[ "$uid" = "${USER_ID%%:*}" ] || fail "the server runs as uid $uid"
echo "server runs as uid $uid"

step "a demo chat over curl -N"
out=$(curl -sN --max-time 30 "http://127.0.0.1:$PORT/api/chat" -H 'content-type: application/json' \
  -d '{"message": "Hello from the container test"}')
deltas=$(grep -c '^event: delta' <<<"$out" || true)
grep -q '"mode":"demo"' <<<"$out" && grep -q '^event: done' <<<"$out" && [ "$deltas" -gt 10 ] \
  || { printf '%s\n' "$out" | head -20; fail "no demo stream"; }
echo "streamed $deltas deltas and a done frame"

step "the HEALTHCHECK command: ${HEALTH[*]:1}"
in_image "${HEALTH[@]:1}" || fail "HEALTHCHECK fails against a healthy server"
# SIGTERM to the CMD's process, as a container runtime stops it: uvicorn's supervisor (a
# worker per core) passes it on, each worker drains and exits, then the supervisor. (Killing
# `buildah run` instead would leave the workers behind: chroot isolation has no PID
# namespace to end them with it.)
pkill -TERM -u "${USER_ID%%:*}" -f -- "^[^ ]*python -m app$" || true  # not buildah-chroot-exec
for _ in $(seq 1 100); do
  pgrep -u "${USER_ID%%:*}" -f -- "-m app|multiprocessing" >/dev/null || break
  sleep 0.2
done
pgrep -u "${USER_ID%%:*}" -f -- "-m app|multiprocessing" >/dev/null && fail "the CMD did not exit on SIGTERM"
wait "$server" 2>/dev/null || true; server=""
! in_image "${HEALTH[@]:1}" 2>/dev/null || fail "HEALTHCHECK passes with no server"
echo "passes while serving, fails once stopped"

step "size"
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE"
echo "CONTAINER TEST OK"
