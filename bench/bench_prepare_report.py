"""The printed table of ``bench_prepare.py``, rendered from its JSON document only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MIB = 1 << 20


@dataclass(frozen=True)
class Goal:
    name: str
    value: float
    shown: str
    goal: str
    passed: bool

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "value": round(self.value, 3),
            "shown": self.shown,
            "goal": self.goal,
            "result": "PASS" if self.passed else "MISS",
        }


def _num(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _variant_lines(variant: dict[str, Any]) -> list[str]:
    cpu = variant["cpu_s"]
    line = (
        f"{variant['name']:<40} {variant['wall_s']:>8.2f} {_num(variant['mb_s'], 0):>7} "
        f"{_num(variant['peak_rss_mib'], 0):>8} {_num(cpu['client']):>8} "
        f"{_num(cpu['registry']):>8} {_num(cpu['hub']):>6}"
    )
    lines = [line]
    d = variant["detail"]
    if "start_and_inspect_s" in d:
        lines.append(
            f"{'':<4}start+inspect {d['start_and_inspect_s']:.2f} s, transfer+manifest "
            f"{d['transfer_and_manifest_s']:.2f} s, exit {d['exit_s']:.2f} s; from the Hub CDN: "
            f"{d['hub_transfer_bytes'] / MIB:.1f} MiB streamed, "
            f"{d['hub_inspection_bytes'] / 1024:.0f} KiB by inspection"
        )
    if "download_s" in d:
        lines.append(
            f"{'':<4}snapshot_download {d['download_s']:.2f} s (peak RSS so far "
            f"{d['download_peak_rss_mib']:.0f} MiB), oras chunked push {d['push_s']:.2f} s, "
            f"{d['files']} files"
        )
    if "process_wall_s" in d:
        lines.append(
            f"{'':<4}transfer time inside the client; its process: {d['process_wall_s']:.2f} s"
        )
    if "registry_requests" in d:
        methods = ", ".join(f"{k} {v}" for k, v in sorted(d["registry_requests"].items()))
        lines.append(
            f"{'':<4}to the registry: {d['registry_bytes_sent']} bytes in requests ({methods}); "
            f"blob upload sessions {d['registry_blob_upload_sessions']}, blob body bytes "
            f"{d['registry_blob_upload_bytes']}, manifest {d['registry_manifest_bytes']} bytes; "
            f"storage growth {d['registry_storage_growth_bytes']} bytes"
        )
    return lines


def render_table(results: dict[str, Any]) -> str:
    model = results["model"]
    machine = results["machine"]
    out = [
        "",
        f"model: {model['total_bytes'] / MIB:.0f} MiB, {model['shards']} safetensors shards + "
        f"{len(model['files']) - model['shards']} small files (LlamaForCausalLM, BF16), on the "
        f"Hub emulator → docker-registry {machine['registry']} on 127.0.0.1; {machine['cpus']} CPUs",
        "each run into a fresh registry (re-prepare: the pipeline's); MB/s = 10^6 bytes of the "
        "model per wall second; CPU s of the client process, the registry, the Hub emulator",
    ]
    if results.get("worker_env"):
        extra = " ".join(f"{k}={v}" for k, v in results["worker_env"].items())
        out.append(f"worker environment added: {extra}")
    out += [
        "",
        f"{'variant':<40} {'wall s':>8} {'MB/s':>7} {'RSS MiB':>8} {'CPU cli':>8} "
        f"{'CPU reg':>8} {'CPU hub':>6}",
    ]
    for variant in results["variants"].values():
        out += _variant_lines(variant)
    out += ["", f"{'goal':<58} {'measured':>16}  {'target':<18} result"]
    for goal in results["goals"]:
        out.append(f"{goal['name']:<58} {goal['shown']:>16}  {goal['goal']:<18} {goal['result']}")
    out.append(f"\nbenchmark took {results['bench_seconds']:.0f} s")
    return "\n".join(out)
