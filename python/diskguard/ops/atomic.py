"""Files the commands write (the state file, the Prometheus textfile), written so that another user
of the machine can neither redirect nor read them.

The monitor often runs as root in directories other users can write to (``/tmp``, a shared
node_exporter textfile directory). A predictable temporary name such as ``F.<pid>.tmp`` opened with a
plain ``open()`` follows a symlink planted there and truncates whatever it points to. Here the
temporary file is created the way ``mkstemp`` does: a random name beside the target, ``O_CREAT |
O_EXCL | O_NOFOLLOW`` (an existing name, symlink or not, is never opened), mode 0600 while it is
written, then ``fchmod`` to its final mode on the descriptor (never by name), ``fsync`` and ``rename``
over the target within the same directory descriptor. The rename replaces a symlink at the target
itself rather than following it.

The directory itself is opened one component at a time, following a symlink as the kernel's
``fs.protected_symlinks=1`` would (some kernels run with it off): never one that sits in a sticky
world-writable directory (``/tmp``) and belongs to neither this user nor that directory's owner, so
another user cannot point ``--textfile /tmp/prom`` or the state file's directory elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat

#: Attempts at a fresh random name before giving up (each collision is a name someone planted).
ATTEMPTS = 100
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: Symlinks followed on the way to one directory, as the kernel's own limit (ELOOP past it).
MAX_SYMLINKS = 40


def temp_name(name: str) -> str:
    """A hidden, random name beside ``name`` (``.name.<16 hex>.tmp``): no ``*.prom`` collector and no
    other user can predict it."""
    return f'.{name}.{secrets.token_hex(8)}.tmp'


def _create(dir_fd: int, name: str) -> tuple[str, int]:
    for _ in range(ATTEMPTS):
        temporary = temp_name(name)
        try:
            return temporary, os.open(temporary, _CREATE, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            continue
    raise FileExistsError(17, f'no free temporary name after {ATTEMPTS} attempts', name)


def open_directory(path: str) -> int:
    """A descriptor of the directory ``path`` (absolute), reached one component at a time; a symlink
    is followed only where ``fs.protected_symlinks=1`` would follow it (see the module's text)."""
    fd = os.open('/', _DIRECTORY)
    try:
        parts = [p for p in path.split('/') if p not in ('', '.')]
        followed = 0
        while parts:
            part = parts.pop(0)
            try:
                inner = os.open(part, _DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as err:
                if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                link = os.stat(part, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(link.st_mode):
                    raise
                parent = os.fstat(fd)
                sticky_shared = parent.st_mode & stat.S_ISVTX and parent.st_mode & stat.S_IWOTH
                if sticky_shared and link.st_uid not in (os.geteuid(), parent.st_uid):
                    raise PermissionError(
                        errno.EACCES,
                        f'{os.strerror(errno.EACCES)}: not following {part!r}, a symlink of uid '
                        f'{link.st_uid} in a sticky world-writable directory',
                        path,
                    ) from None
                followed += 1
                if followed > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path) from None
                target = os.readlink(part, dir_fd=fd)
                if target.startswith('/'):
                    os.close(fd)
                    fd = -1
                    fd = os.open('/', _DIRECTORY)
                parts[:0] = [p for p in target.split('/') if p not in ('', '.')]
                continue
            os.close(fd)
            fd = inner
        return fd
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise


def write_file(path: str, data: bytes, mode: int = 0o644) -> None:
    """Replaces ``path`` with ``data`` atomically: readers see the old file or the new one, whole.

    The new file has exactly ``mode`` (the umask plays no part) and is owned by the writer. A
    failure removes the temporary file and raises the ``OSError``.
    """
    directory, name = os.path.split(os.path.abspath(path))
    dir_fd = open_directory(directory)
    try:
        temporary, fd = _create(dir_fd, name)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchmod(fd, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=dir_fd)
            raise
        # The rename is durable once the directory is; a failure here loses nothing already visible.
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
