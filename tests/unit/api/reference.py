"""A parser of the API reference (docs/api-reference.txt), the authoritative text of the API.

The reference is rendered documentation: per kind a header, then one bullet per field with its
type, whether it is required, its description and its constraints. The parser turns it into
``ReferenceField`` records that tests compare with the generated CRDs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[3] / "docs" / "api-reference.txt"
KINDS = ("ClusterModel", "ModelCatalogSource", "Model")
TYPES = ("string", "object", "integer", "array of objects", "array of strings", "boolean")


@dataclass
class ReferenceField:
    path: str
    type: str = ""
    required: bool = False
    description: str = ""
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    minimum: int | None = None
    enum: list[str] | None = None
    _text: list[str] = field(default_factory=list)


@dataclass
class ReferenceKind:
    kind: str
    scope: str
    description: str
    fields: dict[str, ReferenceField]


def _apply(entry: ReferenceField, line: str) -> None:
    if line in TYPES and not entry.type:
        entry.type = line
    elif line == "Required value":
        entry.required = True
    elif m := re.fullmatch(r"Length: (\d+)\.\.(\d+)", line):
        entry.min_length, entry.max_length = int(m[1]), int(m[2])
    elif m := re.fullmatch(r"Minimal length: (\d+)", line):
        entry.min_length = int(m[1])
    elif m := re.fullmatch(r"Maximum length: (\d+)", line):
        entry.max_length = int(m[1])
    elif m := re.fullmatch(r"Pattern: (.+)", line):
        entry.pattern = m[1]
    elif m := re.fullmatch(r"Allowed values: (\d+) <= X", line):
        entry.minimum = int(m[1])
    elif m := re.fullmatch(r"Allowed values: (.+)", line):
        entry.enum = [v.strip() for v in m[1].split(",")]
    else:
        entry._text.append(line)


def parse_reference(text: str | None = None) -> dict[str, ReferenceKind]:
    lines = [ln.strip() for ln in (text or REFERENCE.read_text()).splitlines()]
    kinds: dict[str, ReferenceKind] = {}
    current: ReferenceKind | None = None
    entry: ReferenceField | None = None
    for i, line in enumerate(lines):
        if line in KINDS and i + 2 < len(lines) and lines[i + 2].startswith("Scope: "):
            scope = lines[i + 2].removeprefix("Scope: ")
            current = kinds[line] = ReferenceKind(line, scope, lines[i + 5], {})
            entry = None
        elif current is not None and line.startswith("• "):
            path = line.removeprefix("• ")
            entry = current.fields[path] = ReferenceField(path)
        elif entry is not None and line:
            _apply(entry, line)
    for kind in kinds.values():
        for f in kind.fields.values():
            f.description = normalize(" ".join(f._text))
    return kinds


def normalize(text: str) -> str:
    return " ".join(text.replace("\u2019", "'").split())
