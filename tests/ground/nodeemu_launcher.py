"""The emulated container runtime's last step, run as ``unshare --mount --propagation private --
python -I -S nodeemu_launcher.py <spec.json>``: inside the process's own mount namespace it
mounts the pod's volumes at their paths, drops to the pod's user and execs the container's argv.
It execs (never forks), so the process the node emulator started keeps its PID and group.

Mount paths that do not exist on the host (``/var/run/secrets/kubernetes.io/serviceaccount``,
``/dev/termination-log``, ``/workspace``) must be created without touching the host: the
nearest existing ancestor is *shadowed* — a tmpfs is mounted over it in this namespace only and
every original entry is bind-mounted (or, for symlinks, copied) back, so the directory looks
the same plus the new mount points. Shadowing ``/`` itself is done by building that tmpfs as a
new root and ``chroot``-ing into it. Sources are opened (``O_PATH``) before anything is mounted
and mounted from ``/proc/self/fd/N``, so a volume mounted over ``/tmp`` cannot hide the
sources of the next ones.

For a non-root user, directories on the way to the entrypoint (and its ``#!`` interpreter) that
the user may not search — the venv's Python lives under ``/root`` on these machines — are
shadowed with an extra search bit: a real image's files are readable by its user.
``readOnlyRootFilesystem`` remounts read-only every mount of the namespace except ``/proc``,
``/sys``, ``/dev`` and the volumes. A setup failure is written to the spec's ``errorFd`` and
ends the launcher with exit code 128, which the runner reports as ``StartError``: the reason
goes through a pipe that a successful exec closes, so the runner knows when the container
really started.

Standard library only: it runs with ``-I -S`` before the process is the container.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import stat
import sys
from typing import Any

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 0x20, 0x400, 0x800, 0x1000, 0x4000
MS_RELATIME = 0x200000
PR_SET_NO_NEW_PRIVS = 38
START_ERROR_EXIT = 128
# statvfs flags of a mount → the mount(2) flags a bind remount must repeat to keep them.
KEPT_FLAGS = {
    os.ST_NOSUID: MS_NOSUID,
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: MS_NOATIME,
    os.ST_NODIRATIME: MS_NODIRATIME,
    os.ST_RELATIME: MS_RELATIME,
}
KERNEL_TREES = ("/proc", "/sys", "/dev")

_libc = ctypes.CDLL(None, use_errno=True)


class StartError(Exception):
    pass


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    def enc(value: str | None) -> bytes | None:
        return None if value is None else value.encode()

    if _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        errno = ctypes.get_errno()
        raise StartError(f"mount {source} on {target}: {os.strerror(errno)}")


def _under(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _remount_read_only(target: str) -> None:
    flags = os.statvfs(target).f_flag
    kept = sum(ms for st, ms in KEPT_FLAGS.items() if flags & st)
    _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)


class Namespace:
    """Mount operations inside the private namespace, remembering which directories are its
    own (tmpfs shadows, volumes) and may therefore be written to."""

    def __init__(self, scratch: str) -> None:
        self.scratch = scratch
        # Directories that exist in this namespace only (shadow tmpfs roots and what was made
        # in them): new entries may be created there. Entries copied into a shadow are binds of
        # the host's directories, so *not* what lies below a fresh directory.
        self.fresh: set[str] = set()
        self.volumes: list[str] = []  # mount points of volumes: their content is the pod's

    def _replicate(self, original: str, directory: str, entries: list[os.DirEntry[str]]) -> None:
        for entry in entries:
            source, copy = f"{original}/{entry.name}", os.path.join(directory, entry.name)
            if entry.is_symlink():
                os.symlink(os.readlink(source), copy)
                continue
            if entry.is_dir(follow_symlinks=False):
                os.mkdir(copy)
            else:
                os.close(os.open(copy, os.O_CREAT | os.O_WRONLY, 0o600))
            _mount(source, copy, None, MS_BIND | MS_REC)

    def shadow(self, directory: str, extra_mode: int = 0) -> None:
        """Mounts a tmpfs over ``directory`` that shows its old entries (bind-mounted back)."""
        info = os.stat(directory)
        options = (
            f"mode={(info.st_mode & 0o7777) | extra_mode:o},uid={info.st_uid},gid={info.st_gid}"
        )
        entries = list(os.scandir(directory))
        if directory == "/":
            new_root = os.path.join(self.scratch, "root")  # empty on the host: a mount point
            os.makedirs(new_root, exist_ok=True)
            _mount("tmpfs", new_root, "tmpfs", 0, options)
            self._replicate("", new_root, entries)
            os.chroot(new_root)
            os.chdir("/")
        else:
            keep = os.open(directory, os.O_PATH | os.O_DIRECTORY)
            try:
                _mount("tmpfs", directory, "tmpfs", 0, options)
                self._replicate(f"/proc/self/fd/{keep}", directory, entries)
            finally:
                os.close(keep)
        self.fresh.add(directory)

    def ensure(self, target: str, is_dir: bool) -> str:
        """The real path of ``target``, created in this namespace only when missing."""
        real = os.path.realpath(target)
        if os.path.lexists(real):
            if os.path.isdir(real) != is_dir:
                kind = "directory" if is_dir else "file"
                raise StartError(f"cannot mount a {kind} on {target}: type mismatch")
            return real
        missing = [real]
        while not os.path.exists(os.path.dirname(missing[-1])):
            missing.append(os.path.dirname(missing[-1]))
        ancestor = os.path.dirname(missing[-1])
        if ancestor not in self.fresh and not _under(ancestor, self.volumes):
            self.shadow(ancestor)
        for path in reversed(missing[1:]):
            os.mkdir(path, 0o755)
            self.fresh.add(path)
        if is_dir:
            os.mkdir(real, 0o755)
            self.fresh.add(real)
        else:
            os.close(os.open(real, os.O_CREAT | os.O_WRONLY, 0o644))
        return real

    def mount_volumes(self, mounts: list[dict[str, Any]]) -> list[tuple[str, bool]]:
        # Sources first, as descriptors: later mounts (over /tmp, say) may hide their paths.
        opened = [(m, os.open(m["source"], os.O_PATH)) for m in mounts]
        done: list[tuple[str, bool]] = []
        for mount, fd in sorted(opened, key=lambda pair: pair[0]["target"].count("/")):
            is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
            real = self.ensure(mount["target"], is_dir)
            _mount(f"/proc/self/fd/{fd}", real, None, MS_BIND | MS_REC)
            os.close(fd)
            self.volumes.append(real)
            done.append((real, bool(mount["readOnly"])))
        # Read-only last: a read-only volume may hold the mount point of a nested one.
        for real, read_only in done:
            if read_only:
                _remount_read_only(real)
        return done

    def make_searchable(self, paths: list[str], uid: int, groups: set[int]) -> None:
        blocked: set[str] = set()
        for path in paths:
            for candidate in (path, os.path.realpath(path)):
                directory = os.path.dirname(candidate)
                while directory != "/":
                    if not _searchable(directory, uid, groups):
                        blocked.add(directory)
                    directory = os.path.dirname(directory)
        for directory in sorted(blocked, key=lambda d: d.count("/")):
            self.shadow(directory, extra_mode=0o011)

    def read_only_root(self, volumes: list[str]) -> None:
        with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
            points = [_unescape(line.split()[4]) for line in mountinfo]
        for point in dict.fromkeys(points):
            if not _under(point, [*KERNEL_TREES, *volumes]) and os.path.exists(point):
                _remount_read_only(point)


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _searchable(directory: str, uid: int, groups: set[int]) -> bool:
    info = os.stat(directory)
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in groups:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def _resolve(command: str, env: dict[str, str], cwd: str) -> str:
    if "/" in command:
        path = os.path.join(cwd, command)
        if os.path.exists(path):
            return path
        raise StartError(f'exec: "{command}": stat {command}: no such file or directory')
    for directory in env.get("PATH", "").split(":"):
        path = os.path.join(directory or ".", command)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise StartError(f'exec: "{command}": executable file not found in $PATH')


def _interpreter(path: str) -> list[str]:
    """The ``#!`` interpreter of a script, which must be reachable too."""
    try:
        with open(path, "rb") as file:
            first = file.readline(256)
    except OSError:
        return []
    if first.startswith(b"#!") and first[2:].split():
        return [first[2:].split()[0].decode(errors="replace")]
    return []


def _find_executable(command: str, env: dict[str, str], cwd: str, volumes: list[str]) -> str:
    try:
        return _resolve(command, env, cwd)
    except StartError:
        # Say so when a volume hides it (test scripts under /tmp, with an emptyDir on /tmp).
        hidden = [v for v in volumes if _under(os.path.dirname(command), [v])]
        if hidden:
            raise StartError(
                f'exec: "{command}": hidden by the volume mounted at {hidden[0]} '
                "(an image's files cannot live under a mountPath)"
            ) from None
        raise


def _keep_image_paths(
    namespace: Namespace, paths: list[tuple[str, int]], volumes: list[str]
) -> None:
    """Binds back the image's own directories that a volume now hides (read-only)."""
    for path, fd in paths:
        if _under(path, volumes):
            real = namespace.ensure(path, is_dir=True)
            _mount(f"/proc/self/fd/{fd}", real, None, MS_BIND | MS_REC)
            _remount_read_only(real)
        os.close(fd)


def launch(spec: dict[str, Any]) -> None:
    namespace = Namespace(spec["scratch"])
    # Opened before the volumes are mounted: a volume over an ancestor would hide them.
    image_paths = [
        (p, os.open(p, os.O_PATH)) for p in spec.get("imagePaths", []) if os.path.isdir(p)
    ]
    volumes = [real for real, _ in namespace.mount_volumes(spec["mounts"])]
    _keep_image_paths(namespace, image_paths, volumes)
    env: dict[str, str] = spec["env"]
    cwd = namespace.ensure(spec["cwd"], is_dir=True)
    executable = _find_executable(spec["argv"][0], env, cwd, volumes)
    uid, gid, groups = int(spec["uid"]), int(spec["gid"]), [int(g) for g in spec["groups"]]
    if uid != 0:
        namespace.make_searchable([executable, *_interpreter(executable)], uid, {gid, *groups})
    if spec["readOnlyRoot"]:
        namespace.read_only_root(volumes)
    if spec["noNewPrivs"] and _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise StartError(f"prctl(NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")
    os.setgroups(groups)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    os.chdir(cwd)
    try:
        os.execve(executable, spec["argv"], env)  # noqa: S606 - exactly the container's argv
    except OSError as error:
        raise StartError(f'exec: "{spec["argv"][0]}": {error.strerror}') from error


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as file:
        spec = json.load(file)
    # The runner reads this pipe to its end: closed by a successful exec (close-on-exec), or
    # carrying the reason the container could not start.
    report = int(spec["errorFd"])
    os.set_inheritable(report, False)
    try:
        launch(spec)
    except Exception as error:  # noqa: BLE001 - every setup failure is the container's StartError
        os.write(report, str(error).encode()[:4096])
        os._exit(START_ERROR_EXIT)


if __name__ == "__main__":
    main()
