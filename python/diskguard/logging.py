"""Rotating log files sized from free space, that never crash a run when the disk fills.

:class:`RotatingFileHandler` is a drop-in subclass of :class:`logging.handlers.RotatingFileHandler`:

- A write or rotation that fails because the disk is full (ENOSPC, EDQUOT) never raises into the
  caller and never prints a traceback per record. The record is counted in :attr:`dropped`, a
  :class:`~diskguard.DiskSpaceWarning` is issued once, writes pause for ``retry_interval`` seconds,
  and logging resumes by itself when space returns, first writing a line that says how many records
  were lost. When the handler's own rotated files are what filled the disk (it was configured with
  more than the disk holds), it first deletes its oldest rotated file and writes the record, as
  journald vacuums its own archives before it drops anything.
- ``compress=True`` gzips rotated files; ``max_total_bytes`` bounds the footprint of the live file and
  every rotated one (compressed sizes counted), deleting the oldest rotated files at rotation.
- Configured to grow without bound (``maxBytes`` or ``backupCount`` of 0, where the standard library
  never rotates), it says so with a :class:`~diskguard.DiskSpaceWarning`.

:meth:`RotatingFileHandler.from_budget` sizes all of it from the filesystem with
:func:`diskguard.log_budget` (systemd-journald's rule) and re-sizes as free space changes.
"""

from __future__ import annotations

import contextlib
import gzip
import locale
import logging
import logging.handlers
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._diskguard import LogBudget, log_budget
from .errors import DISK_FULL_ERRNOS, DiskSpaceWarning

__all__ = ['RotatingFileHandler']

# How far back a record cut short by a full disk is looked for (longer records stay as written).
PARTIAL_LINE_LOOKBACK = 1024 * 1024


def _is_disk_full(err: BaseException | None) -> bool:
    return isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS


def _is_byte_count(value: float) -> bool:
    # A float is accepted as the standard library accepts it (maxBytes=1e6), if it is a whole number.
    return math.isfinite(value) and value >= 0 and float(value).is_integer()


_NONE = type(None)
# Constructor argument -> (accepted types, rule for the value or None, what is allowed).
ARGUMENT_RULES: dict[str, tuple[tuple[type, ...], Callable[[Any], bool] | None, str]] = {
    'mode': ((str,), lambda v: v in ('a', 'w'), "'a' or 'w'"),
    'encoding': ((str, _NONE), None, 'a str or None'),
    'errors': ((str, _NONE), None, 'a str or None'),
    'delay': ((bool,), None, 'True or False'),
    'compress': ((bool,), None, 'True or False'),
    'backupCount': ((int,), lambda v: v >= 0, 'a whole number >= 0'),
    'maxBytes': ((int, float), _is_byte_count, 'a whole byte count >= 0 (0: never rotate)'),
    'max_total_bytes': (
        (int, float, _NONE),
        lambda v: v is None or _is_byte_count(v),
        'a whole byte count >= 0, or None for no bound beyond backupCount',
    ),
    'retry_interval': ((int, float), lambda v: math.isfinite(v) and v >= 0, 'finite seconds >= 0'),
}


def _check_arguments(filename: object, **values: Any) -> None:
    """Checks every constructor argument before anything is opened; errors name the argument."""
    if not isinstance(filename, (str, os.PathLike)):
        raise TypeError(f'filename={filename!r}: expected str or os.PathLike, got {type(filename).__name__}')
    for name, (types, rule, allowed) in ARGUMENT_RULES.items():
        value = values[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise TypeError(f'{name}={value!r}: expected {allowed}, got {type(value).__name__}')
        if rule is not None and not rule(value):
            raise ValueError(f'{name}={value!r}: expected {allowed}')


def _gzip_rotator(source: str, dest: str) -> None:
    """Compresses ``source`` into ``dest`` and removes ``source``; leaves no partial ``dest``.

    ``dest`` is created exclusively, never through a symlink: the base class removes an existing
    archive only when ``os.path.exists`` sees it, which a dangling symlink (planted in a shared log
    directory) is not, and opening it would create the file it points to."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(dest, flags, 0o666)
    except FileExistsError:
        os.unlink(dest)  # the name itself (a symlink is removed, its target left alone)
        fd = os.open(dest, flags, 0o666)
    try:
        with (
            open(fd, 'wb') as raw,
            open(source, 'rb') as src,
            gzip.GzipFile(filename=dest, mode='wb', fileobj=raw) as out,
        ):
            shutil.copyfileobj(src, out)
    except BaseException:
        try:
            os.remove(dest)
        except OSError:
            pass
        raise
    os.remove(source)


@dataclass(frozen=True)
class _BudgetSpec:
    """What :meth:`RotatingFileHandler.from_budget` was asked for, to re-size from later."""

    options: dict[str, Any]
    resize_interval: float
    compress: bool


class RotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A :class:`logging.handlers.RotatingFileHandler` that survives a full disk.

    Args:
        filename, mode, maxBytes, backupCount, encoding, delay, errors: as in the standard library.
        compress: gzip rotated files (``app.log.1.gz``).
        max_total_bytes: bound on the live file plus all rotated files; the oldest rotated files are
            deleted at rotation until the total fits. ``None``: only ``backupCount`` bounds it.
        retry_interval: seconds to drop records without touching the disk after a disk-full error.

    Every argument is checked before the log file is opened: a ``bool``, NaN, infinity, a negative
    number or a wrong type raises ``TypeError``/``ValueError`` naming the argument and what is allowed.

    Attributes:
        dropped: records lost because the disk was full (they are also reported in the log itself
            once writing resumes).
        vacuumed: rotated files this handler deleted to make room for a record, oldest first.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        mode: str = 'a',
        maxBytes: int = 0,
        backupCount: int = 0,
        encoding: str | None = None,
        delay: bool = False,
        errors: str | None = None,
        *,
        compress: bool = False,
        max_total_bytes: int | None = None,
        retry_interval: float = 1.0,
    ) -> None:
        _check_arguments(
            filename,
            mode=mode,
            maxBytes=maxBytes,
            backupCount=backupCount,
            encoding=encoding,
            delay=delay,
            errors=errors,
            compress=compress,
            max_total_bytes=max_total_bytes,
            retry_interval=retry_interval,
        )
        super().__init__(filename, mode, maxBytes, backupCount, encoding, delay, errors)
        if maxBytes <= 0 or backupCount <= 0:
            warnings.warn(
                f'{self.baseFilename}: maxBytes={maxBytes}, backupCount={backupCount} never rotates, '
                'so this log grows without bound; use RotatingFileHandler.from_budget() to size it '
                'from the disk',
                DiskSpaceWarning,
                stacklevel=2,
            )
        self.compress = compress
        if compress:
            self.namer = lambda name: name + '.gz'
            self.rotator = _gzip_rotator
        self.max_total_bytes = max_total_bytes
        self.retry_interval = retry_interval
        self.dropped = 0
        self.vacuumed: list[str] = []
        self.budget: LogBudget | None = None
        self._budget_spec: _BudgetSpec | None = None
        self._resize_at = float('inf')
        self._paused_until: float | None = None
        self._dropped_at_pause = 0
        self._in_episode = False
        self._write_failed = False
        self._full_error: BaseException | None = None
        self._warned = False

    @classmethod
    def from_budget(
        cls,
        filename: str | os.PathLike[str],
        *,
        max_use: int | str | None = None,
        max_use_fraction: float = 0.10,
        keep_free: int | str | None = None,
        max_file_size: int | str | None = None,
        compress: bool = False,
        resize_interval: float = 60.0,
        retry_interval: float = 1.0,
        encoding: str | None = 'utf-8',
        delay: bool = False,
    ) -> RotatingFileHandler:
        """A handler whose ``maxBytes``, ``backupCount`` and total footprint come from the disk.

        The budget is ``min(max_use, max_use_fraction x filesystem size, available + the logs' own
        size - keep_free)``, journald's rule (defaults: 4 GiB, 10%, 15% of the filesystem up to
        4 GiB; files of budget / 8 up to 128 MiB). It is recomputed every ``resize_interval``
        seconds, so a filling disk shrinks it; the new limits apply from the next rotation.
        """
        if (
            isinstance(resize_interval, bool)
            or not isinstance(resize_interval, int | float)
            or not math.isfinite(resize_interval)
            or resize_interval < 0
        ):
            numeric = isinstance(resize_interval, int | float) and not isinstance(resize_interval, bool)
            raise (ValueError if numeric else TypeError)(
                f'resize_interval={resize_interval!r}: expected a finite number of seconds >= 0'
            )
        options: dict[str, Any] = {
            'max_use': max_use,
            'max_use_fraction': max_use_fraction,
            'keep_free': keep_free,
            'max_file_size': max_file_size,
        }
        directory = os.path.dirname(os.path.abspath(os.fspath(filename)))
        budget = log_budget(directory, **options)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DiskSpaceWarning)  # the budget always rotates
            handler = cls(
                filename,
                maxBytes=budget.max_bytes,
                backupCount=_backups_for(budget, compress),
                encoding=encoding,
                delay=delay,
                compress=compress,
                max_total_bytes=budget.total_bytes,
                retry_interval=retry_interval,
            )
        handler.budget = budget
        handler._budget_spec = _BudgetSpec(options, resize_interval, compress)
        handler._resize_at = time.monotonic() + resize_interval
        return handler

    def rotated_files(self) -> list[str]:
        """The rotated files that exist, newest first."""
        names = (self.rotation_filename(f'{self.baseFilename}.{i}') for i in range(1, self.backupCount + 1))
        return [name for name in names if os.path.exists(name)]

    def footprint(self) -> int:
        """Bytes the live file and every rotated file occupy now."""
        total = 0
        for name in [self.baseFilename, *self.rotated_files()]:
            try:
                total += os.stat(name).st_size
            except OSError:
                pass
        return total

    def emit(self, record: logging.LogRecord) -> None:
        paused_until = self._paused_until
        if paused_until is not None and (time.monotonic() < paused_until or not self._resume()):
            self.dropped += 1
            return
        if self._budget_spec is not None and time.monotonic() >= self._resize_at:
            self._resize()
        self._write_failed = False
        super().emit(record)
        while self._write_failed and self._vacuum_oldest():
            # Our own rotated files took the room: the oldest is worth less than a new record.
            self._write_failed = False
            super().emit(record)
        if self._write_failed:
            self._pause()
            self.dropped += 1

    def doRollover(self) -> None:
        super().doRollover()
        if self.max_total_bytes is not None:
            self._enforce_total()

    def handleError(self, record: logging.LogRecord) -> None:
        err = sys.exc_info()[1]
        if not _is_disk_full(err):
            super().handleError(record)
            return
        self._write_failed = True
        self._full_error = err
        self._discard_stream()
        self._drop_partial_line()

    def _pause(self) -> None:
        """The disk stays full after vacuuming: drop records for ``retry_interval`` seconds."""
        if not self._in_episode:
            self._in_episode = True
            self._dropped_at_pause = self.dropped
        self._paused_until = time.monotonic() + self.retry_interval
        if not self._warned:
            self._warned = True
            self._warn(
                f'{self.baseFilename}: the disk is full ({self._full_error}); log records are dropped '
                'and counted in handler.dropped until space returns'
            )

    def _vacuum_oldest(self) -> bool:
        """Deletes the oldest rotated file; False when there is none left to delete."""
        for name in reversed(self.rotated_files()):
            try:
                os.remove(name)
            except OSError:
                continue
            self.vacuumed.append(name)
            if len(self.vacuumed) == 1:
                self._warn(
                    f'{self.baseFilename}: the disk is full, so the oldest rotated log {name} was '
                    f'deleted to make room (maxBytes={self.maxBytes} x backupCount={self.backupCount} '
                    'is more than the disk holds); handler.vacuumed lists what was deleted'
                )
            return True
        return False

    def _warn(self, message: str) -> None:
        # A warnings filter set to 'error' must not turn this into an exception in the caller.
        with contextlib.suppress(Exception):
            warnings.warn(message, DiskSpaceWarning, stacklevel=2)

    def _discard_stream(self) -> None:
        """Closes a stream whose buffer holds bytes the disk refused; they are part of the lost record."""
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass  # the failing flush again; the file descriptor is closed regardless

    def _resume(self) -> bool:
        """Tries to write the 'records were dropped' line; True when the disk takes it."""
        self._paused_until = None
        lost = self.dropped - self._dropped_at_pause
        notice = logging.LogRecord(
            'diskguard.logging',
            logging.WARNING,
            __file__,
            0,
            '%d log record(s) were dropped while the disk was full',
            (lost,),
            None,
        )
        self._write_failed = False
        super().emit(notice)
        if self._write_failed:
            self._pause()
            return False
        self._in_episode = False
        return True

    def _drop_partial_line(self) -> None:
        """A record cut short by a full disk leaves a fragment without its newline: cut it off, so the
        retried record (or the next one) starts a clean line and no half record is left behind."""
        if not self._newline_is_one_byte():
            return  # UTF-16 and the like: a byte-wise cut could split a character
        try:
            with open(self.baseFilename, 'rb+') as f:
                end = f.seek(0, os.SEEK_END)
                if end == 0 or (f.seek(end - 1) is not None and f.read(1) == b'\n'):
                    return
                start = max(0, end - PARTIAL_LINE_LOOKBACK)
                f.seek(start)
                cut = f.read(end - start).rfind(b'\n')
                if cut < 0 and start > 0:
                    return  # a line longer than we look back over: leave it whole
                f.truncate(start + cut + 1)
        except OSError:
            pass  # truncating never needs space; a file we cannot open is the write path's to report

    def _newline_is_one_byte(self) -> bool:
        encoding = self.encoding
        if encoding in (None, 'locale'):  # FileHandler's default since Python 3.10 is 'locale'
            encoding = locale.getpreferredencoding(False)
        try:
            return self.terminator == '\n' and '\n'.encode(encoding) == b'\n'
        except LookupError:
            return False

    def _enforce_total(self) -> None:
        """Deletes the oldest rotated files until the footprint fits ``max_total_bytes``."""
        assert self.max_total_bytes is not None
        sizes: list[tuple[str, int]] = []
        total = 0
        for name in [self.baseFilename, *self.rotated_files()]:
            try:
                size = os.stat(name).st_size
            except OSError:
                continue
            sizes.append((name, size))
            total += size
        for name, size in reversed(sizes[1:]):  # oldest first; never the live file
            if total <= self.max_total_bytes:
                break
            try:
                os.remove(name)
                total -= size
            except OSError:
                pass

    def _resize(self) -> None:
        spec = self._budget_spec
        assert spec is not None
        self._resize_at = time.monotonic() + spec.resize_interval
        try:
            budget = log_budget(
                os.path.dirname(self.baseFilename), current_usage=self.footprint(), **spec.options
            )
        except OSError:
            return  # keep the last budget; the write path reports disk trouble on its own
        self.budget = budget
        self.maxBytes = budget.max_bytes
        self.backupCount = _backups_for(budget, spec.compress)
        self.max_total_bytes = budget.total_bytes


def _backups_for(budget: LogBudget, compress: bool) -> int:
    # Compressed files are far smaller than max_bytes; keep more of them and let max_total_bytes
    # decide how many really fit.
    return budget.backup_count * 8 if compress else budget.backup_count
