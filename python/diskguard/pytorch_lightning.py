"""diskguard for Lightning (the standalone ``pytorch_lightning`` package): one line in the Trainer.

::

    import pytorch_lightning as pl
    from diskguard.pytorch_lightning import DiskGuardCallback

    trainer = pl.Trainer(callbacks=[DiskGuardCallback(min_free='20GiB')])

The callback guards the ModelCheckpoint's directory (or ``path``, else ``default_root_dir``),
publishes every checkpoint with :func:`diskguard.save` (no staging copy in ``$TMPDIR``, never a partial file), never lets retention
delete a file Lightning references, stops every rank together when the disk runs short (with room
left for the save Lightning makes after a stop), and logs the disk's figures beside the loss.
After ``fit()``, ``callback.stop_reason`` says whether and why it stopped the run. For
``import lightning`` use :mod:`diskguard.lightning`.
"""

from __future__ import annotations

try:
    from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
    from pytorch_lightning import Callback
except ImportError as err:
    raise ImportError(
        'diskguard.pytorch_lightning needs the pytorch_lightning package: pip install pytorch-lightning '
        '(for the lightning package, use diskguard.lightning)'
    ) from err

from ._lightning import DiskGuardCallbackMixin, GuardedCheckpointIOMixin

__all__ = ['DiskGuardCallback']


class _GuardedCheckpointIO(GuardedCheckpointIOMixin, TorchCheckpointIO):
    """Lightning's TorchCheckpointIO, publishing with diskguard.save."""


class DiskGuardCallback(DiskGuardCallbackMixin, Callback):
    """Keeps a Lightning run's checkpoint disk from filling (see :mod:`diskguard.pytorch_lightning`).

    Takes the arguments of :class:`diskguard._lightning.DiskGuardCallbackMixin`.
    """

    _guarded_io_class = _GuardedCheckpointIO
    _torch_io_class = TorchCheckpointIO
