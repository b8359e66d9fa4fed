"""What the Lightning callback reads of a Trainer, a strategy and a ModelCheckpoint: whether a fit is
guarded at all, which settings contradict the guard's, which strategies write on every rank, when
Lightning logs, and how a ModelCheckpoint is repaired after a refused save. Lightning's private
attributes are read here only, each with a fallback to the public behaviour.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._integration import checkpoints_that_fit, within
from .saving import estimate_size

if TYPE_CHECKING:
    from .guard import DiskGuard


_REFERENCES = ('best_model_path', 'last_model_path', 'kth_best_model_path')


def _not_guarded(trainer: Any) -> str | None:
    """Why a fit is left alone, or None: a smoke test of the code saves no checkpoint, and
    ``barebones`` asks for no overhead (and forbids ``log``)."""
    if trainer.fast_dev_run:
        return f'fast_dev_run={trainer.fast_dev_run!r} saves no checkpoint'
    if getattr(trainer, 'barebones', False):
        return 'Trainer(barebones=True) runs without checkpointing, logging or callbacks that cost time'
    return None


def _conflicts(trainer: Any, guard: DiskGuard, pl_module: Any, retention: Any) -> Iterator[str]:
    """Settings that cannot both hold, named once when the fit starts, with what to change."""
    for callback in trainer.checkpoint_callbacks:
        top_k = getattr(callback, 'save_top_k', None)
        if not isinstance(top_k, int):
            continue
        dirpath = getattr(callback, 'dirpath', None)
        name = f'{type(callback).__name__}(dirpath={os.fspath(dirpath or "")!r}, save_top_k={top_k})'
        if top_k < 0 and retention is not None and getattr(callback, 'monitor', None) is not None:
            yield (
                f'{name} keeps every checkpoint it saves, and diskguard never deletes a checkpoint '
                f'Lightning keeps: retention={retention!r} can delete none of them, so the run stops '
                'once the disk is full. Set save_top_k to the number to keep (Lightning then deletes '
                'the others), or drop retention='
            )
        guarded = dirpath is not None and within(os.path.abspath(os.fspath(dirpath)), os.fsdecode(guard.path))
        if top_k > 0 and guarded:
            # A save comes before the removal it causes; a last.ckpt that is not a link is a copy.
            extra = 1 + (1 if getattr(callback, 'save_last', None) is True else 0)
            capacity = _checkpoints_that_fit(guard, pl_module)
            if capacity is not None and top_k + extra > capacity:
                yield (
                    f'{name} holds {top_k + extra} checkpoints at its peak (save_top_k, the new one '
                    f'saved before the k-th is removed{", last.ckpt" if extra > 1 else ""}), and the '
                    f'disk has room for about {capacity}: lower save_top_k to {max(capacity - extra, 1)} '
                    'or give the checkpoints more room; diskguard stops the run when it runs short'
                )


def _checkpoints_that_fit(guard: DiskGuard, pl_module: Any) -> int | None:
    """How many checkpoints of this model the guarded directory's filesystem can hold (what is
    available now plus what the run holds there), or None when that is not known."""
    status = guard.status()
    size = status.largest_checkpoint
    if not size:
        try:
            size = estimate_size(pl_module.state_dict())  # the weights: a lower bound on a checkpoint
        except Exception:  # noqa: BLE001 -- an estimate only; a model may refuse state_dict() here
            return None
    return checkpoints_that_fit(guard, size)


#: Strategies whose own ``save_checkpoint`` still writes from global rank zero only.
_RANK_ZERO_SAVES = ('Strategy', 'XLAStrategy')


def _saves_on_every_rank(strategy: Any) -> bool:
    """Whether the strategy replaces Lightning's rank-zero save (``Strategy.save_checkpoint``,
    through the CheckpointIO) with one of its own that every rank takes part in: FSDP, ModelParallel
    and DeepSpeed (``lightning/pytorch/strategies/{fsdp,model_parallel,deepspeed}.py``), or a
    subclass of the user's. XLA's writes from rank zero (``strategies/xla.py``)."""
    for cls in type(strategy).__mro__:
        if 'save_checkpoint' in vars(cls):
            return cls.__name__ not in _RANK_ZERO_SAVES
    return False


def _writes_on_every_rank(strategy: Any) -> bool:
    """At this save: FSDP with ``state_dict_type='full'`` and ModelParallel without
    ``save_distributed_checkpoint`` hand a full checkpoint to rank zero's CheckpointIO instead."""
    if getattr(strategy, '_state_dict_type', 'sharded') != 'sharded':
        return False
    return getattr(strategy, '_save_distributed_checkpoint', True) is not False


def _logged_key(trainer: Any, pl_module: Any, name: str) -> str:
    """The key under which ``pl_module.log(name, ...)`` keeps its result metric in this hook."""
    key = f'{pl_module._current_fx_name}.{name}'
    index = trainer._results.dataloader_idx
    return key if index is None else f'{key}.{index}'


def _logged_metric(trainer: Any, pl_module: Any, name: str) -> Any:
    """The result metric ``pl_module.log(name, ...)`` registered in this hook, or None."""
    try:
        return trainer._results.get(_logged_key(trainer, pl_module, name))
    except AttributeError:  # another Lightning: no fast path
        return None


def _logs_this_batch(trainer: Any) -> bool:
    """Lightning's ``should_update_logs`` in ``on_train_batch_end``: whether this batch's metrics go
    to the loggers. The property costs more than the rest of the hook (it reads the running stage
    through an enum comparison), so its own arithmetic (every ``log_every_n_steps`` optimizer steps,
    and on the batch a stop was asked) rules out the other batches first; Lightning decides."""
    try:
        every = trainer.log_every_n_steps
        if (
            every
            and (trainer.fit_loop.epoch_loop._batches_that_stepped + 1) % every
            and not trainer.should_stop
        ):
            return False
    except (AttributeError, TypeError):
        pass  # another Lightning: ask it
    return bool(trainer._logger_connector.should_update_logs)


def _may_save_at_batch_end(callback: Any) -> bool:
    """Whether a checkpoint callback can save in ``on_train_batch_end``: a ModelCheckpoint does with
    ``every_n_train_steps`` or ``train_time_interval``; any other Checkpoint may."""
    try:
        return bool(callback._every_n_train_steps) or callback._train_time_interval is not None
    except AttributeError:
        return True


def _paths_in(model_checkpoint: dict[str, Any]) -> Iterator[str]:
    """The files a ModelCheckpoint's attributes (or its state_dict) reference."""
    yield from (str(p) for p in model_checkpoint.get('best_k_models', {}))
    for name in _REFERENCES:
        path = model_checkpoint.get(name)
        if path:
            yield str(path)  # a last.ckpt link protects its target too (the guard follows it)


def _repair_model_checkpoint(callback: Any, before: dict[str, Any]) -> None:
    """Drops references to files that do not exist; takes back ones kept from before the hook."""
    exists = os.path.exists
    best_k = {p: v for p, v in callback.best_k_models.items() if exists(p)}
    limit = callback.save_top_k
    for path, score in before['best_k_models'].items():
        if path not in best_k and exists(path) and (limit < 0 or len(best_k) < limit):
            best_k[path] = score
    callback.best_k_models = best_k
    if best_k and callback.monitor is not None:
        worst, best = (max, min) if callback.mode == 'min' else (min, max)
        callback.kth_best_model_path = worst(best_k, key=best_k.__getitem__)
        callback.kth_value = best_k[callback.kth_best_model_path]
        callback.best_model_path = best(best_k, key=best_k.__getitem__)
        callback.best_model_score = best_k[callback.best_model_path]
    for name in _REFERENCES:
        path = getattr(callback, name)
        if path and not os.path.lexists(path):
            previous = before.get(name) or ''
            setattr(callback, name, previous if previous and exists(previous) else '')
