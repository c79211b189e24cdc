#!/usr/bin/env bash
# The local playground: the whole product on this machine, no cluster needed (docs/playground.md).
#
#   hack/playground.sh up [--offline] [--throttle MIB_PER_S] [--nodes N]
#   hack/playground.sh down | status | env
#
# `up` first prepares what is missing (hack/setup.sh: the registry package, .venv, the cached
# control plane and helm), then starts the ground in the background and returns once it is ready.
# State: .playground/ (or $AI_MODELS_PLAYGROUND_DIR). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "up" ]]; then
  if [[ "$(id -u)" != 0 ]]; then
    echo "the playground needs root (the node emulator's mount namespaces): run it with sudo" >&2
    exit 1
  fi
  hack/setup.sh --keep-venv docker-registry
fi
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
export HF_HUB_DISABLE_TELEMETRY=1
exec .venv/bin/python -m tests.ground.playground "$@"
