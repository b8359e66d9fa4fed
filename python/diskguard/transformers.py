"""The Hugging Face ``Trainer`` integration: one line keeps a run's disk from filling.

::

    from diskguard.transformers import DiskGuardCallback, get_last_checkpoint

    trainer = Trainer(..., callbacks=[DiskGuardCallback(min_free='20GiB')])
    trainer.train(resume_from_checkpoint=get_last_checkpoint(args.output_dir))

The callback is a thin adapter over :class:`diskguard.DiskGuard` (built when training begins, for
``args.output_dir`` unless a path is given, with the Trainer's ranks): every decision (room, the
ladder, retention, the stop) is the guard's. What the callback adds is where the Trainer asks:

- ``on_step_end`` / ``on_epoch_end``: the guard's step cadence and stop flag (agreed across ranks);
  before a save the Trainer is about to make, the guard makes room for a ``checkpoint-N`` folder the
  size of the largest complete one (or of the model's and optimizer's tensors); when it refuses,
  the save is vetoed (``control.should_save = False``) on every rank, with a warning, and the run
  stops. A stop under ``save_strategy='steps'`` asks for one final save, for which the guard kept
  room.
- ``on_save``: retention, after the Trainer's own ``save_total_limit`` rotation (which runs first, so
  the two never delete concurrently), never deleting ``state.best_model_checkpoint`` nor what is in
  ``output_dir`` besides the ``checkpoint-N`` folders (the final model ``trainer.save_model()``
  wrote there).
- ``on_log``: the disk next to the loss (``disk/free_bytes``, ``disk/used_percent``,
  ``disk/hours_to_full``) in the training step records: ``state.log_history``, TensorBoard, W&B...
  (evaluation records, which ``evaluate()`` returns, and the final summary are left as they are);
  when the guard stopped the training, the final summary says so (``diskguard_stop``).

``save_strategy='best'`` decides a save after evaluation, where no callback is asked: such saves
are recorded and retention applies, but they are not checked beforehand. An ``output_dir`` that is
a symlink is guarded where it leads.

Importing this module needs ``transformers``; ``import diskguard`` does not import it.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

try:
    from transformers import TrainerCallback
    from transformers.trainer_callback import CallbackHandler
except ImportError as err:  # pragma: no cover - exercised in a subprocess without transformers
    raise ImportError(
        f'diskguard.transformers needs the transformers package (pip install transformers): {err}',
        name='transformers',
    ) from err


def _calling_handler() -> CallbackHandler | None:
    """The ``CallbackHandler`` whose ``call_event`` is running this callback, if any."""
    frame = sys._getframe(1)
    for _ in range(8):
        frame = frame.f_back  # type: ignore[assignment]
        if frame is None:
            return None
        caller = frame.f_locals.get('self')
        if isinstance(caller, CallbackHandler):
            return caller
    return None


try:
    from transformers.trainer_callback import ExportableState
except ImportError:  # pragma: no cover - transformers before 4.42 stores no callback state

    class ExportableState:  # type: ignore[no-redef]
        """Stand-in where transformers has no callback state: ``state()`` is then never asked."""


from . import _dist
from ._diskguard import plan
from ._dist import resolve_sync
from ._integration import callback_options, checkpoints_that_fit, within
from .errors import DiskSpaceWarning, InsufficientSpaceError
from .guard import DiskGuard, _caller_level
from .saving import estimate_size

if TYPE_CHECKING:
    from transformers import TrainerControl, TrainerState, TrainingArguments

__all__ = ['DiskGuardCallback', 'get_last_checkpoint']

# transformers.trainer_utils.PREFIX_CHECKPOINT_DIR and its _re_checkpoint, which get_last_checkpoint uses.
CHECKPOINT_PREFIX = 'checkpoint'
_CHECKPOINT_NAME = re.compile(r'^' + CHECKPOINT_PREFIX + r'\-(\d+)$')
_JSON_SCALARS = (str, int, float, bool, type(None))


def get_last_checkpoint(folder: str | os.PathLike[str]) -> str | None:
    """The newest complete ``checkpoint-N`` folder in ``folder``, or ``None`` when there is none.

    A drop-in for ``transformers.trainer_utils.get_last_checkpoint``, which returns the folder with
    the highest step even when a crash left it partial (no ``trainer_state.json``, truncated files),
    so the resume fails. Only ``checkpoint-N`` folders are considered, as there: a final model
    that ``trainer.save_model()`` wrote into ``folder`` itself is not a checkpoint to resume from.
    Completeness is decided as :func:`diskguard.latest_complete` decides it. A ``folder`` that is
    a symlink is followed (as the Trainer follows it); the path returned starts with ``folder``.

    Raises:
        FileNotFoundError: ``folder`` does not exist (as the transformers function).
    """
    complete = [
        item
        for item in plan(os.path.realpath(folder)).items
        if item.action != 'skip' and _CHECKPOINT_NAME.match(item.name) and os.path.isdir(item.path)
    ]
    if not complete:
        return None
    newest = max(complete, key=lambda item: int(_CHECKPOINT_NAME.match(item.name).group(1)))  # type: ignore[union-attr]
    return os.path.join(folder, newest.name)


def _output_dir(args: TrainingArguments) -> str:
    """Where the Trainer's writes land: ``args.output_dir`` (``TrainingArguments`` sets it, to
    ``'trainer_output'`` if not given) with symlinks resolved, as the Trainer's writes resolve
    them (the guard itself follows none, so it is given the real directory)."""
    return os.path.realpath(str(args.output_dir))


def _summary(logs: dict[str, Any]) -> bool:
    """Whether a log record is the summary ``train()`` logs at its end (``train_runtime``...)."""
    return 'train_runtime' in logs


def _evaluation(logs: dict[str, Any]) -> bool:
    """Whether a log record holds evaluation metrics (``eval_*``/``test_*``): the dict the Trainer
    also returns from ``evaluate()`` and reads ``metric_for_best_model`` from, kept as it is."""
    return any(key.startswith(('eval_', 'test_')) for key in logs)


def _json_value(value: Any) -> Any:
    """``value`` as JSON can store it (paths as text), or ``...`` when it cannot be stored."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, _JSON_SCALARS) and not isinstance(value, bytes):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str | os.PathLike) for v in value):
        return [os.fspath(v) for v in value]
    return ...


class DiskGuardCallback(TrainerCallback, ExportableState):
    """Keeps a ``Trainer`` run's disk from filling: makes room, vetoes saves that cannot fit, stops.

    Args:
        path: The directory to guard; by default the Trainer's ``args.output_dir``, where its
            ``checkpoint-N`` folders go.
        log_metrics: Add the guard's :meth:`~diskguard.DiskGuard.metrics` to every log record
            (``state.log_history`` and the reporting integrations: TensorBoard, W&B...; for those,
            which the Trainer calls first, a small companion callback is put ahead of them at the
            first step).
        guard_options: :class:`diskguard.DiskGuard`'s arguments (``min_free``, ``budget``,
            ``retention``, ``check_every_steps``, ``sync``...), except the ranks, which come from the
            Trainer's arguments. ``sync='auto'`` agrees the stop flag through ``torch.distributed``
            (the Trainer hands its callbacks no reduction of its own, so ``sync`` stays yours).
            They are :attr:`guard_options` (``guard_kwargs``, its former name, still reads them,
            with a ``DeprecationWarning``).

    The guard is built when training begins (``on_train_begin``) and is then :attr:`guard`, kept
    after ``train()`` returns; :attr:`stop_reason` says whether and why it stopped the training.
    ``trainer_state.json`` stores the callback's arguments only (nothing that changes during a run,
    so a resumed run's state equals an uninterrupted one's): with
    ``TrainingArguments(restore_callback_states_from_checkpoint=True)`` the Trainer rebuilds the
    callback from the arguments JSON can hold (paths, sizes, thresholds, cadences; not a
    ``retention`` policy or a ``sync`` callable, which then take their defaults).

    Raises:
        TypeError: An argument DiskGuard does not take, or a rank (the Trainer sets those).
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, log_metrics: bool = True, **guard_options: Any
    ) -> None:
        if path is not None and not isinstance(path, str | os.PathLike):
            raise TypeError(
                f"path={path!r}: expected None (the Trainer's output_dir) or a directory path, "
                f'got {type(path).__name__}'
            )
        self._options = callback_options(
            log_metrics,
            guard_options,
            reduces_stop=False,
            source='the ranks come from the Trainer (args.process_index, args.local_process_index, '
            'args.world_size)',
        )
        self.path = path
        self.log_metrics = log_metrics
        self._given_options = guard_options
        self.guard: DiskGuard | None = None
        self.guard_state: dict[str, Any] | None = None  # set by the Trainer's restore, applied once
        self._figures_placed = False
        self._stopped_at: int | None = None  # the step at which the guard stopped this training

    @property
    def guard_options(self) -> Mapping[str, Any]:
        """DiskGuard's options as given (what ``trainer_state.json`` stores); read-only, as they
        were checked when the callback was made."""
        return MappingProxyType(self._given_options)

    @property
    def guard_kwargs(self) -> Mapping[str, Any]:
        """Deprecated: :attr:`guard_options`, the name both framework callbacks use."""
        warnings.warn(
            'DiskGuardCallback.guard_kwargs is deprecated: use guard_options',
            DeprecationWarning,
            stacklevel=2,
        )
        return self.guard_options

    # ----- building the guard -----

    def _build(self, args: TrainingArguments) -> DiskGuard:
        options = self._options.replace(
            rank=args.process_index, local_rank=args.local_process_index, world_size=args.world_size
        )
        guard = DiskGuard(self.path if self.path is not None else _output_dir(args), **options.as_kwargs())
        if self.guard_state is not None:
            guard.load_state_dict(self.guard_state)
            self.guard_state = None
        return guard

    def _guard_for(self, args: TrainingArguments) -> DiskGuard:
        if self.guard is None:
            self.guard = self._build(args)
        return self.guard

    def _place_figures_before_reporters(self) -> None:
        """Puts a :class:`_FiguresBeforeReporters` for this callback ahead of the reporting
        integrations (TensorBoard, W&B...), which the Trainer calls before user callbacks and
        which send each record on as soon as they see it. This callback itself stays where the
        user put it, so user callbacks before it still set ``should_save`` before it is asked.

        The Trainer hands callbacks no reference to its callback list, so the list is taken from
        the ``CallbackHandler`` calling this event (a few frames up; found in constant time, where
        searching the heap for what refers to this callback grows with the program). Inserting
        ahead of the callback the handler is calling makes it call this one again next
        (``on_step_begin``, which does nothing the second time), and skips no other.
        """
        handler = _calling_handler()
        if handler is None:
            return  # the figures still reach log_history (on_log updates it)
        holder = handler.callbacks
        if any(isinstance(cb, _FiguresBeforeReporters) and cb.owner is self for cb in holder):
            return
        mine = next((i for i, cb in enumerate(holder) if cb is self), len(holder))
        reporter = next((i for i, cb in enumerate(holder[:mine]) if _reports(cb)), None)
        if reporter is not None:
            holder.insert(reporter, _FiguresBeforeReporters(self))

    # ----- the Trainer's events -----

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Builds the guard for this training, for ``args.output_dir`` unless a path was given.

        Each ``train()`` gets a guard of its own that decides afresh (a run stopped for lack of
        room and trained again once room was made must not stop at its first step); what the
        previous one learned about the same directory (checkpoint sizes, the trend) carries over.
        """
        previous = self.guard
        if previous is not None:
            same_directory = self.path is not None or previous.path == _output_dir(args)
            if same_directory and self.guard_state is None:
                self.guard_state = previous.state_dict()  # a stop is not carried over
            previous.close()
            self.guard = None
        guard = self._guard_for(args)
        self._figures_placed = False
        self._stopped_at = None
        if state.is_world_process_zero:
            conflict = _save_total_limit_conflict(args, guard, kwargs.get('model'))
            if conflict is not None:
                warnings.warn(conflict, DiskSpaceWarning, stacklevel=_caller_level())
        # A run resumed from a checkpoint written without this callback has no entry for it in the
        # state the Trainer loaded, and its first save would fail looking it up (KeyError).
        stored: Any = state.stateful_callbacks  # typed as the list given, a dict once built
        if isinstance(stored, dict):
            stored.setdefault(type(self).__name__, self.state())

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Once per training: the disk figures ahead of the reporting integrations."""
        if self.log_metrics and not self._figures_placed:
            self._figures_placed = True
            self._place_figures_before_reporters()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """The guard's step (a check when due, the stop agreed across ranks); makes room for a save
        the Trainer is about to make, or vetoes it."""
        guard = self._guard_for(args)
        stop = guard.step(state.global_step)
        if control.should_log and self.log_metrics:
            # The figures go on this step's record: measured now (a step's check may have graded
            # figures measured a few milliseconds before, see DiskGuard.step).
            stop = guard.check() or stop
        if stop and args.save_strategy == 'steps':
            # The final save the guard kept room for: the progress since the last one is not lost.
            control.should_save = True
        if control.should_save:
            stop = self._make_room_or_veto(args, state, control, kwargs)
        if stop:
            self._stop(state, control)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Before an epoch-end save: the stop agreed now, and room made for the save, or a veto."""
        if control.should_save and self._make_room_or_veto(args, state, control, kwargs):
            self._stop(state, control)

    def _stop(self, state: TrainerState, control: TrainerControl) -> None:
        """Stops the training, remembering at which step (the final log record says so)."""
        control.should_training_stop = True
        if self._stopped_at is None:
            self._stopped_at = state.global_step

    @property
    def stop_reason(self) -> str | None:
        """Why diskguard stopped the last training, or None when it did not stop it."""
        if self._stopped_at is None:
            return None
        reason = self.guard.stop_reason if self.guard is not None else None
        return reason or 'another rank ran out of room'

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Records the ``checkpoint-N`` folder just written and applies retention (after the
        Trainer's own rotation), never deleting what the Trainer references."""
        guard = self._guard_for(args)
        folder = self._checkpoint_folder(args, state)
        guard.protect(self._referenced(args, state))
        if within(folder, os.fsdecode(guard.path)):
            guard.after_save(folder, self._estimate(guard, args, kwargs))
        # The Trainer's save_total_limit rotation ran just before this event: what the run holds
        # follows it now (measured after the save is recorded, so the new folder counts once).
        guard.rescan()

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """After the Trainer's last deletion (``save_total_limit=1`` with a best checkpoint)."""
        if self.guard is not None:
            self.guard.rescan()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Adds the disk figures to a training step's record (and to ``state.log_history``, where the
        Trainer put a copy of it just before); also called, earlier, by the
        :class:`_FiguresBeforeReporters` ahead of the reporting integrations (the same figures).
        On the final summary record of a training diskguard stopped, says so: ``diskguard_stop``
        (the step and the reason), which ``train()`` also returns in its metrics."""
        self._add_figures(state, logs)
        if logs and self._stopped_at is not None and _summary(logs):
            stop = f'stopped at step {self._stopped_at}: {self.stop_reason}'
            logs['diskguard_stop'] = stop
            history: list[dict[str, Any]] = state.log_history  # typed as floats; records hold any JSON
            if history and isinstance(history[-1], dict):
                history[-1]['diskguard_stop'] = stop

    def _add_figures(self, state: TrainerState, logs: dict[str, Any] | None) -> None:
        """The disk figures on a training step's record; not on evaluation records nor on the
        final summary (``train_runtime``...), which stay as the Trainer makes them."""
        if not self.log_metrics or self.guard is None or not logs or _evaluation(logs) or _summary(logs):
            return
        figures = self.guard.metrics()
        logs.update(figures)
        if state.log_history and isinstance(state.log_history[-1], dict):
            state.log_history[-1].update(figures)

    # ----- saving -----

    def _make_room_or_veto(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: dict[str, Any]
    ) -> bool:
        """Asks the guard for room for the save about to be made; every rank then agrees on the
        stop and, when stopping, on whether any rank was refused: a refused save is skipped on
        every rank (a rank saving alone would leave a partial folder, or wait at a barrier).

        Returns the agreed stop flag.
        """
        guard = self._guard_for(args)
        folder = self._checkpoint_folder(args, state)
        refusal: InsufficientSpaceError | None = None
        guard.protect(self._referenced(args, state))
        # Every rank writes into the folder: the collective pre-flight sums their parts per
        # filesystem, and every rank has the verdict before any rank writes (one warning says so).
        collective = args.world_size > 1 and self.guard_options.get('sync', 'auto') == 'auto'
        try:
            if not within(folder, os.fsdecode(guard.path)):
                pass
            elif collective:
                _dist.preflight(guard, folder, self._part(guard, args, state, kwargs))
            else:
                guard.before_save(folder, self._estimate(guard, args, kwargs))
        except InsufficientSpaceError as err:
            refusal = err
        finally:
            # A collective: made even when before_save raised something else (a DiskSpaceWarning
            # turned into an error, issued only where the disk is measured), or the others hang.
            stop = guard.sync_stop()
        # A refusal stops the guard, so the veto is agreed only when the run stops: a rank-invariant
        # condition, so every rank makes the same collective calls.
        if stop and self._agree(refusal is not None, args):
            control.should_save = False
            if refusal is not None and (state.is_world_process_zero or not collective):
                warnings.warn(
                    f'{refusal}; the Trainer skips this save (it would be left partial) and stops',
                    DiskSpaceWarning,
                    stacklevel=_caller_level(),
                )
        return stop

    def _agree(self, flag: bool, args: TrainingArguments) -> bool:
        """``flag`` agreed across ranks (any rank's True wins) the way the guard agrees its stop:
        through its ``sync`` (``'auto'``: ``torch.distributed``; a callable; ``None``: never)."""
        reduce = resolve_sync(self._options.sync)
        if args.world_size <= 1 or reduce is None:
            return flag
        return bool(reduce(flag))

    @staticmethod
    def _checkpoint_folder(args: TrainingArguments, state: TrainerState) -> str:
        """Where the Trainer writes the checkpoint of this step (``Trainer._save_checkpoint``)."""
        return os.path.join(_output_dir(args), f'{CHECKPOINT_PREFIX}-{state.global_step}')

    @staticmethod
    def _referenced(args: TrainingArguments, state: TrainerState) -> list[str]:
        """What the guard must never delete: the Trainer's best checkpoint (``load_best_model_at_end``)
        and everything in ``output_dir`` that is not a ``checkpoint-N`` folder: the final model
        ``trainer.save_model()`` writes there (``model.safetensors``, ``training_args.bin``, the
        tokenizer...), which a scan of the directory would otherwise take for old checkpoints."""
        output_dir = _output_dir(args)
        try:
            names = os.listdir(output_dir)
        except FileNotFoundError:
            names = []
        finals = [os.path.join(output_dir, name) for name in names if not _CHECKPOINT_NAME.match(name)]
        best = state.best_model_checkpoint
        return [*finals, os.path.realpath(best)] if best else finals

    @classmethod
    def _part(
        cls, guard: DiskGuard, args: TrainingArguments, state: TrainerState, kwargs: dict[str, Any]
    ) -> int:
        """This rank's bytes of the ``checkpoint-N`` folder (``Trainer._save_checkpoint``,
        transformers/trainer.py): the world's process zero writes the model, the optimizer, the
        scheduler and the trainer state (:meth:`_estimate`); under FSDP or DeepSpeed every rank
        writes the shards it holds (``save_fsdp_model``/``save_fsdp_optimizer``, DeepSpeed's
        ``save_checkpoint``, in ``_save_optimizer_and_scheduler``); every rank writes its
        ``rng_state_{process_index}.pth`` (``_save_rng_state``)."""
        if state.is_world_process_zero:
            return cls._estimate(guard, args, kwargs) + _RNG_STATE_BYTES
        if not (args.fsdp or args.deepspeed):
            return _RNG_STATE_BYTES
        from .dcp import _local_bytes  # the local shards of sharded tensors, as diskguard.dcp counts them

        model, optimizer = kwargs.get('model'), kwargs.get('optimizer')
        held = [list(model.parameters())] if model is not None else []
        if optimizer is not None and not args.save_only_model:
            held.append(optimizer.state_dict())
        return _local_bytes(held) + _RNG_STATE_BYTES

    @staticmethod
    def _estimate(guard: DiskGuard, args: TrainingArguments, kwargs: dict[str, Any]) -> int:
        """Bytes the next ``checkpoint-N`` needs: the largest complete one the guard has seen, or
        the model's (and, unless ``save_only_model``, the optimizer's) tensors if that is more."""
        saved = (
            [kwargs.get('model')] if args.save_only_model else [kwargs.get('model'), kwargs.get('optimizer')]
        )
        tensors = estimate_size([part for part in saved if part is not None])
        return max(guard.status().largest_checkpoint, tensors)

    # ----- state in trainer_state.json -----

    def state(self) -> dict[str, Any]:
        """What ``trainer_state.json`` stores (JSON only): the arguments JSON can hold, so that
        ``restore_callback_states_from_checkpoint=True`` rebuilds the callback. Nothing that
        changes during a run (counters, the trend's wall-clock samples) is stored: it would differ
        between a run resumed from a checkpoint and one that was not, and nothing of it must
        survive a resume: a resumed guard measures the directory and its checkpoints afresh."""
        stored = {'path': self.path, 'log_metrics': self.log_metrics, **self.guard_options}
        json_args = {name: _json_value(value) for name, value in stored.items()}
        return {
            'args': {name: value for name, value in json_args.items() if value is not ...},
            'attributes': {},
        }


#: An upper bound on a ``rng_state_N.pth`` (python, numpy and torch CPU generator states, plus
#: one CUDA state per device of the node: 16 KiB on CPU).
_RNG_STATE_BYTES = 64 * 1024


def _save_total_limit_conflict(args: TrainingArguments, guard: DiskGuard, model: Any) -> str | None:
    """``save_total_limit`` whose peak (the new checkpoint is saved before the oldest is rotated
    out; with ``load_best_model_at_end`` the best one stays too) cannot fit on the guarded disk,
    named once when training begins with what to change; None when it fits or is not known. The
    size is the largest checkpoint seen, else the model's weights: a lower bound (the optimizer's
    state does not exist yet), so this errs toward silence."""
    limit = args.save_total_limit
    if not limit or limit <= 0 or str(args.save_strategy).lower().endswith('no'):
        return None
    if not within(_output_dir(args), os.fsdecode(guard.path)):
        return None  # the guard does not measure where the checkpoints go
    size = guard.status().largest_checkpoint
    if not size and model is not None:
        try:
            size = estimate_size(model.state_dict())
        except Exception:  # noqa: BLE001 -- an estimate only
            return None
    capacity = checkpoints_that_fit(guard, size)
    peak = max(limit, 2 if args.load_best_model_at_end else 1) + 1
    if capacity is None or peak <= capacity:
        return None
    return (
        f'TrainingArguments(save_total_limit={limit}) holds {peak} checkpoints at its peak (the new one '
        f'is saved before the oldest is removed{", the best one kept" if args.load_best_model_at_end else ""}'
        f'), and the disk has room for about {capacity}: lower save_total_limit to '
        f'{max(capacity - 1, 1)} or give the checkpoints more room; diskguard stops the training when '
        'it runs short'
    )


def _reports(callback: object) -> bool:
    """Whether ``callback`` is one of transformers' reporting integrations (``report_to``)."""
    return type(callback).__module__.startswith('transformers.integrations')


class _FiguresBeforeReporters(TrainerCallback):
    """Adds a :class:`DiskGuardCallback`'s disk figures to each training log record, placed ahead of
    the reporting integrations so that they send the figures on with the record."""

    def __init__(self, owner: DiskGuardCallback) -> None:
        self.owner = owner

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """The owner's figures, now (the stop's text, not a number, is added after the reporters)."""
        self.owner._add_figures(state, logs)
