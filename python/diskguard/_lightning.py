"""The Lightning callback, written once for both import paths (``lightning.pytorch`` and
``pytorch_lightning``): :mod:`diskguard.lightning` and :mod:`diskguard.pytorch_lightning` each combine
these mixins with their package's ``Callback`` and ``TorchCheckpointIO``.

It is a thin adapter over :class:`~diskguard.DiskGuard`, which makes every decision (levels, room,
retention, the stop). The callback tells the guard what Lightning references (so it is never
deleted), publishes each checkpoint with :func:`diskguard.save` (a temp file in the checkpoint's own
directory, then a rename: no staging copy in ``$TMPDIR``, no partial file under the final name), calls
the guard on a rank-invariant cadence, and turns the agreed stop flag into ``trainer.should_stop``.

Nothing framework-specific is imported here: the classes come from the concrete modules.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from ._diskguard import DiskGuardError
from ._integration import callback_options, within
from ._lightning_io import (
    GuardedAsyncCheckpointIOMixin,
    GuardedCheckpointIOMixin,
    _AsyncSave,
    _BackgroundWriter,
    _is_remote,
)
from ._lightning_trainer import (
    _REFERENCES,
    _conflicts,
    _logged_key,
    _logged_metric,
    _logs_this_batch,
    _may_save_at_batch_end,
    _not_guarded,
    _paths_in,
    _repair_model_checkpoint,
    _saves_on_every_rank,
    _writes_on_every_rank,
)
from .errors import DiskFullError, DiskSpaceWarning, InsufficientSpaceError, disk_full_cause
from .guard import DiskGuard, _caller_level
from .saving import estimate_size, save

if TYPE_CHECKING:
    from ._types import StrPath

__all__ = ['DiskGuardCallbackMixin', 'GuardedAsyncCheckpointIOMixin', 'GuardedCheckpointIOMixin']

logger = logging.getLogger('diskguard.lightning')

_STATE_VERSION = 1


class DiskGuardCallbackMixin:
    """The shared implementation of ``DiskGuardCallback`` (see :mod:`diskguard.lightning`).

    Args:
        path: The checkpoint directory to guard; by default the first ModelCheckpoint's ``dirpath``
            once Lightning has resolved it (the other ModelCheckpoints' directories are watched),
            else ``trainer.default_root_dir`` (a fit that saves by hand, ``enable_checkpointing=False``).
        log_metrics: Log ``disk/free_bytes``, ``disk/used_percent`` and ``disk/hours_to_full`` with
            ``pl_module.log`` on the batches Lightning sends to its loggers: in the same logger call
            as the loss, at Lightning's step.
        if_busy: With Lightning's ``AsyncCheckpointIO``: ``'wait'`` (the default) lets a save wait
            for the previous one still in flight; ``'refuse'`` lets them overlap, counts the bytes
            in flight as held, and refuses (the run stops) a save that does not fit beside them.
        guard_options: :class:`diskguard.DiskGuard`'s keyword arguments (``min_free``, ``budget``,
            ``retention``, ``reserve``, ``check_every_steps``...). The ranks and the reduction of
            the stop flag come from the Trainer.

    Raises:
        TypeError: An unknown option (the message names it), or ``rank``/``local_rank``/
            ``world_size``/``sync``, which come from the Trainer. DiskGuard's own checks of the
            values run when the fit starts, before the first step.
    """

    #: The concrete module's ``GuardedCheckpointIOMixin`` subclass, and the CheckpointIO it replaces.
    _guarded_io_class: ClassVar[type]
    _torch_io_class: ClassVar[type]
    #: The package's ``AsyncCheckpointIO`` and the IO that stands in front of it.
    _async_io_class: ClassVar[Any]
    _guarded_async_io_class: ClassVar[type]

    def __init__(
        self,
        path: StrPath | None = None,
        *,
        log_metrics: bool = True,
        if_busy: str = 'wait',
        **guard_options: Any,
    ) -> None:
        if if_busy not in ('wait', 'refuse'):
            raise ValueError(f"if_busy={if_busy!r}: expected 'wait' or 'refuse'")
        self._if_busy = if_busy
        self._options = callback_options(
            log_metrics,
            guard_options,
            reduces_stop=True,
            source="the ranks and the stop's reduction come from the Trainer (trainer.global_rank, "
            'trainer.local_rank, trainer.world_size, trainer.strategy)',
        )
        if path is not None:
            path = os.fsdecode(os.fspath(path))
            path = path if _is_remote(path) else os.path.abspath(path)
        super().__init__()
        self._path: str | None = path
        self._log_metrics = log_metrics
        self._given_options = guard_options
        # Lightning reads state_key at every hook (its profiler's label): computed once.
        self._state_key: str = self._generate_state_key(path=path)  # type: ignore[attr-defined]
        self._pending_state: dict[str, Any] | None = None
        self._finished: DiskGuard | None = None
        self._reset_fit()

    def _reset_fit(self) -> None:
        """Forgets what belongs to one fit (the guard, the installed IO, the trainer); the guard of a
        finished fit stays readable as :attr:`guard` until the next fit starts."""
        self._guard: DiskGuard | None = None
        self._trainer: Any = None
        self._replaced_io: Any = None
        self._replaced_inner_io: Any = None  # the IO inside an AsyncCheckpointIO
        self._wrapped_strategy: Any = None  # a strategy whose saves every rank writes, wrapped
        self._failed_saves: list[_AsyncSave] = []
        self._protected: tuple[str, ...] = ()
        self._snapshots: list[tuple[Any, dict[str, Any]]] = []
        self._refused: list[str] = []
        self._keep_next_removal = False
        self._logs = False
        self._logged_metrics: dict[str, Any] = {}  # figure -> the result metric its first log made
        self._withdraw_logged = False  # the figures went to the loggers at the last batch
        self._saves_at_batch_end = True

    # ----- configuration, state, pickling -----

    @property
    def guard_options(self) -> Mapping[str, Any]:
        """DiskGuard's options as given; read-only, as they were checked when the callback was
        made."""
        return MappingProxyType(self._given_options)

    @property
    def state_key(self) -> str:
        return self._state_key

    @property
    def guard(self) -> DiskGuard | None:
        """The guard of the current fit (built in ``on_fit_start``), or of the last one once it
        ended (its :meth:`~diskguard.DiskGuard.status` and ``stop_reason`` stay readable); None
        before the first fit and for a fit it did not guard (``fast_dev_run``, ``barebones``)."""
        return self._guard if self._guard is not None else self._finished

    @property
    def stop_reason(self) -> str | None:
        """Why diskguard stopped the current or last fit, or None when it did not stop it."""
        guard = self.guard
        return None if guard is None else guard.stop_reason

    def state_dict(self) -> dict[str, Any]:
        """Plain values only (checkpoints load with ``torch.load(weights_only=True)``)."""
        if self._guard is None:
            return {} if self._pending_state is None else self._pending_state
        return {'version': _STATE_VERSION, 'path': self._guard.path, 'guard': self._guard.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores callbacks before on_fit_start, where the guard is built.
        self._pending_state = state_dict if state_dict.get('version') == _STATE_VERSION else None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(
            _guard=None,
            _finished=None,
            _trainer=None,
            _replaced_io=None,
            _snapshots=[],
            _logged_metrics={},
            _withdraw_logged=False,
        )
        return state

    # ----- building the guard -----

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._reset_fit()
        self._finished = None
        skipped = _not_guarded(trainer)
        if skipped is not None:
            logger.debug('diskguard does not guard this fit: %s', skipped)
            return
        path, others = self._directories(trainer)
        if path is None:
            return
        watch = self._options.watch
        if isinstance(watch, tuple):
            watch = (*watch, *others)  # else DiskGuard refuses it by name
        options = self._options.replace(
            watch=watch,
            rank=trainer.global_rank,
            local_rank=trainer.local_rank,
            world_size=trainer.world_size,
            sync=lambda flag: trainer.strategy.reduce_boolean_decision(flag, all=False),
        )
        self._guard = DiskGuard(path, **options.as_kwargs())
        self._trainer = trainer
        # Figures go through pl_module.log, which needs a logger to go to.
        self._logs = self._log_metrics and bool(trainer.loggers)
        self._restore_state()
        self._saves_at_batch_end = any(_may_save_at_batch_end(cb) for cb in trainer.checkpoint_callbacks)
        self._install_io(trainer)
        self._wrap_every_rank_saves(trainer)
        self._protect(trainer)
        # Timer-style: a run resumed onto a full disk stops before its first step.
        self._stop_if(trainer, self._guard.sync_stop())
        if trainer.is_global_zero:
            for conflict in _conflicts(trainer, self._guard, pl_module, self._options.retention):
                warnings.warn(conflict, DiskSpaceWarning, stacklevel=_caller_level())

    def _directories(self, trainer: Any) -> tuple[str | None, list[str]]:
        """The guarded directory (``path``, else the first ModelCheckpoint's ``dirpath``, which
        Lightning has resolved by now, else ``trainer.default_root_dir``, where a manual
        ``trainer.save_checkpoint`` usually writes) and the other checkpoint directories, to watch."""
        dirs = [os.fsdecode(os.fspath(d)) for d in self._checkpoint_dirs(trainer)]
        dirs = [d if _is_remote(d) else os.path.abspath(d) for d in dirs]
        path = self._path
        if path is None:
            path = dirs[0] if dirs else os.fsdecode(os.fspath(trainer.default_root_dir))
            path = path if _is_remote(path) else os.path.abspath(path)
        if _is_remote(path):
            warnings.warn(
                f'diskguard does not guard {path!r}: it measures local filesystems only',
                DiskSpaceWarning,
                stacklevel=_caller_level(),
            )
            return None, []
        return path, [d for d in dict.fromkeys(dirs) if d != path and not _is_remote(d)]

    @staticmethod
    def _checkpoint_dirs(trainer: Any) -> Iterator[Any]:
        for callback in trainer.checkpoint_callbacks:
            dirpath = getattr(callback, 'dirpath', None)
            if dirpath:
                yield dirpath

    def _restore_state(self) -> None:
        state, self._pending_state = self._pending_state, None
        assert self._guard is not None
        # What was measured under another directory says nothing about this one.
        if state and state.get('path') == self._guard.path:
            self._guard.load_state_dict(state['guard'])

    def _install_io(self, trainer: Any) -> None:
        """Replaces Lightning's TorchCheckpointIO with one that publishes through diskguard.save; an
        ``AsyncCheckpointIO`` over it gets the guarded IO in front and diskguard.save behind. Another
        CheckpointIO of the user's (cloud, sharded) is left alone: the guard still checks, makes
        room and stops, but cannot refuse a save it does not see."""
        current: Any = trainer.strategy.checkpoint_io
        left = (GuardedCheckpointIOMixin, GuardedAsyncCheckpointIOMixin)
        if isinstance(current, left):  # left by an earlier fit
            current = trainer.strategy.checkpoint_io = current.replaced
        if isinstance(current, self._async_io_class) and type(current.checkpoint_io) is self._torch_io_class:
            # Lightning's AsyncCheckpointIO over its TorchCheckpointIO: checked in front, written behind.
            self._replaced_io, self._replaced_inner_io = current, current.checkpoint_io
            current._checkpoint_io = _BackgroundWriter(current.checkpoint_io)  # its setter keeps the first
            trainer.strategy.checkpoint_io = self._guarded_async_io_class(self, current)
            return
        if type(current) is not self._torch_io_class:
            if trainer.is_global_zero:
                warnings.warn(
                    f"diskguard leaves the Trainer's {type(current).__name__} in place: its saves are not "
                    'published atomically or checked for room before writing (the guard still checks '
                    'on its cadence, makes room and stops the run)',
                    DiskSpaceWarning,
                    stacklevel=_caller_level(),
                )
            return
        self._replaced_io = current
        trainer.strategy.checkpoint_io = self._guarded_io_class(self, current)

    def _detach_io(self) -> None:
        """Ends the installed IO's tie to this fit; it stays, saving whole or refusing (see
        :class:`GuardedCheckpointIOMixin`), until the next fit replaces it. A wrapped strategy gets
        its own save and removal back."""
        strategy, self._wrapped_strategy = self._wrapped_strategy, None
        if strategy is not None:
            for name in ('save_checkpoint', 'remove_checkpoint'):
                strategy.__dict__.pop(name, None)
        trainer = self._trainer
        if trainer is not None and self._replaced_io is not None:
            io = trainer.strategy.checkpoint_io
            if isinstance(io, GuardedCheckpointIOMixin) and io._callback is self:
                io._callback = None
            elif isinstance(io, GuardedAsyncCheckpointIOMixin) and io._callback is self:
                # The user's AsyncCheckpointIO goes back with its own IO (its saves in flight drained).
                trainer.strategy.checkpoint_io = self._replaced_io
                self._replaced_io._checkpoint_io = self._replaced_inner_io

    # ----- saves every rank writes -----

    def _wrap_every_rank_saves(self, trainer: Any) -> None:
        """A strategy that writes a part of each checkpoint on every rank (FSDP's sharded state
        dict, ModelParallel's distributed checkpoint, DeepSpeed, a subclass of the user's) saves
        outside the CheckpointIO, where only rank zero would ask the guard, and a refusal there
        (``reduce_boolean_decision`` afterwards) comes after the other ranks wrote their parts.
        Its ``save_checkpoint`` goes through the collective pre-flight first (every rank's bytes,
        one decision per filesystem, all write or none does), and its ``remove_checkpoint`` keeps
        the file a refused save was to replace. One process has nothing to agree on."""
        strategy = trainer.strategy
        if trainer.world_size <= 1 or not _saves_on_every_rank(strategy):
            return
        save, remove = strategy.save_checkpoint, strategy.remove_checkpoint

        def save_checkpoint(checkpoint: dict[str, Any], filepath: Any, storage_options: Any = None) -> None:
            self._save_on_every_rank(save, checkpoint, filepath, storage_options)

        def remove_checkpoint(filepath: Any) -> None:
            if self._guard is not None and self._keeps(os.fspath(filepath)):
                return
            remove(filepath)
            self._removed(os.fspath(filepath))

        strategy.save_checkpoint, strategy.remove_checkpoint = save_checkpoint, remove_checkpoint
        self._wrapped_strategy = strategy

    def _save_on_every_rank(
        self, save: Callable[..., None], checkpoint: dict[str, Any], filepath: Any, storage_options: Any
    ) -> None:
        """One save of a strategy whose every rank writes: the collective pre-flight (every rank
        calls this for the same save, as the strategy's own save), then the strategy's save, or,
        refused, nothing written on any rank and every rank stopping at this step."""
        guard, trainer = self._guard, self._trainer
        if guard is None or not _writes_on_every_rank(trainer.strategy):
            save(checkpoint, filepath, storage_options=storage_options)
            return
        # Rank zero's path, as the strategy's own save takes it: every rank decides alike below.
        path = os.fspath(trainer.strategy.broadcast(os.fspath(filepath)))
        if _is_remote(path) or not within(path, os.fsdecode(guard.path)):
            save(checkpoint, filepath, storage_options=storage_options)
            return
        from . import _dist
        from .dcp import _local_bytes

        self._keep_next_removal = False  # each save is followed by at most its own removal
        self._protect(trainer, saving=True)
        saves = guard._saves
        held = saves.held() if saves is not None else 0
        try:
            leader, total = _dist.preflight(guard, path, _local_bytes(checkpoint), held=held)
        except InsufficientSpaceError as err:
            self._refuse(path, err, agreed=True)
            return
        save(checkpoint, filepath, storage_options=storage_options)
        if leader:
            guard.after_save(path, total)

    # ----- what Lightning references -----

    def _protect(self, trainer: Any, *, saving: bool = False) -> None:
        """Tells the guard every file Lightning references (the guard never deletes them). While
        saving, also what was referenced before the hook: the k-th best ModelCheckpoint drops
        before its save stays until that save succeeded (ModelCheckpoint removes it then)."""
        referenced = tuple(self._referenced(trainer))
        if saving:
            referenced += tuple(path for _, before in self._snapshots for path in _paths_in(before))
        if referenced != self._protected:
            assert self._guard is not None
            self._guard.protect(referenced)
            self._protected = referenced

    @staticmethod
    def _referenced(trainer: Any) -> Iterator[str]:
        if trainer.ckpt_path:
            yield os.fspath(trainer.ckpt_path)
        for callback in trainer.checkpoint_callbacks:
            yield from _paths_in(vars(callback))

    # ----- saving -----

    def _publish(self, checkpoint: dict[str, Any], path: str, lightning_save: Any) -> None:
        """Writes one checkpoint (called by the installed IO, on the ranks Lightning saves from)."""
        guard = self._guard
        if guard is None or _is_remote(path):
            lightning_save(checkpoint, path)
            return
        os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
        self._keep_next_removal = False  # each save is followed by at most its own removal
        self._protect(self._trainer, saving=True)
        directory = os.fsdecode(guard.path)
        try:
            save(checkpoint, path, guard=guard if within(path, directory) else None)
        except (InsufficientSpaceError, DiskFullError) as err:
            self._refuse(path, err)
            return
        if self._trainer.world_size == 1 and guard.should_stop:
            # This save left room for one more only: stop after this step, not a save later.
            self._stop_if(self._trainer, True)

    def _publish_async(self, checkpoint: dict[str, Any], path: str, async_io: Any) -> None:
        """Hands one checkpoint to Lightning's AsyncCheckpointIO once there is room for it beside the
        saves still in flight (training thread); the write is settled at a later step or save."""
        guard = self._guard
        assert guard is not None
        from .dcp import _InFlight, _tracker_for  # torch is loaded: Lightning runs on it

        if _is_remote(path):  # Lightning's own IO (fsspec) writes it, on the plugin's thread
            async_io.save_checkpoint(checkpoint, path)
            return
        os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
        self._keep_next_removal = False
        self._protect(self._trainer, saving=True)
        tracker = _tracker_for(guard)
        # 'wait': the previous save ends first. A failure of an earlier one surfaces here, and this
        # save is not made: the run stops with the checkpoints already whole.
        failed = self._settled(lambda: tracker.settle(wait=self._if_busy == 'wait'))
        if failed is not None:
            self._refuse(path, failed)
            return
        guarded = within(path, os.fsdecode(guard.path))
        plan = _AsyncSave(self, path, estimate_size(checkpoint), guarded)
        if guarded:
            try:
                guard.before_save(path, plan.nbytes + tracker.held())
            except InsufficientSpaceError as err:
                self._refuse(path, err)
                return
        for earlier in tracker.inflight:  # this save replaces that file: it must not be removed after it
            if isinstance(earlier.plan, _AsyncSave) and path in earlier.plan.removals:
                earlier.plan.removals.remove(path)
        tracker.inflight.append(_InFlight(plan, plan.future))
        plan.future.add_done_callback(tracker.poke)
        async_io.save_checkpoint(checkpoint, path, storage_options=plan)
        if self._trainer.world_size == 1 and guard.should_stop:
            self._stop_if(self._trainer, True)

    def _remove_async(self, path: str, async_io: Any) -> None:
        """ModelCheckpoint removes a file right after handing the save that replaces it over: the
        removal waits until that save is whole (dropped if it fails)."""
        if self._keeps(path):
            return
        saves = self._guard._saves if self._guard is not None else None
        if saves is not None and saves.inflight and isinstance(saves.inflight[-1].plan, _AsyncSave):
            saves.inflight[-1].plan.removals.append(path)
            return
        self._remove_now(path, async_io)

    def _remove_now(self, path: str, async_io: Any = None) -> None:
        (async_io or self._replaced_io).remove_checkpoint(path)
        self._removed(path)

    def _settled(self, call: Callable[[], object]) -> OSError | None:
        """Runs ``call`` (which may settle saves in flight); returns the error of a background save
        that failed because its disk or quota filled, once reported (the caller stops the run).
        Any other error of a background write is raised as it is."""
        try:
            call()
        except OSError as err:
            self._settle_failure(err)
            return err
        return None

    def _settle_failure(self, err: OSError) -> None:
        """``err`` came out of settling the saves in flight: reported when a background save
        failed because its disk or quota filled (the caller stops the run), else raised."""
        if not self._failed_saves or disk_full_cause(err) is None:
            self._failed_saves = []
            raise err
        self._report_failed_saves(err)

    def _report_failed_saves(self, err: BaseException) -> None:
        failed, self._failed_saves = self._failed_saves, []
        notes = ' '.join(getattr(err, '__notes__', ()))
        for plan in failed:
            self._refused.append(plan.target)
            self._snapshots = plan.snapshots  # ModelCheckpoint as it was before that save
        if notes:
            logger.error('%s', notes)
        warnings.warn(
            f'diskguard: checkpoint {failed[0].target!r} was not saved: its background write failed '
            f'({err}). {notes} The run stops; the checkpoints already written are kept',
            DiskSpaceWarning,
            stacklevel=_caller_level(),
        )

    def _drain(self, raise_errors: bool) -> None:
        """Waits for the saves still in flight (the end of a fit) and settles them."""
        saves = self._guard._saves if self._guard is not None else None
        if saves is None or not saves.inflight:
            return
        try:
            self._settled(lambda: saves.settle(wait=True))
        except BaseException:
            if raise_errors:
                raise
            logger.exception('diskguard: a checkpoint written in the background failed')

    def _refuse(self, path: str, err: Exception, *, agreed: bool = False) -> None:
        """A save that did not fit wrote nothing: the run stops instead of crashing, and the
        ModelCheckpoint that asked for it is repaired at this callback's next hook. ``agreed``:
        every rank learnt the refusal at this save (the collective pre-flight) and stops now."""
        self._refused.append(path)
        self._keep_next_removal = True
        assert self._guard is not None and self._trainer is not None
        if agreed:
            self._stop_if(self._trainer, True)  # the same save on every rank: the same step
            if not self._trainer.is_global_zero:
                return  # one warning for the run
        elif self._trainer.world_size == 1:
            self._trainer.should_stop = True  # with one process the local flag is the agreed one
        # else: the refusal stopped the guard, and the next reduction stops every rank together.
        warnings.warn(
            f'diskguard: checkpoint {path!r} was not saved ({err}); the run stops at the next check, '
            'and the checkpoints already written are kept',
            DiskSpaceWarning,
            stacklevel=_caller_level(),
        )

    def _removed(self, path: str) -> None:
        """Lightning removed a checkpoint (a top-k one that dropped out): what the run holds
        follows now, not at the guard's next periodic rescan."""
        guard = self._guard
        if guard is not None and not _is_remote(path) and within(path, os.fsdecode(guard.path)):
            guard.rescan()

    def _keeps(self, path: str) -> bool:
        """True for the removal that follows a refused save: ModelCheckpoint removes the file the
        new checkpoint replaces, and that checkpoint was not written."""
        keep, self._keep_next_removal = self._keep_next_removal, False
        return keep

    # ----- the cadence -----

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # The hot path, at every batch: nothing here beyond the guard's step() unless something
        # changed (a refused save to repair, a stop, a batch Lightning sends to its loggers).
        guard = self._guard
        if guard is None:
            return
        if self._saves_at_batch_end:
            self._before_hook(trainer)
        elif self._refused:
            # No checkpoint callback saves here: what they reference changes only in the hooks
            # that save (each runs _before_hook) and is protected again by each save.
            self._repair(trainer)
        # Every rank calls this once per batch: the guard reduces its flag on the same calls. A save
        # written in the background that failed surfaces here (in a distributed run once every rank
        # agreed to stop).
        try:
            stop = guard.step()
        except OSError as err:
            self._settle_failure(err)
            stop = True
        if stop:
            self._stop_if(trainer, True)
        if self._logs and _logs_this_batch(trainer):
            self._log(trainer, pl_module)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self._withdraw_logged:
            self._withdraw_figures()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._before_epoch_save(trainer)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self._before_epoch_save(trainer)

    def _before_epoch_save(self, trainer: Any) -> None:
        """Runs before ModelCheckpoint's epoch-end save (Lightning orders checkpoint callbacks last):
        checks now, on every rank, and stops together if the agreed flag says so."""
        if self._guard is None or trainer.sanity_checking:
            return
        self._before_hook(trainer)
        guard = self._guard
        stopped: list[bool] = []
        failed = self._settled(lambda: stopped.append(guard.sync_stop()))
        self._stop_if(trainer, failed is not None or stopped[0])

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self._guard is not None:
            self._before_hook(trainer)

    def _before_hook(self, trainer: Any) -> None:
        """At each hook where ModelCheckpoint may save after this callback: finish repairing
        after a refused save, remember what ModelCheckpoint references now, and protect it."""
        self._repair(trainer)
        self._snapshot(trainer)
        self._protect(trainer)

    def _stop_if(self, trainer: Any, stop: bool) -> None:
        if stop and not trainer.should_stop:
            trainer.should_stop = True
            if trainer.is_global_zero:
                assert self._guard is not None
                logger.warning(
                    'diskguard stops the run at step %d: %s', trainer.global_step, self._guard.stop_reason
                )
        if stop and not getattr(trainer.fit_loop, '_can_stop_early', True):
            # Lightning ignores should_stop until min_epochs/min_steps are met: the run would train
            # on without room for a checkpoint. Every rank has the same agreed flag and progress,
            # so every rank raises here together (Lightning's SpikeDetection does the same).
            assert self._guard is not None
            loop = trainer.fit_loop
            raise DiskGuardError(
                f'diskguard must stop the run at step {trainer.global_step} '
                f'({self._guard.stop_reason or "another rank is out of room"}), but Lightning ignores '
                f'trainer.should_stop until min_epochs={loop.min_epochs} and '
                f'min_steps={loop.min_steps} are met: stopping with this error instead. Make room, '
                'or lower min_epochs/min_steps'
            )

    def _log(self, trainer: Any, pl_module: Any) -> None:
        """The disk next to the loss: the figures, measured at this batch, logged as Lightning's
        own metrics are, so they travel in the same logger call as the loss, at Lightning's step. Called only
        on the batches whose metrics Lightning sends to the loggers (``should_update_logs``). Only
        the process that measures the directory has figures; the loggers write from rank zero.

        Each figure's first ``log`` of the fit goes through ``pl_module.log``, which validates it
        and registers its result metric; later values are handed to that same metric (what
        ``log`` does last), without the checks and the move to the device that made ``log`` cost
        several times more than the check itself. Anything unexpected takes ``log`` again."""
        guard = self._guard
        assert guard is not None
        # The figures of this very batch: measured now (a step's check may have graded figures
        # measured a few milliseconds before, see DiskGuard.step).
        if guard.check():
            self._stop_if(trainer, True)
        for name, value in guard.metrics().items():
            if not self._update_logged(trainer, pl_module, name, value):
                pl_module.log(name, value, on_step=True, on_epoch=False, prog_bar=False, logger=True)
                self._logged_metrics[name] = _logged_metric(trainer, pl_module, name)
        self._withdraw_logged = True

    def _withdraw_figures(self) -> None:
        """At the batch after a logged one: the figures leave the results Lightning collects at
        every batch end (a result metric marked reset is skipped until it is updated again, as
        the next logged batch does). Left in, Lightning would copy the last figures into its
        metrics at each of the following batches, which cost more than the check itself.
        ``trainer.callback_metrics`` keeps the values last logged."""
        self._withdraw_logged = False
        for metric in self._logged_metrics.values():
            if metric is not None and hasattr(metric, 'has_reset'):
                metric.has_reset = True

    def _update_logged(self, trainer: Any, pl_module: Any, name: str, value: float) -> bool:
        """Hands ``value`` to the result metric ``pl_module.log`` registered for ``name`` in this
        fit, as ``log`` would; False (nothing done) when there is none or Lightning would reset
        its results first."""
        metric = self._logged_metrics.get(name)
        if metric is None or _logged_metric(trainer, pl_module, name) is not metric:
            return False
        try:
            connector = trainer._logger_connector
            fx = pl_module._current_fx_name
            if connector.should_reset_tensors(fx):
                return False  # the first batch of an epoch: log resets this hook's results first
            key = _logged_key(trainer, pl_module, name)
            state = metric.value  # the figure logged last: its dtype and device, as log made them
            update = trainer._results.update_metrics
        except AttributeError:  # another Lightning
            return False
        import torch  # imported by Lightning already

        update(key, torch.tensor(value, dtype=state.dtype, device=state.device), 1)
        connector._current_fx = fx  # as log leaves it
        return True

    # ----- a refused save: ModelCheckpoint's bookkeeping put back -----

    def _snapshot(self, trainer: Any) -> None:
        """What each ModelCheckpoint references before it may save in this hook."""
        self._keep_next_removal = False
        self._snapshots = [
            # Only what _repair and _protect read: state_dict() costs more, at every batch.
            (
                cb,
                {
                    **{name: getattr(cb, name, None) for name in _REFERENCES},
                    'best_k_models': dict(cb.best_k_models),
                },
            )
            for cb in trainer.checkpoint_callbacks
            if hasattr(cb, 'best_k_models')
        ]

    def _repair(self, trainer: Any) -> None:
        """After a refused save, ModelCheckpoint names a file that was never written (it records the
        new path before saving): point it back at files that exist, so nothing references a missing
        file and ``ckpt_path='best'``/``'last'`` keep working."""
        if not self._refused:
            return
        self._refused = []
        for callback, before in self._snapshots:
            _repair_model_checkpoint(callback, before)
        self._protect(trainer)

    # ----- the end of a fit -----

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        guard = self._guard
        if guard is not None:
            diagnosis = guard.diagnose(exception)
            if diagnosis is not None:
                logger.error('%s', diagnosis)
                if hasattr(exception, 'add_note'):
                    exception.add_note(diagnosis)
                else:  # Python 3.10: a warning, which must not replace the exception under -W error
                    with contextlib.suppress(Warning):
                        warnings.warn(diagnosis, DiskSpaceWarning, stacklevel=_caller_level())
        self._finish()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == 'fit':
            self._finish()

    def _finish(self) -> None:
        """Detaches the installed IO and releases the guard's reserve; keeps the guard's state."""
        guard = self._guard
        self._drain(raise_errors=False)  # the saves in flight still write through the installed IO
        if self._refused and self._trainer is not None:
            self._repair(self._trainer)  # a save that failed as the fit ended: ModelCheckpoint put back
        self._detach_io()
        if guard is not None:
            self._pending_state = self.state_dict()
            guard.close()
        self._reset_fit()
        if guard is not None:
            self._finished = guard  # read after fit(): guard.status(), stop_reason
