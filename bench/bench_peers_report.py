"""The printed tables of ``bench_peers.py``, rendered from its JSON document only, with the
goals of the comparison (each PASS or MISS; no test asserts a time)."""

from __future__ import annotations

from statistics import median
from typing import Any

MIB, GIB = 1 << 20, 1 << 30
GOAL_PUSH_VS_ORAS = 1.0  # our wall ÷ oras wall, at most
GOAL_PUSH_VS_MODCTL = 0.8
GOAL_PULL_VS_ORAS = 1.0  # oras wall ÷ our wall, at least
GOAL_CPU_PER_GIB = 1.5
GOAL_HELP_S = 0.3
GOAL_RSS_MIB = 100.0
GOAL_HF_VS_RAW = 0.9


def _best(entry: dict[str, Any], tool: str) -> dict[str, Any]:
    best: dict[str, Any] = entry["tools"][tool]["best"]
    return best


def _loads(entry: dict[str, Any]) -> str:
    loads = [r["load1"] for t in entry["tools"].values() for r in t["runs"]]
    return f"{min(loads):.1f}-{max(loads):.1f}"


def _name(entry: dict[str, Any]) -> str:
    files = entry.get("files")
    count = f", {files} file{'s' * (files != 1)}" if files else ""
    return f"{entry['label']} ({entry['bytes'] / MIB:.0f} MiB{count})"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def push_tables(push: dict[str, Any]) -> list[str]:
    lines = [
        "| model | ours s | oras s | modctl s | ours÷oras | ours÷modctl | load 1-min |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in push.values():
        ours, oras, modctl = (_best(entry, t)["wall_s"] for t in ("ours", "oras", "modctl"))
        lines.append(
            f"| {_name(entry)} | {ours:.2f} | {oras:.2f} | {modctl:.2f} | {ours / oras:.2f}x "
            f"| {ours / modctl:.2f}x | {_loads(entry)} |"
        )
    lines += [
        "",
        "| model | CPU s ours / oras / modctl | peak RSS MiB ours / oras / modctl "
        "| registry CPU s ours / oras / modctl |",
        "|---|---|---|---|",
    ]
    for entry in push.values():
        best = [_best(entry, t) for t in ("ours", "oras", "modctl")]
        cpu = " / ".join(f"{b['cpu_s']:.2f}" for b in best)
        rss = " / ".join(f"{b['peak_rss_mib']:.0f}" for b in best)
        registry = " / ".join(f"{b['registry_cpu_s']:.2f}" for b in best)
        lines.append(f"| {_name(entry)} | {cpu} | {rss} | {registry} |")
    return lines


def pull_table(pull: dict[str, Any]) -> list[str]:
    lines = [
        "| model | materialize s | oras pull s | oras pull + sync s | oras÷ours "
        "| (oras + sync)÷ours | CPU s ours / oras | peak RSS MiB ours / oras | load 1-min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in pull.values():
        ours, oras = _best(entry, "ours"), _best(entry, "oras")
        synced = _best(entry, "oras+sync")["wall_s"] if "oras+sync" in entry["tools"] else None
        lines.append(
            f"| {_name(entry)} | {ours['wall_s']:.2f} | {oras['wall_s']:.2f} | {_num(synced)} "
            f"| {oras['wall_s'] / ours['wall_s']:.2f}x "
            f"| {_num(synced and synced / ours['wall_s'])}{'x' * bool(synced)} "
            f"| {ours['cpu_s']:.2f} / {oras['cpu_s']:.2f} "
            f"| {ours['peak_rss_mib']:.0f} / {oras['peak_rss_mib']:.0f} | {_loads(entry)} |"
        )
    return lines


def startup_lines(startup: dict[str, Any], floor: dict[str, float]) -> list[str]:
    helps = startup["help_s"]
    imports = startup["importtime"]
    lines = [
        f"`ai-models-worker --help`: min {min(helps):.3f} s, median {median(helps):.3f} s "
        f"({len(helps)} runs)",
        f"`import worker.cli`: {imports['total_ms']:.0f} ms (python -X importtime); largest "
        "(cumulative / self ms):",
    ]
    lines += [f"  {name:<48} {cum:>8.1f} {own:>8.1f}" for name, cum, own in imports["top"]]
    lines.append(
        f"floor on this machine: hashlib.sha256 {floor['sha256_cpu_s_per_gib']:.2f} CPU-s/GiB, "
        f"one copy {floor['copy_cpu_s_per_gib']:.2f} CPU-s/GiB"
    )
    return lines


def _cpu_per_gib(push: dict[str, Any]) -> dict[str, float]:
    return {
        key: _best(entry, "ours")["cpu_s"] / (entry["bytes"] / GIB)
        for key, entry in push.items()
        if entry["bytes"] >= GIB
    }


def goal_lines(results: dict[str, Any]) -> list[str]:
    push = results.get("push", {})
    lines = ["| goal | measured | result |", "|---|---|---|"]
    for key, entry in push.items():
        ours, oras, modctl = (_best(entry, t)["wall_s"] for t in ("ours", "oras", "modctl"))
        if key != "smollm2-gguf":  # the goal rows: 87 MiB, 1 GiB, 4 GiB
            ratio = ours / oras
            lines.append(f"| push {key} ≤ {GOAL_PUSH_VS_ORAS}x oras | {ratio:.2f}x "
                         f"| {_verdict(ratio <= GOAL_PUSH_VS_ORAS)} |")  # fmt: skip
        ratio = ours / modctl
        lines.append(f"| push {key} ≤ {GOAL_PUSH_VS_MODCTL}x modctl | {ratio:.2f}x "
                     f"| {_verdict(ratio <= GOAL_PUSH_VS_MODCTL)} |")  # fmt: skip
    for key, entry in results.get("pull", {}).items():
        speed = _best(entry, "oras")["wall_s"] / _best(entry, "ours")["wall_s"]
        lines.append(f"| materialize {key} ≥ {GOAL_PULL_VS_ORAS}x oras pull | {speed:.2f}x "
                     f"| {_verdict(speed >= GOAL_PULL_VS_ORAS)} |")  # fmt: skip
    for key, per_gib in _cpu_per_gib(push).items():
        lines.append(f"| worker CPU per GiB pushed, {key} ≤ {GOAL_CPU_PER_GIB} | "
                     f"{per_gib:.2f} CPU-s | {_verdict(per_gib <= GOAL_CPU_PER_GIB)} |")  # fmt: skip
    if "synthetic-4g" in push:
        rss = _best(push["synthetic-4g"], "ours")["peak_rss_mib"]
        lines.append(f"| peak RSS push 4 GiB ≤ {GOAL_RSS_MIB:.0f} MiB | {rss:.0f} MiB "
                     f"| {_verdict(rss <= GOAL_RSS_MIB)} |")  # fmt: skip
    if "startup" in results:
        fastest = min(results["startup"]["help_s"])
        lines.append(f"| --help ≤ {GOAL_HELP_S} s | {fastest:.3f} s "
                     f"| {_verdict(fastest <= GOAL_HELP_S)} |")  # fmt: skip
    if "hf" in results:
        ratio = results["hf"]["ratio"]
        lines.append(f"| Hub emulator → registry ≥ {GOAL_HF_VS_RAW}x raw ingest | {ratio:.2f}x "
                     f"| {_verdict(ratio >= GOAL_HF_VS_RAW)} |")  # fmt: skip
    return lines


def render(results: dict[str, Any]) -> str:
    runs = len(next(iter(results["push"].values()))["tools"]["ours"]["runs"])
    start, end = results["load_at_start"], results["load_at_end"]
    lines = [
        f"Push: wall s, min of {runs} (each into a fresh docker-registry; tools interleaved); "
        f"load average at start {start[0]:.2f}, at end {end[0]:.2f}",
        "",
        *push_tables(results["push"]),
    ]
    if "pull" in results:
        lines += ["", "Pull (files written):", "", *pull_table(results["pull"])]
    if "hf" in results:
        hf = results["hf"]
        lines += ["", f"Hub emulator → registry (1 GiB): {hf['pipeline_mb_s']:.0f} MB/s "
                  f"({hf['pipeline_wall_s']:.2f} s, whole process); raw ingest of the same "
                  f"bytes {hf['raw_mb_s']:.0f} MB/s ({hf['raw_transfer_s']:.2f} s, transfer "
                  f"only): {hf['ratio']:.2f}x"]  # fmt: skip
    lines += ["", *startup_lines(results["startup"], results["floor"])]
    for key, per_gib in _cpu_per_gib(results["push"]).items():
        lines.append(f"ours, {key}: {per_gib:.2f} CPU-s per GiB pushed")
    lines += ["", *goal_lines(results), "", f"bench: {results.get('bench_seconds', 0):.0f} s"]
    return "\n".join(lines)
