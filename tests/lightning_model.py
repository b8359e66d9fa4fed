"""The tiny model the Lightning tests train (imported by the tests and by their DDP script).

The class is built per framework (``lightning.pytorch`` or ``pytorch_lightning``) and registered under
a module-level name, so ``ddp_spawn`` can pickle the model and its workers find the class again.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

_CLASS_NAMES = {'lightning.pytorch': 'TinyLightning', 'pytorch_lightning': 'TinyPytorchLightning'}
_classes: dict[str, type] = {}


def tiny_model(pl: Any) -> Any:
    """A 256x256 linear layer under Adam, as a LightningModule of ``pl`` (either import path)."""
    return model_class(pl.__name__)()


def model_class(package: str) -> type:
    if package not in _classes:
        _classes[package] = _build(importlib.import_module(package), _CLASS_NAMES[package])
    return _classes[package]


def __getattr__(name: str) -> type:
    for package, class_name in _CLASS_NAMES.items():
        if name == class_name:
            return model_class(package)
    raise AttributeError(name)


def _build(pl: Any, name: str) -> type:
    class Tiny(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(256, 256)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            (x,) = batch
            loss = self.layer(x).pow(2).mean()
            self.log('train_loss', loss)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            # A loss that improves and worsens: top-k keeps and drops checkpoints alike.
            self.log('val_loss', float((self.global_step * 7919) % 13))

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

        def train_dataloader(self) -> Any:
            return DataLoader(TensorDataset(torch.randn(64, 256)), batch_size=8)

        def val_dataloader(self) -> Any:
            return DataLoader(TensorDataset(torch.randn(8, 256)), batch_size=8)

    Tiny.__name__ = Tiny.__qualname__ = name
    return Tiny
