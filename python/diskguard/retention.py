"""Checkpoint retention: small rules combined as "keep if any rule keeps it", planned before acting.

::

    from diskguard import KeepBest, KeepEvery, KeepLast, RetentionPolicy, apply, plan

    policy = RetentionPolicy(KeepLast(3), KeepBest(2, 'val_loss'), KeepEvery(10_000))
    p = plan('checkpoints/', policy)      # nothing is touched
    print(format_plan(p))                 # each checkpoint: keep / delete / skip, why, bytes freed
    apply(p)                              # deletes exactly what the plan says, if still unchanged

Whatever the rules, the newest complete checkpoint and every protected one (``Protect``, or the
target of a symlink such as ``last.ckpt``) are kept; partial saves never count as kept checkpoints.
The decisions are made in the Rust core; this module only builds the rules.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ._diskguard import (
    PlanItem,
    RetentionPlan,
    _find_orphans,
    _free_space,
    _plan,
    _remove_orphans,
    apply,
    format_size,
    parse_size,
    usage,
)

__all__ = [
    'FreeSpaceResult',
    'KeepBest',
    'KeepEvery',
    'KeepLast',
    'KeepWithin',
    'Orphan',
    'Protect',
    'RetentionPolicy',
    'apply',
    'find_orphans',
    'format_plan',
    'free_space',
    'plan',
    'remove_orphans',
]

StrPath = str | os.PathLike[str]


@dataclass(frozen=True)
class KeepLast:
    """Keep the newest ``n`` complete checkpoints."""

    n: int

    def _rule(self) -> tuple[Any, ...]:
        return ('last', _count('keep_last', self.n))


@dataclass(frozen=True)
class KeepBest:
    """Keep the ``k`` best complete checkpoints by ``metric`` (``mode='min'`` for losses).

    Values come from the names (``...-val_loss=0.1234.ckpt``) or from ``values``, a mapping of
    checkpoint name (or path) to value, which wins.
    """

    k: int
    metric: str
    mode: Literal['min', 'max'] = 'min'
    values: dict[str, float] | None = None

    def _rule(self) -> tuple[Any, ...]:
        if self.mode not in ('min', 'max'):
            raise ValueError(f"mode={self.mode!r}: expected 'min' or 'max'")
        values = [(os.path.basename(os.fspath(k)), float(v)) for k, v in (self.values or {}).items()]
        return ('best', _count('keep_best', self.k), self.metric, self.mode, values)


@dataclass(frozen=True)
class KeepEvery:
    """Keep every checkpoint whose step is a multiple of ``steps`` (milestones)."""

    steps: int

    def _rule(self) -> tuple[Any, ...]:
        return ('every', _count('keep_every', self.steps))


@dataclass(frozen=True)
class KeepWithin:
    """Keep every checkpoint modified within the last ``seconds``."""

    seconds: float

    def _rule(self) -> tuple[Any, ...]:
        return ('within', float(self.seconds))


@dataclass(frozen=True)
class Protect:
    """Never delete these checkpoints (the best, the last, the one resumed from). Paths outside the
    directory are ignored: nothing outside it is ever touched."""

    paths: tuple[StrPath, ...] = field(default_factory=tuple)

    def __init__(self, *paths: StrPath) -> None:
        object.__setattr__(self, 'paths', tuple(paths))

    def _names_in(self, directory: str) -> list[str]:
        here = os.path.realpath(directory)
        names = []
        for p in self.paths:
            text = os.fspath(p)
            parent = os.path.dirname(text)
            if (
                not parent
                or os.path.realpath(os.path.join(directory, parent)) == here
                or os.path.realpath(parent) == here
            ):
                names.append(os.path.basename(text))
        return names


Rule = KeepLast | KeepBest | KeepEvery | KeepWithin | Protect


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{name}={value!r}: expected a whole number >= 1')
    return value


@dataclass(frozen=True)
class RetentionPolicy:
    """Rules combined as "keep if any rule keeps it".

    Args:
        rules: ``KeepLast``, ``KeepBest``, ``KeepEvery``, ``KeepWithin``, ``Protect``.
        min_partial_age: Seconds a partial save must have been left alone before the plan deletes
            it as a crash leftover (only when older than the newest complete checkpoint, too).
        patterns: Extra glob patterns for single-file checkpoints (``'*.npz'``).
    """

    rules: tuple[Rule, ...] = ()
    min_partial_age: float = 3600.0
    patterns: tuple[str, ...] = ()

    def __init__(self, *rules: Rule, min_partial_age: float = 3600.0, patterns: Iterable[str] = ()) -> None:
        for rule in rules:
            if not isinstance(rule, KeepLast | KeepBest | KeepEvery | KeepWithin | Protect):
                raise TypeError(
                    f'rules: expected KeepLast, KeepBest, KeepEvery, KeepWithin or Protect, got {rule!r}'
                )
        object.__setattr__(self, 'rules', tuple(rules))
        object.__setattr__(self, 'min_partial_age', float(min_partial_age))
        object.__setattr__(self, 'patterns', tuple(patterns))

    def _core_rules(self, directory: str) -> list[tuple[Any, ...]]:
        core = []
        for rule in self.rules:
            if isinstance(rule, Protect):
                core.append(('protect', rule._names_in(directory)))
            else:
                core.append(rule._rule())
        return core


def plan(
    directory: StrPath, policy: RetentionPolicy | None = None, *, now: float | None = None
) -> RetentionPlan:
    """Decide every checkpoint in ``directory``; nothing is touched.

    With no policy only the invariant applies: the newest complete checkpoint and protected ones
    are kept, everything else complete is planned for deletion.

    Raises:
        ValueError: A rule is invalid, or ``directory`` is ``/``.
        OSError: ``directory`` cannot be opened (a symlink is refused: ``ELOOP``/``ENOTDIR``).
    """
    policy = policy or RetentionPolicy()
    text = os.fspath(directory)
    return _plan(
        text,
        policy._core_rules(text),
        policy.min_partial_age,
        list(policy.patterns),
        time.time() if now is None else now,
    )


@dataclass(frozen=True)
class FreeSpaceResult:
    """What :func:`free_space` achieved."""

    avail: int
    target: int
    met: bool
    stopped_at_invariant: bool
    deleted: list[str]
    outcomes: list[tuple[str, str, str]]


def free_space(
    directory: StrPath,
    target: float | str,
    policy: RetentionPolicy | None = None,
    *,
    wait: bool = True,
) -> FreeSpaceResult:
    """Delete the least valuable checkpoints until the filesystem has ``target`` available.

    ``target`` is bytes (``'20GiB'``) or a fraction of the filesystem (``0.1``). Deletion order:
    what the plan deletes anyway (oldest first), then what rules keep, least valuable first
    (recent < last N < milestones < best K). It stops before the newest complete checkpoint and
    protected ones, and says so.
    """
    text = os.fspath(directory)
    if isinstance(target, float) and 0 < target <= 1:
        target_bytes = int(target * usage(text).total)
    else:
        target_bytes = parse_size(target)
    current = plan(text, policy)
    avail, goal, met, stopped, outcomes = _free_space(current, target_bytes, wait)
    deleted = [str(path) for path, what, _ in outcomes if what == 'deleted']
    return FreeSpaceResult(avail, goal, met, stopped, deleted, [(str(p), w, d) for p, w, d in outcomes])


@dataclass(frozen=True)
class Orphan:
    """A leftover of a crashed save."""

    path: str
    size: int
    age: float
    reason: str
    _identity: tuple[int, int, int, int] = field(repr=False, compare=False)


def find_orphans(
    directory: StrPath,
    *,
    temp_dir: StrPath | None = None,
    include_temp_dir: bool = True,
    min_age: float = 3600.0,
) -> list[Orphan]:
    """Leftovers of crashed saves, owned by the current user and older than ``min_age`` seconds:
    partial saves in ``directory`` and known staging names in ``temp_dir`` (default
    ``tempfile.gettempdir()``: fsspec/Lightning ``tmpXXXXXXXX`` files holding a checkpoint,
    ``tmp-checkpoint-*``, ``*.orbax-checkpoint-tmp*``, ``*.ckpt.tmp``, ``.diskguard-*``)."""
    temp = (
        (os.fspath(temp_dir) if temp_dir is not None else tempfile.gettempdir()) if include_temp_dir else None
    )
    found = _find_orphans(os.fspath(directory), temp, float(min_age), os.geteuid(), time.time())
    return [Orphan(str(path), size, age, reason, identity) for path, size, age, reason, identity in found]


def remove_orphans(orphans: Sequence[Orphan]) -> list[tuple[str, str, str]]:
    """Removes orphans from :func:`find_orphans`, each re-checked to be the same file first.
    Returns (path, 'deleted' | 'skipped' | 'failed', detail) for each."""
    results = _remove_orphans([(o.path, o._identity) for o in orphans])
    return [(str(p), w, d) for p, w, d in results]


def format_plan(p: RetentionPlan) -> str:
    """The plan as a table a person can check before applying it."""
    items: list[PlanItem] = p.items
    width = max([len(str(i.name)) for i in items] + [10])
    lines = [f'{"ACTION":<7} {"CHECKPOINT":<{width}} {"STEP":>8} {"SIZE":>10}  WHY']
    for i in items:
        step = '-' if i.step is None else str(i.step)
        lines.append(
            f'{i.action:<7} {i.name!s:<{width}} {step:>8} {format_size(i.size):>10}  {"; ".join(i.reasons)}'
        )
    counts = {a: sum(1 for i in items if i.action == a) for a in ('keep', 'delete', 'skip')}
    lines.append(
        f'{counts["keep"]} kept, {counts["delete"]} to delete ({format_size(p.bytes_freed)} freed), '
        f'{counts["skip"]} partial save(s) left alone'
    )
    for name, target in p.links:
        lines.append(f'symlink {name!s} -> {target!s} (never deleted; protects its target if it is here)')
    return '\n'.join(lines)
