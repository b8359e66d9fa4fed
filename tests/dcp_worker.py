"""One rank of a guarded FSDP2 run on CPU (gloo), saving with diskguard.dcp; run under torchrun.

    torchrun --nproc-per-node 4 tests/dcp_worker.py SCENARIO CHECKPOINT_DIR RESULTS_DIR

Scenarios:
    retention  save every step for 8 steps, retention keeps the filesystem from filling.
    fill       another process fills the filesystem after step 3; every rank must stop together.
    async      an async save hits ENOSPC in the background; surfaced at step(), then resume.
    twonode    (two torchrun nodes, each in its own mount namespace) every step saves to the shared
               CHECKPOINT_DIR and to the node-local LOCAL_DIR (argv[4]); node 1's local disk fills.

Each rank writes ``RESULTS_DIR/rank-<rank>.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import diskguard
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from diskguard import dcp as guarded
from torch.distributed.checkpoint.default_planner import DefaultSavePlanner
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard


def build(world: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(8)])
    mesh = init_device_mesh('cpu', (world,))
    for layer in model:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def train_step(model: torch.nn.Module, optim: torch.optim.Optimizer) -> None:
    loss = model(torch.randn(4, 256)).square().mean()
    loss.backward()
    optim.step()
    optim.zero_grad()


def state(model: torch.nn.Module, optim: torch.optim.Optimizer) -> dict[str, Any]:
    msd, osd = get_state_dict(model, optim)
    return {'model': msd, 'optim': osd}


def fill(directory: Path, leave: int) -> None:
    """Another process takes all but ``leave`` bytes of the filesystem."""
    code = (
        'import os, sys\n'
        'd, leave = sys.argv[1], int(sys.argv[2])\n'
        'st = os.statvfs(d)\n'
        'free = st.f_bavail * st.f_frsize - leave\n'
        "fd = os.open(os.path.join(d, 'filler'), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)\n"
        'os.posix_fallocate(fd, 0, max(free, 4096))\n'
    )
    subprocess.run([sys.executable, '-c', code, str(directory), str(leave)], check=True)


class CountingGuard(diskguard.DiskGuard):
    """A DiskGuard that records the room it was asked for (which rank decides, for how many bytes)."""

    __slots__ = ('asked',)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.asked: list[int] = []
        super().__init__(*args, **kwargs)

    def before_save(self, path: Any, nbytes: int) -> None:
        self.asked.append(nbytes)
        super().before_save(path, nbytes)


class GatedPlanner(DefaultSavePlanner):
    """DCP's default planner whose first write waits for ``gate``: the background write starts only
    once the disk is full (a public extension point of DCP, used here for a deterministic race)."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def resolve_data(self, write_item: Any) -> Any:
        self.gate.wait(60)
        return super().resolve_data(write_item)


def main() -> None:
    scenario, directory = sys.argv[1], Path(sys.argv[2])
    dist.init_process_group('gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    warnings.simplefilter('ignore', UserWarning)  # DCP and FSDP2 warn about CPU-only use
    model, optim = build(world)
    guard = CountingGuard(
        directory,
        warn=None,
        critical=None,
        retention=diskguard.RetentionPolicy(diskguard.KeepLast(2)),
        check_every_steps=1,
        # retention: the guard may prune the older kept checkpoint to keep room for the next save;
        # the others: nothing but retention deletes, so a full disk refuses the save.
        on_full='prune' if scenario == 'retention' else 'stop',
    )
    result: dict[str, Any] = {'rank': rank, 'saved': [], 'error': None, 'stopped_at': None}
    try:
        if scenario == 'retention':
            run_retention(guard, model, optim, directory, result)
        elif scenario == 'fill':
            run_fill(guard, model, optim, directory, result, rank)
        elif scenario == 'async':
            run_async(guard, model, optim, directory, result, rank)
        elif scenario == 'twonode':
            run_two_nodes(guard, model, optim, directory, Path(sys.argv[4]), result)
        else:
            raise SystemExit(f'unknown scenario {scenario}')
    finally:
        Path(sys.argv[3], f'rank-{rank}.json').write_text(json.dumps(result))
        dist.barrier()
        dist.destroy_process_group()


def run_retention(guard: Any, model: Any, optim: Any, directory: Path, result: dict[str, Any]) -> None:
    for step in range(1, 9):
        train_step(model, optim)
        guarded.save(state(model, optim), checkpoint_id=directory / f'step-{step}', guard=guard)
        result['saved'].append(step)
        if guard.step(step):
            result['stopped_at'] = step
            break
    result['listing'] = sorted(os.listdir(directory))
    result['latest'] = os.path.basename(diskguard.latest_complete(directory) or '')
    # Resume from what retention kept: the loaded weights equal the trained ones.
    expected = {k: v.full_tensor().clone() for k, v in get_state_dict(model, optim)[0].items()}
    fresh, fresh_optim = build(dist.get_world_size())
    loaded = state(fresh, fresh_optim)
    dcp.load(loaded, checkpoint_id=os.path.join(directory, result['latest']))
    set_state_dict(fresh, fresh_optim, model_state_dict=loaded['model'], optim_state_dict=loaded['optim'])
    got = get_state_dict(fresh, fresh_optim)[0]
    result['resumed_equal'] = all(torch.equal(got[k].full_tensor(), v) for k, v in expected.items())


def run_fill(guard: Any, model: Any, optim: Any, directory: Path, result: dict[str, Any], rank: int) -> None:
    for step in range(1, 20):
        train_step(model, optim)
        if step == 4:
            if rank == 0:
                fill(directory, leave=256 * 1024)
            dist.barrier()
        try:
            guarded.save(state(model, optim), checkpoint_id=directory / f'step-{step}', guard=guard)
        except diskguard.InsufficientSpaceError as err:
            result['error'] = str(err)
            result['stopped_at'] = step
            result['should_stop'] = guard.should_stop
            break
        result['saved'].append(step)
        guard.step(step)
    result['listing'] = sorted(os.listdir(directory))
    result['latest'] = os.path.basename(diskguard.latest_complete(directory) or '')


def run_async(guard: Any, model: Any, optim: Any, directory: Path, result: dict[str, Any], rank: int) -> None:
    group = dist.new_group(backend='gloo')  # DCP's background collectives stay off the default group
    train_step(model, optim)
    guarded.save(state(model, optim), checkpoint_id=directory / 'step-1', guard=guard)
    result['saved'].append(1)
    expected = {k: v.full_tensor().clone() for k, v in get_state_dict(model, optim)[0].items()}
    train_step(model, optim)
    gate = threading.Event()
    future = guarded.async_save(
        state(model, optim),
        checkpoint_id=directory / 'step-2',
        guard=guard,
        process_group=group,
        planner=GatedPlanner(gate),
    )
    if rank == 0:
        fill(directory, leave=64 * 1024)
    dist.barrier()
    gate.set()
    step = 2
    try:
        while step < 200:
            step += 1
            train_step(model, optim)
            guard.step(step)
    except BaseException as err:  # noqa: BLE001 -- DCP's CheckpointException is a BaseException
        result['error'] = f'{type(err).__name__}: {err}'[:2000]
        result['notes'] = getattr(err, '__notes__', [])
        result['stopped_at'] = step
        result['should_stop'] = guard.should_stop
    result['future_failed'] = future.done() and future.exception() is not None
    dist.barrier()
    result['listing'] = sorted(os.listdir(directory))
    latest = diskguard.latest_complete(directory)
    result['latest'] = os.path.basename(latest or '')
    fresh, fresh_optim = build(dist.get_world_size())
    loaded = state(fresh, fresh_optim)
    dcp.load(loaded, checkpoint_id=latest)
    set_state_dict(fresh, fresh_optim, model_state_dict=loaded['model'], optim_state_dict=loaded['optim'])
    got = get_state_dict(fresh, fresh_optim)[0]
    result['resumed_equal'] = all(torch.equal(got[k].full_tensor(), v) for k, v in expected.items())


def run_two_nodes(
    guard: Any, model: Any, optim: Any, shared: Path, local: Path, result: dict[str, Any]
) -> None:
    node, local_rank = int(os.environ['GROUP_RANK']), int(os.environ['LOCAL_RANK'])
    local_guard = CountingGuard(
        local,
        warn=None,
        critical=None,
        retention=diskguard.RetentionPolicy(diskguard.KeepLast(1)),
        check_every_steps=1,
        on_full='stop',
    )
    result.update(node=node, local_rank=local_rank, local_dev=os.stat(local).st_dev)
    for step in range(1, 30):
        train_step(model, optim)
        if step == 4 and node == 1 and local_rank == 0:
            fill(local, leave=128 * 1024)  # only node 1's own disk: the other node cannot see it
        try:
            shard_state = state(model, optim)
            guarded.save(shard_state, checkpoint_id=shared / f'step-{step}', guard=guard)
            guarded.save(shard_state, checkpoint_id=local / f'step-{step}', guard=local_guard)
        except diskguard.InsufficientSpaceError as err:
            result['error'] = str(err)
            result['stopped_at'] = step
            result['should_stop'] = guard.should_stop and local_guard.should_stop
            break
        result['saved'].append(step)
        guard.step(step)
        local_guard.step(step)
    result['shared_asked'] = guard.asked
    result['local_asked'] = local_guard.asked
    result['local_bytes'] = guarded._local_bytes(state(model, optim))
    result['listing'] = sorted(os.listdir(shared))
    result['local_listing'] = sorted(os.listdir(local))


if __name__ == '__main__':
    main()
