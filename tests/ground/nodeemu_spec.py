"""What the emulated container runtime makes of a pod's container: the image's local entrypoint,
the argv (``command``/``args`` with ``$(VAR)`` expansion), the environment and the identity.

Pure functions of the pod, the image table and a ``fetch`` callable that reads Secrets and
ConfigMaps (injected, so they are testable without a cluster). Values follow the kubelet:
``envFrom`` first, then ``env`` in order, each ``value`` expanded against the variables defined
before it and the service variables; ``valueFrom`` reads the downward API, Secrets and
ConfigMaps, a missing non-optional reference is ``ContainerConfigError`` (the kubelet's
``CreateContainerConfigError``, retried until it resolves).

An image is looked up by its whole reference first, then by the reference without tag or digest
(``registry:5000/ai-models-worker:1.0`` → ``registry:5000/ai-models-worker``); its ``ImageSpec``
plays the image config: ENTRYPOINT, CMD, USER, ENV and WORKDIR.
"""

from __future__ import annotations

import base64
import json
import math
import os
import pwd
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

JSON = dict[str, Any]
Fetch = Callable[[str, str], JSON | None]  # (plural kind, name) → the object or None
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
POD_IP = "127.0.0.1"


class ContainerConfigError(Exception):
    """The container cannot be created yet (a referenced Secret or key is missing, or the
    security context forbids the image's user): ``CreateContainerConfigError``."""


@dataclass(frozen=True)
class ImageSpec:
    """A local stand-in for an image: ``entrypoint`` is the argv of its ENTRYPOINT."""

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    user: int = 0
    group: int = 0
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = "/"


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...]
    no_new_privs: bool
    read_only_root: bool


def find_image(images: Mapping[str, ImageSpec], reference: str) -> ImageSpec | None:
    if reference in images:
        return images[reference]
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    return images.get(name)


def expand(text: str, values: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: ``$$`` is ``$``, unknown references stay as written."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$" or i + 1 == len(text):
            out.append(text[i])
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(":
            end = text.find(")", i + 2)
            if end == -1:
                out.append(text[i:])
                break
            name = text[i + 2 : end]
            out.append(values[name] if name in values else text[i : end + 1])
            i = end + 1
        else:
            out.append(text[i : i + 2])
            i += 2
    return "".join(out)


def _subscript(path: str, prefix: str) -> str | None:
    """``metadata.labels['x']`` → ``x`` for prefix ``metadata.labels``."""
    if path.startswith(prefix + "[") and path.endswith("]"):
        inner = path[len(prefix) + 1 : -1]
        if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
            return inner[1:-1]
    return None


def _format_map(values: Mapping[str, str]) -> str:
    # The kubelet writes `key="value"` lines sorted by key, values quoted like Go's %q.
    return "\n".join(f"{k}={json.dumps(values[k])}" for k in sorted(values))


def field_value(pod: JSON, path: str) -> str:
    """The value of a downward-API ``fieldRef.fieldPath``."""
    meta: JSON = pod["metadata"]
    spec: JSON = pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": POD_IP,
        "status.hostIPs": POD_IP,
        "status.podIP": POD_IP,
        "status.podIPs": POD_IP,
    }
    if path in simple:
        return str(simple[path])
    for section in ("labels", "annotations"):
        values: dict[str, str] = meta.get(section) or {}
        if path == f"metadata.{section}":
            return _format_map(values)
        key = _subscript(path, f"metadata.{section}")
        if key is not None:
            return values.get(key, "")
    raise ContainerConfigError(f'unsupported fieldPath "{path}"')


def resource_value(
    container: JSON, resource: str, divisor: str | None, allocatable: Mapping[str, str]
) -> str:
    """A ``resourceFieldRef`` value: the container's limit (the node's allocatable when unset)
    or request, divided by ``divisor`` and rounded up, as the kubelet does."""
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise ContainerConfigError(f'unsupported resource "{resource}"')
    resources: JSON = container.get("resources") or {}
    quantity = (resources.get(kind) or {}).get(name)
    if quantity is None:  # no request means 0; no limit means the node's allocatable
        quantity = "0" if kind == "requests" else allocatable.get(name, "0")
    return str(math.ceil(_quantity(quantity) / _quantity(divisor or "1")))


def _quantity(text: str) -> Decimal:
    value: Decimal = parse_quantity(text)  # type: ignore[no-untyped-call]
    return value


def _decode(data: str) -> str:
    return base64.b64decode(data).decode("utf-8", errors="surrogateescape")


def _object_values(obj: JSON, kind: str) -> dict[str, str]:
    if kind == "secrets":
        return {k: _decode(v) for k, v in (obj.get("data") or {}).items()}
    values: dict[str, str] = dict(obj.get("data") or {})
    values.update({k: _decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return values


def _key_ref(ref: JSON, kind: str, fetch: Fetch) -> str | None:
    obj = fetch(kind, ref.get("name", ""))
    values = _object_values(obj, kind) if obj is not None else {}
    if ref.get("key") in values:
        return values[ref["key"]]
    if ref.get("optional"):
        return None
    what = "secret" if kind == "secrets" else "configmap"
    if obj is None:
        raise ContainerConfigError(f'{what} "{ref.get("name")}" not found')
    raise ContainerConfigError(f"couldn't find key {ref.get('key')} in {what} {ref.get('name')}")


def _env_from(container: JSON, fetch: Fetch) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "secretRef" in source:
            kind, ref = "secrets", source["secretRef"] or {}
        else:
            kind, ref = "configmaps", source.get("configMapRef") or {}
        obj = fetch(kind, ref.get("name", ""))
        if obj is None:
            if ref.get("optional"):
                continue
            raise ContainerConfigError(f'{kind[:-1]} "{ref.get("name")}" not found')
        prefix = source.get("prefix", "")
        env.update({prefix + k: v for k, v in _object_values(obj, kind).items()})
    return env


def environment(
    pod: JSON,
    container: JSON,
    image: ImageSpec,
    service_env: Mapping[str, str],
    fetch: Fetch,
    allocatable: Mapping[str, str],
) -> dict[str, str]:
    """The container's environment, in the order a process sees it."""
    defined = _env_from(container, fetch)
    for var in container.get("env") or []:
        source: JSON | None = var.get("valueFrom")
        if source is None:
            defined[var["name"]] = expand(var.get("value", ""), {**service_env, **defined})
            continue
        value: str | None
        if "fieldRef" in source:
            value = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            value = resource_value(container, ref["resource"], ref.get("divisor"), allocatable)
        elif "secretKeyRef" in source:
            value = _key_ref(source["secretKeyRef"], "secrets", fetch)
        elif "configMapKeyRef" in source:
            value = _key_ref(source["configMapKeyRef"], "configmaps", fetch)
        else:
            raise ContainerConfigError(f"unsupported valueFrom of {var['name']}")
        if value is not None:
            defined[var["name"]] = value
    base = {"PATH": DEFAULT_PATH, **image.env, "HOSTNAME": pod["metadata"]["name"]}
    return {**base, **service_env, **defined}


def argv(container: JSON, image: ImageSpec, env: Mapping[str, str]) -> list[str]:
    """ENTRYPOINT/CMD overridden by ``command``/``args`` as Kubernetes defines it."""
    command: list[str] | None = container.get("command")
    args: list[str] | None = container.get("args")
    if command:
        words = [*command, *(args or [])]
    else:
        words = [*image.entrypoint, *(args if args is not None else image.cmd)]
    return [expand(word, env) for word in words]


def identity(pod: JSON, container: JSON, image: ImageSpec) -> Identity:
    """The process's uid, gid and groups from the security contexts (container over pod over
    image); raises ``ContainerConfigError`` when ``runAsNonRoot`` meets uid 0."""
    pod_context: JSON = pod.get("spec", {}).get("securityContext") or {}
    context: JSON = container.get("securityContext") or {}

    def pick(key: str) -> Any:
        return context.get(key, pod_context.get(key))

    uid = pick("runAsUser")
    uid = image.user if uid is None else int(uid)
    gid = pick("runAsGroup")
    gid = image.group if gid is None else int(gid)
    if pick("runAsNonRoot") and uid == 0:
        meta = pod["metadata"]
        raise ContainerConfigError(
            "container has runAsNonRoot and image will run as root "
            f'(pod: "{meta["name"]}_{meta["namespace"]}({meta["uid"]})", '
            f"container: {container['name']})"
        )
    groups = [int(g) for g in pod_context.get("supplementalGroups") or []]
    if pod_context.get("fsGroup") is not None:
        groups.append(int(pod_context["fsGroup"]))
    return Identity(
        uid=uid,
        gid=gid,
        groups=tuple(dict.fromkeys([gid, *groups])),
        no_new_privs=context.get("allowPrivilegeEscalation") is False,
        read_only_root=bool(context.get("readOnlyRootFilesystem")),
    )


def home_of(uid: int, env: Mapping[str, str]) -> dict[str, str]:
    """HOME as container runtimes set it: the user's home in the passwd file, else ``/``."""
    if "HOME" in env:
        return {}
    try:
        return {"HOME": pwd.getpwuid(uid).pw_dir}
    except KeyError:
        return {"HOME": "/"}


def working_dir(container: JSON, image: ImageSpec) -> str:
    directory: str = container.get("workingDir") or image.working_dir
    return directory if os.path.isabs(directory) else "/"


def normalize_images(images: Mapping[str, Sequence[str] | ImageSpec]) -> dict[str, ImageSpec]:
    return {
        name: spec if isinstance(spec, ImageSpec) else ImageSpec(entrypoint=tuple(spec))
        for name, spec in images.items()
    }
