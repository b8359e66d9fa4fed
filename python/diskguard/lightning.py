"""diskguard for Lightning (``import lightning``): one line in the Trainer.

::

    import lightning as L
    from diskguard.lightning import DiskGuardCallback

    trainer = L.Trainer(callbacks=[DiskGuardCallback(min_free='20GiB')])

The callback guards the ModelCheckpoint's directory (or ``path``, else ``default_root_dir``),
publishes every checkpoint with :func:`diskguard.save` (no staging copy in ``$TMPDIR``, never a partial file), never lets retention
delete a file Lightning references, stops every rank together when the disk runs short (with room
left for the save Lightning makes after a stop), and logs the disk's figures beside the loss.
After ``fit()``, ``callback.stop_reason`` says whether and why it stopped the run. For the
standalone ``pytorch_lightning`` package use :mod:`diskguard.pytorch_lightning`.
"""

from __future__ import annotations

try:
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
    from lightning.pytorch import Callback
except ImportError as err:
    raise ImportError(
        'diskguard.lightning needs the lightning package: pip install lightning '
        '(for the standalone pytorch_lightning package, use diskguard.pytorch_lightning)'
    ) from err

from ._lightning import DiskGuardCallbackMixin, GuardedCheckpointIOMixin

__all__ = ['DiskGuardCallback']


class _GuardedCheckpointIO(GuardedCheckpointIOMixin, TorchCheckpointIO):
    """Lightning's TorchCheckpointIO, publishing with diskguard.save."""


class DiskGuardCallback(DiskGuardCallbackMixin, Callback):
    """Keeps a Lightning run's checkpoint disk from filling (see :mod:`diskguard.lightning`).

    Takes the arguments of :class:`diskguard._lightning.DiskGuardCallbackMixin`.
    """

    _guarded_io_class = _GuardedCheckpointIO
    _torch_io_class = TorchCheckpointIO
