"""Checkpoint retention: small rules combined as "keep if any rule keeps it", planned before acting.

::

    from diskguard import KeepBest, KeepEvery, KeepLast, RetentionPolicy, apply, plan

    policy = RetentionPolicy(KeepLast(3), KeepBest(2, 'val_loss'), KeepEvery(10_000))
    p = plan('checkpoints/', policy)      # nothing is touched
    print(format_plan(p))                 # each checkpoint: keep / delete / skip, why, bytes freed
    apply(p)                              # deletes exactly what the plan says, if still unchanged

Whatever the rules, the newest complete checkpoint and every protected one (``Protect``, or the
target of a symlink such as ``last.ckpt``) are kept; partial saves never count as kept checkpoints.
The rules, the policy and the decisions are the Rust core's; this module adds the records that
collect its answers and the table :func:`format_plan` prints.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._diskguard import (
    DeletionOutcome,
    FreeSpaceResult,
    KeepBest,
    KeepEvery,
    KeepLast,
    KeepWithin,
    Orphan,
    PlanItem,
    Protect,
    RetentionPlan,
    RetentionPolicy,
    _find_orphans,
    _free_space,
    _remove_orphans,
    format_size,
    plan,
)
from ._diskguard import apply as _apply

if TYPE_CHECKING:
    from ._types import StrPath

__all__ = [
    'DeletionOutcome',
    'FreeSpaceResult',
    'KeepBest',
    'KeepEvery',
    'KeepLast',
    'KeepWithin',
    'Orphan',
    'Protect',
    'RetentionPolicy',
    'apply',
    'display_name',
    'find_orphans',
    'format_plan',
    'free_space',
    'plan',
    'remove_orphans',
]

Rule = KeepLast | KeepBest | KeepEvery | KeepWithin | Protect


def free_space(
    directory: StrPath,
    policy: RetentionPolicy | None = None,
    *,
    target_bytes: int | str | None = None,
    target_fraction: float | None = None,
    wait: bool = True,
    timeout: float | None = None,
) -> FreeSpaceResult:
    """Delete the least valuable checkpoints until the filesystem has the target available.

    Give exactly one target: ``target_bytes`` (an int, or ``'20GiB'``) or ``target_fraction`` (a
    fraction of the filesystem's size in (0, 1]); a float is never taken for a byte count.
    Deletion order: what the plan deletes anyway (oldest first), then what rules keep, least
    valuable first (recent < last N < milestones < best K). It stops before the newest complete
    checkpoint and protected ones. When even deleting every candidate would not reach the target,
    nothing is deleted and ``shortfall`` says by how much it falls short. ``wait`` / ``timeout``
    are :func:`apply`'s.
    """
    return _free_space(directory, policy, target_bytes, target_fraction, wait, timeout)


def find_orphans(
    directory: StrPath,
    *,
    temp_dir: StrPath | None = None,
    include_temp_dir: bool = True,
    min_age: float = 3600.0,
) -> list[Orphan]:
    """Leftovers of crashed saves, owned by the current user and older than ``min_age`` seconds:
    partial saves in ``directory`` and known staging names in ``temp_dir`` (default
    ``tempfile.gettempdir()``, followed when it is a symlink: fsspec/Lightning ``tmpXXXXXXXX``
    files holding a checkpoint, ``tmp-checkpoint-*``, ``*.orbax-checkpoint-tmp*``, ``*.ckpt.tmp``,
    ``.diskguard-*``)."""
    temp = (temp_dir if temp_dir is not None else tempfile.gettempdir()) if include_temp_dir else None
    return _find_orphans(directory, temp, min_age, os.geteuid(), time.time())


def apply(plan: RetentionPlan, *, wait: bool = True, timeout: float | None = None) -> list[DeletionOutcome]:
    """Deletes what ``plan`` says, and nothing else: each entry re-checked (device, inode) right
    before it goes, under the directory's lock. ``wait=False`` raises
    :class:`~diskguard.DirectoryBusyError` when another process holds the lock; ``timeout``
    seconds bounds the wait. Returns a :class:`DeletionOutcome` (``path``, ``outcome``: 'deleted' |
    'skipped' | 'failed', ``detail``) per planned deletion; each also unpacks as that tuple."""
    if not isinstance(wait, bool):
        raise TypeError(
            f'wait={wait!r}: expected True or False (True waits for the lock, False fails at once)'
        )
    return _apply(plan, wait=wait, timeout=timeout)


def remove_orphans(orphans: Sequence[Orphan]) -> list[DeletionOutcome]:
    """Removes orphans from :func:`find_orphans`, each re-checked to be the same file in the same
    directory first. Returns a :class:`DeletionOutcome` for each."""
    if isinstance(orphans, str | bytes) or not all(isinstance(o, Orphan) for o in orphans):
        raise TypeError(f'orphans={orphans!r}: expected a list of Orphan from find_orphans()')
    return _remove_orphans(orphans)


def display_name(name: str | os.PathLike[str]) -> str:
    """A name as printable text: bytes that are not UTF-8 (kept by Python as surrogates) are shown
    as ``\\xff`` escapes instead of failing to print, and control characters (a newline, ESC) as
    ``\\x0a``, ``\\x1b`` so no name can forge a line or a terminal sequence
    (:func:`diskguard.ops.escape.text`)."""
    from .ops.escape import text

    return text(name)


def format_plan(p: RetentionPlan) -> str:
    """The plan as a table a person can check before applying it (and, when steps and write times
    disagree and neither reading is clear, the two orders)."""
    if not isinstance(p, RetentionPlan):
        raise TypeError(f'p={p!r}: expected a RetentionPlan from diskguard.plan()')
    items: list[PlanItem] = p.items
    names = [display_name(i.name) for i in items]
    width = max([len(n) for n in names] + [10])
    lines = [f'{"ACTION":<7} {"CHECKPOINT":<{width}} {"STEP":>8} {"SIZE":>10}  WHY']
    for i, name in zip(items, names, strict=True):
        step = '-' if i.step is None else str(i.step)
        lines.append(
            f'{i.action:<7} {name:<{width}} {step:>8} {format_size(i.size):>10}  {display_name("; ".join(i.reasons))}'
        )
    counts = {a: sum(1 for i in items if i.action == a) for a in ('keep', 'delete', 'skip')}
    lines.append(
        f'{counts["keep"]} kept, {counts["delete"]} to delete ({format_size(p.bytes_freed)} freed), '
        f'{counts["skip"]} partial save(s) left alone'
    )
    if p.ambiguity is not None:
        lines.append(f'unclear order: {p.ambiguity}; only what both orders delete is deleted')
    for name, target in p.links:
        lines.append(
            f'symlink {display_name(name)} -> {display_name(target)} '
            '(never deleted; protects its target if it is here)'
        )
    return '\n'.join(lines)
