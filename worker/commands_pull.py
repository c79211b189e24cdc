"""The pull commands, ``materialize`` and ``materialize-pod``, wired for the CLI.

Apart from ``worker.commands`` on purpose: ``materialize-pod`` is the init container of every
consuming pod, so what it imports before its first request is paid on every pod start. This
module imports neither the sources, the inspection nor the publishing side (about 0.1 s of
imports at light load, docs/performance.md); ``tests/unit/worker/test_startup.py`` keeps it so.
Each returns the JSON-ready dict the CLI prints; failures are ``WorkerError``s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from api import protocol
from worker.environment import env_path, registry_options
from worker.materialize_pod import materialize_pod as pull_pod
from worker.oci.materialize import materialize as pull


def materialize(ref: str, dest: Path) -> dict[str, Any]:
    done = pull(ref, dest, **registry_options())
    return {
        "reference": done.reference,
        "digest": done.digest,
        "directory": str(done.directory),
        "files": [
            {"path": f.path, "size": f.size, "digest": f.digest, "skipped": f.skipped}
            for f in done.files
        ],
    }


def materialize_pod(digests: Path, token: Path, endpoint: str, dest: Path) -> dict[str, Any]:
    done = pull_pod(
        digests,
        token,
        endpoint,
        dest,
        namespace=os.environ.get(protocol.ENV_POD_NAMESPACE) or None,
        ca_file=env_path("AI_MODELS_DELIVERY_CA"),
    )
    return {
        "models": [
            {"directory": str(m.directory), "digest": m.digest, "files": len(m.files)} for m in done
        ]
    }
