"""The file-selection rules, table by table: what is kept (with its role), what is dropped, why."""

from __future__ import annotations

import pytest

from worker.errors import (
    AmbiguousFormat,
    InvalidSource,
    InvalidWeights,
    NoSupportedWeights,
    SourceNotFound,
    WorkerError,
)
from worker.plan import WeightFormat
from worker.sources import selection
from worker.sources.selection import ListedFile, Selection, select_files


def _select(paths: list[str], gguf_file: str | None = None) -> Selection:
    return select_files([(p, 100) for p in paths], gguf_file=gguf_file, source="org/repo")


def _kept(result: Selection) -> list[tuple[str, str]]:
    return [(f.path, f.role) for f in result.files]


Case = tuple[list[str], str | None, WeightFormat, list[tuple[str, str]], list[str]]

CASES: dict[str, Case] = {
    "transformers repository": (
        ["model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
         "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "README.md",
         "LICENSE.txt", "USE_POLICY.md", ".gitattributes", "pytorch_model.bin", "onnx/model.onnx",
         "openvino/model.xml", "images/arch.png", "training_args.json"],
        None, "Safetensors",
        [("LICENSE.txt", "doc"), ("README.md", "doc"), ("USE_POLICY.md", "doc"),
         ("chat_template.jinja", "config"), ("config.json", "config"),
         ("generation_config.json", "config"), ("model.safetensors", "weight"),
         ("special_tokens_map.json", "config"), ("tokenizer.json", "config"),
         ("tokenizer_config.json", "config")],
        ["chose the safetensors weights model; dropped onnx/model.onnx, pytorch_model.bin",
         "dropped 5 file(s) not needed: images/arch.png, onnx/model.onnx, openvino/model.xml, "
         "pytorch_model.bin, training_args.json"],
    ),
    "sharded with index, beside a Mistral consolidated file": (
        ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
         "model.safetensors.index.json", "consolidated.safetensors", "params.json",
         "tekken.json", "config.json"],
        None, "Safetensors",
        [("config.json", "config"), ("model-00001-of-00002.safetensors", "weight"),
         ("model-00002-of-00002.safetensors", "weight"),
         ("model.safetensors.index.json", "config"), ("tekken.json", "config")],
        ["chose the safetensors weights model; dropped consolidated.safetensors",
         "dropped 2 file(s) not needed: consolidated.safetensors, params.json"],
    ),
    "a single file wins over shards of the same name, as transformers loads it": (
        ["model.safetensors", "model-00001-of-00001.safetensors", "model.safetensors.index.json"],
        None, "Safetensors", [("model.safetensors", "weight")],
        ["chose the safetensors weights model; dropped model-00001-of-00001.safetensors",
         "dropped 2 file(s) not needed: model-00001-of-00001.safetensors, "
         "model.safetensors.index.json"],
    ),
    "the only set, whatever its name (a PEFT adapter)": (
        ["adapter_model.safetensors", "adapter_config.json", "README.md"],
        None, "Safetensors",
        [("README.md", "doc"), ("adapter_config.json", "config"),
         ("adapter_model.safetensors", "weight")],
        [],
    ),
    "sentence-transformers modules and extra chat templates": (
        ["model.safetensors", "modules.json", "1_Pooling/config.json", "2_Dense/config.json",
         "2_Dense/model.safetensors", "2_Dense/pytorch_model.bin",
         "additional_chat_templates/tool_use.jinja", "additional_chat_templates/deep/x.jinja"],
        None, "Safetensors",
        [("1_Pooling/config.json", "config"), ("2_Dense/config.json", "config"),
         ("2_Dense/model.safetensors", "weight"),
         ("additional_chat_templates/tool_use.jinja", "config"),
         ("model.safetensors", "weight"), ("modules.json", "config")],
        ["chose the safetensors weights model; dropped 2_Dense/pytorch_model.bin",
         "dropped 2 file(s) not needed: 2_Dense/pytorch_model.bin, "
         "additional_chat_templates/deep/x.jinja"],
    ),
    "an incomplete set that is dropped anyway is no error": (
        ["model.safetensors", "original/x-00001-of-00002.safetensors"],
        None, "Safetensors", [("model.safetensors", "weight")],
        ["chose the safetensors weights model; dropped original/x-00001-of-00002.safetensors",
         "dropped 1 file(s) not needed: original/x-00001-of-00002.safetensors"],
    ),
    "safetensors preferred over GGUF files in the same repository": (
        ["model.safetensors", "model-Q4_K_M.gguf", "config.json"],
        None, "Safetensors", [("config.json", "config"), ("model.safetensors", "weight")],
        ["chose the safetensors weights model; dropped model-Q4_K_M.gguf",
         "dropped 1 file(s) not needed: model-Q4_K_M.gguf"],
    ),
    "Diffusers: one variant per component, no root checkpoint": (
        ["model_index.json", "README.md", "sd.safetensors", "sd.ckpt",
         "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
         "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.bin",
         "vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors",
         "vae/diffusion_pytorch_model.bf16.safetensors",
         "text_encoder/config.json", "text_encoder/model-00001-of-00002.safetensors",
         "text_encoder/model-00002-of-00002.safetensors",
         "text_encoder/model.safetensors.index.json", "text_encoder/model.fp16.safetensors",
         "tokenizer/merges.txt", "tokenizer/vocab.json", "tokenizer/tokenizer_config.json",
         "scheduler/scheduler_config.json", "safety_checker/config.json",
         "safety_checker/pytorch_model.bin", "unet/nested/extra.safetensors"],
        None, "Diffusers",
        [("README.md", "doc"), ("model_index.json", "config"),
         ("safety_checker/config.json", "config"), ("scheduler/scheduler_config.json", "config"),
         ("text_encoder/config.json", "config"),
         ("text_encoder/model-00001-of-00002.safetensors", "weight"),
         ("text_encoder/model-00002-of-00002.safetensors", "weight"),
         ("text_encoder/model.safetensors.index.json", "config"),
         ("tokenizer/merges.txt", "config"), ("tokenizer/tokenizer_config.json", "config"),
         ("tokenizer/vocab.json", "config"), ("unet/config.json", "config"),
         ("unet/diffusion_pytorch_model.safetensors", "weight"), ("vae/config.json", "config"),
         ("vae/diffusion_pytorch_model.fp16.safetensors", "weight")],
        ["component safety_checker/ has no safetensors weights; its weights are dropped",
         "chose the fp16 variant of vae/diffusion_pytorch_model",
         "dropped single-file checkpoints beside the pipeline: sd.ckpt, sd.safetensors",
         "dropped 8 file(s) not needed: safety_checker/pytorch_model.bin, sd.ckpt, "
         "sd.safetensors, text_encoder/model.fp16.safetensors, unet/diffusion_pytorch_model.bin "
         "and 3 more"],
    ),
    "one GGUF": (
        ["m.gguf", "README.md"], None, "GGUF", [("README.md", "doc"), ("m.gguf", "weight")], [],
    ),
    "several GGUFs: Q4_K_M first, projector kept": (
        ["x-Q8_0.gguf", "x-q4_k_m.gguf", "x-F16.gguf", "mmproj-x-f16.gguf", "mmproj-x-Q8_0.gguf"],
        None, "GGUF", [("mmproj-x-f16.gguf", "weight"), ("x-q4_k_m.gguf", "weight")],
        ["picked x-q4_k_m.gguf (Q4_K_M) by the default rule among 3 GGUF files "
         "(Q4_K_M, Q8_0, F16); select another with ?file=<path>.gguf",
         "kept vision projector mmproj-x-f16.gguf of 2",
         "dropped 3 file(s) not needed: mmproj-x-Q8_0.gguf, x-F16.gguf, x-Q8_0.gguf"],
    ),
    "several GGUFs without Q4_K_M: the preference order decides": (
        ["x.Q8_0.gguf", "x.Q6_K.gguf", "x.IQ4_XS.gguf", "x.BF16.gguf"],
        None, "GGUF", [("x.Q6_K.gguf", "weight")],
        ["picked x.Q6_K.gguf (Q6_K) by the default rule among 4 GGUF files "
         "(Q6_K, Q8_0, IQ4_XS, BF16); select another with ?file=<path>.gguf",
         "dropped 3 file(s) not needed: x.BF16.gguf, x.IQ4_XS.gguf, x.Q8_0.gguf"],
    ),
    "split GGUF sets count as one file each": (
        ["Q4_K_M/x-Q4_K_M-00001-of-00002.gguf", "Q4_K_M/x-Q4_K_M-00002-of-00002.gguf",
         "x-Q8_0.gguf"],
        None, "GGUF",
        [("Q4_K_M/x-Q4_K_M-00001-of-00002.gguf", "weight"),
         ("Q4_K_M/x-Q4_K_M-00002-of-00002.gguf", "weight")],
        ["picked Q4_K_M/x-Q4_K_M-00001-of-00002.gguf (Q4_K_M) by the default rule among 2 GGUF "
         "files (Q4_K_M, Q8_0); select another with ?file=<path>.gguf",
         "dropped 1 file(s) not needed: x-Q8_0.gguf"],
    ),
    "the selector picks a whole split set": (
        ["x-Q8_0-00001-of-00002.gguf", "x-Q8_0-00002-of-00002.gguf", "x-Q4_K_M.gguf"],
        "x-Q8_0-00002-of-00002.gguf", "GGUF",
        [("x-Q8_0-00001-of-00002.gguf", "weight"), ("x-Q8_0-00002-of-00002.gguf", "weight")],
        ["selected x-Q8_0-00002-of-00002.gguf with ?file=",
         "dropped 1 file(s) not needed: x-Q4_K_M.gguf"],
    ),
    "the selector wins over safetensors": (
        ["model.safetensors", "config.json", "gguf/model-f16.gguf"],
        "gguf/model-f16.gguf", "GGUF",
        [("config.json", "config"), ("gguf/model-f16.gguf", "weight")],
        ["selected gguf/model-f16.gguf with ?file=",
         "dropped 1 file(s) not needed: model.safetensors"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_selection(name: str) -> None:
    paths, gguf_file, fmt, kept, notes = CASES[name]
    result = _select(paths, gguf_file)
    assert (result.format, _kept(result), list(result.notes)) == (fmt, kept, notes)


FAILURES: dict[str, tuple[list[str], str | None, type[WorkerError], str]] = {
    "only PyTorch weights": (
        ["pytorch_model.bin", "tf_model.h5", "config.json"], None, NoSupportedWeights,
        "org/repo: no safetensors or GGUF weights; found weights in other formats: "
        "pytorch_model.bin, tf_model.h5",
    ),
    "no weights at all": (
        ["README.md"], None, NoSupportedWeights,
        "org/repo: no safetensors or GGUF weights; found 1 file(s) without weights: README.md",
    ),
    "empty": (
        [], None, NoSupportedWeights,
        "org/repo: no safetensors or GGUF weights; found no files at all",
    ),
    "Diffusers without safetensors": (
        ["model_index.json", "unet/diffusion_pytorch_model.bin"], None, NoSupportedWeights,
        "org/repo: a Diffusers pipeline (model_index.json) without safetensors weights in its "
        "component folders; found: unet/diffusion_pytorch_model.bin",
    ),
    "only a projector": (
        ["mmproj-f16.gguf"], None, NoSupportedWeights, "only GGUF vision projectors",
    ),
    "two safetensors sets, neither named model": (
        ["a.safetensors", "b.safetensors"], None, AmbiguousFormat,
        "root: several safetensors weight sets (a, b) and none is named model.safetensors; "
        "publish one set",
    ),
    "GGUFs without recognisable quantizations": (
        ["first.gguf", "second.gguf"], None, AmbiguousFormat,
        "several GGUF files (first.gguf, second.gguf) and the default rule cannot pick one; name "
        "the one to prepare with ?file=<path>.gguf",
    ),
    "two GGUFs of the preferred quantization": (
        ["a-Q4_K_M.gguf", "b-Q4_K_M.gguf"], None, AmbiguousFormat, "cannot pick one",
    ),
    "the selector names a missing file": (
        ["a-Q4_K_M.gguf"], "b.gguf", SourceNotFound,
        "b.gguf is not in the source; its GGUF files: a-Q4_K_M.gguf",
    ),
    "the selector names the projector": (
        ["a.gguf", "mmproj.gguf"], "mmproj.gguf", InvalidSource, "is a vision projector",
    ),
    "a missing shard": (
        ["model-00001-of-00003.safetensors", "model-00003-of-00003.safetensors"], None,
        InvalidWeights, "model: split weights are incomplete: shard(s) 2 of 3 are missing",
    ),
    "shards that disagree": (
        ["m-00001-of-00002.gguf", "m-00002-of-00003.gguf"], None, InvalidWeights,
        "shards disagree on their count",
    ),
    "a parent segment": (["../etc/x.safetensors"], None, InvalidWeights, "not a safe relative"),
    "an absolute path": (["/model.safetensors"], None, InvalidWeights, "not a safe relative"),
    "an empty segment": (["a//model.safetensors"], None, InvalidWeights, "not a safe relative"),
    "a backslash": (["a\\model.safetensors"], None, InvalidWeights, "not a safe relative"),
    "an overlong path": (["a/" * 600 + "m.safetensors"], None, InvalidWeights, "not a safe"),
    "a duplicate": (["m.safetensors", "m.safetensors"], None, InvalidWeights, "listed twice"),
}  # fmt: skip


@pytest.mark.parametrize("name", FAILURES)
def test_selection_failures(name: str) -> None:
    paths, gguf_file, error, message = FAILURES[name]
    with pytest.raises(error) as caught:
        _select(paths, gguf_file)
    assert message in caught.value.message


def test_sizes_and_digests_are_carried_into_the_plan() -> None:
    listing = [ListedFile("model.safetensors", 42, "ab" * 32), ListedFile("config.json", 7)]
    files = select_files(listing).files
    assert [(f.path, f.size, f.sha256) for f in files] == [
        ("config.json", 7, None),
        ("model.safetensors", 42, "ab" * 32),
    ]


def test_sizes_are_bounded() -> None:
    with pytest.raises(InvalidWeights, match="size -1 is out of bounds"):
        select_files([("model.safetensors", -1)])


def test_the_number_of_files_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selection, "MAX_FILES", 3)
    select_files([(f"{i}.safetensors", 1) for i in range(2)] + [("model.safetensors", 1)])
    with pytest.raises(InvalidWeights, match="more than 3 files"):
        select_files([(f"{i}.txt", 1) for i in range(4)])
