#!/usr/bin/env bash
# Builds the container images of the real test node (tests/node) without any image registry:
#
#   - python:3.11-slim-bookworm: a stand-in for Docker Hub's image, `debootstrap --variant=minbase
#     bookworm` + python3 python3-venv python-is-python3 ca-certificates, imported FROM scratch
#     and tagged with the name our Dockerfiles use (built once, cached);
#   - localhost/ai-models-pause:1: the sandbox image, hack/pause built static (built once, cached);
#   - ai-models-worker:node and ai-models-controller:node: Dockerfile.worker and
#     Dockerfile.controller of the working tree, as a user builds them (every run; buildah's layer
#     cache makes an unchanged tree fast).
#
# buildah (overlay storage, chroot isolation) keeps its storage under the cache (vfs copied the
# whole root filesystem for every layer: gigabytes and minutes); the base is also kept as an OCI
# archive, so a reset storage never needs debootstrap again. Each image is
# written as an OCI archive into $cache/images/archives/<name>.tar, ready for
# `ctr -n k8s.io images import`. Prints the archives directory. pip inside the builds gets the
# host's /etc/pip.conf and CA bundle, read-only (HTTPS may go through a proxy only the host
# trusts). Needs root. Usage: hack/build-images.sh [--print-dir]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
cache="${AI_MODELS_CACHE:-$HOME/.cache/ai-models}/images"
archives="$cache/archives"
mirror="${AI_MODELS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
base_image="docker.io/library/python:3.11-slim-bookworm"
pause_image="localhost/ai-models-pause:1"
tag="${AI_MODELS_IMAGE_TAG:-node}"

if [[ "${1:-}" == "--print-dir" ]]; then echo "$archives"; exit 0; fi
mkdir -p "$archives"
base_archive="$cache/base/python-3.11-slim-bookworm.tar"
bah() { buildah --root "$cache/storage" --runroot "$cache/run" --storage-driver overlay "$@"; }
has() { bah inspect --type image "$1" >/dev/null 2>&1; }
timed() {  # timed <label> <command...>: runs it, prints its wall time to stderr
  local start=$SECONDS
  "$@"
  echo "build-images: $1 ${*:2:1} took $((SECONDS - start)) s" >&2
}
export_archive() {  # export_archive <image> <file stem>: skipped when that image is exported
  local id
  id="$(bah inspect --type image --format '{{.FromImageID}}' "$1")"
  if [[ -f "$archives/$2.tar" && "$(cat "$archives/$2.id" 2>/dev/null)" == "$id" ]]; then
    return 0
  fi
  rm -f "$archives/$2.tar" "$archives/$2.id"
  bah push --quiet "$1" "oci-archive:$archives/$2.tar:$1" >/dev/null
  echo "$id" >"$archives/$2.id"
}

work="$(mktemp -d)"
cleanup() {
  # debootstrap mounts /proc and /sys inside the target while it runs; never leave them behind.
  grep -o " $work/[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

build_base() {
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; return 1; }
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
  printf 'FROM scratch\nADD rootfs.tar /\nENV LANG=C.UTF-8\nCMD ["python3"]\n' >"$work/Containerfile"
  bah bud --quiet --isolation chroot -f "$work/Containerfile" -t "$base_image" "$work" >/dev/null
  mkdir -p "$(dirname "$base_archive")"
  bah push --quiet "$base_image" "oci-archive:$base_archive.tmp:$base_image" >/dev/null
  mv "$base_archive.tmp" "$base_archive"
}

build_pause() {
  mkdir -p "$work/pause"
  (cd "$here/pause" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/pause/pause" .)
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' \
    >"$work/pause/Containerfile"
  bah bud --quiet --isolation chroot -f "$work/pause/Containerfile" -t "$pause_image" \
    "$work/pause" >/dev/null
}

build_product() {  # build_product <worker|controller>
  local volumes=()
  for file in /etc/pip.conf /etc/ssl/certs/ca-certificates.crt; do
    if [[ -f "$file" ]]; then volumes+=(-v "$file:$file:ro"); fi
  done
  bah bud --quiet --pull=never --layers --isolation chroot "${volumes[@]}" \
    -f "$repo/Dockerfile.$1" -t "docker.io/library/ai-models-$1:$tag" "$repo" >/dev/null
}

if ! has "$base_image"; then
  if [[ -f "$base_archive" ]]; then
    bah pull --quiet "oci-archive:$base_archive" >/dev/null
  else
    timed build_base
  fi
fi
if ! has "$pause_image" || [[ ! -f "$archives/pause.tar" ]]; then
  timed build_pause
  export_archive "$pause_image" pause
fi
for component in worker controller; do
  timed build_product "$component"
  timed export_archive "docker.io/library/ai-models-$component:$tag" "$component"
done
# Dangling layers of earlier working trees would pile up in the cache.
bah rmi --prune >/dev/null 2>&1 || true
echo "$archives"
