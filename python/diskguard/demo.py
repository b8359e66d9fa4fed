"""``diskguard demo``: a guarded training run that a full disk cannot kill.

A real torch model trains on synthetic data and saves a checkpoint every epoch under a byte budget
that holds only a few of them, while its log grows in the same directory (as TensorBoard event files
do). Retention keeps the last three; as the log eats the budget the guard climbs its whole ladder:
it warns, applies retention, says once that it can no longer keep the last three and deletes kept
checkpoints to make room (each one logged; the epoch lines show what is left), forecasts in
checkpoints, and stops the run while there is still room for a final checkpoint, which then loads. No root needed: the budget is the limit.

As root, ``--tmpfs`` also runs the same loop with plain ``torch.save`` on a real small tmpfs next to
the guarded one, to show the crash and the truncated file the guard prevents.

torch is imported only when the demo runs (``pip install 'diskguard[demo]'``).
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

from . import (
    DiskGuard,
    DiskSpaceWarning,
    InsufficientSpaceError,
    KeepLast,
    RetentionPolicy,
    forecast_run,
    format_size,
    latest_complete,
)
from .ops import parse

Print = Callable[[str], None]

WIDTH = 384  # hidden units: a checkpoint (weights and Adam's two moments) of about 1.8 MB
LOG_GROWTH = 256 * 1024  # bytes the run's log gains per epoch


def _torch() -> Any:
    """torch, imported when the demo runs (by name, so type-checking works without it)."""
    return importlib.import_module('torch')


class _Model:
    """A small MLP learning a fixed random linear map, with its optimizer."""

    def __init__(self) -> None:
        torch = self.torch = _torch()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU(), torch.nn.Linear(WIDTH, 8)
        )
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.target = torch.randn(WIDTH, 8)

    def epoch(self, batches: int = 10) -> float:
        loss = self.torch.zeros(())
        for _ in range(batches):
            x = self.torch.randn(64, WIDTH)
            loss = (self.net(x) - x @ self.target).pow(2).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        return float(loss.item())

    def state(self, epoch: int, loss: float) -> dict[str, Any]:
        return {'epoch': epoch, 'loss': loss, 'model': self.net.state_dict(), 'opt': self.opt.state_dict()}

    def checkpoint_bytes(self) -> int:
        self.epoch(1)  # Adam's moments exist after the first step
        params: int = sum(t.numel() * t.element_size() for t in self.net.state_dict().values())
        return params * 3


class _GuardLog(logging.Handler):
    """Prints the guard's warnings as they happen (each deletion is an INFO record: the epoch lines
    sum them up), with paths relative to the run directory."""

    def __init__(self, out: Print) -> None:
        super().__init__(logging.WARNING)
        self.out = out
        self.directories: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for directory in self.directories:
            message = message.replace(directory + os.sep, '').replace(directory, 'the run directory')
        self.out(f'    guard: {message}')


def _kept(directory: str) -> str:
    """The checkpoints in the run directory, oldest first, by name."""
    names = [n for n in os.listdir(directory) if n.endswith('.pt')]
    return ', '.join(sorted(names, key=lambda n: (len(n), n))) or 'none'


def guarded_run(directory: str, budget: int | None, epochs: int, out: Print) -> str:
    """Trains with a DiskGuard; returns the checkpoint to resume from."""
    model = _Model()
    size = model.checkpoint_bytes()
    guard = DiskGuard(
        directory,
        budget=budget,
        retention=RetentionPolicy(KeepLast(3)),
        rescan_interval=0.1,  # the log grows unseen by the guard: rescan often
        check_every_steps=1,
        warn=None,  # the demo's limit is the budget, not the machine's disk
        critical=None,
    )
    limit = f'a budget of {format_size(budget)}' if budget else 'no budget (the disk is the limit)'
    out(
        f'  checkpoints of ~{format_size(size)}, {limit}, retention keeps the last 3, '
        f'the log grows {format_size(LOG_GROWTH)} per epoch'
    )
    log = os.path.join(directory, 'train.log')
    started = time.monotonic()
    deletions = (0, 0)
    for epoch in range(1, epochs + 1):
        loss = model.epoch()
        with open(log, 'ab') as f:  # a log (or TensorBoard events) growing next to the checkpoints
            f.write(f'epoch {epoch} loss {loss:.4f}\n'.encode().ljust(LOG_GROWTH, b' '))
        try:
            guard.save(model.state(epoch, loss), os.path.join(directory, f'epoch={epoch}.pt'))
        except InsufficientSpaceError as refused:
            out(f'  epoch {epoch:2d}  loss {loss:.4f}  not saved: {refused}')
            break
        status = guard.status()
        deleted = [
            f'{count} {how}'
            for count, how in (
                (status.retention_deletions - deletions[0], 'by retention'),
                (status.forced_deletions - deletions[1], 'to make room'),
            )
            if count
        ]
        deletions = (status.retention_deletions, status.forced_deletions)
        out(
            f'  epoch {epoch:2d}  loss {loss:.4f}  saved; holds {format_size(status.held)}: {_kept(directory)}'
            + (f' (deleted {" and ".join(deleted)})' if deleted else '')
        )
        if epoch == 2:
            _forecasts(guard, epochs - epoch, (time.monotonic() - started) / epoch, out)
        if guard.step(epoch):
            reason = str(guard.stop_reason).replace(directory, 'the run directory')
            out(f'  the guard stops the run: {reason}')
            final = os.path.join(directory, f'epoch={epoch}-final.pt')
            try:
                guard.save(model.state(epoch, loss), final)
            except InsufficientSpaceError as refused:  # another writer took the room kept for it
                out(f'  final checkpoint not saved: {refused}')
            else:
                out(f'  final checkpoint {os.path.basename(final)} written in the room kept for it')
            break
    else:
        out(f'  the run finished all {epochs} epochs')
    out('')
    out(str(guard.status()).replace(directory + os.sep, '').replace(directory, 'the run directory'))
    newest = latest_complete(directory)
    if newest is None:
        raise RuntimeError('no complete checkpoint left')
    return str(newest)


def _forecasts(guard: DiskGuard, remaining: int, interval: float, out: Print) -> None:
    """The guard's forecast under its retention policy, and what keeping everything would do."""
    out(
        f'    forecast with retention: {guard.forecast(remaining_saves=remaining, save_interval=interval).summary}'
    )
    status = guard.status()
    room = min(s.room for s in status.spaces if s.name.startswith(('budget', 'checkpoint')))
    everything = forecast_run(
        room,
        status.largest_checkpoint,
        interval,
        remaining_saves=remaining,
        background_rate=LOG_GROWTH / interval,  # the log this demo writes
    )
    out(f'    forecast keeping every checkpoint, with the log growing: {everything.summary}')


def unguarded_run(directory: str, epochs: int, out: Print) -> None:
    """The same loop with plain torch.save: on a full disk it dies mid-save."""
    model = _Model()
    for epoch in range(1, epochs + 1):
        loss = model.epoch()
        path = os.path.join(directory, f'epoch={epoch}.pt')
        try:
            model.torch.save(model.state(epoch, loss), path)
        except Exception as crash:  # noqa: BLE001 -- torch reports a full disk as RuntimeError, or others
            out(
                f'  epoch {epoch:2d}  torch.save crashed: {type(crash).__name__}: {str(crash).splitlines()[0]}'
            )
            try:
                model.torch.load(path, weights_only=True)
            except Exception as broken:  # noqa: BLE001 -- whatever a truncated file raises
                out(
                    f'  {os.path.basename(path)} is left truncated ({format_size(os.path.getsize(path))}); '
                    f'loading it fails: {str(broken).splitlines()[0]}'
                )
            return
        out(f'  epoch {epoch:2d}  loss {loss:.4f}  saved')
    out('  finished (the disk was big enough)')


def _show_resume(path: str, out: Print) -> None:
    state = _torch().load(path, weights_only=True)
    out(f'resume from {path}: epoch {state["epoch"]}, loss {state["loss"]:.4f}, loads with weights_only=True')


def _tmpfs(where: str, size: str) -> None:
    os.makedirs(where, exist_ok=True)
    subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', where], check=True)


def run(directory: str | None, epochs: int, budget: str | None, tmpfs: bool, out: Print = print) -> int:
    """Runs the demo; returns the exit code. A ``budget`` that is not a size with its unit raises
    ``ValueError`` naming ``--budget`` (the command's one-line usage error, exit 2)."""
    # A bare number is refused as ambiguous, as every other size option of the command does.
    limit = None if budget is None else parse.size('--budget', budget)
    try:
        _torch()
    except ImportError:
        out("diskguard demo needs torch: pip install 'diskguard[demo]'")
        return 2
    if epochs < 1:
        out(f'--epochs {epochs}: expected at least 1')
        return 2
    if tmpfs and os.geteuid() != 0:
        out('--tmpfs mounts small tmpfs filesystems: run it as root (the plain demo needs no root)')
        return 2
    handler = _GuardLog(out)
    guard_logger = logging.getLogger('diskguard')
    guard_logger.addHandler(handler)
    previous_level = guard_logger.level
    guard_logger.setLevel(logging.INFO)
    base = directory or tempfile.mkdtemp(prefix='diskguard-demo-')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DiskSpaceWarning)  # each one is also logged, shown above
            if tmpfs:
                return _tmpfs_demo(base, epochs, out, handler)
            run_dir = os.path.join(base, 'run')
            os.makedirs(run_dir, exist_ok=True)
            if limit is None:
                limit = int(_Model().checkpoint_bytes() * 6.5)
            handler.directories.append(os.path.abspath(run_dir))
            out(f'guarded training in {run_dir}')
            newest = guarded_run(run_dir, limit, epochs, out)
            _show_resume(newest, out)
            return 0
    finally:
        guard_logger.removeHandler(handler)
        guard_logger.setLevel(previous_level)
        if directory is None:
            shutil.rmtree(base, ignore_errors=True)


def _tmpfs_demo(base: str, epochs: int, out: Print, handler: _GuardLog) -> int:
    size = '10m'
    plain, guarded = os.path.join(base, 'plain'), os.path.join(base, 'guarded')
    _tmpfs(plain, size)
    try:
        _tmpfs(guarded, size)
        try:
            out(f'unguarded: plain torch.save on a {size} tmpfs at {plain}')
            unguarded_run(plain, epochs, out)
            out('')
            out(f'guarded: the same loop with a DiskGuard on a {size} tmpfs at {guarded} ')
            handler.directories.append(os.path.abspath(guarded))
            newest = guarded_run(guarded, None, epochs, out)
            _show_resume(newest, out)
        finally:
            subprocess.run(['umount', guarded], check=False)
    finally:
        subprocess.run(['umount', plain], check=False)
    return 0


def add_parser(commands: Any) -> None:
    """The ``demo`` subcommand."""
    demo = commands.add_parser(
        'demo',
        help='a guarded training run under a budget that holds a few checkpoints (needs torch)',
        description='Trains a small torch model on synthetic data, saving every epoch under a byte '
        'budget that holds only a few checkpoints, and shows what the guard does: warnings, retention, '
        'room made, the forecast, the stop, and a final checkpoint that loads.',
    )
    demo.add_argument('--dir', default=None, help='where to run (default: a temporary directory, removed)')
    demo.add_argument('--epochs', type=int, default=30, help='epochs to train (30)')
    demo.add_argument(
        '--budget',
        default=None,
        help='what the run may hold, with its unit, e.g. 12MiB (default: ~6.5 checkpoints)',
    )
    demo.add_argument(
        '--tmpfs',
        action='store_true',
        help='as root: run unguarded and guarded on real 10 MiB tmpfs filesystems, to show the crash',
    )
    demo.set_defaults(run=lambda args: run(args.dir, args.epochs, args.budget, args.tmpfs))
