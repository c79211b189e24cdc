"""Which files of a listing make the model: one weight format, its companions, nothing else.

Pure rules over ``(path, size[, sha256])`` entries, shared by every provider that lists a tree
(the Hub, a local directory). In order:

1. ``?file=<path>.gguf`` given: that GGUF (all shards of a split file), plus a vision projector.
2. ``model_index.json`` at the root: Diffusers. Every top-level component folder keeps its
   configs and one safetensors set (the plain one, else the fp16, else the bf16 variant).
3. safetensors at the root: one set, ``model.safetensors`` or ``model.safetensors.index.json``
   with its shards (the only set when there is one; several other sets are ambiguous), plus
   sentence-transformers module folders (``1_Pooling/``…).
4. GGUF files: the only one, or the default rule: the first quantization of
   ``GGUF_PREFERENCE`` present (Q4_K_M first: the usual balance of size and quality).
5. nothing of the above: ``NoSupportedWeights`` naming what was found.

Companions kept in every case: the config, tokenizer, chat-template and processor files of
``CONFIG_NAMES``, ``*.jinja``, ``*.tiktoken``, and README/LICENSE/NOTICE as docs. Everything else
(PyTorch ``.bin``, ONNX, OpenVINO, images, ``.git*``…) is dropped, and the notes say so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from worker.errors import (
    AmbiguousFormat,
    InvalidSource,
    InvalidWeights,
    NoSupportedWeights,
    SourceNotFound,
)
from worker.plan import FileRole, PlannedFile, WeightFormat

MAX_FILES = 100_000
MAX_PATH_LENGTH = 1024
MAX_SEGMENT_LENGTH = 255
MAX_FILE_SIZE = 1 << 50
NOTE_NAME_LIMIT = 5

CONFIG_NAMES = frozenset(
    {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
     "tokenizer.model", "special_tokens_map.json", "added_tokens.json", "vocab.json",
     "vocab.txt", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tekken.json",
     "chat_template.json", "chat_template.jinja", "preprocessor_config.json",
     "processor_config.json", "video_preprocessor_config.json", "feature_extractor_config.json",
     "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
     "quantize_config.json", "quant_config.json", "adapter_config.json", "model_index.json"}
)  # fmt: skip
"""Companion files kept at the root of every model (and inside Diffusers components)."""
DOC_PREFIXES = ("readme", "license", "licence", "notice", "use_policy")
GGUF_PREFERENCE = (
    "Q4_K_M", "Q4_K_S", "Q5_K_M", "Q5_K_S", "Q6_K", "Q8_0", "Q4_0", "IQ4_XS", "IQ4_NL",
    "Q4_1", "Q5_0", "Q5_1", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "BF16", "F16", "F32",
)  # fmt: skip
"""The default rule's order among several GGUF quantizations: the first one present wins."""
PROJECTOR_PREFERENCE = ("F16", "BF16", "Q8_0", "F32")
VARIANT_PREFERENCE: tuple[str | None, ...] = (None, "fp16", "bf16", "fp32")
VARIANT_NAMES = frozenset({"fp16", "bf16", "fp32", "fp8", "ema", "non_ema"})
"""Diffusers/transformers ``variant`` infixes: ``diffusion_pytorch_model.fp16.safetensors``."""
OTHER_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".pkl",
                         ".npz", ".tflite", ".mlmodel", ".ot", ".gguf", ".safetensors")  # fmt: skip

_SHARD = re.compile(r"^(?P<core>.+)-(?P<index>\d{1,6})-of-(?P<total>\d{1,6})$")
_QUANT_LABEL = re.compile(
    r"(?<![A-Za-z0-9])(I?Q[1-8](?:_[0-9A-Z]{1,2})*|BF16|F16|F32)(?![A-Za-z0-9])", re.IGNORECASE
)
_MODULE_FOLDER = re.compile(r"^\d+_\w+$")


@dataclass(frozen=True)
class ListedFile:
    path: str
    size: int
    sha256: str | None = None


@dataclass(frozen=True)
class Selection:
    format: WeightFormat
    files: tuple[PlannedFile, ...]
    """Sorted by path."""
    notes: tuple[str, ...] = ()


@dataclass
class _WeightSet:
    """One loadable set of weight files: a single file, or every shard of a split file."""

    folder: str
    name: str
    """Base name without shard suffix and extension, e.g. ``model`` or ``tiny-Q4_K_M``."""
    variant: str | None
    files: list[ListedFile] = field(default_factory=list)
    totals: set[int] = field(default_factory=set)
    indexes: set[int] = field(default_factory=set)

    @property
    def label(self) -> str:
        return f"{self.folder}/{self.name}" if self.folder else self.name

    @property
    def sharded(self) -> bool:
        return bool(self.totals)


def select_files(
    listing: Iterable[ListedFile | tuple[str, int]],
    *,
    gguf_file: str | None = None,
    source: str = "the source",
) -> Selection:
    """Choose the model's files from a listing (see the module docstring for the rules)."""
    files = _validated(listing)
    fmt: WeightFormat
    if gguf_file is not None:
        fmt, (kept, notes) = "GGUF", _select_gguf(files, gguf_file)
    elif any(f.path == "model_index.json" for f in files):
        fmt, (kept, notes) = "Diffusers", _select_diffusers(files, source)
    elif any(s.folder == "" for s in _weight_sets(files, ".safetensors")):
        fmt, (kept, notes) = "Safetensors", _select_safetensors(files)
    elif _weight_sets(files, ".gguf"):
        fmt, (kept, notes) = "GGUF", _select_gguf(files, None)
    else:
        raise NoSupportedWeights(_nothing_supported(files, source))
    kept |= {f.path for f in files if "/" not in f.path and _companion_role(f.path)}
    kept |= {f.path for f in files if f.path.startswith("additional_chat_templates/")
             and f.path.endswith(".jinja") and f.path.count("/") == 1}  # fmt: skip
    planned = tuple(_planned(f) for f in files if f.path in kept)
    return Selection(format=fmt, files=planned, notes=(*notes, *_dropped_note(files, kept)))


# ---- listing ----------------------------------------------------------------------------------


def _validated(listing: Iterable[ListedFile | tuple[str, int]]) -> list[ListedFile]:
    files: list[ListedFile] = []
    seen: set[str] = set()
    for entry in listing:
        if len(files) >= MAX_FILES:
            raise InvalidWeights(
                f"the source lists more than {MAX_FILES} files; this is not a model this worker "
                "prepares"
            )
        item = entry if isinstance(entry, ListedFile) else ListedFile(entry[0], entry[1])
        _check_path(item.path)
        if not 0 <= item.size <= MAX_FILE_SIZE:
            raise InvalidWeights(f"{item.path}: size {item.size} is out of bounds")
        if item.path in seen:
            raise InvalidWeights(f"{item.path}: listed twice")
        seen.add(item.path)
        files.append(item)
    return sorted(files, key=lambda f: f.path)


def _check_path(path: str) -> None:
    # Paths become file names in the artifact and on disk: nothing absolute, no parent segment.
    segments = path.split("/")
    if (
        not path
        or len(path) > MAX_PATH_LENGTH
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or any(s in ("", ".", "..") or len(s) > MAX_SEGMENT_LENGTH for s in segments)
    ):
        raise InvalidWeights(f"{path[:200]!r}: not a safe relative file path")


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _folder(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _companion_role(path: str) -> FileRole | None:
    name = _basename(path)
    lower = name.lower()
    if name in CONFIG_NAMES or lower.endswith((".jinja", ".tiktoken")):
        return "config"
    if lower.startswith(DOC_PREFIXES) and not lower.endswith(OTHER_WEIGHT_SUFFIXES):
        return "doc"
    return None


def _planned(f: ListedFile) -> PlannedFile:
    lower = f.path.lower()
    role: FileRole = "weight" if lower.endswith((".safetensors", ".gguf")) else "config"
    if "/" not in f.path and _companion_role(f.path) == "doc":
        role = "doc"
    return PlannedFile(path=f.path, size=f.size, role=role, sha256=f.sha256)


# ---- weight sets ------------------------------------------------------------------------------


def _weight_sets(files: Sequence[ListedFile], extension: str) -> list[_WeightSet]:
    sets: dict[tuple[str, str, str | None, bool], _WeightSet] = {}
    for f in files:
        name = _basename(f.path)
        if not name.lower().endswith(extension):
            continue
        stem = name[: -len(extension)]
        shard = _SHARD.match(stem)
        core = shard.group("core") if shard else stem
        base, _, variant = core.rpartition(".")
        if extension != ".safetensors" or variant not in VARIANT_NAMES:
            base, variant = core, ""
        key = (_folder(f.path), base, variant or None, shard is not None)
        group = sets.setdefault(key, _WeightSet(key[0], base, key[2]))
        group.files.append(f)
        if shard:
            group.totals.add(int(shard.group("total")))
            group.indexes.add(int(shard.group("index")))
    return sorted(sets.values(), key=lambda s: (s.folder, s.name, s.variant or "", s.sharded))


def _check_complete(group: _WeightSet) -> None:
    """A chosen split set must have every shard (sets we drop may be as broken as they like)."""
    if not group.sharded:
        return
    if len(group.totals) > 1:
        raise InvalidWeights(f"{group.label}: shards disagree on their count: {group.totals}")
    (total,) = group.totals
    missing = sorted(set(range(1, total + 1)) - group.indexes)
    if missing:
        raise InvalidWeights(
            f"{group.label}: split weights are incomplete: shard(s) "
            f"{', '.join(map(str, missing[:10]))} of {total} are missing"
        )


def _index_paths(chosen: _WeightSet, files: Sequence[ListedFile]) -> set[str]:
    """The chosen set's ``<name>.safetensors.index[.<variant>].json``, when the listing has it.

    Only a sharded set takes its index: beside a single file, an index names shards we drop.
    """
    if not chosen.sharded:
        return set()
    suffix = f".{chosen.variant}" if chosen.variant else ""
    name = f"{chosen.name}.safetensors.index{suffix}.json"
    path = f"{chosen.folder}/{name}" if chosen.folder else name
    return {f.path for f in files if f.path == path}


def _choose_safetensors(
    sets: Sequence[_WeightSet], preferred: Sequence[str], where: str
) -> tuple[_WeightSet, list[str]]:
    names = sorted({s.name for s in sets})
    name = next((n for n in preferred if n in names), names[0] if len(names) == 1 else None)
    if name is None:
        raise AmbiguousFormat(
            f"{where}: several safetensors weight sets ({', '.join(names[:10])}) and none is "
            f"named {' or '.join(n + '.safetensors' for n in preferred)}; publish one set"
        )
    candidates = [s for s in sets if s.name == name]
    rank = {v: i for i, v in enumerate(VARIANT_PREFERENCE)}
    # The plain (non-variant) set first, as transformers loads it; a single file before shards.
    chosen = min(
        candidates, key=lambda s: (rank.get(s.variant, len(rank)), s.variant or "", s.sharded)
    )
    _check_complete(chosen)
    notes = [f"chose the {chosen.variant} variant of {chosen.label}"] if chosen.variant else []
    return chosen, notes


# ---- the three formats ------------------------------------------------------------------------


def _select_safetensors(files: Sequence[ListedFile]) -> tuple[set[str], list[str]]:
    sets = _weight_sets(files, ".safetensors")
    chosen, notes = _choose_safetensors([s for s in sets if s.folder == ""], ("model",), "root")
    kept = {f.path for f in chosen.files} | _index_paths(chosen, files)
    for folder in sorted({s.folder for s in sets} | {_folder(f.path) for f in files}):
        if _MODULE_FOLDER.match(folder):  # sentence-transformers modules: 1_Pooling, 2_Dense…
            kept |= _component(folder, files, sets, ("model",), notes)
    if others := _other_weights(files, kept):
        notes.append(f"chose the safetensors weights {chosen.label}; dropped {_names(others)}")
    return kept, notes


def _select_diffusers(files: Sequence[ListedFile], source: str) -> tuple[set[str], list[str]]:
    sets = _weight_sets(files, ".safetensors")
    notes: list[str] = []
    kept = {"model_index.json"}
    folders = sorted({f.path.split("/", 1)[0] for f in files if f.path.count("/") == 1})
    for folder in folders:
        kept |= _component(folder, files, sets, ("diffusion_pytorch_model", "model"), notes)
    if not any(p.endswith(".safetensors") for p in kept):
        raise NoSupportedWeights(
            f"{source}: a Diffusers pipeline (model_index.json) without safetensors weights in "
            f"its component folders; found: {_names(_other_weights(files, kept)) or 'no weights'}"
        )
    if root_weights := [f for f in files if "/" not in f.path and _is_weight_like(f.path)]:
        notes.append(f"dropped single-file checkpoints beside the pipeline: {_names(root_weights)}")
    return kept, notes


def _component(
    folder: str,
    files: Sequence[ListedFile],
    sets: Sequence[_WeightSet],
    preferred: Sequence[str],
    notes: list[str],
) -> set[str]:
    """One folder's configs and its chosen safetensors set (a Diffusers or ST component)."""
    inside = [f for f in files if _folder(f.path) == folder]
    kept = {f.path for f in inside if _is_component_config(_basename(f.path))}
    own = [s for s in sets if s.folder == folder]
    if own:
        chosen, chosen_notes = _choose_safetensors(own, preferred, folder)
        notes.extend(chosen_notes)
        kept |= {f.path for f in chosen.files} | _index_paths(chosen, files)
    elif any(_is_weight_like(f.path) for f in inside):
        notes.append(f"component {folder}/ has no safetensors weights; its weights are dropped")
    return kept


def _is_component_config(name: str) -> bool:
    if ".safetensors.index" in name:
        return False  # an index belongs to its set and is kept only with the chosen one
    return name in CONFIG_NAMES or name.endswith((".json", ".txt", ".model", ".jinja"))


def _select_gguf(files: Sequence[ListedFile], wanted: str | None) -> tuple[set[str], list[str]]:
    sets = _weight_sets(files, ".gguf")
    projectors = [s for s in sets if "mmproj" in s.name.lower()]
    models = [s for s in sets if s not in projectors]
    if wanted is not None:
        chosen = next((s for s in sets if any(f.path == wanted for f in s.files)), None)
        if chosen is None:
            listed = _names([f for s in models for f in s.files])
            raise SourceNotFound(f"{wanted} is not in the source; its GGUF files: {listed}")
        if chosen in projectors:
            raise InvalidSource(f"{wanted} is a vision projector; select the model's GGUF file")
        notes = [f"selected {wanted} with ?file="]
    elif len(models) == 1:
        chosen, notes = models[0], []
    else:
        chosen, notes = _default_gguf(models)
    _check_complete(chosen)
    kept = {f.path for f in chosen.files}
    if projectors:
        projector, projector_notes = _projector(projectors)
        kept |= {f.path for f in projector.files}
        notes.extend(projector_notes)
    return kept, notes


def _label(weight_set: _WeightSet) -> str | None:
    labels = _QUANT_LABEL.findall(weight_set.name)
    return labels[-1].upper() if labels else None


def _default_gguf(models: Sequence[_WeightSet]) -> tuple[_WeightSet, list[str]]:
    if not models:
        raise NoSupportedWeights("the source has only GGUF vision projectors, no model GGUF")
    by_label: dict[str, list[_WeightSet]] = {}
    for model in models:
        by_label.setdefault(_label(model) or "", []).append(model)
    label = next((q for q in GGUF_PREFERENCE if q in by_label), None)
    names = ", ".join(m.label + ".gguf" for m in models[:20])
    if label is None or len(by_label[label]) > 1:
        raise AmbiguousFormat(
            f"several GGUF files ({names}) and the default rule cannot pick one; name the one "
            "to prepare with ?file=<path>.gguf"
        )
    chosen = by_label[label][0]
    present = ", ".join(q for q in GGUF_PREFERENCE if q in by_label)
    return chosen, [
        f"picked {chosen.files[0].path} ({label}) by the default rule among {len(models)} GGUF "
        f"files ({present}); select another with ?file=<path>.gguf"
    ]


def _projector(projectors: Sequence[_WeightSet]) -> tuple[_WeightSet, list[str]]:
    if len(projectors) == 1:
        return projectors[0], []
    labelled = {_label(p): p for p in reversed(projectors)}
    label = next((q for q in PROJECTOR_PREFERENCE if q in labelled), None)
    chosen = labelled[label] if label else projectors[0]
    return chosen, [f"kept vision projector {chosen.files[0].path} of {len(projectors)}"]


# ---- notes and messages -----------------------------------------------------------------------


def _is_weight_like(path: str) -> bool:
    return path.lower().endswith(OTHER_WEIGHT_SUFFIXES)


def _other_weights(files: Sequence[ListedFile], kept: set[str]) -> list[ListedFile]:
    return [f for f in files if f.path not in kept and _is_weight_like(f.path)]


def _names(files: Sequence[ListedFile]) -> str:
    shown = ", ".join(f.path for f in files[:NOTE_NAME_LIMIT])
    more = len(files) - NOTE_NAME_LIMIT
    return shown + (f" and {more} more" if more > 0 else "")


def _dropped_note(files: Sequence[ListedFile], kept: set[str]) -> list[str]:
    # Dotfiles (.gitattributes…) are in every repository; naming them would only be noise.
    dropped = [f for f in files if f.path not in kept and not _basename(f.path).startswith(".")]
    return [f"dropped {len(dropped)} file(s) not needed: {_names(dropped)}"] if dropped else []


def _nothing_supported(files: Sequence[ListedFile], source: str) -> str:
    weights = [f for f in files if _is_weight_like(f.path)]
    if weights:
        found = f"weights in other formats: {_names(weights)}"
    elif files:
        found = f"{len(files)} file(s) without weights: {_names(files)}"
    else:
        found = "no files at all"
    return f"{source}: no safetensors or GGUF weights; found {found}"
