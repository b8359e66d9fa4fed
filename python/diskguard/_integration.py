"""What the framework integrations share: checking the options a callback passes through to
:class:`~diskguard.DiskGuard`, and whether a path lies in the guarded directory."""

from __future__ import annotations

import inspect
import os
from collections.abc import Collection
from typing import Any

from .guard import DiskGuard

__all__ = ['check_callback_options', 'checkpoints_that_fit', 'within']


def check_callback_options(
    log_metrics: Any, options: dict[str, Any], from_framework: Collection[str], source: str
) -> None:
    """Refuses, when a callback is made, what :class:`DiskGuard` would refuse by name only once
    training begins: a ``log_metrics`` that is not a bool, an option DiskGuard does not take, or
    one the framework sets (``from_framework``; ``source`` says where it comes from).

    Raises:
        TypeError: Naming the argument and what is allowed.
    """
    if not isinstance(log_metrics, bool):
        raise TypeError(f'log_metrics={log_metrics!r}: expected True or False')
    given = sorted(set(options) & set(from_framework))
    if given:
        raise TypeError(f'DiskGuardCallback got {", ".join(given)}: {source}; do not pass them')
    taken = [
        name for name in inspect.signature(DiskGuard).parameters if name not in ('path', *from_framework)
    ]
    unknown = sorted(set(options) - set(taken))
    if unknown:
        raise TypeError(
            f'DiskGuardCallback got unexpected keyword argument(s) {", ".join(unknown)}: '
            f"it takes path, log_metrics and DiskGuard's {', '.join(taken)}"
        )


def within(path: str, directory: str) -> bool:
    """Whether ``path`` is in ``directory`` (absolute): a save elsewhere is only watched."""
    return os.path.commonpath([os.path.abspath(path), directory]) == directory


def checkpoints_that_fit(guard: DiskGuard, size: int) -> int | None:
    """How many checkpoints of ``size`` bytes the guarded directory's filesystem can hold (what is
    available now plus what the run holds there, within its budget if any), or None when unknown."""
    status = guard.status()
    own = ('checkpoint directory', 'budget of')  # the directory's filesystem, and its budget if any
    room = min((space.room for space in status.spaces if space.name.startswith(own)), default=None)
    if room is None or size <= 0:
        return None
    return int((room + status.held) // size)
