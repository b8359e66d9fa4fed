"""Where this process sits in a distributed run, and the stop decision every rank agrees on.

torch is never imported here: a run that uses ``torch.distributed`` has imported it already, and
a run that has not cannot have a process group to reduce over.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ['Reduce', 'resolve_ranks', 'resolve_sync', 'torch_reduce_any']

#: Takes this rank's stop flag, returns the flag every rank agrees on (a collective).
Reduce = Callable[[bool], bool]

_ENV = {'rank': 'RANK', 'local_rank': 'LOCAL_RANK', 'world_size': 'WORLD_SIZE'}
_DEFAULT = {'rank': 0, 'local_rank': 0, 'world_size': 1}


def _from_env(name: str) -> int:
    variable = _ENV[name]
    text = os.environ.get(variable)
    if text is None or not text.strip():
        return _DEFAULT[name]
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


def resolve_ranks(rank: Any, local_rank: Any, world_size: Any) -> tuple[Any, Any, Any]:
    """The ranks as given, each ``None`` read from torchrun's environment variable (``RANK``,
    ``LOCAL_RANK``, ``WORLD_SIZE``; absent: 0, 0, 1). The core validates the values."""
    given = {'rank': rank, 'local_rank': local_rank, 'world_size': world_size}
    resolved = {name: _from_env(name) if value is None else value for name, value in given.items()}
    return resolved['rank'], resolved['local_rank'], resolved['world_size']


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


def torch_reduce_any(flag: bool) -> bool:
    """True on every rank when it is True on any: ``all_reduce(MAX)`` over the default process
    group (a CPU tensor for gloo, a CUDA one for NCCL, which reduces only CUDA tensors). Without
    an initialized process group the flag is returned as it is."""
    torch = sys.modules.get('torch')
    if torch is None:
        return flag
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    device = (
        torch.device('cuda', torch.cuda.current_device())
        if dist.get_backend() == 'nccl'
        else torch.device('cpu')
    )
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())
