""":class:`~diskguard.DiskGuard`'s options as one frozen record, the one path they take from
``DiskGuard(...)`` and the framework callbacks to the Rust core's ``GuardConfig``.

The record holds the values as given: the core validates them, once, when the guard is built, and
its errors name the option, the value and what is allowed. Nothing here checks a value.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ._diskguard import DEFAULT_CRITICAL, DEFAULT_WARN

if TYPE_CHECKING:
    from ._dist import Reduce
    from ._types import Size, StrPath
    from .retention import RetentionPolicy

__all__ = ['GuardOptions', 'option_names', 'watch_list']


@dataclass(frozen=True)
class GuardOptions:
    """Every :class:`~diskguard.DiskGuard` option but the directory, as given (see DiskGuard for
    what each means). The bindings read the core's options from it by name; ``sync`` stays in
    Python (it is a Python callable or a choice of one)."""

    warn: float | None = DEFAULT_WARN
    critical: float | None = DEFAULT_CRITICAL
    min_free: Size | None = None
    budget: Size | None = None
    retention: RetentionPolicy | None = None
    watch: tuple[StrPath, ...] = ()
    reserve: Size | Literal['auto'] = 'auto'
    on_full: Literal['prune', 'stop'] = 'prune'
    check_every_steps: int = 50
    check_every_seconds: float = 10.0
    statfs_timeout: float = 0.5
    hysteresis: float = 0.02
    rescan_interval: float = 60.0
    emergency_reserve: Size | None = None
    rank: int | None = None
    local_rank: int | None = None
    world_size: int | None = None
    sync: Literal['auto'] | Reduce | None = 'auto'

    def replace(self, **changes: Any) -> GuardOptions:
        """A copy with ``changes`` (what a framework callback sets: its ranks, its directories)."""
        return dataclasses.replace(self, **changes)

    def as_kwargs(self) -> dict[str, Any]:
        """``DiskGuard``'s keyword arguments (the values themselves, not copies)."""
        return {name: getattr(self, name) for name in option_names()}


def option_names() -> tuple[str, ...]:
    """The options' names, in order."""
    return tuple(field.name for field in dataclasses.fields(GuardOptions))


def watch_list(watch: Any) -> Any:
    """``watch`` as a tuple of plain paths (kept for pickling, and a generator is read once), or as
    given when it is not a list of paths, for the core to refuse by name."""
    if isinstance(watch, str | bytes) or not isinstance(watch, Iterable):
        return watch
    return tuple(os.fspath(w) if isinstance(w, os.PathLike) else w for w in watch)
