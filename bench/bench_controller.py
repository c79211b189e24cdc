"""Controller at scale: N Models applied to the real API server, no node emulator (Jobs stay
unscheduled). Measures the time until every Model has its Job or its queued status, the
controller's peak RSS, and its API requests per Model; prints ratios against baselines measured
in the same run: the API server's own time to create the N objects, and the RSS of a bare Python
process that imports the same modules. The controller runs as the chart configures it by
default, the consumption webhook included (its certificate, its gated-pod informer, the model
index fed by every Model event); ``--no-webhook`` measures without it. The load average before
and after is printed: the figures mean little on a busy machine.

    .venv/bin/python bench/bench_controller.py [--models 1000] [--max-concurrent 2] [--no-webhook]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from controller.kube import JOBS, MODELS, KubeClient, load_api_client  # noqa: E402
from tests.ground.controlplane import run_control_plane  # noqa: E402
from tests.ground.procs import free_port  # noqa: E402

SYSTEM = "d8-ai-models"


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def baseline_rss_mib() -> float:
    # controller.cli: what the controller process imports (the webhook's cryptography included).
    code = "import kubernetes, pydantic, structlog, prometheus_client, jinja2, requests, yaml, controller.cli; import sys; print(open('/proc/self/status').read())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    return int(re.search(r"VmHWM:\s+(\d+)", out).group(1)) / 1024  # type: ignore[union-attr]


def model(i: int) -> dict[str, object]:
    return {
        "apiVersion": "ai.deckhouse.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": f"model-{i:05d}"},
        "spec": {"source": {"url": f"https://huggingface.co/bench/model-{i:05d}"}},
    }


def settled(kube: KubeClient, namespace: str, count: int) -> int:
    items, _ = kube.list(MODELS, namespace)
    jobs, _ = kube.list(JOBS, SYSTEM)
    owners = {j["metadata"]["labels"].get("ai.deckhouse.io/owner-uid") for j in jobs}
    done = 0
    for obj in items:
        reason = next(
            (
                c["reason"]
                for c in (obj.get("status") or {}).get("conditions") or []
                if c["type"] == "Ready"
            ),
            None,
        )
        if obj["metadata"]["uid"] in owners or reason == "Queued":
            done += 1
    return done


def wait_ready(port: int, controller: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if controller.poll() is not None:
            raise RuntimeError(f"the controller exited with {controller.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the controller was not ready within {seconds:.0f} s")


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r'ai_models_kube_requests_total\{method="(\w+)"\} ([0-9.e+]+)', line)
        if m:
            found[m[1]] = float(m[2])
    return found


def run(models: int, max_concurrent: int, webhook: bool) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="bench-controller-"))
    load_before = os.getloadavg()[0]
    with run_control_plane(work) as plane:
        plane.kubectl_run("apply", "--server-side", "-f", str(REPO / "crds"))
        plane.kubectl_run("wait", "--for=condition=Established", "crd", "--all")
        for ns in (SYSTEM, "bench", "baseline"):
            plane.kubectl_run("create", "namespace", ns)
        kube = KubeClient(load_api_client(str(plane.kubeconfig)))

        # Baseline: the API server creating the same number of objects, no controller running.
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: kube.create(MODELS, model(i), "baseline"), range(models)))
        create_seconds = time.monotonic() - started
        plane.kubectl_run("delete", "models", "--all", "-n", "baseline", "--wait=false")

        metrics_port, health_port = free_port(), free_port()
        config = work / "config.json"
        config.write_text(
            json.dumps(
                {
                    "systemNamespace": SYSTEM,
                    "registry": {"host": "127.0.0.1:1", "insecure": True},
                    "worker": {"maxConcurrent": max_concurrent},
                    # As the chart runs it; no MutatingWebhookConfiguration here, so the
                    # caBundle sync finds nothing to update.
                    "webhook": {
                        "enabled": webhook,
                        "port": 0,
                        "bindAddress": "127.0.0.1",
                        "ipAddresses": ["127.0.0.1"],
                    },
                    "controller": {
                        "metricsPort": metrics_port,
                        "healthPort": health_port,
                        "bindAddress": "127.0.0.1",
                        "logLevel": "warning",
                    },
                }
            )
        )
        controller = subprocess.Popen(
            [
                str(REPO / ".venv" / "bin" / "ai-models-controller"),
                "--config",
                str(config),
                "--kubeconfig",
                str(plane.kubeconfig),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(work / "controller.log", "w"),  # noqa: SIM115
        )
        try:
            # Ready once its caches synced (with the webhook, after its certificate: seconds
            # of key generation on a busy machine, so no fixed sleep), then a moment more.
            wait_ready(health_port, controller)
            time.sleep(2)
            # The baseline namespace's objects carry the finalizer by now; drop them from the count.
            before = scrape(metrics_port)
            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: kube.create(MODELS, model(i), "bench"), range(models)))
            applied = time.monotonic() - started
            while settled(kube, "bench", models) < models:
                time.sleep(0.5)
                if time.monotonic() - started > 600:
                    raise RuntimeError("not settled within 600 s")
            settle_seconds = time.monotonic() - started
            time.sleep(3)  # let trailing writes land before counting
            after = scrape(metrics_port)
            rss = peak_rss_mib(controller.pid)
        finally:
            controller.terminate()
            controller.wait(30)
    requests = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    total = sum(requests.values())
    return {
        "models": models,
        "webhook": float(webhook),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "apply_seconds": applied,
        "settle_seconds": settle_seconds,
        "baseline_create_seconds": create_seconds,
        "controller_peak_rss_mib": rss,
        "baseline_rss_mib": baseline_rss_mib(),
        "api_requests": total,
        "api_requests_per_model": total / models,
        **{f"requests_{k}": v for k, v in sorted(requests.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--no-webhook", dest="webhook", action="store_false")
    args = parser.parse_args()
    r = run(args.models, args.max_concurrent, args.webhook)
    print(f"models                               {r['models']:.0f}")
    print(f"webhook (consumption)                {'on' if r['webhook'] else 'off'}")
    print(
        f"load average (1 min, 2 cores)        {r['load_before']:.2f} before, {r['load_after']:.2f} after"
    )
    print(f"time to apply them (8 clients)       {r['apply_seconds']:.1f} s")
    print(f"time until all have Job or Queued    {r['settle_seconds']:.1f} s   (goal <= 60 s)")
    print(
        f"baseline: API server creating them   {r['baseline_create_seconds']:.1f} s   ratio {r['settle_seconds'] / r['baseline_create_seconds']:.2f}x"
    )
    print(
        f"controller peak RSS                  {r['controller_peak_rss_mib']:.0f} MiB (goal <= 250 MiB)"
    )
    print(
        f"baseline: bare interpreter + imports {r['baseline_rss_mib']:.0f} MiB   ratio {r['controller_peak_rss_mib'] / r['baseline_rss_mib']:.2f}x"
    )
    print(
        f"API requests per Model               {r['api_requests_per_model']:.2f}  ({', '.join(f'{k[9:]} {v:.0f}' for k, v in r.items() if k.startswith('requests_'))})"
    )


if __name__ == "__main__":
    main()
