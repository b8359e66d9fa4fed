"""Guarded ``torch.distributed.checkpoint`` (DCP) saves: every rank's shards counted before any rank
writes, a staging directory published by rename, background failures surfaced on the training thread.

::

    import diskguard
    from diskguard import dcp as guarded_dcp

    guard = diskguard.DiskGuard('checkpoints/', retention=diskguard.RetentionPolicy(diskguard.KeepLast(3)))
    for step, batch in enumerate(loader):
        train(batch)
        if step % 1000 == 0:
            guarded_dcp_save({'model': msd, 'optim': osd}, checkpoint_id=f'checkpoints/step-{step}', guard=guard)
        if guard.step(step):
            break

:func:`save` and :func:`async_save` take DCP's own arguments. Before a save, each rank gives the
bytes of its local shards; they are summed per filesystem (all ranks for a filesystem every node
sees, the ranks of one node for a node-local one), the first rank of each filesystem asks the guard
for room once, and every rank learns the verdict before any rank writes: all ranks write, or none
does and every rank raises :class:`~diskguard.InsufficientSpaceError`. The shards and ``.metadata``
go into ``.diskguard-<name>.tmp`` beside the target, every file fsynced (DCP's ``sync_files``), and
the directory is renamed to its final name only after ``.metadata`` is written: a crash or ENOSPC at
any point leaves no directory under the final name, and retention treats the staging name as an
unfinished save.

torch is imported when this module is, not by ``import diskguard``.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import shutil
import sys
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch.distributed.checkpoint.filesystem import FileSystem, FileSystemWriter
from torch.distributed.checkpoint.state_dict_saver import AsyncSaveResponse
from torch.distributed.checkpoint.state_dict_saver import async_save as _dcp_async_save
from torch.distributed.checkpoint.state_dict_saver import save as _dcp_save

from . import _dist
from ._diskguard import OWN_PREFIX
from .errors import DISK_FULL_ERRNOS, disk_full_cause
from .saving import _RecordingFile

if TYPE_CHECKING:
    from ._types import StrPath
    from .guard import DiskGuard

__all__ = ['StagedWriter', 'async_save', 'save', 'staging_path']

#: Bytes counted for a value that is not a tensor (DCP pickles it into the coordinator's shard).
_OBJECT_BYTES = 1024


def staging_path(checkpoint_id: StrPath) -> str:
    """Where a save to ``checkpoint_id`` is staged: ``.diskguard-<name>.tmp`` beside it, the same
    on every rank (a temp name, which retention and :func:`diskguard.latest_complete` skip)."""
    final = _absolute(checkpoint_id)
    parent, name = os.path.split(final.rstrip(os.sep))
    if not name:
        raise ValueError(f'checkpoint_id={checkpoint_id!r}: expected a directory path with a name, not /')
    return os.path.join(parent, f'{OWN_PREFIX}{name}.tmp')


def _absolute(path: StrPath) -> str:
    return os.path.abspath(os.fsdecode(os.fspath(path)))


def _local_bytes(obj: Any) -> int:
    """Bytes this rank writes for ``obj``: the local shard of each DTensor / ShardedTensor, each
    plain tensor (DCP writes a replicated one from one rank only, so this errs on the safe side)."""
    total = 0
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            local = getattr(item, '_local_tensor', None)  # DTensor
            if local is None and hasattr(item, 'local_shards'):  # ShardedTensor
                total += sum(s.tensor.numel() * s.tensor.element_size() for s in item.local_shards())
                continue
            tensor = item if local is None else local
            total += tensor.numel() * tensor.element_size()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif hasattr(item, 'state_dict') and callable(item.state_dict):  # a Stateful
            stack.append(item.state_dict())
        else:
            total += _OBJECT_BYTES
    return total


def _remove_tree(path: str) -> None:
    """Removes a staging directory (never following a symlink out of it); gone already is fine."""
    with contextlib.suppress(FileNotFoundError):
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)
        else:
            shutil.rmtree(path)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(staging: str, final: str) -> None:
    """Renames the finished staging directory to its final name (an older checkpoint of that name
    is moved aside first and removed after), then makes the renames durable."""
    _fsync_dir(staging)
    parent, name = os.path.split(final)
    old = None
    if os.path.lexists(final):
        old = os.path.join(parent, f'{OWN_PREFIX}{name}.old.tmp')
        _remove_tree(old)
        os.rename(final, old)
    os.rename(staging, final)
    _fsync_dir(parent)
    if old is not None:
        _remove_tree(old)


class _RecordingFileSystem(FileSystem):
    """DCP's local filesystem, with each shard's OS write error kept: ``torch.save`` reports a full
    disk as ``RuntimeError: ... unexpected pos``, which is raised as the ``OSError`` it was (errno
    and path), so DCP's ``CheckpointException`` says which rank's disk was full."""

    @contextlib.contextmanager
    def create_stream(self, path: str | os.PathLike[Any], mode: str) -> Any:
        if 'w' not in mode:
            with super().create_stream(path, mode) as stream:
                yield stream
            return
        raw = _RecordingFile(os.fspath(path), 'wb')
        try:
            with io.BufferedWriter(raw) as stream:
                yield stream
        except Exception as err:
            failed = raw.write_error
            if failed is not None and failed.errno in DISK_FULL_ERRNOS:
                raise OSError(failed.errno, os.strerror(failed.errno), os.fspath(path)) from err
            raise


class StagedWriter(FileSystemWriter):
    """DCP's ``FileSystemWriter`` writing into ``staging`` and, once the coordinator has written
    ``.metadata`` (after every rank wrote and fsynced its shards), renaming it to ``final``.

    :func:`save` and :func:`async_save` build one; pass your own to set ``FileSystemWriter``'s
    options (``thread_count``, ``single_file_per_rank``...). ``sync_files`` is always on: a
    directory is published only with every byte on disk.
    """

    def __init__(self, final: StrPath, **writer_options: Any) -> None:
        if writer_options.pop('sync_files', True) is not True:
            raise ValueError('sync_files=False: a guarded save publishes only fsynced shards')
        if 'path' in writer_options:
            raise TypeError('path: StagedWriter writes into the staging directory of final')
        self.final = _absolute(final)
        self.staging = staging_path(self.final)
        super().__init__(self.staging, sync_files=True, **writer_options)
        self.fs = _RecordingFileSystem()

    def reset(self, checkpoint_id: StrPath | None = None) -> None:
        # The path is the staging directory whatever DCP passes: the final name is reached by rename.
        super().reset(None)

    def finish(self, metadata: Any, results: Any) -> None:
        super().finish(metadata, results)  # .metadata written, fsynced, renamed into the staging dir
        _publish(self.staging, self.final)


class _Plan:
    """One save as the ranks agreed it."""

    __slots__ = ('final', 'leader', 'nbytes', 'staging')

    def __init__(self, final: str, staging: str, leader: bool, nbytes: int) -> None:
        self.final, self.staging, self.leader, self.nbytes = final, staging, leader, nbytes

    def finish(self, guard: DiskGuard | None) -> None:
        _finish(guard, self)

    def abandon(self) -> None:
        _abandon(self)


def _preflight(guard: DiskGuard | None, final: str, staging: str, nbytes: int, held: int) -> _Plan:
    """The collective pre-flight (:func:`diskguard._dist.preflight`), whose leaders also prepare
    the staging directory (and remove it when another filesystem refused)."""

    def prepare() -> None:
        _remove_tree(staging)  # left by a save that crashed
        os.mkdir(staging, 0o755)

    leader, total = _dist.preflight(
        guard, final, nbytes, held=held, prepare=prepare, undo=lambda: _remove_tree(staging)
    )
    return _Plan(final, staging, leader, total)


def _stop(guard: DiskGuard | None) -> None:
    """Every rank's guard stops at the same save, whichever rank's filesystem refused."""
    if guard is not None:
        guard._stop = True  # the agreed flag a distributed guard reports; the refusing core stopped too


def _diagnosed(guard: DiskGuard | None, err: BaseException) -> BaseException:
    """``err`` with the guard's diagnosis added as a note, when a disk or quota was full."""
    causes = [err]
    failures = getattr(err, 'failures', None)  # DCP's CheckpointException: {rank: (exc, trace)}
    if isinstance(failures, dict):
        causes += [pair[0] for pair in failures.values() if isinstance(pair, tuple) and pair]
    for cause in causes:
        if isinstance(cause, BaseException) and disk_full_cause(cause) is not None:
            if guard is not None:
                diagnosis = guard.diagnose(cause)
                if diagnosis and sys.version_info >= (3, 11):  # add_note is 3.11's
                    err.add_note(diagnosis)
            _stop(guard)
            break
    return err


def _finish(guard: DiskGuard | None, plan: _Plan) -> None:
    """After every rank's part is written: a staging directory the coordinator did not publish (a
    node-local filesystem of another node) is published by its first rank; the guard accounts."""
    if plan.leader:
        if os.path.isdir(plan.staging) and not os.path.islink(plan.staging):
            _publish(plan.staging, plan.final)
        if guard is not None:
            guard.after_save(plan.final, plan.nbytes)


def _abandon(plan: _Plan) -> None:
    if plan.leader:
        _remove_tree(plan.staging)


def _abandon_diagnosed(guard: DiskGuard | None, plan: _Plan, err: BaseException) -> None:
    """A save that failed: its staging directory removed, the guard's diagnosis noted on ``err``."""
    _abandon(plan)
    _diagnosed(guard, err)


def save(
    state_dict: dict[str, Any],
    *,
    checkpoint_id: StrPath | None = None,
    storage_writer: StagedWriter | None = None,
    planner: Any = None,
    process_group: Any = None,
    no_dist: bool = False,
    use_collectives: bool = True,
    guard: DiskGuard | None = None,
) -> Any:
    """``torch.distributed.checkpoint.save`` through the guard; returns DCP's ``Metadata``.

    Give ``checkpoint_id`` (a directory) or a :class:`StagedWriter`. Every rank must call it, as
    DCP's own save. With ``guard``, the collective pre-flight runs first.

    Raises:
        InsufficientSpaceError: On every rank, when the guard refused the room on any rank's
            filesystem; nothing was written.
        CheckpointException: DCP's error when a write failed (ENOSPC in the background, a rank
            died); the staging directory is removed and the guard's diagnosis added as a note.
    """
    writer = _writer(checkpoint_id, storage_writer)
    tracker = _tracker_for(guard)
    tracker.settle()  # a background failure surfaces here, before anything new is written
    plan = _preflight(guard, writer.final, writer.staging, _local_bytes(state_dict), tracker.held())
    try:
        metadata = _dcp_save(
            state_dict,
            storage_writer=writer,
            planner=planner,
            process_group=process_group,
            no_dist=no_dist,
            use_collectives=use_collectives,
        )
    except BaseException as err:  # DCP's CheckpointException is a BaseException; re-raised
        _abandon_diagnosed(guard, plan, err)
        raise
    _finish(guard, plan)
    return metadata


def _writer(checkpoint_id: StrPath | None, storage_writer: StagedWriter | None) -> StagedWriter:
    if storage_writer is not None:
        if not isinstance(storage_writer, StagedWriter):
            raise TypeError(
                f'storage_writer={storage_writer!r}: expected a diskguard.dcp.StagedWriter (staging and '
                f'publishing by rename need it), got {type(storage_writer).__name__}'
            )
        if checkpoint_id is not None and _absolute(checkpoint_id) != storage_writer.final:
            raise ValueError(f'checkpoint_id={checkpoint_id!r}: differs from the storage_writer final path')
        return storage_writer
    if checkpoint_id is None:
        raise TypeError('checkpoint_id: expected the checkpoint directory (or a storage_writer)')
    return StagedWriter(checkpoint_id)


# ----- asynchronous saves -----


class _InFlight:
    """A save in flight: its plan (``nbytes``, ``finish(guard)``, ``abandon()``; the Lightning
    callback brings its own for ``AsyncCheckpointIO``) and the future of its background write."""

    __slots__ = ('future', 'plan')

    def __init__(self, plan: Any, future: Future[Any]) -> None:
        self.plan, self.future = plan, future


class _Tracker:
    """The saves of one guard still in flight: their bytes are held, their failures surface on the
    training thread at the next ``step()`` or save (never on DCP's background thread)."""

    def __init__(self, guard: DiskGuard | None) -> None:
        self.guard = guard
        self.inflight: collections.deque[_InFlight] = collections.deque()
        self.failed = False

    def held(self) -> int:
        return sum(s.plan.nbytes for s in self.inflight if not s.future.done())

    def poke(self, future: Future[Any]) -> None:
        """DCP's background thread: a save ended. Only flags it; the training thread settles it."""
        if future.exception() is not None:
            self.failed = True
        guard = self.guard
        if guard is not None:
            guard._next_clock = 0  # the next step() leaves its fast path and settles

    def settle(self, wait: bool = False, hold_failures: bool = False) -> None:
        """Finishes saves that ended (or all of them, ``wait``): publishes and accounts the good,
        removes the staging of the failed and raises the first failure with the diagnosis.
        ``hold_failures`` leaves a failed save for later (a distributed run raises it on every rank
        at once, after the ranks agreed to stop)."""
        failure: BaseException | None = None
        while self.inflight and (wait or self.inflight[0].future.done()):
            save = self.inflight[0]
            if hold_failures and save.future.exception() is not None:
                self.failed = True
                return
            self.inflight.popleft()
            try:
                save.future.result()
            except BaseException as err:  # noqa: BLE001 -- DCP's CheckpointException; raised below
                save.plan.abandon()
                failure = failure or err
                continue
            if failure is None:
                save.plan.finish(self.guard)
            else:
                save.plan.abandon()  # the run stops at the first failure: nothing newer is published
        if failure is not None:
            self.failed = False
            raise _diagnosed(self.guard, failure)


#: The saves made without a guard (their failures still surface at the next save).
_unguarded = _Tracker(None)


def _tracker_for(guard: DiskGuard | None) -> _Tracker:
    """The guard's own tracker (kept on the guard, so it goes with it), made at its first save."""
    if guard is None:
        return _unguarded
    tracker: _Tracker | None = guard._saves
    if tracker is None:
        tracker = guard._saves = _Tracker(guard)
    return tracker


def async_save(
    state_dict: dict[str, Any],
    *,
    checkpoint_id: StrPath | None = None,
    storage_writer: StagedWriter | None = None,
    planner: Any = None,
    process_group: Any = None,
    async_checkpointer_type: Any = None,
    async_stager: Any = None,
    no_dist: bool = False,
    use_collectives: bool = True,
    guard: DiskGuard | None = None,
    if_busy: Literal['wait', 'refuse'] = 'wait',
) -> Future[Any]:
    """``torch.distributed.checkpoint.async_save`` through the guard; returns a future of the save.

    The pre-flight (collective, on the calling thread) runs before DCP stages anything.
    ``if_busy='wait'`` first waits for this guard's previous save still in flight (as torchtitan
    does); ``'refuse'`` lets the saves overlap, counts the bytes of those in flight as held, and
    raises :class:`~diskguard.InsufficientSpaceError` on every rank when this one does not fit
    beside them. A background
    write that fails is raised at the next ``guard.step()`` that checks (in a distributed run, at
    the next reduction, on every rank), at the next save, or by the future, with the guard's
    diagnosis; its staging directory is removed and the guard stops. The last complete checkpoint
    is never touched.
    """
    if if_busy not in ('wait', 'refuse'):
        raise ValueError(f"if_busy={if_busy!r}: expected 'wait' or 'refuse'")
    writer = _writer(checkpoint_id, storage_writer)
    tracker = _tracker_for(guard)
    # 'wait': the previous save finishes first (as torchtitan waits for it); its failure, or an
    # earlier one, surfaces here, on every rank, before anything new is written.
    tracker.settle(wait=if_busy == 'wait')
    plan = _preflight(guard, writer.final, writer.staging, _local_bytes(state_dict), tracker.held())
    options: dict[str, Any] = {}
    if async_checkpointer_type is not None:
        options['async_checkpointer_type'] = async_checkpointer_type
    if async_stager is not None:
        options['async_stager'] = async_stager
    try:
        started = _dcp_async_save(
            state_dict,
            storage_writer=writer,
            planner=planner,
            process_group=process_group,
            no_dist=no_dist,
            use_collectives=use_collectives,
            **options,
        )
    except BaseException as err:  # DCP's CheckpointException is a BaseException; re-raised
        _abandon_diagnosed(guard, plan, err)
        raise
    future: Future[Any] = started.upload_completion if isinstance(started, AsyncSaveResponse) else started
    tracker.inflight.append(_InFlight(plan, future))
    future.add_done_callback(tracker.poke)
    return future
