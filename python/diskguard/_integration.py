"""What the framework integrations share: the options a callback passes through to
:class:`~diskguard.DiskGuard` (and the one rule for which of them the framework sets), and whether a
path lies in the guarded directory."""

from __future__ import annotations

import os
from typing import Any

from ._options import GuardOptions, option_names, watch_list
from .guard import DiskGuard

__all__ = ['callback_options', 'checkpoints_that_fit', 'set_by_framework', 'within']


#: What every framework's callback sets on its guard itself: the trainer knows its ranks.
_RANKS = ('rank', 'local_rank', 'world_size')


def set_by_framework(reduces_stop: bool) -> tuple[str, ...]:
    """The options a framework's callback refuses because the framework sets them: the ranks
    always, and ``sync`` (how the ranks agree on the stop) where the framework hands its callbacks
    a reduction of its own (Lightning's ``trainer.strategy.reduce_boolean_decision``, right for
    every strategy it runs: a user's ``sync`` there could only disagree with it). Where it hands
    none (Hugging Face's Trainer), ``sync`` stays the user's: ``'auto'`` reduces over
    ``torch.distributed``, which the Trainer initializes, and another backend needs its own."""
    return (*_RANKS, 'sync') if reduces_stop else _RANKS


def callback_options(
    log_metrics: Any, options: dict[str, Any], *, reduces_stop: bool, source: str
) -> GuardOptions:
    """The options a callback passes through to :class:`DiskGuard` as one record, refusing when the
    callback is made what would otherwise fail by name only once training begins: a
    ``log_metrics`` that is not a bool, an option DiskGuard does not take, or one the framework
    sets (:func:`set_by_framework`; ``source`` says where it comes from). The values are the
    core's to check, when the guard is built.

    Raises:
        TypeError: Naming the argument and what is allowed.
    """
    if not isinstance(log_metrics, bool):
        raise TypeError(f'log_metrics={log_metrics!r}: expected True or False')
    framework = set_by_framework(reduces_stop)
    given = sorted(set(options) & set(framework))
    if given:
        raise TypeError(f'DiskGuardCallback got {", ".join(given)}: {source}; do not pass them')
    taken = [name for name in option_names() if name not in framework]
    unknown = sorted(set(options) - set(taken))
    if unknown:
        raise TypeError(
            f'DiskGuardCallback got unexpected keyword argument(s) {", ".join(unknown)}: '
            f"it takes path, log_metrics and DiskGuard's {', '.join(taken)}"
        )
    return GuardOptions(**{**options, 'watch': watch_list(options.get('watch', ()))})


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
