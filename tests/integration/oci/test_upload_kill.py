"""A worker killed while a download's PATCH is open, against the real docker-registry: the
registry cancels the session (its size no longer matches the offset the saved location names),
and the next run sees that and sends the blob again from its start, in a new session."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from oci.registry import RegistryClient
from tests.ground.registry import Registry
from worker.oci.upload import BlobUpload, UploadSessions

pytestmark = pytest.mark.integration

MIB = 1 << 20
SEGMENT = 2 * MIB
# The child uploads the file as a download goes (read ahead by a thread), in PATCHes of
# SEGMENT bytes so that a location past the start is saved, from a source that stalls after
# 3 MiB: the second PATCH is open, 1 MiB of it sent, when the child is killed.
CHILD = """
import sys, time
from pathlib import Path
from oci.registry import RegistryClient
from worker.oci.upload import BlobUpload, UploadSessions

host, repository, data, state, digest, segment = sys.argv[1:7]
path = Path(data)

def source(offset):
    with path.open("rb") as file:
        file.seek(offset)
        while piece := file.read(1 << 20):
            if file.tell() > 3 << 20:
                time.sleep(600)  # the 4th MiB never comes
            yield piece

sent = []

def on_bytes(count):
    sent.append(count)
    if sum(sent) == 3 << 20:  # the first segment was answered, the third MiB goes out
        print("sending", flush=True)

client = RegistryClient(host, insecure=True)
upload = BlobUpload(
    client, repository, UploadSessions(Path(state)), source, path.stat().st_size, digest,
    segment_size=int(segment),
)
upload.run(on_bytes)
"""


def _status(location: str) -> int:
    try:
        with urllib.request.urlopen(location, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_a_worker_killed_mid_patch_loses_the_session_and_the_next_run_starts_over(
    registry: Registry, tmp_path: Path
) -> None:
    data = tmp_path / "weights.bin"
    data.write_bytes(os.urandom(12 * MIB))  # more than a chunk: not sent in the PUT
    digest = "sha256:" + hashlib.sha256(data.read_bytes()).hexdigest()
    state, repository = tmp_path / "uploads.json", "ai-models/test/killed"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, registry.host, repository, str(data), str(state), digest,
         str(SEGMENT)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "sending\n"
        time.sleep(1)  # the piece handed to the connection reaches the registry
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    # The first segment was answered: its location is the last one saved.
    location = json.loads(state.read_text())[digest]
    assert _status(location) == 404  # docker-registry cancelled the session

    offsets: list[int] = []

    def source(offset: int) -> Iterator[bytes]:
        offsets.append(offset)
        with data.open("rb") as file:
            file.seek(offset)
            while piece := file.read(MIB):
                yield piece

    client = RegistryClient(registry.host, insecure=True)
    sessions = UploadSessions(state)
    upload = BlobUpload(
        client, repository, sessions, source, 12 * MIB, digest, segment_size=SEGMENT
    )
    assert upload.run(lambda _: None) == digest
    assert offsets == [0]  # the lost session was noticed: a new one, from the start
    assert json.loads(state.read_text()) == {}
    url = f"{registry.url}/v2/{repository}/blobs/{digest}"
    with urllib.request.urlopen(url, timeout=60) as response:
        assert response.read() == data.read_bytes()
