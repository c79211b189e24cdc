"""The JSON Schemas of catalog protocol v1 (docs/schemas/), generated from the bodies in
``api.catalog_protocol`` so that the document and the code cannot drift:
``python -m catalog.schemas docs/schemas`` writes them; a unit test regenerates and compares.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from api.catalog_protocol import CatalogPage, ErrorBody, Grant, GrantRequest

BASE_ID = "https://ai.deckhouse.io/schemas/catalog/"
SCHEMAS: dict[str, type[BaseModel]] = {
    "catalog-v1.schema.json": CatalogPage,
    "grant-request-v1.schema.json": GrantRequest,
    "grant-v1.schema.json": Grant,
    "error-v1.schema.json": ErrorBody,
}


def schema_of(filename: str) -> dict[str, Any]:
    schema = SCHEMAS[filename].model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": BASE_ID + filename, **schema}  # fmt: skip


def rendered(filename: str) -> str:
    return json.dumps(schema_of(filename), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0] if args else "docs/schemas")
    for filename in SCHEMAS:
        (directory / filename).write_text(rendered(filename))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
