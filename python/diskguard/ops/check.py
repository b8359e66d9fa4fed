"""``diskguard check``: a Nagios/Icinga plugin (and cron check) for the filesystems under paths.

Follows the Monitoring Plugins guidelines (monitoring.md §5.1, §5.2): exit 0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN; one status line, then ``|`` and performance data in ``check_disk``'s form,
used bytes with the thresholds converted to used bytes: ``'label'=usedB;warn;crit;0;total``. Percent
thresholds are of what non-root can use, as ``df`` counts (``used / (used + avail)``), and size
thresholds are floors of available bytes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from .. import DEFAULT_CRITICAL, DEFAULT_WARN, DiskUsage, Level, format_size, usage
from .._diskguard import _Grading
from . import escape as names
from .parse import Threshold

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
#: Nagios state names by exit code.
STATE_NAMES = ('OK', 'WARNING', 'CRITICAL', 'UNKNOWN')
# Which state wins when filesystems disagree (monitoring-plugins' max_state_alt): a real problem
# outranks not knowing, and not knowing outranks OK.
_SEVERITY = {OK: 0, UNKNOWN: 1, WARNING: 2, CRITICAL: 3}


def worst(states: list[int]) -> int:
    """The state to report for several: CRITICAL > WARNING > UNKNOWN > OK."""
    return max(states, key=_SEVERITY.__getitem__, default=OK)


#: The core's levels by Nagios state (UNKNOWN has none: after it, a level is entered afresh).
_LEVELS = {OK: Level.OK, WARNING: Level.WARN, CRITICAL: Level.CRITICAL}


@dataclass(frozen=True)
class Limits:
    """The thresholds of one check: bytes (percent used or a free floor) and inodes (percent used),
    validated by the core on construction (``ValueError`` in the flags' words). ``nearest_ancestor``: a path that does
    not exist is measured at its nearest existing ancestor (else it is UNKNOWN, so a typo in a
    monitored path cannot pass as OK). ``min_free``: a floor of available bytes besides a
    percentage ``critical`` (``status --min-free``)."""

    warning: Threshold = field(default_factory=lambda: Threshold(fraction=DEFAULT_WARN))
    critical: Threshold = field(default_factory=lambda: Threshold(fraction=DEFAULT_CRITICAL))
    inodes_warning: float | None = DEFAULT_WARN
    inodes_critical: float | None = DEFAULT_CRITICAL
    nearest_ancestor: bool = False
    min_free: int | None = None
    #: Whether the core's errors name the flags (``--warning=90%``), else its arguments (``warn=0.9``:
    #: status's deprecated fractions keep their old messages).
    flag_names: bool = field(default=True, compare=False)
    #: The core's grading of these thresholds, without hysteresis.
    grading: _Grading = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.min_free is not None and self.critical.free_bytes is not None:
            raise ValueError(f'--min-free={self.min_free}: give either it or a size as --critical, not both')
        object.__setattr__(self, 'grading', self.with_hysteresis(0.0))

    def with_hysteresis(self, hysteresis: float) -> _Grading:
        """The core's grading of these thresholds, each level left only ``hysteresis`` (a share of
        the filesystem) past its threshold."""
        w, c = self.warning, self.critical
        return _Grading(
            w.fraction,
            c.fraction,
            warn_free=w.free_bytes,
            min_free=c.free_bytes if c.free_bytes is not None else self.min_free,
            inodes_warning=self.inodes_warning,
            inodes_critical=self.inodes_critical,
            hysteresis=hysteresis,
            flags=self.flag_names,
        )

    def used_bytes_at(self, t: Threshold, u: DiskUsage) -> int:
        """The used bytes at which ``t`` fires on ``u``'s filesystem (check_disk's perfdata rule)."""
        capacity = u.used + u.avail
        if t.fraction is not None:
            return math.ceil(t.fraction * capacity)
        return max(0, capacity - (t.free_bytes or 0))


@dataclass
class FsResult:
    """One path's outcome."""

    path: str
    state: int
    reasons: list[str]
    usage: DiskUsage | None = None
    error: str | None = None
    host_path: str | None = None


def cwd_deleted(path: str) -> bool:
    """Whether ``path`` is relative to a working directory that no longer exists (its filesystem
    can still be measured, but no mount point can be named for it: the answer would be a guess)."""
    if os.path.isabs(path):
        return False
    try:
        os.getcwd()
    except FileNotFoundError:
        return True
    return False


def check_path(
    path: str, limits: Limits, *, grading: _Grading | None = None, previous: int = UNKNOWN
) -> FsResult:
    """Measures one path once and grades it with the core (``grading``: one with hysteresis, for a
    path that was at ``previous``; else ``limits``' own). An OS failure is UNKNOWN with its message."""
    if cwd_deleted(path):
        why = 'the current directory was deleted: give an absolute PATH, or cd to a directory that exists'
        return FsResult(path, UNKNOWN, [why], error=f'{path}: {why}')
    try:
        measured = usage(path)
    except OSError as err:
        return FsResult(path, UNKNOWN, [f'cannot measure: {err.strerror or err}'], error=str(err))
    if not measured.path_exists and not limits.nearest_ancestor:
        why = 'does not exist (--nearest-ancestor measures its nearest existing ancestor instead)'
        return FsResult(path, UNKNOWN, [why], error=f'{path}: {why}')
    result = (grading or limits.grading).grade(measured, _LEVELS.get(previous))
    return FsResult(path, int(result.level), list(result.reasons), usage=measured)


def quote_label(label: str) -> str:
    """A perfdata label in single quotes, quotes inside doubled (the plugin guidelines' rule), a
    name's ``|``, ``=`` and control characters escaped (:func:`diskguard.ops.escape.nagios_label`)."""
    return names.nagios_label(label)


def perfdata(r: FsResult, limits: Limits) -> list[str]:
    """``'label'=usedB;warn;crit;0;total`` and, where inodes are counted, the inode figures."""
    u = r.usage
    if u is None:
        return []
    warn, crit = limits.used_bytes_at(limits.warning, u), limits.used_bytes_at(limits.critical, u)
    items = [f'{quote_label(r.path)}={u.used}B;{warn};{crit};0;{u.total}']
    if u.inodes_total is not None and u.inodes_used is not None:
        iw = _inode_at(limits.inodes_warning, u.inodes_total)
        ic = _inode_at(limits.inodes_critical, u.inodes_total)
        items.append(f'{quote_label(r.path + " inodes")}={u.inodes_used};{iw};{ic};0;{u.inodes_total}')
    return items


def _inode_at(fraction: float | None, total: int) -> str:
    return '' if fraction is None else str(math.ceil(fraction * total))


def summary(r: FsResult) -> str:
    """``/data 91.2% used, 3.1 GiB avail`` plus the reasons when not OK."""
    if r.usage is None:
        return f'{r.path}: {"; ".join(r.reasons)}'
    u = r.usage
    text = f'{r.path} {u.percent_used:.1f}% used, {format_size(u.avail)} avail'
    if r.state != OK and r.reasons:
        text += f' ({"; ".join(r.reasons)})'
    return text


def status_line(
    results: list[FsResult], limits: Limits, extra: list[str] | None = None, state: int | None = None
) -> str:
    """The plugin's first line: ``DISK WARNING - ... | perfdata``. ``state`` defaults to the worst
    of ``results`` (pass it when something else, such as a budget, counts too)."""
    state = worst([r.state for r in results]) if state is None else state
    text = '; '.join([summary(r) for r in results] + (extra or []))
    data = ' '.join(p for r in results for p in perfdata(r, limits))
    # Names are escaped so that none can end the line or start the perfdata early.
    return f'DISK {STATE_NAMES[state]} - {names.nagios_text(text)}' + (f' | {data}' if data else '')


def to_json(r: FsResult, limits: Limits) -> dict[str, Any]:
    """One path's outcome as plain data (usage fields, state, thresholds in used bytes)."""
    out: dict[str, Any] = {'path': r.path, 'state': STATE_NAMES[r.state], 'exit_code': r.state}
    out['reasons'] = r.reasons
    if r.error is not None:
        out['error'] = r.error
    if r.usage is not None:
        out['usage'] = r.usage.to_dict()
        out['warning_used_bytes'] = limits.used_bytes_at(limits.warning, r.usage)
        out['critical_used_bytes'] = limits.used_bytes_at(limits.critical, r.usage)
    if r.host_path is not None:
        out['host_path'] = r.host_path
    return out
