"""Per-user and per-project budgets: directories (or globs of them) with a byte limit, measured by
the Rust scanner (:func:`diskguard.du`), each result naming the directory, its owner and its
largest children, because "who filled it" is the next question."""

from __future__ import annotations

import glob
import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import du, format_size
from .check import CRITICAL, OK, STATE_NAMES, UNKNOWN, WARNING


@dataclass(frozen=True)
class Budget:
    """``pattern`` (a directory or a glob such as ``/workspace/*``) may hold ``limit`` bytes each."""

    pattern: str
    limit: int


@dataclass
class BudgetResult:
    """One directory measured against its budget."""

    pattern: str
    directory: str
    owner: str
    limit: int
    allocated: int = 0
    state: int = OK
    largest: list[tuple[str, int]] = field(default_factory=list)
    errors: int = 0
    error: str | None = None
    #: The first few entries that could not be read, with why.
    error_samples: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """``/workspace/alice (owner alice) 612.0 GiB of 500.0 GiB; largest: ckpt 600.0 GiB, ...``"""
        if self.error is not None:
            return f'{self.directory}: cannot measure: {self.error}'
        largest = ', '.join(f'{name} {format_size(size)}' for name, size in self.largest)
        text = (
            f'{self.directory} (owner {self.owner}) {format_size(self.allocated)} of '
            f'{format_size(self.limit)} budget'
        )
        if self.errors:
            # Their own size is counted; what lies beneath them is not (it could not be listed).
            entries = 'entry' if self.errors == 1 else 'entries'
            example = self.error_samples[0] if self.error_samples else '?'
            text += f' (at least: {self.errors} {entries} unreadable, e.g. {example})'
        return text + (f'; largest: {largest}' if largest else '')

    def to_json(self) -> dict[str, Any]:
        return {
            'pattern': self.pattern,
            'directory': self.directory,
            'owner': self.owner,
            'limit_bytes': self.limit,
            'allocated_bytes': self.allocated,
            'state': STATE_NAMES[self.state],
            'largest': [{'name': n, 'allocated_bytes': s} for n, s in self.largest],
            'errors': self.errors,
            'error_samples': self.error_samples,
            'error': self.error,
        }


def directories(pattern: str) -> list[str]:
    """Directories a pattern names; symlinks are never followed out, so they are left out."""
    matches = glob.glob(pattern) if glob.has_magic(pattern) else [pattern]
    return sorted(p for p in matches if os.path.isdir(p) and not os.path.islink(p))


def owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class Interrupted(Exception):
    """A scan stopped because the caller asked (the monitor is shutting down)."""


def measure(
    budget: Budget,
    directory: str,
    *,
    warn_fraction: float = 0.9,
    top: int = 5,
    should_stop: Callable[[], bool] | None = None,
) -> BudgetResult:
    """Scans ``directory``: CRITICAL over the limit, WARNING from ``warn_fraction`` of it.
    ``should_stop`` is asked while the scan runs; when it says so the scan is cancelled and
    :class:`Interrupted` raised."""

    def progress(_entries: int, _allocated: int) -> None:
        if should_stop is not None and should_stop():
            raise Interrupted(directory)

    try:
        owner = owner_name(os.lstat(directory).st_uid)
        report = du(directory, progress=progress)
    except OSError as err:
        return BudgetResult(budget.pattern, directory, '?', budget.limit, state=UNKNOWN, error=str(err))
    used = report.allocated
    state = CRITICAL if used > budget.limit else WARNING if used >= warn_fraction * budget.limit else OK
    if report.errors and state == OK:
        # Entries that could not be read hide an unknown amount: what was measured is a floor, so
        # over the limit or near it still counts, but "within budget" cannot be said.
        state = UNKNOWN
    children = sorted(report.children, key=lambda c: c.allocated, reverse=True)[:top]
    return BudgetResult(
        budget.pattern,
        directory,
        owner,
        budget.limit,
        allocated=used,
        state=state,
        largest=[(os.fsdecode(c.name), c.allocated) for c in children],
        errors=report.errors,
        error_samples=list(report.error_samples),
    )


def targets(budgets: list[Budget]) -> list[tuple[Budget, str, str | None]]:
    """Every (budget, directory, problem) to measure. A pattern that matches no directory is a problem
    (a typo must not pass as OK), and so is a directory that is, or holds, a directory of another
    budget: its bytes would count against two budgets (``/workspace/*`` would cap ``/workspace/team-a``
    whole by a per-user budget), so overlapping budgets are refused, naming both."""
    found = [(b, d) for b in budgets for d in directories(b.pattern)]
    by_directory: dict[str, set[str]] = {}
    for b, d in found:
        by_directory.setdefault(d, set()).add(b.pattern)
    problems: dict[tuple[str, str], str] = {}
    for b, d in found:
        ancestor = d
        while True:
            for other in by_directory.get(ancestor, set()) - {b.pattern}:
                problems.setdefault(
                    (other, ancestor),
                    f'overlaps budget {b.pattern!r} (which measures {d}): the same bytes would count '
                    'against both; give each budget its own tree',
                )
            parent = os.path.dirname(ancestor)
            if parent == ancestor:
                break
            ancestor = parent
    out: list[tuple[Budget, str, str | None]] = []
    for b in budgets:
        mine = [d for x, d in found if x is b]
        if not mine:
            out.append((b, b.pattern, 'matches no directory'))
        out += [(b, d, problems.get((b.pattern, d))) for d in mine]
    return out


def refused(budget: Budget, directory: str, problem: str) -> BudgetResult:
    """A budget that cannot be measured as given: UNKNOWN, saying why."""
    return BudgetResult(budget.pattern, directory, '?', budget.limit, state=UNKNOWN, error=problem)


def measure_all(budgets: list[Budget], *, warn_fraction: float = 0.9, top: int = 5) -> list[BudgetResult]:
    """Every directory of every budget (see :func:`targets` for what is refused)."""
    return [
        refused(b, d, problem) if problem else measure(b, d, warn_fraction=warn_fraction, top=top)
        for b, d, problem in targets(budgets)
    ]
