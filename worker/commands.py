"""The prepare-side commands, wired from the parts: sources → inspection → publish (the pull
commands are in ``commands_pull``, which imports none of this).

Each returns the JSON-ready dict the CLI prints; failures are ``WorkerError``s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import structlog

from api import protocol
from worker import shutdown
from worker.environment import env_path, registry_options
from worker.errors import InsufficientStorage, InvalidSource
from worker.inspect.resolve import inspect_source
from worker.oci.publish import publish
from worker.oci.target import parse_destination
from worker.plan import Source
from worker.podreport import Annotator, patch_with_retries, pod_annotator_from_env
from worker.progress import ProgressReporter
from worker.sources import open_source, parse_source
from worker.sources.settings import SourceSettings
from worker.sources.spec import CatalogSpec, UploadSpec

log = structlog.get_logger("worker")


def _float_env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def _files(plan: Any) -> list[dict[str, Any]]:
    return [
        {
            "path": f.path,
            "size": f.size,
            "role": f.role,
            **({"sha256": f.sha256} if f.sha256 else {}),
        }
        for f in plan.files
    ]


def _open_source(spec: str) -> Source:
    """The source; an upload reads its blob with the registry settings of publishing (its
    module, with the archive readers, is imported for an upload only)."""
    upload = None
    if isinstance(parse_source(spec), UploadSpec):
        from worker.sources.upload import UploadSettings

        upload = UploadSettings.from_env(registry_options())
    return open_source(spec, SourceSettings.from_env(), upload)


def inspect(spec: str) -> dict[str, Any]:
    source = _open_source(spec)
    inspection = inspect_source(source)
    return {
        "resolved": inspection.resolved.to_wire(),
        "source": inspection.source_status.to_wire(),
        "files": _files(inspection.plan),
        "notes": list(inspection.plan.notes),
    }


def describe(found: dict[str, Any]) -> str:
    """``inspect`` without ``--json``: a summary a person reads."""
    lines = [f"{key:<24} {value}" for key, value in found["resolved"].items()]
    source = found["source"]
    if source:
        lines.append(
            f"{'source':<24} {source.get('resolvedType')} @ {source.get('resolvedRevision')}"
        )
    lines.append(f"{'files':<24} {len(found['files'])}")
    for entry in found["files"]:
        lines.append(f"  {entry['role']:<7} {entry['size']:>14,}  {entry['path']}")
    lines += [f"note: {note}" for note in found["notes"]]
    return "\n".join(lines) + "\n"


def prepare(spec: str, dest: str) -> dict[str, Any]:
    annotator = pod_annotator_from_env()
    interval = _float_env(protocol.ENV_AI_MODELS_PROGRESS_INTERVAL, 2.0)
    concurrency = int(_float_env(protocol.ENV_AI_MODELS_TRANSFER_CONCURRENCY, 3))
    parsed = parse_source(spec)
    if isinstance(parsed, CatalogSpec):
        return _prepare_from_catalog(parsed, dest, annotator, interval)
    # Both arguments are checked before any traffic (opening a source only parses it), the
    # source first: a refused source must not leave a new, empty layout directory behind.
    source = _open_source(spec)
    upload_state = _upload_state(env_path(protocol.ENV_AI_MODELS_WORKSPACE))
    target = parse_destination(dest, upload_state=upload_state, **registry_options())
    starting = ProgressReporter(0, annotator, interval=interval)
    starting.stage("inspecting")
    inspection = inspect_source(source)
    plan = inspection.plan
    log.info(
        "inspected",
        source=spec,
        revision=plan.revision,
        format=plan.format,
        files=len(plan.files),
        bytes=plan.total_bytes,
        notes=list(plan.notes),
        resolved=inspection.resolved.to_wire(),
    )
    reporter = ProgressReporter(plan.total_bytes, annotator, interval=interval)
    try:
        artifact = publish(
            plan,
            source,
            inspection.resolved,
            target,
            progress=reporter,
            concurrency=concurrency,
            terminated=shutdown.STOP,
        )
    except InsufficientStorage as error:
        needed = f" (the model's files take {plan.total_bytes:,} bytes)"
        raise InsufficientStorage(error.message + needed) from error
    result = protocol.WorkerResult(
        artifact=artifact.to_status(),
        resolved=inspection.resolved,
        source=inspection.source_status,
    )
    log.info(
        "published", reference=artifact.reference, digest=artifact.digest, size=artifact.size_bytes
    )
    return _reported(result, annotator)


def _reported(result: protocol.WorkerResult, annotator: Annotator | None) -> dict[str, Any]:
    if annotator is not None:
        patch_with_retries(
            annotator,
            {
                protocol.ANNOTATION_PROGRESS: "100",
                protocol.ANNOTATION_RESULT: result.to_annotation(),
            },
        )
    return result.to_wire()


def _prepare_from_catalog(
    spec: CatalogSpec, dest: str, annotator: Annotator | None, interval: float
) -> dict[str, Any]:
    """A catalog import: the artifact copied by digest, not inspected nor rebuilt."""
    grant_file = env_path(protocol.ENV_AI_MODELS_CATALOG_GRANT_FILE)
    if grant_file is None:
        raise InvalidSource(f"{protocol.ENV_AI_MODELS_CATALOG_GRANT_FILE} names no grant file")
    workspace = env_path(protocol.ENV_AI_MODELS_WORKSPACE)
    options = registry_options()
    target = parse_destination(dest, upload_state=_upload_state(workspace), **options)
    from worker.sources.catalog import import_from_catalog

    result, copied = import_from_catalog(
        spec, grant_file, target, workspace=workspace,
        progress=lambda total: ProgressReporter(total, annotator, interval=interval),
        settings=options.get("settings"),
    )  # fmt: skip
    artifact = copied.published
    log.info(
        "copied from the catalog", reference=artifact.reference, digest=artifact.digest,
        size=artifact.size_bytes, blobs_copied=len(copied.copied),
        blobs_skipped=len(copied.skipped),
    )  # fmt: skip
    return _reported(result, annotator)


def _upload_state(workspace: Path | None) -> Path | None:
    """Where open upload sessions are kept for a restarted pod: the workspace volume the Job
    mounts. Without ``AI_MODELS_WORKSPACE`` (a laptop) they stay in memory, and nothing is
    written into the current directory."""
    if workspace is None:
        return None
    directory = workspace / ".ai-models"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return directory / "uploads.json"
