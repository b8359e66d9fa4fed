"""The checkpoint IOs the Lightning callback installs for a fit, written once for both import paths:
the synchronous one publishes each checkpoint through the callback (whole or refused before a byte is
written), the one in front of ``AsyncCheckpointIO`` checks room on the training thread and writes
with :func:`diskguard.save` on Lightning's background thread.
"""

from __future__ import annotations

import os
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from .saving import save

if TYPE_CHECKING:
    from ._lightning import DiskGuardCallbackMixin
    from .guard import DiskGuard

__all__ = ['GuardedAsyncCheckpointIOMixin', 'GuardedCheckpointIOMixin']


def _is_remote(path: str) -> bool:
    """A URL (``s3://...``): diskguard measures local filesystems only."""
    return '://' in path


class GuardedCheckpointIOMixin:
    """Lightning's ``TorchCheckpointIO`` with its publish replaced by :func:`diskguard.save`.

    Lightning's own publish (fsspec) stages the whole checkpoint in ``tempfile.gettempdir()`` and
    copies it across filesystems, so a small ``$TMPDIR`` fails every save and a full destination gets
    a truncated file. Loading is Lightning's; removing is Lightning's, except that the file a refused
    save was to replace is kept.

    It stays after the fit, detached from the callback (``trainer.save_checkpoint('final.ckpt')``
    after ``fit()`` is the most common save by hand): such a save is whole or refused before a byte
    is written (:func:`diskguard.save` without a guard), and recorded by no guard.
    """

    def __init__(self, callback: DiskGuardCallbackMixin, replaced: Any) -> None:
        super().__init__()
        #: The callback of the fit under way; None once it ended.
        self._callback: DiskGuardCallbackMixin | None = callback
        #: The CheckpointIO this one stands in for (what a pickled Trainer gets back).
        self.replaced = replaced

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        _refuse_storage_options(storage_options)
        lightning_save = super().save_checkpoint  # type: ignore[misc]
        path = os.fspath(path)
        if self._callback is not None:
            self._callback._publish(checkpoint, path, lightning_save)
        elif _is_remote(path):
            lightning_save(checkpoint, path)
        else:
            os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
            save(checkpoint, path)

    def remove_checkpoint(self, path: Any) -> None:
        callback = self._callback
        if callback is not None and callback._keeps(os.fspath(path)):
            return
        super().remove_checkpoint(path)  # type: ignore[misc]
        if callback is not None:
            callback._removed(os.fspath(path))

    def __reduce_ex__(self, protocol: Any) -> Any:
        # A pickled (or deep-copied) Trainer gets Lightning's own IO: the callback is not pickled
        # with its process's fit.
        return _itself, (self.replaced,)


def _refuse_storage_options(storage_options: Any) -> None:
    """The checkpoint IOs diskguard installs take no ``storage_options``, as Lightning's own."""
    if storage_options is not None:
        raise TypeError(
            f'storage_options={storage_options!r}: the checkpoint IO diskguard installs takes none '
            "(as Lightning's TorchCheckpointIO); pass a CheckpointIO plugin of your own to use them"
        )


def _itself(io: Any) -> Any:
    """Unpickles a :class:`GuardedCheckpointIOMixin` as the IO it stood in for."""
    return io


class GuardedAsyncCheckpointIOMixin:
    """Stands in front of Lightning's ``AsyncCheckpointIO`` (whose own IO is replaced by a
    :class:`_BackgroundWriter`): each save is checked for room on the training thread, with the
    bytes of the saves still in flight counted as held, before the AsyncCheckpointIO copies it and
    hands it to its thread; removals wait for the saves before them to complete."""

    def __init__(self, callback: DiskGuardCallbackMixin, replaced: Any) -> None:
        super().__init__()
        self._callback = callback
        #: The user's AsyncCheckpointIO, put back (with its own IO) at the end of the fit.
        self.replaced = replaced

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        _refuse_storage_options(storage_options)
        self._callback._publish_async(checkpoint, os.fspath(path), self.replaced)

    def remove_checkpoint(self, path: Any) -> None:
        self._callback._remove_async(os.fspath(path), self.replaced)

    def load_checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        return self.replaced.load_checkpoint(*args, **kwargs)

    def teardown(self) -> None:
        # Lightning tears the strategy down before the callbacks: the saves in flight end here.
        try:
            self._callback._drain(raise_errors=True)
        finally:
            self.replaced.teardown()

    def __reduce_ex__(self, protocol: Any) -> Any:
        return _itself, (self.replaced,)  # as GuardedCheckpointIOMixin: the user's plugin


class _BackgroundWriter:
    """The IO inside the user's ``AsyncCheckpointIO``, run on its thread: writes with
    :func:`diskguard.save` (temp file, fsync, rename) and reports to the save's future instead of
    raising (so the failure reaches the training thread through the guard, not Lightning's sticky
    ``_error``). Anything else is the IO it replaced."""

    def __init__(self, replaced: Any) -> None:
        self.replaced = replaced

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if not isinstance(storage_options, _AsyncSave):
            self.replaced.save_checkpoint(checkpoint, path, storage_options=storage_options)
            return
        storage_options.write(checkpoint, os.fspath(path))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.replaced, name)

    def __reduce_ex__(self, protocol: Any) -> Any:
        return _itself, (self.replaced,)


class _AsyncSave:
    """One save through ``AsyncCheckpointIO``: the plan diskguard.dcp's tracker of saves in flight
    settles on the training thread (``nbytes`` held meanwhile, ``finish``, ``abandon``)."""

    def __init__(self, callback: DiskGuardCallbackMixin, path: str, nbytes: int, guarded: bool) -> None:
        self.callback, self.target, self.nbytes, self.guarded = callback, path, nbytes, guarded
        #: The guarded directory, read by diskguard.save as a guard's (never a symlink out of it).
        self.path = callback._guard.path if callback._guard is not None else None
        self.size = nbytes
        self.removals: list[str] = []  # what ModelCheckpoint removed after this save: done once it is whole
        self.snapshots = callback._snapshots  # ModelCheckpoint before the hook that saved, for a repair
        self.future: Future[int] = Future()
        self.future.set_running_or_notify_cancel()

    # The background thread.
    def write(self, checkpoint: dict[str, Any], path: str) -> None:
        try:
            # Room was asked for on the training thread: this only measures the size written.
            save(checkpoint, path, guard=self if self.guarded else None)
        except BaseException as err:  # noqa: BLE001 -- settled on the training thread
            self.future.set_exception(err)
        else:
            self.future.set_result(self.size)

    def before_save(self, path: str, nbytes: int) -> None:
        pass

    def after_save(self, path: str, nbytes: int) -> None:
        self.size = nbytes

    # The training thread.
    def finish(self, guard: DiskGuard | None) -> None:
        if guard is not None and self.guarded:
            guard.after_save(self.target, self.size)
        for path in self.removals:
            self.callback._remove_now(path)

    def abandon(self) -> None:
        # The checkpoints this save was to replace stay: it is not whole.
        self.removals.clear()
        self.callback._failed_saves.append(self)
