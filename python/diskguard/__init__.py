"""diskguard: make disk exhaustion a non-event for long training runs.

How full is the disk under a path, exactly as ``df`` computes it, and is it past a threshold::

    import diskguard

    u = diskguard.usage('/workspace/checkpoints')   # a path that does not exist yet is fine
    print(u.avail, u.percent_used, u.mount_point)
    result = diskguard.check('/workspace/checkpoints', warn=0.85, critical=0.95, min_free='20GiB')
    if result.level >= diskguard.Level.WARN:
        print(result)
"""

from __future__ import annotations

import logging as _logging
import warnings

from ._diskguard import (
    DEFAULT_CRITICAL,
    DEFAULT_WARN,
    CheckResult,
    DirectoryBusyError,
    DiskGuardError,
    DiskUsage,
    DuEntry,
    DuOwner,
    DuReport,
    GuardSpace,
    GuardStatus,
    Level,
    LogBudget,
    Mount,
    PlanItem,
    RetentionPlan,
    RunForecast,
    TrendEstimate,
    TrendMonitor,
    __version__,
    du,
    forecast_run,
    format_size,
    latest_complete,
    log_budget,
    mounts,
    parse_size,
    usage,
)
from ._diskguard import check as _check
from ._types import Size, StrPath
from .errors import DiskFullError, DiskSpaceCriticalError, DiskSpaceWarning, InsufficientSpaceError
from .guard import DiskGuard
from .retention import (
    DeletionOutcome,
    FreeSpaceResult,
    KeepBest,
    KeepEvery,
    KeepLast,
    KeepWithin,
    Orphan,
    Protect,
    RetentionPolicy,
    apply,
    find_orphans,
    format_plan,
    free_space,
    plan,
    remove_orphans,
)
from .saving import save

__all__ = [
    'DEFAULT_CRITICAL',
    'DEFAULT_WARN',
    'CheckResult',
    'DeletionOutcome',
    'DirectoryBusyError',
    'DiskFullError',
    'DiskGuard',
    'DiskGuardError',
    'DiskSpaceCriticalError',
    'DiskSpaceWarning',
    'DiskUsage',
    'DuEntry',
    'DuOwner',
    'DuReport',
    'FreeSpaceResult',
    'GuardSpace',
    'GuardStatus',
    'InsufficientSpaceError',
    'KeepBest',
    'KeepEvery',
    'KeepLast',
    'KeepWithin',
    'Level',
    'LogBudget',
    'Mount',
    'Orphan',
    'PlanItem',
    'Protect',
    'RetentionPlan',
    'RetentionPolicy',
    'RunForecast',
    'TrendEstimate',
    'TrendMonitor',
    '__version__',
    'apply',
    'check',
    'du',
    'find_orphans',
    'forecast_run',
    'format_plan',
    'format_size',
    'free_space',
    'latest_complete',
    'log_budget',
    'mounts',
    'parse_size',
    'plan',
    'remove_orphans',
    'save',
    'usage',
]

# Rust log records arrive under this logger (pyo3-log); the application decides where they go.
_logging.getLogger('diskguard').addHandler(_logging.NullHandler())


def check(
    path: StrPath,
    warn: float | None = DEFAULT_WARN,
    critical: float | None = DEFAULT_CRITICAL,
    *,
    min_free: Size | None = None,
    warn_free: Size | None = None,
    inode_warn: float | None = DEFAULT_WARN,
    inode_critical: float | None = DEFAULT_CRITICAL,
    emit_warning: bool = False,
    raise_on_critical: bool = False,
) -> CheckResult:
    """Grade the filesystem under ``path`` as ok, warn or critical.

    Args:
        path: Any path on the filesystem; a path that does not exist yet is answered by its nearest
            existing ancestor.
        warn: Fraction used, in ``df``'s convention ``used / (used + avail)``, at which to warn.
        critical: Fraction used that is critical.
        min_free: Critical when less than this is available to non-root users (``'20GiB'``, bytes).
        warn_free: Warn when less than this is available.
        inode_warn: Fraction of inodes used at which to warn (skipped where inodes are not counted).
        inode_critical: Fraction of inodes used that is critical.
        emit_warning: Issue a :class:`DiskSpaceWarning` when the level is warn or critical.
        raise_on_critical: Raise :class:`DiskSpaceCriticalError` when the level is critical.

    Any threshold may be ``None`` to switch it off.

    Raises:
        ValueError: A threshold is out of range (the message names it, its value and what is allowed).
        OSError: The filesystem could not be queried (``FileNotFoundError``, ``PermissionError``...).
        DiskSpaceCriticalError: With ``raise_on_critical``, when the level is critical.
    """
    result = _check(path, warn, critical, min_free, warn_free, inode_warn, inode_critical)
    if result.level != Level.OK:
        if raise_on_critical and result.level == Level.CRITICAL:
            raise DiskSpaceCriticalError(result)
        if emit_warning:
            warnings.warn(str(result), DiskSpaceWarning, stacklevel=2)
    return result
