"""A directory written through file descriptors only: nothing in it can redirect a write.

``materialize`` writes into a directory a workload shares (an ``emptyDir``, a PVC), so anything
may already sit there: a symlink to ``/etc/passwd`` at a file's path, a FIFO that would block an
``open`` forever, a symlinked parent directory. Every operation here is relative to a directory
file descriptor and never follows a link: directories are opened one component at a time with
``O_DIRECTORY | O_NOFOLLOW``, files with ``O_NOFOLLOW | O_NONBLOCK`` and checked to be regular
with ``fstat`` on the descriptor actually opened, renames use ``src_dir_fd``/``dst_dir_fd``,
modes are set with ``fchmod``. Whatever is found in the way is ``UnsafeDestination`` naming it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

from worker.errors import DestinationNotADirectory, UnsafeDestination

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
_KINDS = (
    (stat.S_ISLNK, "a symlink"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_root(path: str) -> int:
    """A descriptor of ``path``, created with its parents when missing (``--to`` is the
    operator's own setting, so links in it are followed; only what lies inside is distrusted)."""
    try:
        os.makedirs(path, exist_ok=True)
        return os.open(path, _DIR_FLAGS & ~os.O_NOFOLLOW)
    except (FileExistsError, NotADirectoryError):
        raise DestinationNotADirectory(
            f"{path}: exists and is not a directory; give materialize --to a directory "
            "(or a path that does not exist yet)"
        ) from None


class SafeDirectory:
    """``root`` (a descriptor this object owns) and the relative paths under it."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self.name = name

    def close(self) -> None:
        os.close(self.fd)

    def unsafe(self, relative: str, found: str) -> UnsafeDestination:
        return UnsafeDestination(
            f"{self.name}/{relative}: is {found}; materialize never writes through links or "
            "special files in its directory: remove it (or use an empty directory) and run again"
        )

    @contextlib.contextmanager
    def directory(self, relative: str) -> Iterator[int]:
        """A descriptor of the directory ``relative`` ("" = the root), created as needed."""
        fd = os.dup(self.fd)
        walked: list[str] = []
        try:
            for part in [p for p in relative.split("/") if p]:
                walked.append(part)
                child = self._open_directory(fd, part, "/".join(walked))
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def _open_directory(self, fd: int, part: str, relative: str) -> int:
        for attempt in range(2):
            try:
                return os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if attempt:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            except OSError as error:
                if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                found = os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode
                raise self.unsafe(relative, _kind(found)) from None
        raise AssertionError("unreachable")

    def lstat(self, dir_fd: int, name: str, relative: str) -> os.stat_result | None:
        """The entry's stat, ``None`` when missing; anything but a regular file is refused."""
        try:
            found = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(found.st_mode):
            raise self.unsafe(relative, _kind(found.st_mode))
        return found

    def open_file(self, dir_fd: int, name: str, relative: str, flags: int) -> int:
        """Opens a regular file (``flags``: access and ``O_CREAT``/``O_EXCL``/``O_APPEND``); for
        writing, only one with no other hard link."""
        self.lstat(dir_fd, name, relative)  # refuse before an open could have side effects
        try:
            fd = os.open(name, flags | _FILE_FLAGS, 0o600, dir_fd=dir_fd)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                raise self.unsafe(relative, "a symlink or special file") from None
            raise
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):  # swapped in between the lstat and the open
            os.close(fd)
            raise self.unsafe(relative, _kind(found.st_mode))
        if flags & (os.O_WRONLY | os.O_RDWR) and found.st_nlink > 1:
            os.close(fd)  # writing would change the other name's file too (maybe outside DIR)
            raise self.unsafe(relative, f"a file with {found.st_nlink} hard links")
        os.set_blocking(fd, True)
        return fd

    def remove(self, dir_fd: int, name: str) -> None:
        """Unlinks a regular file or a link (never what a link points to); missing is fine."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)

    def place(self, src_fd: int, src: str, dst_fd: int, dst: str, relative: str) -> os.stat_result:
        """Renames ``src`` onto ``dst`` (an existing link or special file there is refused);
        returns the placed file's stat."""
        self.lstat(dst_fd, dst, relative)
        os.replace(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        return os.stat(dst, dir_fd=dst_fd, follow_symlinks=False)
