#!/usr/bin/env bash
# Builds the peer clients the interop tests run against our artifacts:
#   oras v1.3.0  the ORAS CLI, `go install` from the Go module proxy;
#   modctl       the CNCF ModelPack CLI, built from the source snapshot modctl-c8e484d.tar.gz
#                (modelpack/modctl at commit c8e484d). modctl is not on the Go module proxy
#                (its module path is not fetchable from it), so the snapshot is looked up in
#                $AI_MODELS_MODCTL_SNAPSHOT, else <repo>/../shared/tools/, else /work/shared/tools/;
#                its own dependencies do come from the module proxy.
# Binaries go to ${AI_MODELS_CACHE:-~/.cache/ai-models}/peers/bin, outside the repository; a
# binary already there is kept. The last line printed on stdout is that directory (the tests
# read it); build logs go to stderr. About 5 minutes on 2 cores the first time.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${AI_MODELS_CACHE:-$HOME/.cache/ai-models}"
bin="$cache/peers/bin"
oras_version="v1.3.0"
snapshot_name="modctl-c8e484d.tar.gz"
mkdir -p "$bin"
# A module cache of our own beside the binaries; the machine's Go, never a downloaded toolchain.
export GOPATH="$cache/peers/go" GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"

# (The output is read whole: `grep -q` closing the pipe early would fail it under pipefail.)
installed="$("$bin/oras" version 2>/dev/null || true)"
if ! grep -q "^Version: *${oras_version#v}\b" <<<"$installed"; then
  echo "building oras $oras_version into $bin" >&2
  staging="$(mktemp -d)"
  GOBIN="$staging" go install "oras.land/oras/cmd/oras@$oras_version" >&2
  mv "$staging/oras" "$bin/oras"
  rmdir "$staging"
fi

find_snapshot() {
  local candidate
  for candidate in "${AI_MODELS_MODCTL_SNAPSHOT:-}" "$here/../../shared/tools/$snapshot_name" \
      "/work/shared/tools/$snapshot_name"; do
    if [[ -n "$candidate" && -f "$candidate" ]]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if [[ ! -x "$bin/modctl" ]]; then
  if ! snapshot="$(find_snapshot)"; then
    echo "build-peers: the modctl source snapshot $snapshot_name was not found; set" \
      "AI_MODELS_MODCTL_SNAPSHOT to its path (looked in \$AI_MODELS_MODCTL_SNAPSHOT," \
      "$here/../../shared/tools/ and /work/shared/tools/)" >&2
    exit 1
  fi
  echo "building modctl from $snapshot into $bin" >&2
  source_dir="$(mktemp -d)"
  trap 'rm -rf "$source_dir"' EXIT
  tar -xzf "$snapshot" -C "$source_dir"
  (cd "$source_dir/modctl" && go build -trimpath -o "$bin/modctl.tmp" .) >&2
  mv "$bin/modctl.tmp" "$bin/modctl"
fi

echo "$bin"
