"""A plain ``torch.distributed`` training loop guarded by diskguard; run it under torchrun:

    torchrun --nproc-per-node 2 examples/torchrun_loop.py /tmp/ckpts --steps 200

Every rank calls ``guard.step()`` once per step: every ``check_every_steps`` calls the ranks
all-reduce their stop flags (gloo here, NCCL on GPUs), so they all leave the loop at the same step
and none waits forever in the next gradient all-reduce. Rank 0 saves; only the process that
measures the checkpoint directory's filesystem (``guard.deletes``) ever deletes there.

``--fill-at STEP`` makes rank 0 fill the checkpoint filesystem at that step, as another job sharing
the disk would (the test suite runs this script on a small tmpfs).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import diskguard
import torch
import torch.distributed as dist
from torch import nn


def fill(directory: Path, leave: int) -> None:
    """Writes one file until only ``leave`` bytes remain available."""
    with open(directory.parent / 'filler.bin', 'wb') as f:
        while diskguard.usage(str(directory)).avail > leave:
            f.write(b'\0' * (256 * 1024))
            f.flush()
            os.fsync(f.fileno())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('checkpoints', type=Path)
    parser.add_argument('--steps', type=int, default=200)
    parser.add_argument('--save-every', type=int, default=10)
    parser.add_argument('--fill-at', type=int, default=None)
    args = parser.parse_args()

    dist.init_process_group('gloo')
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(nn.Linear(256, 256))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    args.checkpoints.mkdir(parents=True, exist_ok=True)
    guard = diskguard.DiskGuard(
        args.checkpoints,
        retention=diskguard.RetentionPolicy(diskguard.KeepLast(3)),
        check_every_steps=5,
    )  # ranks from RANK / LOCAL_RANK / WORLD_SIZE; the stop is all-reduced over gloo

    step = 0
    for step in range(1, args.steps + 1):
        loss = model(torch.randn(8, 256)).square().mean()
        optimizer.zero_grad()
        loss.backward()  # a collective: a rank that left the loop alone would hang the others
        optimizer.step()
        if rank == 0 and step == args.fill_at:
            fill(args.checkpoints, leave=512 * 1024)
        if rank == 0 and step % args.save_every == 0:
            try:
                guard.save(model.module.state_dict(), args.checkpoints / f'step={step}.pt')
            except diskguard.InsufficientSpaceError as err:
                # Nothing was written; the guard stops the run on every rank at the next sync.
                print(f'rank 0: not saved: {err}', flush=True)
        if guard.step(step):
            break
    if rank == 0 and guard.should_stop:
        print(f'rank 0: {guard.stop_reason}', flush=True)
        try:  # the guard kept room for this one, unless another job took it meanwhile
            guard.save(model.module.state_dict(), args.checkpoints / f'step={step}-final.pt')
        except diskguard.InsufficientSpaceError as err:
            print(f'rank 0: no final checkpoint: {err}', flush=True)
    print(f'rank {rank}: stopped at step {step} deletes={guard.deletes}', flush=True)
    dist.destroy_process_group()


if __name__ == '__main__':
    main()
