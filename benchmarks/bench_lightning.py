"""Cost of DiskGuardCallback on a Lightning fit, checking the disk at every step.

Run: ``python benchmarks/bench_lightning.py [--steps N] [--rounds R (21)] [--width W] [--clock wall|cpu]``. The same fit (an
MLP of width W on CPU, N optimizer steps, logging through a CSVLogger, no checkpoints so that only
the callback's per-step cost is measured) runs without the callback, with
``DiskGuardCallback(check_every_steps=1)`` (a check due at every step, the figures logged at
Lightning's cadence) and with
the default cadence, in one process, rounds interleaved so drift hits all alike (the order within a
round rotates, so no contender always runs first). Prints the median seconds per fit of each and
the median over rounds of each round's ratio to the fit without (paired: a slow round slows both;
21 rounds by default, as one round's ratio moves by about 1% on a shared 2-core machine);
the target is at most 1.02x for ``check_every_steps=1``. ``--clock cpu`` times each fit by this
process's CPU time instead of the wall clock: on a machine shared with other jobs, whose load moves
wall times by more than the effect measured (the empty callback's ratio shows how much).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
import warnings
from typing import Any

import lightning.pytorch as pl
import torch
from diskguard.lightning import DiskGuardCallback
from torch.utils.data import DataLoader, TensorDataset


class MLP(pl.LightningModule):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, width)
        )

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        (x,) = batch
        loss = self.net(x).pow(2).mean()
        self.log('train_loss', loss)
        return loss

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=1e-3)


# The contenders: DiskGuardCallback's options, or None for the fit without it.
CONTENDERS: dict[str, dict[str, Any] | None] = {
    'without the callback': None,
    'DiskGuardCallback(check_every_steps=1)': {'check_every_steps': 1},
    'DiskGuardCallback() (a check every 50 steps)': {},
    # What Lightning's hook dispatch costs for any callback, before it does anything.
    'an empty Callback (the floor for any callback)': {'empty': True},
}


class EmptyCallback(pl.Callback):
    """A callback that overrides nothing."""


def fit_seconds(
    data: DataLoader[Any],
    width: int,
    steps: int,
    root: str,
    options: dict[str, Any] | None,
    clock: Any = time.perf_counter,
) -> float:
    """Wall time of one fit (the Trainer's construction excluded)."""
    torch.manual_seed(0)
    if options is None:
        callbacks: list[pl.Callback] = []
    elif options.get('empty'):
        callbacks = [EmptyCallback()]
    else:
        callbacks = [DiskGuardCallback(root, **options)]
    trainer = pl.Trainer(
        accelerator='cpu',
        devices=1,
        max_steps=steps,
        logger=pl.loggers.CSVLogger(root),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    start = clock()
    trainer.fit(MLP(width), data)
    return float(clock() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--steps', type=int, default=300)
    parser.add_argument('--rounds', type=int, default=21)
    parser.add_argument('--width', type=int, default=512)
    parser.add_argument('--clock', choices=['wall', 'cpu'], default='wall')
    args = parser.parse_args()
    logging.getLogger('lightning.pytorch').setLevel(logging.ERROR)
    warnings.filterwarnings('ignore')
    torch.set_num_threads(1)
    data = DataLoader(TensorDataset(torch.randn(args.steps * 32, args.width)), batch_size=32)
    clock = time.perf_counter if args.clock == 'wall' else time.process_time
    root = tempfile.mkdtemp(prefix='diskguard-bench-lightning-')
    samples: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    try:
        fit_seconds(data, args.width, 20, root, {'check_every_steps': 1})  # warm-up: imports, caches
        names = list(CONTENDERS)
        for round_ in range(args.rounds):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(fit_seconds(data, args.width, args.steps, root, CONTENDERS[name], clock))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    plain = samples['without the callback']
    print(
        f'Lightning fit, {args.steps} steps, MLP width {args.width}, {args.rounds} interleaved rounds, '
        f'{args.clock} clock'
    )
    print(f'  {"contender":<46} {"s/fit":>7} {"ms/step":>8} {"ratio":>7}')
    for name, values in samples.items():
        seconds = statistics.median(values)
        ratio = statistics.median(value / base for value, base in zip(values, plain, strict=True))
        print(f'  {name:<46} {seconds:7.3f} {seconds / args.steps * 1e3:8.3f} {ratio:6.3f}x')
    print('  (target: at most 1.02x with check_every_steps=1)')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
