"""The images of the real test node, built from this working tree's Dockerfiles.

``hack/build-images.sh`` builds them with buildah (no image registry: the ``python:3.11-slim``
base is a debootstrap stand-in, the pause image a static Go program, both cached) and writes
OCI archives; ``import_images`` loads them into the node's containerd (``k8s.io`` namespace),
where the kubelet finds them with ``imagePullPolicy: Never``.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.ground.node import RealNode

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "hack" / "build-images.sh"
TAG = "node"
WORKER_IMAGE = f"ai-models-worker:{TAG}"
CONTROLLER_IMAGE = f"ai-models-controller:{TAG}"
ARCHIVES = ("pause", "worker", "controller")


@dataclass(frozen=True)
class BuiltImages:
    directory: Path
    build_seconds: float
    log: str


def build_images() -> BuiltImages:
    """Runs the build script (a few seconds when nothing changed); its archives' directory."""
    started = time.monotonic()
    result = subprocess.run(
        [str(BUILD_SCRIPT)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "AI_MODELS_IMAGE_TAG": TAG},
    )
    if result.returncode != 0:
        raise RuntimeError(f"hack/build-images.sh failed:\n{result.stderr[-4000:]}")
    directory = Path(result.stdout.strip().splitlines()[-1])
    return BuiltImages(directory, time.monotonic() - started, result.stderr)


def import_images(node: RealNode, images: BuiltImages) -> None:
    for name in ARCHIVES:
        node.import_image(images.directory / f"{name}.tar")
