"""Upload benchmark: SIZE bytes through the upload gateway (POST, PATCH in 8 MiB requests with
Upload-Offset, commit — what ``ai-models upload`` does) against the same bytes sent straight into
the registry's chunked upload (POST, PATCH 8 MiB chunks, PUT ?digest=), in one run; prints the
throughput of each, their ratio (goal >= 0.8) and the gateway's peak RSS (VmHWM of its process;
goal <= 150 MiB, flat from 1 GiB to 4 GiB).

The ground is the tests' one: a local kube-apiserver (the session records), a local
docker-registry, one gateway replica as ``python -m gateway`` (tests/ground/gateway.py). The
bytes are made on the fly from a few random 8 MiB blocks (each chunk stamped with its index),
identical for both paths; their sha256 is computed before the clock starts. Each run starts
after ``sync`` and the order alternates per round: otherwise the second run of a pair pays for
the first one's writeback. The token check is
measured too: sha256 + ``hmac.compare_digest`` for a token wrong in its first byte and one
wrong in its last byte (medians of many in-process calls), and the same over HTTP (401 round
trips, spread over sessions to stay under the per-session rate limit).

    .venv/bin/python bench/bench_upload.py [--quick] [--sizes-mib 1024 4096] [--rounds 3]

Not a test: figures vary with the machine; docs/performance.md records them.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from api.upload import (  # noqa: E402
    RECORD_KEY,
    SessionRecord,
    UploadOwner,
    new_token,
    record_name,
    staging_repository,
    token_sha256,
)
from controller.kube import SECRETS, KubeClient, Resource, load_api_client  # noqa: E402
from gateway.auth import tokens_match  # noqa: E402
from tests.ground.controlplane import run_control_plane  # noqa: E402
from tests.ground.gateway import GatewayReplica, start_gateway  # noqa: E402
from tests.ground.registry import run_registry  # noqa: E402

MIB = 1 << 20
CHUNK = 8 * MIB
SYSTEM = "bench-upload"
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", False)
_BLOCKS = [os.urandom(CHUNK) for _ in range(4)]


def chunks(size: int) -> Iterator[bytes]:
    for index, start in enumerate(range(0, size, CHUNK)):
        block = _BLOCKS[index % len(_BLOCKS)]
        yield (index.to_bytes(8, "big") + block[8:])[: min(CHUNK, size - start)]


def sha256_of(size: int) -> str:
    hasher = hashlib.sha256()
    for chunk in chunks(size):
        hasher.update(chunk)
    return hasher.hexdigest()


def session(kube: KubeClient, n: int) -> tuple[str, str]:
    name = f"upload-bench{n:04d}"
    token = new_token(name)
    record = SessionRecord(
        session=name,
        owner=UploadOwner(kind="Model", namespace="bench", name="m", uid=f"bench{n}"),
        token_sha256=token_sha256(token),
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=4),
        size_limit_bytes=64 << 30,
        staging_repository=staging_repository("bench", name),
    )
    data = {RECORD_KEY: base64.b64encode(record.to_json().encode()).decode()}
    kube.create(SECRETS, {"metadata": {"name": record_name(name)}, "data": data}, SYSTEM)
    return name, token


def raw_upload(registry_url: str, size: int, sha256: str) -> float:
    """The registry's chunked upload, straight: POST, PATCH per 8 MiB, PUT ?digest=."""
    http = requests.Session()
    os.sync()  # the previous run's writeback is not this run's cost
    started = time.perf_counter()
    answer = http.post(f"{registry_url}/v2/bench/raw/blobs/uploads/", timeout=60)
    location, offset = answer.headers["Location"], 0
    for chunk in chunks(size):
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Range": f"{offset}-{offset + len(chunk) - 1}"}  # fmt: skip
        answer = http.patch(location, data=chunk, headers=headers, timeout=300)
        assert answer.status_code == 202, answer.text
        location, offset = answer.headers["Location"], offset + len(chunk)
    done = http.put(location, params={"digest": f"sha256:{sha256}"}, timeout=300)
    assert done.status_code == 201, done.text
    return time.perf_counter() - started


def gateway_upload(replica: GatewayReplica, name: str, token: str, size: int, sha256: str) -> float:
    """What the CLI does: POST, PATCH per 8 MiB with Upload-Offset, commit with sha256 + size."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    url = f"{replica.url}/v1/uploads/{name}"
    os.sync()
    started = time.perf_counter()
    answer = http.post(url, params={"filename": "bench.tar"},
                       headers={"Upload-Length": str(size)}, timeout=60)  # fmt: skip
    assert answer.status_code == 201, answer.text
    offset = 0
    for chunk in chunks(size):
        answer = http.patch(url, data=chunk, headers={"Upload-Offset": str(offset)}, timeout=300)
        assert answer.status_code == 204, answer.text
        offset = int(answer.headers["Upload-Offset"])
    done = http.post(f"{url}/commit", json={"sha256": sha256, "size": size}, timeout=300)
    assert done.status_code == 201, done.text
    return time.perf_counter() - started


def memory_of(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def token_timing(replica: GatewayReplica, kube: KubeClient, base: int) -> dict[str, float]:
    """Medians (µs) of the comparison in-process and of 401 round trips over HTTP."""
    name, token = session(kube, base)
    first = ("X" if token[0] != "X" else "Y") + token[1:]
    last = token[:-1] + ("X" if token[-1] != "X" else "Y")
    expected = token_sha256(token)
    inproc: dict[str, list[float]] = {"first": [], "last": []}
    for _ in range(20_000):
        for label, wrong in (("first", first), ("last", last)):
            started = time.perf_counter_ns()
            tokens_match(wrong, expected)
            inproc[label].append((time.perf_counter_ns() - started) / 1000)
    http_times: dict[str, list[float]] = {"first": [], "last": []}
    http = requests.Session()
    for n in range(30):  # 30 sessions x 9 tries: under the limit of 10 per session
        name, token = session(kube, base + 1 + n)
        variants = {"first": ("X" if token[0] != "X" else "Y") + token[1:],
                    "last": token[:-1] + ("X" if token[-1] != "X" else "Y")}  # fmt: skip
        # One untimed try reads the record into the replica's cache (1 s), the rest are timed.
        http.head(
            f"{replica.url}/v1/uploads/{name}", headers={"Authorization": "Bearer x"}, timeout=30
        )
        for round_ in range(4):
            order = list(variants.items())
            for label, wrong in order if round_ % 2 else reversed(order):
                started = time.perf_counter()
                answer = http.head(f"{replica.url}/v1/uploads/{name}",
                                   headers={"Authorization": f"Bearer {wrong}"}, timeout=30)  # fmt: skip
                http_times[label].append((time.perf_counter() - started) * 1e6)
                assert answer.status_code == 401
    return {
        "inproc_first_us": statistics.median(inproc["first"]),
        "inproc_last_us": statistics.median(inproc["last"]),
        "http_first_us": statistics.median(http_times["first"]),
        "http_last_us": statistics.median(http_times["last"]),
    }


def measure(
    kube: KubeClient, registry_url: str, replica: GatewayReplica, size_mib: int, rounds: int
) -> None:
    """``rounds`` pairs, the order alternating (the machine's load drifts); the medians of the
    throughputs and of the pairs' ratios printed."""
    size = size_mib * MIB
    sha256 = sha256_of(size)
    raws, throughs = [], []
    for round_ in range(rounds):
        name, token = session(kube, size_mib + round_)
        if round_ % 2:
            through = gateway_upload(replica, name, token, size, sha256)
            raw = raw_upload(registry_url, size, sha256)
        else:
            raw = raw_upload(registry_url, size, sha256)
            through = gateway_upload(replica, name, token, size, sha256)
        raws.append(raw)
        throughs.append(through)
        print(json.dumps({"size_mib": size_mib, "round": round_, "raw_s": round(raw, 2),
                          "gateway_s": round(through, 2), "ratio": round(raw / through, 3)}),
              flush=True)  # fmt: skip
    memory = memory_of(replica.pid)
    raw, through = statistics.median(raws), statistics.median(throughs)
    summary = {"size_mib": size_mib, "rounds": rounds, "raw_mib_s": round(size_mib / raw, 1),
               "gateway_mib_s": round(size_mib / through, 1),
               "ratio": round(statistics.median(r / t for r, t in zip(raws, throughs, strict=True)), 3),
               "gateway_vmhwm_mib": round(memory["VmHWM"], 1),
               "gateway_rss_mib": round(memory["VmRSS"], 1)}  # fmt: skip
    print(json.dumps(summary), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1 GiB only")
    parser.add_argument("--sizes-mib", type=int, nargs="*", default=None)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = args.sizes_mib or ([1024] if args.quick else [1024, 4096])
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        work = Path(tmp)
        with run_control_plane(work / "plane") as plane, run_registry(work / "reg") as registry:
            kube = KubeClient(load_api_client(str(plane.kubeconfig)))
            kube.create(NAMESPACES, {"metadata": {"name": SYSTEM}})
            replica = start_gateway(work / "gw", plane.kubeconfig, SYSTEM, registry.host)
            try:
                for size_mib in sizes:
                    measure(kube, registry.url, replica, size_mib, args.rounds)
                timing = token_timing(replica, kube, 9000)
                print(json.dumps({k: round(v, 2) for k, v in timing.items()}), flush=True)
            finally:
                replica.stop()


if __name__ == "__main__":
    main()
