"""The volume part of the emulated kubelet: each volume the container mounts becomes a directory
under the pod's own directory on the host, later bind-mounted at its ``mountPath`` inside the
process's private mount namespace (``nodeemu_launcher``).

Supported: ``secret``, ``configMap``, ``downwardAPI``, ``projected`` (secret, configMap,
downwardAPI and ``serviceAccountToken`` sources — the ``kube-api-access-*`` volume the API
server injects), ``emptyDir``, ``ephemeral`` and ``persistentVolumeClaim`` (both a fresh empty
directory: no provisioner runs) and ``hostPath``. Files are written plainly, without the
kubelet's ``..data`` symlink swap, once, when the container starts: later changes to the
Secret, ConfigMap or labels are not projected. Like the kubelet, the four API-backed kinds are
always mounted read-only, and with a pod ``fsGroup`` every file is group-owned by it with group
read (plus write for writable volumes) and directories get the setgid bit.

A missing Secret or ConfigMap that is not optional is ``VolumeError`` (the kubelet's
``FailedMount``): the pod stays ``ContainerCreating`` and the runner retries.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.ground.nodeemu_spec import (
    ContainerConfigError,
    Fetch,
    expand,
    field_value,
    resource_value,
)

JSON = dict[str, Any]
MintToken = Callable[[str | None, int], str]  # (audience or None, expirationSeconds) → JWT
API_BACKED = ("secret", "configMap", "downwardAPI", "projected")
DEFAULT_MODE = 0o644


class VolumeError(Exception):
    """A volume cannot be set up now; the pod stays ContainerCreating and is retried."""


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool


def _object_files(obj: JSON | None, kind: str) -> dict[str, bytes]:
    if obj is None:
        return {}
    if kind == "secrets":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    files = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    files.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return files


def _keyed_files(source: JSON, kind: str, fetch: Fetch, mode: int) -> dict[str, tuple[bytes, int]]:
    """Files of a secret or configMap volume (source): every key, or the listed ``items``."""
    name = source.get("secretName") or source.get("name", "")
    obj = fetch(kind, name)
    optional = bool(source.get("optional"))
    if obj is None and not optional:
        raise VolumeError(f'{kind[:-1]} "{name}" not found')
    files = _object_files(obj, kind)
    items: list[JSON] | None = source.get("items")
    if not items:
        return {key: (data, mode) for key, data in files.items()}
    chosen: dict[str, tuple[bytes, int]] = {}
    for item in items:
        if item["key"] not in files:
            if optional:
                continue
            raise VolumeError(f"references non-existent {kind[:-1]} key: {item['key']}")
        chosen[item["path"]] = (files[item["key"]], item.get("mode", mode))
    return chosen


def _downward_files(
    source: JSON, pod: JSON, mode: int, allocatable: Mapping[str, str]
) -> dict[str, tuple[bytes, int]]:
    containers = {c["name"]: c for c in pod["spec"].get("containers", [])}
    files: dict[str, tuple[bytes, int]] = {}
    for item in source.get("items") or []:
        try:
            if "fieldRef" in item:
                value = field_value(pod, item["fieldRef"]["fieldPath"])
            else:
                ref = item["resourceFieldRef"]
                container = containers.get(ref.get("containerName", ""), {})
                value = resource_value(container, ref["resource"], ref.get("divisor"), allocatable)
        except ContainerConfigError as error:
            raise VolumeError(str(error)) from error
        files[item["path"]] = (value.encode(), item.get("mode", mode))
    return files


def _projected_files(
    volume: JSON, pod: JSON, fetch: Fetch, mint: MintToken, allocatable: Mapping[str, str]
) -> dict[str, tuple[bytes, int]]:
    mode = volume.get("defaultMode", DEFAULT_MODE)
    files: dict[str, tuple[bytes, int]] = {}
    for source in volume.get("sources") or []:
        if "secret" in source:
            files.update(_keyed_files(source["secret"], "secrets", fetch, mode))
        elif "configMap" in source:
            files.update(_keyed_files(source["configMap"], "configmaps", fetch, mode))
        elif "downwardAPI" in source:
            files.update(_downward_files(source["downwardAPI"], pod, mode, allocatable))
        elif "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            jwt = mint(token.get("audience") or None, token.get("expirationSeconds", 3600))
            files[token["path"]] = (jwt.encode(), mode)
        else:
            raise VolumeError(f"projected source {sorted(source)} is not emulated")
    return files


def _write_files(directory: Path, files: Mapping[str, tuple[bytes, int]]) -> None:
    for relative, (data, mode) in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)


def _apply_fs_group(directory: Path, gid: int, read_only: bool) -> None:
    # SetVolumeOwnership of the kubelet: group-owned by fsGroup, group-readable (and writable
    # for writable volumes), setgid directories so new files inherit the group.
    mask = 0o440 if read_only else 0o660
    for path in [directory, *directory.rglob("*")]:
        os.chown(path, -1, gid, follow_symlinks=False)
        extra = mask | 0o2110 if path.is_dir() else mask
        path.chmod(path.stat().st_mode & 0o7777 | extra)


def _host_path(volume: JSON) -> str:
    spec = volume["hostPath"]
    path, kind = spec["path"], spec.get("type", "")
    if not os.path.exists(path):
        if kind == "DirectoryOrCreate":
            os.makedirs(path, mode=0o755)
        elif kind == "FileOrCreate":
            Path(path).touch(0o644)
        elif kind:
            raise VolumeError(f"hostPath type check failed: {path} is not a {kind}")
    return str(path)


def _materialize(
    volume: JSON,
    directory: Path,
    pod: JSON,
    fetch: Fetch,
    mint: MintToken,
    alloc: Mapping[str, str],
) -> None:
    spec = next((v for k, v in volume.items() if k != "name" and isinstance(v, dict)), {})
    mode = spec.get("defaultMode", DEFAULT_MODE)
    directory.mkdir(parents=True)
    if "secret" in volume:
        _write_files(directory, _keyed_files(volume["secret"], "secrets", fetch, mode))
    elif "configMap" in volume:
        _write_files(directory, _keyed_files(volume["configMap"], "configmaps", fetch, mode))
    elif "downwardAPI" in volume:
        _write_files(directory, _downward_files(volume["downwardAPI"], pod, mode, alloc))
    elif "projected" in volume:
        _write_files(directory, _projected_files(volume["projected"], pod, fetch, mint, alloc))
    elif any(k in volume for k in ("emptyDir", "ephemeral", "persistentVolumeClaim")):
        directory.chmod(0o777)  # the kubelet's emptyDir mode: any uid of the pod may write
    else:
        kinds = sorted(k for k in volume if k != "name")
        raise VolumeError(f"volume {volume['name']}: type {kinds} is not emulated")


def prepare_volumes(
    pod: JSON,
    container: JSON,
    root: Path,
    fetch: Fetch,
    mint: MintToken,
    allocatable: Mapping[str, str],
    env: Mapping[str, str],
) -> list[Mount]:
    """Writes the container's volumes under ``root`` (emptied first) and returns its mounts."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
    sources: dict[str, str] = {}
    mounts: list[Mount] = []
    for volume_mount in container.get("volumeMounts") or []:
        name = volume_mount["name"]
        volume = volumes.get(name)
        if volume is None:
            raise VolumeError(f"volume {name} is mounted but not defined")
        if name not in sources:
            if "hostPath" in volume:
                sources[name] = _host_path(volume)
            else:
                directory = root / name
                _materialize(volume, directory, pod, fetch, mint, allocatable)
                if fs_group is not None:
                    _apply_fs_group(directory, int(fs_group), any(k in volume for k in API_BACKED))
                sources[name] = str(directory)
        source = sources[name]
        sub_path = volume_mount.get("subPath") or expand(volume_mount.get("subPathExpr", ""), env)
        if sub_path:
            source = os.path.join(source, sub_path)
            if not os.path.exists(source):
                os.makedirs(source, mode=0o777)  # the kubelet creates a missing subPath too
        read_only = bool(volume_mount.get("readOnly")) or any(k in volume for k in API_BACKED)
        mounts.append(Mount(source, volume_mount["mountPath"], read_only))
    return mounts
