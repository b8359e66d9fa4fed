"""diskguard.dcp.save next to plain torch.distributed.checkpoint.save, 4 gloo ranks on CPU.

Run: ``python benchmarks/bench_dcp.py [DIR] [--nproc N] [--rounds R]`` (default ``/dev/shm``, a
tmpfs, so the disk's speed does not drown the difference). It relaunches itself under torchrun.
Each rank holds 64 MiB (16 tensors of 1 Mi floats, a shard of its own). Rounds of the plain and
the guarded save are interleaved (which goes first alternates), each into a fresh directory; a
round's time is the slowest rank's (the save is collective). Medians are compared; target at most 1.05x.

Async: the time the training thread is blocked in ``async_save`` (staging the state to CPU, and for
the guarded one the collective pre-flight), plain ``dcp.async_save`` against
``diskguard.dcp.async_save``; each background write is waited for before the next round. Target
at most 1.05x.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any


def launch(args: argparse.Namespace) -> None:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc-per-node', str(args.nproc),
        '--master-addr', '127.0.0.1', '--master-port', str(port),
        __file__, args.dir, '--rounds', str(args.rounds),
    ]  # fmt: skip
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}
    raise SystemExit(subprocess.run(cmd, env=env, check=False).returncode)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('dir', nargs='?', default='/dev/shm')
    parser.add_argument('--nproc', type=int, default=4)
    parser.add_argument('--rounds', type=int, default=7)
    args = parser.parse_args()
    if 'RANK' not in os.environ:
        launch(args)
    run(Path(args.dir), args.rounds)


def run(base: Path, rounds: int) -> None:
    import diskguard
    import torch
    import torch.distributed as dist
    from diskguard import dcp as guarded
    from torch.distributed.checkpoint.state_dict_saver import async_save, save

    warnings.simplefilter('ignore')
    dist.init_process_group('gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    async_group = dist.new_group(backend='gloo')
    root = base / f'diskguard-bench-dcp-{os.getppid()}'
    if rank == 0:
        root.mkdir(parents=True, exist_ok=False)
    dist.barrier()
    state = {'model': {f'layer{i}.rank{rank}': torch.randn(1024 * 1024) for i in range(16)}}
    guard = diskguard.DiskGuard(root, warn=None, critical=None)
    counter = iter(range(10**6))

    def fresh() -> Path:
        return root / f'step-{next(counter)}'

    def clean() -> None:
        dist.barrier()
        if rank == 0:
            for entry in root.iterdir():
                shutil.rmtree(entry)
        dist.barrier()

    def slowest(action: Callable[[], Any]) -> float:
        dist.barrier()
        start = time.perf_counter()
        action()
        elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        return float(elapsed.item())

    samples: dict[str, list[float]] = {k: [] for k in ('dcp.save', 'guarded', 'dcp.async', 'guarded.async')}
    futures: list[Any] = []

    def plain_save() -> None:
        samples['dcp.save'].append(slowest(lambda: save(state, checkpoint_id=str(fresh()))))
        clean()

    def guarded_save() -> None:
        samples['guarded'].append(slowest(lambda: guarded.save(state, checkpoint_id=fresh(), guard=guard)))
        clean()

    def plain_async() -> None:
        samples['dcp.async'].append(
            slowest(
                lambda: futures.append(
                    async_save(state, checkpoint_id=str(fresh()), process_group=async_group)
                )
            )
        )
        futures[-1].result()
        clean()

    def guarded_async() -> None:
        samples['guarded.async'].append(
            slowest(
                lambda: futures.append(
                    guarded.async_save(state, checkpoint_id=fresh(), guard=guard, process_group=async_group)
                )
            )
        )
        futures[-1].result()
        guard.step()  # settles the finished save on the training thread, as a run would
        clean()

    for round_ in range(rounds):
        # Which of the pair goes first alternates, so neither always runs after the other's kind.
        pairs = [(plain_save, guarded_save), (plain_async, guarded_async)]
        for first, second in pairs:
            for contender in (first, second) if round_ % 2 == 0 else (second, first):
                contender()
    if rank == 0:
        shutil.rmtree(root)
        med = {k: statistics.median(v) for k, v in samples.items()}
        print(f'{world} ranks x 64 MiB, {rounds} rounds, medians (slowest rank), {base}')
        print(
            f'  save:        dcp.save {med["dcp.save"] * 1e3:8.1f} ms   diskguard.dcp.save '
            f'{med["guarded"] * 1e3:8.1f} ms   ratio {med["guarded"] / med["dcp.save"]:.3f}x  (target <= 1.05x)'
        )
        print(
            f'  async block: dcp.async_save {med["dcp.async"] * 1e3:8.1f} ms   diskguard.dcp.async_save '
            f'{med["guarded.async"] * 1e3:8.1f} ms   ratio {med["guarded.async"] / med["dcp.async"]:.3f}x  '
            '(target <= 1.05x)'
        )
    dist.barrier()
    dist.destroy_process_group()


if __name__ == '__main__':
    main()
