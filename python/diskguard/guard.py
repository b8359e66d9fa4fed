"""DiskGuard: one object that keeps a training run's disk from filling, for plain loops and integrations.

::

    import diskguard

    guard = diskguard.DiskGuard('checkpoints/', budget='20GiB',
                                retention=diskguard.RetentionPolicy(diskguard.KeepLast(3)))
    for step, batch in enumerate(loader):
        train(batch)
        if step % 1000 == 0:
            guard.save(model.state_dict(), f'checkpoints/step={step}.pt')
        if guard.step(step):             # cheap unless a check is due
            guard.save(model.state_dict(), f'checkpoints/step={step}.pt')   # room was kept for it
            print(guard.stop_reason)
            break

The decisions (levels with hysteresis, room under the budget, the action ladder, the stop) are made
in the Rust core; this class counts steps, so a check that is not due costs about a method call, and
turns the core's events into :class:`DiskSpaceWarning` warnings and log records.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pickle
import sys
import tempfile
import time
import warnings
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

from ._diskguard import DEFAULT_CRITICAL, DEFAULT_WARN, GuardStatus, RunForecast, _Guard, format_size, usage
from ._dist import Reduce, resolve_ranks, resolve_sync
from ._options import GuardOptions, watch_list
from .errors import DiskSpaceWarning, disk_full_cause
from .retention import RetentionPolicy

if TYPE_CHECKING:
    from types import FrameType

    from ._diskguard import GuardEvent
    from ._types import Size, StrPath

__all__ = ['DiskGuard']


def _absolute(path: Any) -> Any:
    """A path argument made absolute now (a later chdir, or unpickling elsewhere, must not move the
    guard to another directory); anything else goes to the core as given, to be refused by name."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if isinstance(path, str) and path and '\0' not in path:
        return os.path.abspath(path)
    if isinstance(path, bytes) and path and b'\0' not in path:
        return os.path.abspath(path)
    return path


logger = logging.getLogger('diskguard.guard')

_STATE_VERSION = 1
_monotonic = time.monotonic


# Modules a warning is never attributed to: diskguard's own and the frameworks that call its
# callbacks (their dispatch lines say nothing about the user's code).
_NOT_THE_CALLER = (
    'diskguard',
    'lightning',
    'pytorch_lightning',
    'lightning_fabric',
    'transformers',
    'accelerate',
    'torch',
)


def _caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside diskguard and the
    training frameworks calling it (the user's training loop, ``trainer.fit(...)`` or
    ``trainer.train()``), however deep inside them it is issued; the outermost frame if every one
    is theirs."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_back is not None and _framework_frame(frame):
        frame, level = frame.f_back, level + 1
    return level


def _remove_abandoned_temps(path: object) -> None:
    """A guard starting in a directory first clears the temp files of saves that were killed
    there (SIGTERM, SIGKILL): see :func:`diskguard.saving.remove_abandoned_temps`."""
    from .saving import remove_abandoned_temps

    if isinstance(path, str | bytes | os.PathLike):
        remove_abandoned_temps(path)


def _framework_frame(frame: FrameType) -> bool:
    name = frame.f_globals.get('__name__')
    return isinstance(name, str) and name.partition('.')[0] in _NOT_THE_CALLER


_MIB = 1024 * 1024
# What torch's zip writer (PyTorchStreamWriter) says when a write comes up short: it reports a full
# disk this way, without an errno.
_TORCH_WRITER_FAILURES = ('unexpected pos', 'PytorchStreamWriter failed', 'file write failed')


def _torch_writer_failure(error: BaseException) -> BaseException | None:
    """The ``RuntimeError`` of torch's writer in ``error``'s chain, or None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RuntimeError) and any(m in str(current) for m in _TORCH_WRITER_FAILURES):
            return current
        current = current.__cause__ or current.__context__
    return None


class DiskGuard:
    """Guards a checkpoint directory: warns, makes room, and stops a run before the disk is full.

    Args:
        path: The checkpoint directory (it may not exist yet).
        warn: Fraction used (``df``'s convention) at which to warn; ``None`` switches it off.
        critical: Fraction used at which the guard makes room, then stops; ``None`` switches it off.
        min_free: Bytes every watched filesystem must keep available (``'20GiB'``), or ``None``.
        budget: Bytes the run may hold under ``path`` (a soft quota or a pod's ephemeral-storage
            limit, which ``statvfs`` cannot see), or ``None``.
        retention: A :class:`RetentionPolicy` applied after every save and when space is short;
            ``None`` keeps every checkpoint unless room must be made.
        watch: Extra paths whose filesystems to watch (``'/dev/shm'``); the directory's and
            ``tempfile.gettempdir()``'s are always watched, each filesystem once.
        reserve: Room one save needs: ``'auto'`` (the largest checkpoint seen or estimated, plus a
            margin) or a size. The guard keeps room for the next save and one final save.
        on_full: When retention cannot make room: ``'prune'`` deletes checkpoints the rules keep,
            least valuable first (never the newest complete, a best or a protected one, each named
            in a warning); ``'stop'`` deletes none of them and stops the run instead.
        check_every_steps: A check is due after this many :meth:`step` calls (or steps)...
        check_every_seconds: ...or after this many seconds, whichever comes first.
        statfs_timeout: Seconds a filesystem may take to answer before it is reported unresponsive
            (a hung network mount); it is not waited on, and not asked again until it answers.
        hysteresis: Fraction of a filesystem by which usage must fall back below a threshold before
            the level drops (byte thresholds: a quarter of the threshold), so it does not flap.
        rescan_interval: Seconds between rescans of what the run holds under ``path``.
        emergency_reserve: Bytes to preallocate in a hidden file in ``path``
            (``.diskguard-reserve-<pid>-<n>``), released when the run must stop so the final checkpoint
            can still be written, and removed on exit; ``None`` for none.
        rank, local_rank, world_size: This process's place in a distributed run; ``None`` reads
            torchrun's ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` (absent: 0, 0, 1). A node-local
            filesystem is measured on local rank 0, a shared one (NFS, Lustre...) on global rank 0,
            and only the process measuring the directory's filesystem deletes there
            (:attr:`deletes`).
        sync: How the ranks agree on the stop when ``world_size > 1``: ``'auto'`` all-reduces over
            ``torch.distributed`` when it is initialized; a callable takes this rank's flag and
            returns the agreed one (Lightning: ``trainer.strategy.reduce_boolean_decision``);
            ``None`` never reduces. The reduction is a collective, made every
            ``check_every_steps`` calls of :meth:`step` (and by :meth:`sync_stop`), so every rank
            must call them equally often.

    Raises:
        TypeError, ValueError: An argument is of the wrong type or out of range (the message names
            it, its value and what is allowed).
        OSError: The emergency reserve file could not be created.
    """

    def __init__(
        self,
        path: StrPath,
        *,
        warn: float | None = DEFAULT_WARN,
        critical: float | None = DEFAULT_CRITICAL,
        min_free: Size | None = None,
        budget: Size | None = None,
        retention: RetentionPolicy | None = None,
        watch: Iterable[StrPath] = (),
        reserve: Size | Literal['auto'] = 'auto',
        on_full: Literal['prune', 'stop'] = 'prune',
        check_every_steps: int = 50,
        check_every_seconds: float = 10.0,
        statfs_timeout: float = 0.5,
        hysteresis: float = 0.02,
        rescan_interval: float = 60.0,
        emergency_reserve: Size | None = None,
        rank: int | None = None,
        local_rank: int | None = None,
        world_size: int | None = None,
        sync: Literal['auto'] | Reduce | None = 'auto',
    ) -> None:
        options = GuardOptions(
            warn=warn,
            critical=critical,
            min_free=min_free,
            budget=budget,
            retention=retention,
            watch=watch_list(watch),
            reserve=reserve,
            on_full=on_full,
            check_every_steps=check_every_steps,
            check_every_seconds=check_every_seconds,
            statfs_timeout=statfs_timeout,
            hysteresis=hysteresis,
            rescan_interval=rescan_interval,
            emergency_reserve=emergency_reserve,
            rank=rank,
            local_rank=local_rank,
            world_size=world_size,
            sync=sync,
        )
        self._path = _absolute(path)
        self._options = options
        self._reduce = resolve_sync(sync)
        self._saves: Any = None  # diskguard.dcp's saves in flight, once it made one
        self._core: _Guard | None = None
        self._pending_state: dict[str, Any] | None = None
        self._reset_cadence()
        self._engine  # noqa: B018 -- build now, so bad arguments fail here

    __slots__ = (
        '__weakref__',
        '_calls',
        '_clock_calls',
        '_clock_time',
        '_core',
        '_distributed',
        '_every_seconds',
        '_every_steps',
        '_last_step',
        '_next_clock',
        '_next_step',
        '_next_sync',
        '_next_time',
        '_options',
        '_path',
        '_pending_state',
        '_reduce',
        '_saves',
        '_stop',
        '_stride',
    )

    def _reset_cadence(self) -> None:
        self._calls = 0
        self._next_step = 0  # the first step() is always due
        self._next_time = 0.0
        self._next_clock = 0
        self._stride = 1
        self._clock_calls = 0
        self._clock_time = 0.0
        self._stop = False
        self._last_step: int | None = None
        self._distributed = False  # set once the engine knows the world size
        self._next_sync = 0

    @property
    def _engine(self) -> _Guard:
        """The native engine, built on first use (and again after unpickling)."""
        core = self._core
        if core is None:
            core = self._core = self._build()
            self._every_steps = core.check_every_steps
            self._every_seconds = core.check_every_seconds
            self._distributed = core.world_size > 1 and self._reduce is not None
            # The reserve file goes when the guard is collected or the interpreter exits.
            weakref.finalize(self, core.close)
            if self._pending_state is not None:
                # Unpickled: the calls made since count on top of the pickled ones.
                self._restore(core, self._pending_state, calls_since=self._calls)
                self._pending_state = None
            self._plan_next_sync()
            self._emit(core)
        return core

    def _build(self) -> _Guard:
        # Every option goes as given: the core validates it and names it in errors.
        options = self._options
        # Read from the environment now, not at construction: a guard pickled into a spawned
        # worker takes that worker's ranks.
        rank, local_rank, world_size = resolve_ranks(options.rank, options.local_rank, options.world_size)
        core = _Guard(
            self._path,
            options,
            temp_dir=tempfile.gettempdir(),
            rank=rank,
            local_rank=local_rank,
            world_size=world_size,
        )
        # After the core: it has validated the path.
        _remove_abandoned_temps(self._path)
        return core

    @staticmethod
    def _emit(core: _Guard) -> None:
        DiskGuard._emit_events(core.take_events())

    @staticmethod
    def _emit_events(events: list[GuardEvent]) -> None:
        # Every event is logged before any warning is issued: a warning turned into an error
        # (-W error) must not lose the records of what else was done.
        for event in events:
            logger.log(logging.WARNING if event.warning else logging.INFO, event.message)
        for event in events:
            if event.warning:
                warnings.warn(event.message, DiskSpaceWarning, stacklevel=_caller_level())

    # ----- the plain loop -----

    def step(self, step: int | None = None) -> bool:
        """Call once per training step; returns :attr:`should_stop`.

        A check is due every ``check_every_steps`` calls (or steps, when ``step`` is given) or every
        ``check_every_seconds``, whichever comes first; otherwise this only counts. A due check
        measures once the last figures may no longer decide: on a local disk far from every
        threshold, after at most 50 ms (see docs/guard-and-saving.md).
        """
        self._calls += 1
        try:
            # Without a step number, the step cadence is folded into _next_clock (both count calls).
            if self._calls < self._next_clock and (step is None or step < self._next_step):
                return self._stop
        except TypeError:
            pass  # a wrong type of step: _check names it
        # Every few calls (at every one with check_every_steps=1): is a check due by steps, or by
        # time? Written here rather than in a method of its own, which cost a microsecond a step.
        n = self._calls if step is None else step
        if self._saves is not None and self._saves.inflight:
            # A background save ended (it made this call leave the fast path): settle it here, on
            # the training thread; a distributed run raises a failure once the ranks agree.
            self._saves.settle(hold_failures=self._distributed)
        try:
            due_by_steps = n >= self._next_step
        except TypeError:
            due_by_steps = True  # _check names the wrong type
        if self._core is None:
            self._engine  # noqa: B018 -- whether the run is distributed is known once it is built
        if self._distributed and self._calls >= self._next_sync:
            # A collective: due on the same call on every rank, whatever each one's clock says,
            # and made even when the check raised (a DiskSpaceWarning turned into an error, which
            # only the measuring rank issues): a rank that skipped it would hang the others.
            try:
                self._check(step, n)
            finally:
                self._sync_now(step)
            return self._stop
        if not due_by_steps and self._clock_says_wait(step):
            return self._stop
        return self._check(step, n)

    def _sync_now(self, step: int | None) -> bool:
        """Every rank's flag reduced into the one they all act on (sticky once True)."""
        reduce = self._reduce
        assert reduce is not None  # _distributed implies it
        # Planned first: a reduction that raises is not retried at every following call.
        self._plan_next_sync()
        self._plan_next_clock(step)
        saves = self._saves
        agreed = reduce(self._engine.should_stop or (saves is not None and saves.failed))
        if agreed is None or isinstance(agreed, str | bytes):
            raise TypeError(f'sync returned {agreed!r}: expected a bool (the agreed stop flag)')
        self._stop = self._stop or bool(agreed)  # a numpy bool or a 1-element tensor will do
        if self._stop and saves is not None and saves.inflight:
            saves.settle(wait=True)  # every rank: a background save's failure is raised at once
        return self._stop

    def _plan_next_sync(self) -> None:
        """The next reduction falls on the next multiple of ``check_every_steps`` calls: the same
        call on every rank, however and whenever each built, unpickled or restored its guard."""
        every = self._every_steps
        self._next_sync = (self._calls // every + 1) * every

    def sync_stop(self) -> bool:
        """Checks now and reduces the stop flag across ranks now: a collective every rank must
        call at the same point (before a save the framework makes at an epoch's end). Without a
        distributed run it is :meth:`check`."""
        self._engine  # noqa: B018 -- knows the world size once built
        if not self._distributed:
            return self.check()
        try:
            self._check(None, self._calls, measure=True)
        finally:
            self._sync_now(None)
        return self._stop

    def _clock_says_wait(self, step: int | None) -> bool:
        """Reads the clock (which costs more than the rest of a step() call, so it is read only every
        ``_stride`` calls): True while no check is due by time. The stride grows while steps are
        fast, so the clock is read at least every 1% of ``check_every_seconds``, and never beyond
        16 calls or ``check_every_steps``, which bounds the delay anyway."""
        now = _monotonic()
        if now >= self._next_time:
            return False
        calls = self._calls - self._clock_calls
        if calls > 0 and now > self._clock_time:
            per_call = (now - self._clock_time) / calls
            self._stride = max(1, min(16, self._every_steps, int(self._every_seconds * 0.01 / per_call)))
        self._clock_calls, self._clock_time = self._calls, now
        self._plan_next_clock(step)
        return True

    def _plan_next_clock(self, step: int | None) -> None:
        """The call at which step() next leaves its fast path."""
        self._next_clock = self._calls + self._stride
        if step is None:
            self._next_clock = min(self._next_clock, self._next_step)
        if self._distributed:
            self._next_clock = min(self._next_clock, self._next_sync)

    def _check(self, step: int | None, n: Any, *, measure: bool = False) -> bool:
        """One check, on the hot path of :meth:`step` (every call with ``check_every_steps=1``):
        one call into the core, which checks and hands back the stop flag and what happened;
        nothing more runs here when nothing happened. A step's check (``measure`` False) grades
        the last figures again while no writer could have used the room left before a threshold
        since they were measured (the core decides); ``check()`` and ``sync_stop()`` measure."""
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise TypeError(
                f'step={step!r}: expected a whole number (int) or None, got {type(step).__name__}'
            )
        core = self._core
        if core is None:
            core = self._engine
        try:
            stop, events = core.check_step(measure)
        except BaseException:
            self._act(lambda _core: None)  # the flag and the events as after a failed act (and re-raise)
            raise
        if not self._distributed:  # there, the flag changes only when the ranks agree
            self._stop = stop
        if events:
            self._emit_events(events)
        self._last_step = step
        now = _monotonic()
        calls = self._calls
        self._next_step = next_step = n + self._every_steps
        self._next_time = now + self._every_seconds
        self._clock_calls, self._clock_time = calls, now
        # _plan_next_clock(step), written out on this hot path
        next_clock = calls + self._stride
        if step is None and next_step < next_clock:
            next_clock = next_step
        if self._distributed and self._next_sync < next_clock:
            next_clock = self._next_sync
        self._next_clock = next_clock
        return self._stop

    def _act(self, act: Callable[[_Guard], object]) -> None:
        """Runs ``act`` on the engine, then warns and logs what it did (also when it raised)."""
        core = self._engine
        try:
            act(core)
        except BaseException:
            if not self._distributed:
                self._stop = core.should_stop
            # The engine's error (InsufficientSpaceError) is what the caller must see, even when a
            # DiskSpaceWarning about the same events is turned into an error.
            with contextlib.suppress(Exception):
                self._emit(core)
            raise
        if not self._distributed:  # there, the flag changes only when the ranks agree
            self._stop = core.should_stop
        self._emit(core)

    def check(self) -> bool:
        """Checks now, whatever the cadence; returns :attr:`should_stop`."""
        return self._check(None, self._calls, measure=True)

    @property
    def should_stop(self) -> bool:
        """True once the run should stop (there is still room for one final checkpoint); in a
        distributed run, once the ranks agreed on it (the same on every rank)."""
        core = self._engine
        return self._stop if self._distributed else core.should_stop

    @property
    def deletes(self) -> bool:
        """Whether this process deletes in the directory: the one process that measures its
        filesystem (see ``rank``)."""
        return self._engine.deletes

    def protect(self, paths: Iterable[StrPath]) -> None:
        """Replaces the set of checkpoints a framework references (its best and last ones, the
        one the run resumed from): retention and making room never delete them. Paths outside
        the directory are ignored (nothing there is touched); a path inside a checkpoint folder
        protects the folder."""
        if isinstance(paths, str | bytes) or not isinstance(paths, Iterable):
            raise TypeError(f'paths={paths!r}: expected a list of paths, got {type(paths).__name__}')
        self._engine.set_referenced([os.fspath(p) if isinstance(p, os.PathLike) else p for p in paths])

    def metrics(self) -> dict[str, float]:
        """The checkpoint directory's filesystem as last measured (a step's check may grade figures
        measured up to 50 ms before; :meth:`check` measures now), for a training logger:
        ``disk/free_bytes``, ``disk/used_percent`` and, once the trend has an answer,
        ``disk/hours_to_full``. Empty in a process that does not measure it."""
        measured = self._engine.metrics()
        if measured is None:
            return {}
        out = {'disk/free_bytes': float(measured.free), 'disk/used_percent': measured.used_percent}
        if measured.seconds_to_full is not None:
            out['disk/hours_to_full'] = measured.seconds_to_full / 3600.0
        return out

    def diagnose(self, error: BaseException) -> str | None:
        """For a run that failed with ENOSPC or EDQUOT (``error`` or anything in its chain): which
        filesystem, what the run holds there and what to change, in a few lines; None for any
        other error.

        ``torch.save`` reports a full disk without an errno (``RuntimeError: [enforce fail at
        inline_container.cc:...] . unexpected pos 576 vs 534``, or ``file write failed``): such an
        error is diagnosed as ENOSPC when a filesystem the guard watches has less room than a
        checkpoint needs now (measured afresh), and is otherwise None (the writer failed for
        another reason).
        """
        if not isinstance(error, BaseException):
            raise TypeError(f'error={error!r}: expected an exception, got {type(error).__name__}')
        found = disk_full_cause(error)
        if found is None:
            return self._diagnose_torch_writer(error)
        path = found.filename
        if not isinstance(path, str | bytes | os.PathLike) or not path:
            path = None
        return self._engine.diagnose(found.errno or 0, path)

    def _diagnose_torch_writer(self, error: BaseException) -> str | None:
        """The diagnosis of torch's writer failing on a full disk (no errno), or None."""
        failure = _torch_writer_failure(error)
        if failure is None:
            return None
        status = self._engine.status()
        if not all(space.responsive for space in status.spaces):
            return None  # a hung mount must not hang the report: not measured, not claimed
        needed = max(status.reserve, status.largest_checkpoint, _MIB)
        for path in (self._path, tempfile.gettempdir(), *self._options.watch):
            try:
                available = usage(path).avail
            except (OSError, ValueError, TypeError):
                continue
            if available < needed:
                return (
                    f'torch failed writing a checkpoint ({type(failure).__name__}: {failure}), which is '
                    f'how torch reports a full disk (no errno): {os.fsdecode(path)} has '
                    f'{format_size(available)} available, less than a checkpoint needs '
                    f'({format_size(needed)})\n' + self._engine.diagnose(errno.ENOSPC, path)
                )
        return None

    @property
    def stop_reason(self) -> str | None:
        """Why the run should stop, once it should."""
        return self._engine.stop_reason

    @property
    def level(self) -> str:
        """``'ok'``, ``'warn'`` or ``'critical'`` as of the last check."""
        return self._engine.level

    @property
    def path(self) -> str | bytes:
        """The checkpoint directory as given."""
        path: str | bytes = self._path
        return path

    def status(self) -> GuardStatus:
        """Every watched space with its figures and level, what the run holds, the stop; ``str()``
        of it is a readable report. Uses the last measured figures (see :meth:`metrics`)."""
        return self._engine.status()

    def forecast(
        self, remaining_saves: int, save_interval: float, checkpoint_size: Size | None = None
    ) -> RunForecast:
        """Will the rest of the run fit: ``remaining_saves`` saves every ``save_interval`` seconds,
        each the size of the largest checkpoint seen (or ``checkpoint_size``), under the retention
        policy's keep-last rule and the background growth measured so far."""
        return self._engine.forecast(remaining_saves, save_interval, checkpoint_size)

    # ----- saving (diskguard.save calls these) -----

    def before_save(self, path: StrPath, nbytes: int) -> None:
        """Makes room for a checkpoint of about ``nbytes`` at ``path`` (inside the directory), its
        staging and a margin, as the action ladder says.

        Raises:
            InsufficientSpaceError: There is still no room; nothing was written.
        """
        self._act(lambda core: core.before_save(path, nbytes))

    def after_save(self, path: StrPath, nbytes: int) -> None:
        """Records a completed save of ``nbytes`` at ``path`` and applies retention."""
        self._act(lambda core: core.after_save(path, nbytes))

    def rescan(self) -> None:
        """Measures what the run holds under the directory again, now: call it after something
        other than the guard deleted checkpoints there (a framework's own rotation), so
        :meth:`status` and the room under ``budget`` follow at once rather than at the next
        periodic rescan (``rescan_interval``)."""
        self._engine.rescan()

    def save(self, obj: object, path: StrPath, **torch_save_kwargs: Any) -> None:
        """``diskguard.save(obj, path, guard=self, **torch_save_kwargs)``."""
        from .saving import save

        save(obj, path, guard=self, **torch_save_kwargs)

    def close(self) -> None:
        """Removes the emergency reserve file now (also done on exit)."""
        self._engine.close()

    # ----- state -----

    def state_dict(self) -> dict[str, Any]:
        """Plain values only (survives ``torch.load(weights_only=True)``). ``'own'`` lists the
        checkpoints this run wrote as ``[device, inode]``: a run resumed from a checkpoint that
        carries this state keeps knowing them (and what it wrote since the oldest of them) as its
        own, so files it did not write never outrank them."""
        state = self._engine.state()
        return {
            'version': _STATE_VERSION,
            'level': state.level,
            'largest_checkpoint': state.largest_checkpoint,
            'saves': state.saves,
            'stop_reason': state.stop_reason,
            'calls': self._calls,
            'last_step': self._last_step,
            'trend': state.trend,
            'own': [[dev, ino] for dev, ino in state.own],
            'run_id': state.run_id,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`, the trend monitor's history included (its times are ages, so
        a run resumed on another host continues its forecast). A stop is not restored: a resumed run
        decides afresh."""
        if not isinstance(state, dict):
            raise TypeError(f'state={state!r}: expected the dict DiskGuard.state_dict() returned')
        if state.get('version') != _STATE_VERSION:
            raise ValueError(f'state version={state.get("version")!r}: expected {_STATE_VERSION}')
        missing = {'level', 'largest_checkpoint', 'saves', 'calls', 'trend'} - state.keys()
        if missing:
            raise ValueError(
                f'state: missing {sorted(missing)}; expected what DiskGuard.state_dict() returned'
            )
        # A resumed run is a new live presence in the directory (its run id is not taken over):
        # should the run it resumed from still be alive (a requeued job, a second run started from
        # the same checkpoint), each is told of the other. Only an unpickled copy is the same run.
        self._restore(self._engine, state, same_run=False)
        if self._distributed:
            self._plan_next_sync()

    def _restore(
        self, core: _Guard, state: dict[str, Any], calls_since: int = 0, same_run: bool = True
    ) -> None:
        calls = state['calls']
        if isinstance(calls, bool) or not isinstance(calls, int) or calls < 0:
            raise ValueError(f'calls={calls!r}: expected a whole number >= 0')
        stop_reason = state.get('stop_reason')
        if stop_reason is not None and not isinstance(stop_reason, str):
            raise TypeError(f'stop_reason={stop_reason!r}: expected a str or None')
        last_step = state.get('last_step')
        if last_step is not None and (isinstance(last_step, bool) or not isinstance(last_step, int)):
            raise TypeError(f'last_step={last_step!r}: expected an int or None')
        core.load_state(
            state['level'],
            state['largest_checkpoint'],
            state['saves'],
            stop_reason,
            state['trend'],
            state.get('own'),
            state.get('run_id') if same_run else None,
        )
        self._calls = calls + calls_since
        self._next_clock = 0  # planned against the old count: leave the fast path next call
        self._last_step = last_step

    def __getstate__(self) -> dict[str, Any]:
        sync = self._options.sync
        if callable(sync):
            try:
                pickle.dumps(sync)
            except Exception as err:
                raise TypeError(
                    f'sync={sync!r} cannot be pickled ({err}), and a guard is pickled for spawned '
                    'workers: pass a module-level function, or build the guard in the worker'
                ) from err
        return {'path': self._path, 'options': self._options, 'state': self.state_dict()}

    def __setstate__(self, pickled: dict[str, Any]) -> None:
        self._path = pickled['path']
        self._options = pickled['options']
        self._reduce = resolve_sync(self._options.sync)
        self._saves = None
        self._core = None
        self._reset_cadence()
        self._pending_state = pickled['state']

    def __repr__(self) -> str:
        return f'DiskGuard({self._path!r}, level={self.level!r}, should_stop={self.should_stop})'
