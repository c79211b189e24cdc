"""Delivery benchmark: ``materialize-pod`` through the node cache (cold, then warm) against a raw
HTTP GET of the same blob straight from the registry, in one run; prints wall time, throughput,
peak RSS and the ratios.

A ~SIZE MiB random weight (plus a config) is pushed into a fresh local docker-registry. The
delivery endpoint runs in its own process (``--serve``) with a gate that allows everything:
authorization costs one cached TokenReview per pod and is not what is measured here (the
integration tests cover it). Each client runs in its own process; its peak RSS comes from
``os.wait4``, the endpoint's from its ``/proc/<pid>/status`` VmHWM. The baseline GETs the blob,
hashes it and writes it to disk (what a verifying client does: ``oras blob fetch`` checks the
digest too).

    .venv/bin/python bench/bench_delivery.py [--size-mib 1024]

Not a test: figures vary with the machine; docs/performance.md records them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.ground.registry import run_registry  # noqa: E402

MIB = 1 << 20
REPOSITORY = "bench/model"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
WORKER = Path(sys.executable).with_name("ai-models-worker")


# ---- the endpoint process ---------------------------------------------------------------------


def serve(registry_host: str, manifest_digest: str, cache: Path, budget: int) -> None:
    from delivery.access import Gatekeeper, Grant
    from delivery.authz import Target, manifest_blobs
    from delivery.cache import BlobStore
    from delivery.metrics import DeliveryMetrics
    from delivery.server import DeliveryServer
    from delivery.upstream import Upstream
    from worker.oci.registry import RegistryClient, RegistrySettings

    class OpenGate(Gatekeeper):
        def __init__(self, upstream: Upstream) -> None:
            self.upstream = upstream

        def identify(self, token: str) -> None:
            return None

        def grant(self, token: str, target: Target) -> Grant:
            if target.what == "manifests":
                return Grant(REPOSITORY, None)
            blobs = manifest_blobs(self.upstream.manifest(REPOSITORY, manifest_digest).data)
            return Grant(REPOSITORY, blobs[target.digest].size)

    client = RegistryClient(
        registry_host, insecure=True, settings=RegistrySettings(chunk_size=4 * MIB)
    )
    metrics = DeliveryMetrics()
    server = DeliveryServer(
        "127.0.0.1", 0, OpenGate(Upstream(client, "unused")), BlobStore(cache, budget, metrics),
        metrics,
    )  # fmt: skip
    print(server.port, flush=True)
    server.serve_forever()


# ---- measuring ----------------------------------------------------------------------------------


def run_measured(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one process."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    out, err = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed: {out.decode()[-2000:]} {err.decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


RAW_GET = """
import hashlib, sys, requests
url, digest, out = sys.argv[1], sys.argv[2], sys.argv[-1]
headers = {"Authorization": "Bearer " + sys.argv[3]} if len(sys.argv) == 5 else {}
hasher = hashlib.sha256()
with requests.get(url, stream=True, timeout=300, headers=headers) as response, \
        open(out, "wb") as file:
    response.raise_for_status()
    for piece in response.iter_content(4 << 20):
        hasher.update(piece)
        file.write(piece)
assert "sha256:" + hasher.hexdigest() == digest
"""


def push(registry_url: str, weight: Path, weight_digest: str) -> str:
    import requests

    config = b"{}"
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    base = f"{registry_url}/v2/{REPOSITORY}"
    for data, digest in ((config, config_digest), (weight, weight_digest)):
        location = requests.post(f"{base}/blobs/uploads/", timeout=30).headers["Location"]
        location = f"{registry_url}{location}" if location.startswith("/") else location
        joiner = "&" if "?" in location else "?"
        if isinstance(data, Path):
            with data.open("rb") as body:
                done = requests.put(f"{location}{joiner}digest={digest}", data=body, timeout=600)
        else:
            done = requests.put(f"{location}{joiner}digest={digest}", data=data, timeout=30)
        assert done.status_code == 201, done.text
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "artifactType": "application/vnd.cncf.model.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.model.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.cncf.model.weight.v1.raw",
                    "digest": weight_digest, "size": weight.stat().st_size,
                    "annotations": {"org.cncf.model.filepath": "model.safetensors"}}],
    }).encode()  # fmt: skip
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    put = requests.put(f"{base}/manifests/{digest}", data=manifest,
                       headers={"Content-Type": MANIFEST_TYPE}, timeout=30)  # fmt: skip
    assert put.status_code == 201, put.text
    return digest


def random_file(path: Path, size: int) -> str:
    hasher = hashlib.sha256()
    with path.open("wb") as file:
        for _ in range(size // MIB):
            piece = os.urandom(MIB)
            hasher.update(piece)
            file.write(piece)
    return "sha256:" + hasher.hexdigest()


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


LABELS = (
    "raw GET from the registry",
    "materialize straight from the registry",
    "materialize-pod, cold cache",
    "materialize-pod, warm cache",
    "raw GET through the warm cache",
)


def bench(size_mib: int, rounds: int) -> dict[str, Any]:
    """``rounds`` rounds of the four runs, in turn (the machine is shared: alternating evens
    out the load of other jobs); each round's endpoint starts on an empty cache."""
    work = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    try:
        weight = work / "weight.bin"
        weight_digest = random_file(weight, size_mib * MIB)
        with run_registry(work / "registry") as registry:
            manifest = push(registry.url, weight, weight_digest)
            weight.unlink()
            runs: dict[str, list[dict[str, float]]] = {label: [] for label in LABELS}
            endpoint_rss = []
            for round_ in range(rounds):
                cache = work / f"cache-{round_}"
                endpoint = subprocess.Popen(
                    [sys.executable, __file__, "--serve", registry.host, manifest, str(cache),
                     str(4 * size_mib * MIB)],
                    stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)},
                )  # fmt: skip
                try:
                    port = int(endpoint.stdout.readline())  # type: ignore[union-attr]
                    for label, run in measure(work, registry, port, manifest, weight_digest):
                        runs[label].append(run)
                    endpoint_rss.append(round(vm_hwm_mib(endpoint.pid)))
                finally:
                    endpoint.terminate()
                    endpoint.wait()
                shutil.rmtree(cache, ignore_errors=True)
        return summary(runs, endpoint_rss)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summary(runs: dict[str, list[dict[str, float]]], endpoint_rss: list[int]) -> dict[str, Any]:
    def median_wall(label: str) -> float:
        return statistics.median(r["wall s"] for r in runs[label])

    raw, direct, cold, warm, raw_warm = (median_wall(label) for label in LABELS)
    return {
        "runs": runs,
        "median wall s": {label: median_wall(label) for label in LABELS},
        "endpoint peak RSS MiB": endpoint_rss,
        "ratios (throughput, medians)": {
            "cold cache vs raw GET": round(raw / cold, 2),
            "cold cache vs materialize straight from the registry": round(direct / cold, 2),
            "warm cache vs cold cache": round(cold / warm, 2),
            "warm cache vs raw GET": round(raw / warm, 2),
            "raw GET through the warm cache vs from the registry": round(raw / raw_warm, 2),
        },
    }


def measure(
    work: Path, registry: Any, port: int, manifest: str, weight: str
) -> list[tuple[str, dict[str, float]]]:
    token, digests = work / "token", work / "digests"
    token.write_text("bench.token")
    digests.write_text(json.dumps([{"kind": "ClusterModel", "name": "m", "digest": manifest}]))
    env = {"PATH": os.environ["PATH"], "HOME": str(work), "POD_NAMESPACE": "bench"}
    pod = [str(WORKER), "materialize-pod", "--digests", str(digests), "--token", str(token),
           "--endpoint", f"http://127.0.0.1:{port}", "--to"]  # fmt: skip
    argvs = {
        LABELS[0]: [sys.executable, "-c", RAW_GET,
                    f"{registry.url}/v2/{REPOSITORY}/blobs/{weight}", weight],
        LABELS[1]: [str(WORKER), "materialize", f"{registry.host}/{REPOSITORY}@{manifest}", "--to"],
        LABELS[2]: pod,
        LABELS[3]: pod,
        LABELS[4]: [sys.executable, "-c", RAW_GET,
                    f"http://127.0.0.1:{port}/v2/clustermodel/m/blobs/{weight}", weight, "t"],
    }  # fmt: skip
    results = []
    for label, argv in argvs.items():
        out = work / "out"
        run_env = {**env, "AI_MODELS_REGISTRY_INSECURE": "1"}
        wall, rss = run_measured([*argv, str(out)], run_env)
        size = _size(out)
        results.append((label, {"wall s": round(wall, 2), "MB/s": round(size / wall / 1e6),
                                "peak RSS MiB": round(rss)}))  # fmt: skip
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    return results


def _size(out: Path) -> int:
    if out.is_file():
        return out.stat().st_size
    found = out / "m" / "model.safetensors"
    return (found if found.exists() else out / "model.safetensors").stat().st_size


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps({"size MiB": args.size_mib, **bench(args.size_mib, args.rounds)}, indent=2))


if __name__ == "__main__":
    main()
