"""Checkpoint saves that a full disk cannot corrupt: :func:`save`.

``torch.save(obj, 'model.pt')`` writes straight into the final name. When the disk fills mid-write
it leaves a truncated file there (``torch.load`` then fails with "failed finding central
directory") and raises a ``RuntimeError`` that carries errno 28 only in its ``__context__``, or
nowhere. :func:`save` instead:

1. estimates the size (the tensor bytes in the object, else the last checkpoint's size) and makes
   sure it fits: a guard makes room by its policy or refuses, and without one the filesystem's
   available space is checked; a save that cannot fit writes nothing and raises
   :class:`~diskguard.InsufficientSpaceError`;
2. writes to a temp file in the same directory (``.diskguard-<name>.<random>.tmp``, a name the
   retention core and ``find_orphans`` know as a partial save), optionally preallocated so that
   ``ENOSPC`` comes before any byte is written;
3. fsyncs it, renames it over the final name and fsyncs the directory, so the final name holds the
   old checkpoint or the new one, whole, even across a crash;
4. on any failure removes the temp file, leaves every earlier checkpoint untouched, and reports a
   full disk or quota as :class:`~diskguard.DiskFullError` (an ``OSError`` with ``errno.ENOSPC`` or
   ``errno.EDQUOT`` and the path).

torch is imported only when :func:`save` is called.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import logging
import os
import secrets
import stat
import time
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ._diskguard import OWN_PREFIX, format_size, latest_complete, usage
from ._types import StrPath
from .errors import DISK_FULL_ERRNOS, DiskFullError, InsufficientSpaceError, disk_full_cause

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ['SaveGuard', 'estimate_size', 'remove_abandoned_temps', 'save']

logger = logging.getLogger('diskguard')

# What torch.save accepts besides (obj, f); anything else is refused before a byte is written.
TORCH_SAVE_OPTIONS = frozenset(
    {'pickle_module', 'pickle_protocol', '_use_new_zipfile_serialization', '_disable_byteorder_record'}
)
# The zip container and pickle around the tensor bytes: a fixed part (data.pkl of a plain object,
# version and byte-order records, the central directory's end) and a part per storage (its local
# header, 64-byte alignment padding, its central-directory entry and its pickle record: about 250
# bytes measured with torch 2.15, plus room for long state-dict keys).
BASE_OVERHEAD = 16 * 1024
PER_STORAGE_OVERHEAD = 384
# Room kept beyond the estimate when no guard decides: the pickle of non-tensor state is not counted.
MARGIN_FRACTION = 0.02
MARGIN_MIN = 1024 * 1024
WHAT_WAS_FULL = {errno.ENOSPC: 'the disk is full', errno.EDQUOT: 'the disk quota is exceeded'}
# The core recognises a save's temp file (retention skips it, find_orphans finds it) by this prefix.
TEMP_PREFIX = OWN_PREFIX
NAME_MAX = 255
# Enough to gather torch's small header writes; tensor data larger than this goes straight through
# (a larger buffer only adds copies: 1 MiB cost about 10% on a 1 MiB checkpoint).
WRITE_BUFFER = io.DEFAULT_BUFFER_SIZE
# A temp file this young may belong to a writer that has created it and not yet locked it.
ABANDONED_AFTER = 1.0


class SaveGuard(Protocol):
    """What :func:`save` asks of ``guard`` (a :class:`diskguard.DiskGuard` provides both)."""

    def before_save(self, path: str, nbytes: int) -> None:
        """Make room for ``nbytes`` at ``path`` or raise :class:`~diskguard.InsufficientSpaceError`."""

    def after_save(self, path: str, nbytes: int) -> None:
        """``path`` now durably holds a checkpoint of ``nbytes`` bytes (apply retention now)."""


def save(
    obj: object,
    path: StrPath,
    guard: SaveGuard | None = None,
    *,
    preallocate: bool = False,
    **torch_save_kwargs: Any,
) -> None:
    """``torch.save(obj, path)`` that can neither leave a truncated checkpoint nor a temp file behind.

    Args:
        obj: What to save, as for ``torch.save``.
        path: The checkpoint's file name (str, bytes or ``os.PathLike``). Its directory must exist,
            unless it is ``guard``'s directory (a :class:`~diskguard.DiskGuard`'s ``path``): that
            one is created (its parent must exist).
            A file object is refused: atomic replacement needs a name to write beside and rename
            over (call ``torch.save`` for a file object). A symlink at ``path`` is replaced by the
            new file; its target is left as it was.
        guard: Decides about space: ``guard.before_save(path, estimate)`` before anything is
            written (it makes room or raises :class:`~diskguard.InsufficientSpaceError`), and
            ``guard.after_save(path, size)`` once the checkpoint is durable. Without a guard the
            estimate plus a margin (2%, at least 1 MiB) must fit in the space available.
        preallocate: Reserve the estimated size (``posix_fallocate``) before writing, so a disk or
            quota that cannot hold it fails before any byte is written; the file is trimmed to its
            real size afterwards.
        torch_save_kwargs: ``pickle_module``, ``pickle_protocol``, ``_use_new_zipfile_serialization``,
            ``_disable_byteorder_record``: passed to ``torch.save``.

    Raises:
        InsufficientSpaceError: It would not fit (nothing was written).
        DiskFullError: The disk or a quota filled during the write (``errno`` is ``ENOSPC`` or
            ``EDQUOT``, chained from what the writer raised); the temp file was removed.
        TypeError, ValueError: A bad argument (the message names it), before anything is written.
        OSError: The directory is missing or unwritable, ``path`` is a directory, ...
        Any exception from pickling ``obj`` propagates as it is, after the temp file was removed.
    """
    _check_options(guard, preallocate, torch_save_kwargs)
    target = _target(path)
    directory, name = os.path.split(target)
    directory = directory or '.'
    guarded = _create_guarded_dir(guard, directory)
    # The guard never follows a symlink out of its directory (it refuses one when made; this is one
    # put there since): its saves do not either.
    nofollow = os.O_NOFOLLOW if guarded else 0
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | nofollow)
    except OSError as err:
        if guarded and err.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(directory):
            msg = 'the guarded directory is now a symlink; the guard never follows one out of its directory'
            raise OSError(errno.ELOOP, msg, directory) from err
        raise
    try:
        _check_replaceable(dir_fd, name, target)
        estimate = estimate_size(obj, previous=lambda: _previous_size(dir_fd, name, directory))
        if guard is not None:
            guard.before_save(target, estimate)
        else:
            _check_room(directory, target, estimate)
        size = _write_and_publish(
            _Publication(obj, dir_fd, name, target, estimate, preallocate, torch_save_kwargs)
        )
    finally:
        os.close(dir_fd)
    if guard is not None:
        guard.after_save(target, size)


def _create_guarded_dir(guard: object, directory: str | bytes) -> bool:
    """Creates the guard's own directory (and only it: its parent must exist) when a save goes
    there and it does not exist yet, as frameworks create their output directory. Returns whether
    ``directory`` is the guard's."""
    guarded = getattr(guard, 'path', None)
    if not isinstance(guarded, str | bytes):
        return False
    if os.path.abspath(os.fsdecode(directory)) != os.path.abspath(os.fsdecode(guarded)):
        return False
    if not os.path.lexists(directory):
        with contextlib.suppress(FileExistsError):  # created meanwhile (another rank)
            os.mkdir(directory, 0o777)
    return True


def estimate_size(obj: object, previous: Callable[[], int] | None = None) -> int:
    """Bytes ``torch.save(obj)`` will write: the tensor storages reachable through dicts, lists,
    tuples, sets, modules and optimizers (each storage counted once, however many tensors view
    it), plus the zip and pickle overhead. With no tensor found, ``previous()`` (the last
    checkpoint's size) when given, else only the overhead."""
    storages = _storage_sizes(obj)
    if not storages and previous is not None:
        return max(previous(), BASE_OVERHEAD)
    return sum(storages.values()) + BASE_OVERHEAD + PER_STORAGE_OVERHEAD * len(storages)


def _check_options(guard: object, preallocate: object, options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - TORCH_SAVE_OPTIONS)
    if unknown:
        raise TypeError(
            f'save() got unexpected keyword argument(s) {", ".join(unknown)}: torch.save accepts '
            f'{", ".join(sorted(TORCH_SAVE_OPTIONS))}'
        )
    if not isinstance(preallocate, bool):
        raise TypeError(f'preallocate={preallocate!r}: expected True or False')
    if guard is not None and not all(
        callable(getattr(guard, method, None)) for method in ('before_save', 'after_save')
    ):
        raise TypeError(
            f'guard={guard!r}: expected None or an object with before_save(path, nbytes) and '
            'after_save(path, nbytes) methods, such as a diskguard.DiskGuard'
        )


def _target(path: object) -> str:
    """The path as text, refusing what cannot name a checkpoint file."""
    if hasattr(path, 'write'):
        raise TypeError(
            f'path={path!r}: diskguard.save needs a file name, not a file object: it writes a temp '
            'file beside it and renames it over the name, so a failed save leaves nothing behind '
            '(for a file object, call torch.save)'
        )
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(
            f'path={path!r}: expected a file name (str, bytes or os.PathLike), got {type(path).__name__}'
        )
    text = os.fsdecode(os.fspath(path))
    if not text:
        raise ValueError("path='': expected the checkpoint's file name")
    if '\0' in text:
        raise ValueError(f'path={text!r}: a path cannot contain a NUL byte')
    name = os.path.basename(text)
    if name in ('', '.', '..'):
        raise IsADirectoryError(errno.EISDIR, f'{os.strerror(errno.EISDIR)}: expected a file name', text)
    return text


def _check_replaceable(dir_fd: int, name: str, target: str) -> None:
    """Refuses to replace anything but a regular file or a symlink (a directory, a FIFO, a device)."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), target)
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise ValueError(
            f'path={target!r}: is a {_kind(mode)}; save writes a regular file and would replace it '
            '(expected a regular file or a new name)'
        )


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, 'FIFO'),
        (stat.S_ISCHR, 'character device'),
        (stat.S_ISBLK, 'block device'),
        (stat.S_ISSOCK, 'socket'),
    ):
        if test(mode):
            return kind
    return 'special file'


def _storage_sizes(obj: object) -> dict[tuple[object, int], int]:
    """Bytes per distinct tensor storage reachable from ``obj``, keyed by (device, address)."""
    import torch

    storages: dict[tuple[object, int], int] = {}
    seen: set[int] = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            key, nbytes = _storage_of(item)
            storages[key] = max(storages.get(key, 0), nbytes)
            continue
        if id(item) in seen:
            continue
        if isinstance(item, (torch.nn.Module, torch.optim.Optimizer)):
            seen.add(id(item))
            stack.append(item.state_dict())
        elif isinstance(item, dict):
            seen.add(id(item))
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            seen.add(id(item))
            stack.extend(item)
    return storages


def _storage_of(tensor: Any) -> tuple[tuple[object, int], int]:
    try:
        storage = tensor.untyped_storage()
        address = storage.data_ptr()
        if address:
            return (storage.device, address), int(storage.nbytes())
    except (RuntimeError, NotImplementedError, TypeError):
        pass  # sparse, nested or wrapper tensors have no single storage: count their elements
    return ('tensor', id(tensor)), int(tensor.nelement() * tensor.element_size())


def _previous_size(dir_fd: int, name: str, directory: str) -> int:
    """The size of the checkpoint this save replaces, else of the newest complete one beside it."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size
    except OSError:
        pass
    try:
        newest = latest_complete(directory)
        return os.stat(newest).st_size if newest is not None and os.path.isfile(newest) else 0
    except (OSError, ValueError):
        return 0  # an estimate only; the write itself still cannot leave a partial file


def _check_room(directory: str, target: str, estimate: int) -> None:
    margin = max(MARGIN_MIN, int(estimate * MARGIN_FRACTION))
    needed = estimate + margin
    available = usage(directory).avail
    if needed > available:
        raise InsufficientSpaceError(
            f'not saving {target!r}: it needs about {format_size(needed)} (an estimated '
            f'{format_size(estimate)} plus a {format_size(margin)} margin) and its filesystem has '
            f'{format_size(available)} available; nothing was written. Free some space, or pass '
            'guard=diskguard.DiskGuard(...) to make room by a retention policy.',
            needed=needed,
            available=available,
        )


class _RecordingFile(io.FileIO):
    """A raw file that remembers the OS error of a failed write: torch.save turns it into a
    ``RuntimeError`` that may not carry it."""

    write_error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return super().write(data)
        except OSError as err:
            self.write_error = err
            raise


class _Publication(NamedTuple):
    """One checkpoint to write and publish: what, where (``name`` in ``dir_fd``, shown as ``target``),
    its estimated size, whether to preallocate it, and ``torch.save``'s options."""

    obj: object
    dir_fd: int
    name: str
    target: str
    estimate: int
    preallocate: bool
    options: dict[str, Any]


def _write_and_publish(job: _Publication) -> int:
    """Writes the temp file, publishes it under ``job.name``; returns its size. Removes it on failure."""
    temp = _temp_name(job.name)
    fd = _create_temp(temp, job.dir_fd, job.target)
    # Held until the rename: a temp file nobody holds locked is one whose writer is gone
    # (remove_abandoned_temps). A duplicate keeps the lock past the writer's close.
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock = os.dup(fd)
    except BaseException:
        os.close(fd)
        _remove_quietly(temp, job.dir_fd)
        raise
    try:
        return _write_locked(job, temp, fd)
    finally:
        os.close(lock)


def _write_locked(job: _Publication, temp: str, fd: int) -> int:
    obj, dir_fd, name, target, estimate, preallocate, options = job
    import torch

    raw = _RecordingFile(fd, 'wb', closefd=True)
    # torch.save writes each zip header on its own (over a hundred small writes per checkpoint):
    # a buffer makes them one system call, and it completes short writes, which torch ignores.
    file = io.BufferedWriter(raw, buffer_size=WRITE_BUFFER)
    try:
        with file:
            if preallocate:
                _preallocate(fd, estimate)
            torch.save(obj, file, **options)
            file.flush()
            size = file.tell()
            if preallocate:
                os.ftruncate(fd, size)
            _keep_owner_and_mode(fd, dir_fd, name)
            os.fsync(fd)
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException as err:
        _remove_quietly(temp, dir_fd)
        interrupt = _interrupt_in(err)
        if interrupt is not None and interrupt is not err:
            # Ctrl-C inside torch's writer comes back as a RuntimeError; it is still Ctrl-C.
            raise interrupt from None
        full = _disk_full_errno(err, raw.write_error)
        if full is None:
            raise
        raise _disk_full_error(full, target, 'its temp file was removed and') from err
    # The rename is durable only once the directory is: a crash before this fsync may bring back
    # the old entry, never a partial one.
    os.fsync(dir_fd)
    return size


def _interrupt_in(err: BaseException) -> KeyboardInterrupt | None:
    """The ``KeyboardInterrupt`` that ``err`` is or was raised while handling, if any."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _keep_owner_and_mode(fd: int, dir_fd: int, name: str) -> None:
    """Gives the new file the permission bits of the regular file it replaces (and its owner and
    group when run as root), as ``torch.save`` writing in place would keep them. A new name keeps
    the umask's mode, and so does a name another user made in a sticky shared directory. Hard links
    to the old file are not kept: the new checkpoint is a new file."""
    try:
        old = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(old.st_mode):
        return
    parent = os.fstat(dir_fd)
    shared = parent.st_mode & stat.S_ISVTX and parent.st_mode & (stat.S_IWOTH | stat.S_IWGRP)
    if shared and old.st_uid not in (os.geteuid(), parent.st_uid):
        # Another user made this name first in a sticky shared directory (/tmp): keeping their owner
        # or mode would give them our checkpoint. The kernel's fs.protected_regular reasons the same.
        return
    if os.geteuid() == 0:
        os.fchown(fd, old.st_uid, old.st_gid)  # before fchmod: a chown clears set-id bits
    os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o777)


def remove_abandoned_temps(directory: StrPath) -> list[str]:
    """Removes the temp files (``.diskguard-*.tmp``) in ``directory`` that a killed save left behind
    (SIGTERM, SIGKILL, a crash) and returns their names.

    Only files that are ours are removed: regular files (never a symlink, never one with another
    hard link) owned by this user, over a second old, that no live writer holds locked (a save locks its temp file until the rename).
    Anything else, and every error, is left alone: this is housekeeping, never a reason to fail.
    """
    removed: list[str] = []
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (OSError, ValueError):
        return removed
    try:
        with os.scandir(dir_fd) as entries:
            candidates = [
                e.name for e in entries if e.name.startswith(TEMP_PREFIX) and e.name.endswith('.tmp')
            ]
        removed = [name for name in candidates if _remove_if_abandoned(dir_fd, name)]
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    if removed:
        logger.info('removed %d temp file(s) left by interrupted saves in %s', len(removed), directory)
    return removed


def _remove_if_abandoned(dir_fd: int, name: str) -> bool:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            return False
        if st.st_nlink != 1:
            return False  # a save's temp file has one name: another is a link someone else made
        if time.time() - st.st_mtime < ABANDONED_AFTER:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a live writer holds it
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return False
        os.unlink(name, dir_fd=dir_fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _disk_full_error(errno_: int, target: str, cleanup: str) -> DiskFullError:
    return DiskFullError(
        errno_,
        f'{os.strerror(errno_)}: {WHAT_WAS_FULL[errno_]}, so the checkpoint was not saved; {cleanup} '
        'earlier checkpoints are untouched',
        target,
    )


def _create_temp(temp: str, dir_fd: int, target: str) -> int:
    """Creates the temp file; a failure is reported against ``target``, the name the caller gave."""
    try:
        return os.open(
            temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dir_fd
        )
    except OSError as err:
        if err.errno in DISK_FULL_ERRNOS:  # no inode left, or the quota counts inodes
            raise _disk_full_error(err.errno, target, 'nothing was written and') from err
        directory = os.path.dirname(target) or '.'
        raise OSError(err.errno, f'{err.strerror} (creating a file in {directory})', target) from err


def _temp_name(name: str) -> str:
    suffix = f'.{secrets.token_hex(4)}.tmp'
    room = NAME_MAX - len(TEMP_PREFIX) - len(suffix)
    stem = os.fsdecode(os.fsencode(name)[:room])
    return f'{TEMP_PREFIX}{stem}{suffix}'


def _preallocate(fd: int, nbytes: int) -> None:
    try:
        os.posix_fallocate(fd, 0, max(nbytes, 1))
    except OSError as err:
        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        # The filesystem cannot reserve space ahead: write without the reservation.


def _remove_quietly(temp: str, dir_fd: int) -> None:
    try:
        os.unlink(temp, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError:
        pass  # still named .diskguard-*.tmp: retention and find_orphans know it as a partial save


def _disk_full_errno(err: BaseException, write_error: OSError | None) -> int | None:
    """ENOSPC or EDQUOT if that is what failed: the writer's own error, or anywhere in the chain."""
    if write_error is not None and write_error.errno in DISK_FULL_ERRNOS:
        return write_error.errno
    found = disk_full_cause(err)
    return None if found is None else found.errno
