"""Synthetic model repositories for the Hub emulator, written with the real writers.

Each builder writes a small repository into a directory with ``safetensors.numpy.save_file`` and
``gguf.GGUFWriter`` and returns its path; the tests compute the expected values independently
(``safetensors.safe_open``, ``gguf.GGUFReader``), never from these builders' constants.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import save_file

TOOLS_TEMPLATE = (
    "{% if tools %}{% for tool in tools %}{{ tool | tojson }}{% endfor %}{% endif %}"
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}{% endfor %}"
)
PLAIN_TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"


def _json(path: Path, document: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))


def _tensors(shapes: dict[str, tuple[int, ...]], dtype: str = "float16") -> dict[str, np.ndarray]:
    return {name: np.zeros(shape, dtype=dtype) for name, shape in shapes.items()}


def llama_config(**extra: object) -> dict[str, object]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 32,
        "max_position_embeddings": 4096,
        "torch_dtype": "float16",
        **extra,
    }


def sharded_repo(root: Path) -> Path:
    """A two-shard LlamaForCausalLM with its index, a tools chat template, and files to drop."""
    first = _tensors({"model.embed_tokens.weight": (64, 32), "model.norm.weight": (32,)})
    second = _tensors({"model.layers.0.mlp.up_proj.weight": (48, 32), "lm_head.weight": (64, 32)})
    shards = {"model-00001-of-00002.safetensors": first, "model-00002-of-00002.safetensors": second}
    for name, tensors in shards.items():
        root.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(root / name), metadata={"format": "pt"})
    weight_map = {tensor: name for name, tensors in shards.items() for tensor in tensors}
    _json(root / "model.safetensors.index.json", {"metadata": {}, "weight_map": weight_map})
    _json(root / "config.json", llama_config())
    _json(root / "generation_config.json", {"bos_token_id": 1, "eos_token_id": [2, 3]})
    _json(root / "tokenizer_config.json", {"chat_template": TOOLS_TEMPLATE})
    (root / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE"}}')
    (root / "README.md").write_text("# sharded\n")
    (root / "LICENSE").write_text("Apache-2.0\n")
    (root / "pytorch_model.bin").write_bytes(b"\x80\x02pickle")
    (root / "onnx").mkdir()
    (root / "onnx" / "model.onnx").write_bytes(b"onnx")
    (root / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    return root


def gptq_repo(root: Path) -> Path:
    """A 4-bit GPTQ export: int32 ``qweight`` packing 8 values each, with scales and zeros."""
    root.mkdir(parents=True, exist_ok=True)
    tensors = _tensors({"model.embed_tokens.weight": (64, 32), "lm_head.weight": (64, 32)})
    tensors["model.norm.weight"] = np.zeros((32,), dtype="float16")
    prefix = "model.layers.0.mlp.down_proj"
    # A [in=32, out=48] linear layer: 32*48 weights, 8 per int32 along the input dimension.
    tensors[f"{prefix}.qweight"] = np.zeros((32 // 8, 48), dtype="int32")
    tensors[f"{prefix}.qzeros"] = np.zeros((1, 48 // 8), dtype="int32")
    tensors[f"{prefix}.scales"] = np.zeros((1, 48), dtype="float16")
    tensors[f"{prefix}.g_idx"] = np.zeros((32,), dtype="int32")
    save_file(tensors, str(root / "model.safetensors"))
    quantization = {"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": False}
    _json(root / "config.json", llama_config(quantization_config=quantization))
    return root


def diffusers_repo(root: Path) -> Path:
    """A Stable Diffusion layout: components in folders, fp16 variants, a root checkpoint."""
    _json(
        root / "model_index.json",
        {
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": "0.30.0",
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "scheduler": ["diffusers", "PNDMScheduler"],
        },
    )
    for component, shapes in {
        "unet": {"conv_in.weight": (8, 4, 3, 3), "conv_in.bias": (8,)},
        "vae": {"decoder.conv_out.weight": (3, 8, 3, 3)},
    }.items():
        _json(root / component / "config.json", {"_class_name": component})
        save_file(
            _tensors(shapes, "float32"),
            str(root / component / "diffusion_pytorch_model.safetensors"),
        )
        save_file(
            _tensors(shapes), str(root / component / "diffusion_pytorch_model.fp16.safetensors")
        )
    _json(root / "text_encoder" / "config.json", {"architectures": ["CLIPTextModel"]})
    save_file(
        _tensors({"embeddings.weight": (64, 16)}, "float32"),
        str(root / "text_encoder" / "model.safetensors"),
    )
    _json(root / "tokenizer" / "tokenizer_config.json", {"model_max_length": 77})
    (root / "tokenizer" / "merges.txt").write_text("#version: 0.2\n")
    _json(root / "tokenizer" / "vocab.json", {"a": 0})
    _json(root / "scheduler" / "scheduler_config.json", {"_class_name": "PNDMScheduler"})
    save_file(_tensors({"all.weight": (4, 4)}), str(root / "v1-5-pruned.safetensors"))
    (root / "README.md").write_text("# diffusers\n")
    return root


def write_gguf(path: Path, arch: str, file_type: int, *, template: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_context_length(2048)
    writer.add_file_type(file_type)
    if template:
        writer.add_chat_template(template)
    writer.add_tensor("token_embd.weight", np.zeros((64, 32), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.zeros((32,), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def multi_gguf_repo(root: Path) -> Path:
    """Three quantizations of one model and a vision projector, as GGUF repos publish them."""
    write_gguf(root / "tiny-Q4_K_M.gguf", "llama", int(gguf.LlamaFileType.MOSTLY_Q4_K_M),
               template=PLAIN_TEMPLATE)  # fmt: skip
    write_gguf(root / "tiny-Q8_0.gguf", "llama", int(gguf.LlamaFileType.MOSTLY_Q8_0))
    write_gguf(root / "tiny-F16.gguf", "llama", int(gguf.LlamaFileType.MOSTLY_F16))
    write_gguf(root / "mmproj-tiny-f16.gguf", "clip", int(gguf.LlamaFileType.MOSTLY_F16))
    (root / "README.md").write_text("# tiny GGUF\n")
    return root


def ambiguous_gguf_repo(root: Path) -> Path:
    """Two GGUF files whose names say nothing about their quantization."""
    write_gguf(root / "first.gguf", "llama", int(gguf.LlamaFileType.MOSTLY_Q8_0))
    write_gguf(root / "second.gguf", "llama", int(gguf.LlamaFileType.MOSTLY_F16))
    return root


def small_repo(root: Path) -> Path:
    """A one-file safetensors model (for the private and gated repositories)."""
    root.mkdir(parents=True, exist_ok=True)
    save_file(_tensors({"lm_head.weight": (16, 8)}), str(root / "model.safetensors"))
    _json(root / "config.json", llama_config())
    return root


def no_weights_repo(root: Path) -> Path:
    """Only PyTorch pickles and a config: nothing this worker can inspect safely."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytorch_model.bin").write_bytes(b"\x80\x02pickle")
    _json(root / "config.json", llama_config())
    (root / "README.md").write_text("# old model\n")
    return root
