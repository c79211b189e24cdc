"""Delivery benchmark: ``materialize-pod`` through the node cache (cold, then warm) against
fetching the same blob straight from the registry (``oras blob fetch`` when hack/build-peers.sh
built it, a raw HTTP GET, ``materialize``), in one run; prints wall time, throughput, CPU time,
peak RSS and the ratios.

A SIZE MiB random weight (plus a config) is pushed into a fresh local docker-registry. The
delivery endpoint runs in its own process (``--serve``) with a gate that allows everything:
authorization costs one cached TokenReview per pod and is not what is measured here (the
integration tests cover it). Each client runs in its own process; its peak RSS and CPU time
come from ``os.wait4``, the endpoint's from ``/proc/<pid>``. The raw GET hashes the blob and
writes it to disk, as a verifying client does (``oras blob fetch`` checks the digest too).
``--registry-mbps`` puts the registry behind a link of that bandwidth (``bench_delivery_link``):
on loopback it is as fast as a local disk, on a cluster it is across a network.

    .venv/bin/python bench/bench_delivery.py [--size-mib 1024] [--rounds 3] [--registry-mbps N]

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
sys.path.insert(0, str(REPO / "bench"))

from bench_delivery_link import SlowLink  # noqa: E402

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
    from oci.registry import RegistryClient, RegistrySettings

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

    client = RegistryClient(registry_host, insecure=True, settings=RegistrySettings())
    metrics = DeliveryMetrics()
    server = DeliveryServer(
        "127.0.0.1", 0, OpenGate(Upstream(client, "unused")), BlobStore(cache, budget, metrics),
        metrics,
    )  # fmt: skip
    print(server.port, flush=True)
    server.serve_forever()


# ---- measuring ----------------------------------------------------------------------------------


def run_measured(argv: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MiB, CPU seconds user + system) of one process."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    out, err = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed: {out.decode()[-2000:]} {err.decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a running process has used (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


RAW_GET = """
import hashlib, sys, requests
url, digest, out = sys.argv[1], sys.argv[2], sys.argv[-1]
headers = {"Authorization": "Bearer " + sys.argv[3]} if len(sys.argv) == 5 else {}
hasher = hashlib.sha256()
with requests.get(url, stream=True, timeout=300, headers=headers) as response, \
        open(out, "wb") as file:
    response.raise_for_status()
    for piece in response.iter_content(1 << 20):
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


RAW = "raw GET from the registry"
ORAS = "oras blob fetch from the registry"
DIRECT = "materialize straight from the registry"
COLD = "materialize-pod, cold cache"
WARM = "materialize-pod, warm cache"
RAW_WARM = "raw GET through the warm cache"


def find_oras() -> str | None:
    """The ORAS CLI of hack/build-peers.sh ($AI_MODELS_PEERS_BIN, else its cache), if built."""
    cache = Path(os.environ.get("AI_MODELS_CACHE", Path.home() / ".cache" / "ai-models"))
    folder = Path(os.environ.get("AI_MODELS_PEERS_BIN", cache / "peers" / "bin"))
    found = folder / "oras"
    return str(found) if found.is_file() else shutil.which("oras")


def bench(size_mib: int, rounds: int, mbps: float | None) -> dict[str, Any]:
    """``rounds`` rounds of the runs, in turn (the machine is shared: alternating evens out the
    load of other jobs); each round's endpoint starts on an empty cache. With ``mbps``, every
    fetch from the registry (the direct ones and the cold cache's) crosses a ``SlowLink``."""
    work = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    try:
        weight = work / "weight.bin"
        weight_digest = random_file(weight, size_mib * MIB)
        with run_registry(work / "registry") as registry:
            manifest = push(registry.url, weight, weight_digest)
            weight.unlink()
            link = SlowLink(registry.host, mbps) if mbps else None
            origin = link.host if link else registry.host
            runs: dict[str, list[dict[str, float]]] = {}
            endpoint_rss = []
            for round_ in range(rounds):
                cache = work / f"cache-{round_}"
                endpoint = subprocess.Popen(
                    [sys.executable, __file__, "--serve", origin, manifest, str(cache),
                     str(4 * size_mib * MIB)],
                    stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)},
                )  # fmt: skip
                try:
                    port = int(endpoint.stdout.readline())  # type: ignore[union-attr]
                    measured = measure(work, origin, endpoint.pid, port, manifest, weight_digest)
                    for label, run in measured:
                        runs.setdefault(label, []).append(run)
                    endpoint_rss.append(round(vm_hwm_mib(endpoint.pid)))
                finally:
                    endpoint.terminate()
                    endpoint.wait()
                shutil.rmtree(cache, ignore_errors=True)
        return summary(runs, endpoint_rss)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summary(runs: dict[str, list[dict[str, float]]], endpoint_rss: list[int]) -> dict[str, Any]:
    wall = {label: statistics.median(r["wall s"] for r in done) for label, done in runs.items()}
    # The baseline is the faster of the two direct fetches (oras when it was built).
    baseline = min(wall[RAW], wall.get(ORAS, wall[RAW]))
    cold, warm = wall[COLD], wall[WARM]
    return {
        "runs": runs,
        "median wall s": wall,
        "median CPU s, client + endpoint": {
            label: round(
                statistics.median(r["client CPU s"] + r["endpoint CPU s"] for r in done), 2
            )
            for label, done in runs.items()
        },
        "endpoint peak RSS MiB": endpoint_rss,
        "ratios (throughput, medians)": {
            "cold cache vs the faster direct fetch": round(baseline / cold, 2),
            "cold cache vs raw GET": round(wall[RAW] / cold, 2),
            "cold cache vs materialize straight from the registry": round(wall[DIRECT] / cold, 2),
            "warm cache vs cold cache": round(cold / warm, 2),
            "warm cache vs the faster direct fetch": round(baseline / warm, 2),
            "raw GET through the warm cache vs from the registry": round(
                wall[RAW] / wall[RAW_WARM], 2
            ),
        },
    }


def measure(
    work: Path, origin: str, endpoint: int, port: int, manifest: str, weight: str
) -> list[tuple[str, dict[str, float]]]:
    """Each run once; ``origin`` is the registry's ``host:port`` (or the link's in front)."""
    token, digests = work / "token", work / "digests"
    token.write_text("bench.token")
    digests.write_text(json.dumps([{"kind": "ClusterModel", "name": "m", "digest": manifest}]))
    env = {"PATH": os.environ["PATH"], "HOME": str(work), "POD_NAMESPACE": "bench"}
    pod = [str(WORKER), "materialize-pod", "--digests", str(digests), "--token", str(token),
           "--endpoint", f"http://127.0.0.1:{port}", "--to"]  # fmt: skip
    blob_url = f"/v2/{REPOSITORY}/blobs/{weight}"
    argvs = {
        RAW: [sys.executable, "-c", RAW_GET, f"http://{origin}{blob_url}", weight],
        DIRECT: [str(WORKER), "materialize", f"{origin}/{REPOSITORY}@{manifest}", "--to"],
        COLD: pod,
        WARM: pod,
        RAW_WARM: [sys.executable, "-c", RAW_GET,
                   f"http://127.0.0.1:{port}/v2/clustermodel/m/blobs/{weight}", weight, "t"],
    }  # fmt: skip
    oras = find_oras()
    if oras is not None:
        fetch = [oras, "blob", "fetch", "--plain-http", f"{origin}/{REPOSITORY}@{weight}"]
        argvs = {ORAS: [*fetch, "--output"], **argvs}
    results = []
    for label, argv in argvs.items():
        out = work / "out"
        run_env = {**env, "AI_MODELS_REGISTRY_INSECURE": "1"}
        endpoint_cpu = cpu_seconds(endpoint)
        wall, rss, cpu = run_measured([*argv, str(out)], run_env)
        endpoint_cpu = cpu_seconds(endpoint) - endpoint_cpu
        size = _size(out)
        results.append((label, {
            "wall s": round(wall, 2), "MB/s": round(size / wall / 1e6),
            "peak RSS MiB": round(rss), "client CPU s": round(cpu, 2),
            "endpoint CPU s": round(endpoint_cpu, 2),
        }))  # fmt: skip
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
    parser.add_argument(
        "--registry-mbps", type=float, help="the registry behind a link of this many Mbit/s"
    )
    args = parser.parse_args()
    result = bench(args.size_mib, args.rounds, args.registry_mbps)
    link = {"registry link Mbit/s": args.registry_mbps or "loopback"}
    print(json.dumps({"size MiB": args.size_mib, **link, **result}, indent=2))


if __name__ == "__main__":
    main()
