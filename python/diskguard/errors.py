"""diskguard's warning and exceptions that are defined in Python.

``DiskGuardError`` (the base of every diskguard error), ``DirectoryBusyError`` and
``InsufficientSpaceError`` (which the core raises) come from the Rust core; the classes here add
attributes. All of them pickle, so they cross process boundaries
(``ddp_spawn``, multiprocessing, queue logging) intact.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from ._diskguard import DiskGuardError, InsufficientSpaceError

if TYPE_CHECKING:
    from ._diskguard import CheckResult

# The errnos that mean "no room": a full filesystem, or a quota (which statvfs does not show).
# Everything that survives a full disk treats them alike.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full_cause(err: BaseException) -> OSError | None:
    """The ENOSPC or EDQUOT error ``err`` is, or was caused by (its ``__cause__`` and
    ``__context__`` chain, as frameworks wrap the original error), or None."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


__all__ = ['DiskFullError', 'DiskSpaceCriticalError', 'DiskSpaceWarning', 'InsufficientSpaceError']


class DiskSpaceWarning(UserWarning):
    """A filesystem a run depends on has reached a warning or critical threshold."""


class DiskSpaceCriticalError(DiskGuardError):
    """A filesystem has reached a critical threshold; ``result`` holds the full check."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(str(result))
        self.result = result

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.result,))


class DiskFullError(DiskGuardError, OSError):
    """A write failed because the disk (``ENOSPC``) or a quota (``EDQUOT``) was full.

    An :class:`OSError` with ``errno`` set to ``errno.ENOSPC`` or ``errno.EDQUOT`` and ``filename`` the
    path being written, so the usual ``except OSError as e: if e.errno == errno.ENOSPC`` works even
    where the writer (``torch.save``) reported the failure as a ``RuntimeError``; that original error
    is its ``__cause__``. Raised by :func:`diskguard.save` after it removed its temp file.
    """
