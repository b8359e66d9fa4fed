"""Where this process sits in a distributed run, and the stop decision every rank agrees on.

torch is never imported here: a run that uses ``torch.distributed`` has imported it already, and
a run that has not cannot have a process group to reduce over.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._diskguard import _shared_filesystem
from .errors import InsufficientSpaceError

if TYPE_CHECKING:
    from .guard import DiskGuard

__all__ = [
    'Reduce',
    'gather_objects',
    'preflight',
    'resolve_ranks',
    'resolve_sync',
    'this_rank',
    'torch_reduce_any',
]


#: Takes this rank's stop flag, returns the flag every rank agrees on (a collective).
Reduce = Callable[[bool], bool]

_ENV = {'rank': 'RANK', 'local_rank': 'LOCAL_RANK', 'world_size': 'WORLD_SIZE'}


def _from_env(name: str) -> int | None:
    variable = _ENV[name]
    text = os.environ.get(variable)
    if text is None or not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(
            f'{name}: environment variable {variable}={text!r} is not a whole number >= 0 '
            f'(pass {name}= explicitly, or fix the launcher)'
        )
    return value


def _initialized_group() -> Any:
    """``torch.distributed`` when torch is imported and its default group is initialized."""
    torch = sys.modules.get('torch')
    if torch is None:
        return None
    dist = torch.distributed
    return dist if dist.is_available() and dist.is_initialized() else None


def resolve_ranks(rank: Any, local_rank: Any, world_size: Any) -> tuple[Any, Any, Any]:
    """The ranks as given; each ``None`` from the initialized ``torch.distributed`` group (rank,
    world size), else from torchrun's ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``; a single process
    when none says otherwise. A distributed run whose launcher set only some of them is refused:
    guessing rank 0 would make several processes delete in one directory. The core validates the
    values."""
    dist = _initialized_group()
    given = {'rank': rank, 'local_rank': local_rank, 'world_size': world_size}
    if dist is not None:
        group = {'rank': dist.get_rank(), 'world_size': dist.get_world_size()}
        given = {name: group.get(name) if value is None else value for name, value in given.items()}
    env = {name: _from_env(name) for name, value in given.items() if value is None}
    ranks = {**given, **env}
    if ranks['world_size'] is None:
        if env.get('rank') or env.get('local_rank'):
            raise ValueError(
                f'world_size: RANK={ranks["rank"]} / LOCAL_RANK={ranks["local_rank"]} without '
                'WORLD_SIZE (pass world_size= explicitly, or fix the launcher)'
            )
        ranks['world_size'] = 1
    world_size = ranks['world_size']
    if isinstance(world_size, int) and not isinstance(world_size, bool) and world_size > 1:
        for name in ('rank', 'local_rank'):
            if ranks[name] is None:
                raise ValueError(
                    f'{name}: WORLD_SIZE={world_size} but {_ENV[name]} is not set (pass {name}= '
                    'explicitly: guessing 0 would make several processes delete in one directory)'
                )
    return (
        0 if ranks['rank'] is None else ranks['rank'],
        0 if ranks['local_rank'] is None else ranks['local_rank'],
        world_size,
    )


def resolve_sync(sync: Any) -> Reduce | None:
    """``'auto'``: :func:`torch_reduce_any`; ``None``: no reduction; a callable as given."""
    if isinstance(sync, str) and sync == 'auto':
        return torch_reduce_any
    if sync is None:
        return None
    if callable(sync):
        reduce: Reduce = sync
        return reduce
    raise TypeError(
        f"sync={sync!r}: expected 'auto', None or a callable taking this rank's stop flag and "
        f'returning the agreed one, got {type(sync).__name__}'
    )


#: The guard's own gloo group per default group: its reductions never pair with the training's
#: collectives (a guard built on one rank only then hangs in the guard, visibly, instead of
#: corrupting a gradient all-reduce), and gloo reduces a CPU tensor whatever the training's backend.
_groups: dict[int, Any] = {}


def _guard_group(dist: Any) -> Any:
    world = dist.group.WORLD
    group = _groups.get(id(world))
    if group is None:
        if not _groups:
            atexit.register(_destroy_groups, dist)
        group = _groups[id(world)] = dist.new_group(backend='gloo')
    return group


def _destroy_groups(dist: Any) -> None:
    """Destroys the guard's groups before the interpreter tears down: a gloo group still alive
    then can abort the process ("terminate called without an active exception") after a run
    that never called ``destroy_process_group()``. Destroying a group is local, not a collective."""
    groups = list(_groups.values())
    _groups.clear()
    if not (dist.is_available() and dist.is_initialized()):
        return  # the default group's destruction took its subgroups with it
    for group in groups:
        with contextlib.suppress(Exception):  # already destroyed with the default group
            dist.destroy_process_group(group)


def torch_reduce_any(flag: bool) -> bool:
    """True on every rank when it is True on any: ``all_reduce(MAX)`` of a CPU tensor over a gloo
    group of the guard's own, created (a collective too) at the first reduction.

    Raises:
        RuntimeError: ``torch.distributed`` is not initialized, though the run has more than one
            process (each would decide alone, and one would stop while the others hang).
    """
    dist = _initialized_group()
    if dist is None:
        raise RuntimeError(
            "sync='auto': the run has more than one process but torch.distributed is not "
            'initialized; call torch.distributed.init_process_group() first, pass sync= a '
            'reduction of your own, or sync=None to let each process decide alone'
        )
    torch = sys.modules['torch']
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=_guard_group(dist))
    return bool(tensor.item())


def this_rank() -> int:
    """This process's rank in the initialized default group; 0 without one."""
    dist = _initialized_group()
    return 0 if dist is None else int(dist.get_rank())


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (small and picklable), in rank order, over the guard's own gloo group:
    a collective every rank must call. ``[obj]`` without an initialized group."""
    dist = _initialized_group()
    if dist is None or dist.get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj, group=_guard_group(dist))
    return gathered


def _gather_parts(key: tuple[str, Any], nbytes: int) -> list[tuple[bytes, int]]:
    """Every rank's filesystem key (a 128-bit digest) and bytes, in rank order: one collective of
    three int64s a rank, where ``gather_objects`` takes two (the sizes, then the pickles)."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=16).digest()
    dist = _initialized_group()
    if dist is None or dist.get_world_size() == 1:
        return [(digest, nbytes)]
    torch = sys.modules['torch']
    mine = torch.tensor(
        [
            int.from_bytes(digest[:8], 'little', signed=True),
            int.from_bytes(digest[8:], 'little', signed=True),
            nbytes,
        ],
        dtype=torch.int64,
    )
    everyone = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(everyone, mine, group=_guard_group(dist))
    parts: list[tuple[bytes, int]] = []
    for t in everyone:
        high, low, size = (int(v) for v in t.tolist())
        parts.append((high.to_bytes(8, 'little', signed=True) + low.to_bytes(8, 'little', signed=True), size))
    return parts


def _any_rank(flag: bool) -> bool:
    """Whether any rank's ``flag`` is set: one collective of one int64 a rank."""
    dist = _initialized_group()
    if dist is None or dist.get_world_size() == 1:
        return flag
    torch = sys.modules['torch']
    mine = torch.tensor([int(flag)], dtype=torch.int64)
    dist.all_reduce(mine, op=dist.ReduceOp.MAX, group=_guard_group(dist))
    return bool(mine.item())


def filesystem_key(directory: str) -> tuple[str, Any]:
    """Ranks with the same key write to the same filesystem: one every node sees, or this node's."""
    if _shared_filesystem(directory):
        return ('shared', directory)
    return (socket.gethostname(), os.stat(directory).st_dev)


def preflight(
    guard: DiskGuard | None,
    target: str,
    nbytes: int,
    *,
    held: int = 0,
    prepare: Callable[[], object] | None = None,
    undo: Callable[[], object] | None = None,
) -> tuple[bool, int]:
    """The collective pre-flight of a save every rank writes a part of (a collective: every rank
    calls it for the same save). Each rank gives ``nbytes``, its own part; they are summed per
    filesystem (:func:`filesystem_key` of ``target``'s directory), the first rank of each asks its
    guard once for room for the sum (plus ``held``, bytes of saves still in flight) and runs
    ``prepare``, and every rank learns every verdict before any rank writes: all write or none does.

    Returns ``(leader, total)``: whether this rank asked for its filesystem (it accounts the save
    afterwards) and the bytes the ranks on it write.

    Raises:
        InsufficientSpaceError: On every rank when any filesystem refused (or ``prepare`` failed);
            each leader has run ``undo`` by then, and every rank's guard is stopped (the stop the
            ranks agree on), so they all stop at the same step.
    """
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    # Clamped, not refused: a rank raising alone here would leave the others in the collective
    # (an impossible size only makes the save be refused).
    everyone = _gather_parts(filesystem_key(parent), min(max(int(nbytes), 0), 2**63 - 1))
    rank = this_rank()
    mine = everyone[rank][0]
    ranks = [r for r, (k, _) in enumerate(everyone) if k == mine]
    total = sum(b for k, b in everyone if k == mine)
    leader = ranks[0] == rank
    refusal: tuple[int, str, int, int] | None = None
    failure: BaseException | None = None
    if leader:
        try:
            if guard is not None:
                guard.before_save(target, total + held)
            if prepare is not None:
                prepare()
        except InsufficientSpaceError as err:
            refusal = (rank, str(err), err.needed, err.available)
        except OSError as err:
            refusal = (rank, f'cannot prepare {target}: {err}', total, 0)
        except BaseException as err:  # noqa: BLE001 -- raised below, once every rank has its verdict
            # A DiskSpaceWarning turned into an error, an interrupt: raised here after the others
            # had their verdict (a rank leaving a collective early would hang them).
            failure = err
            refusal = (rank, f'{type(err).__name__}: {err}', total, 0)
    # The verdicts travel only when there is one: in the common case one small reduction says none.
    verdicts = [v for v in gather_objects(refusal) if v is not None] if _any_rank(refusal is not None) else []
    if verdicts:
        if leader and refusal is None and undo is not None:
            undo()
        # Every rank raises only once each leader has undone what it prepared: a rank that looks
        # at the directory right after the refusal must not see another rank's preparations.
        gather_objects(None)
        if guard is not None:
            guard._stop = True  # the agreed flag a distributed guard reports; the refusing core stopped too
        if failure is not None:
            raise failure
        who, message, needed, available = verdicts[0]
        raise InsufficientSpaceError(
            f'no rank writes {target}: rank {who} refused it for its filesystem: {message}',
            needed=needed,
            available=available,
        )
    return leader, total
