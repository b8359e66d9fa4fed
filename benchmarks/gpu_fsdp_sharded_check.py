"""GPU check, ready to run: Lightning ``FSDPStrategy(state_dict_type='sharded')`` with the diskguard
callback on a small tmpfs. Reports whether every rank stopped at the same step with a complete last
checkpoint. Needs CUDA GPUs (Lightning's FSDPStrategy refuses a CPU accelerator) and root (mount).

Run: ``python benchmarks/gpu_fsdp_sharded_check.py [--gpus N] [--size 96m]``. It mounts a tmpfs,
relaunches itself as the training run (one process per GPU, Lightning's own launcher), fills the
tmpfs midway (rank 0 preallocates a filler file at step 6), and prints one ``rank R: ...`` line per rank and a verdict:
``PASS`` when all ranks stopped at the same step, the last checkpoint is a complete sharded
directory (``.metadata`` naming shards that exist with their sizes, ``meta.pt``), no partial save is
left under a final name, and that checkpoint loads. Exit status 0 on PASS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def supervise(args: argparse.Namespace) -> int:
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() < 1:
        print('SKIP: no CUDA GPU on this machine')
        return 2
    gpus = min(args.gpus or torch.cuda.device_count(), torch.cuda.device_count())
    work = Path(tempfile.mkdtemp(prefix='diskguard-gpu-check-'))
    mount = work / 'tmpfs'
    mount.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={args.size}', 'tmpfs', str(mount)], check=True)
    try:
        env = {**os.environ, 'DISKGUARD_GPU_CHECK_WORKER': '1'}
        cmd = [sys.executable, __file__, '--gpus', str(gpus), '--dir', str(mount), '--results', str(work)]
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=False)
        print(run.stdout[-4000:])
        if run.returncode != 0:
            print(run.stderr[-8000:])
        return verdict(mount, work, gpus)
    finally:
        subprocess.run(['umount', str(mount)], check=False)


def verdict(mount: Path, work: Path, gpus: int) -> int:
    import diskguard

    results = [json.loads(p.read_text()) for p in sorted(work.glob('rank-*.json'))]
    for r in results:
        print(
            f'rank {r["rank"]}: stopped at step {r["stopped_at"]} should_stop={r["should_stop"]} {r["reason"]}'
        )
    ckpts = mount / 'ckpts'
    names = sorted(os.listdir(ckpts)) if ckpts.is_dir() else []
    latest = diskguard.latest_complete(ckpts) if ckpts.is_dir() else None
    items = {i.name: i for i in diskguard.plan(ckpts).items} if ckpts.is_dir() else {}
    partial_final = [n for n, i in items.items() if not i.complete and not n.startswith('.')]
    print(f'checkpoints: {names}')
    print(f'latest complete: {latest}')
    print(f'partial saves under a final name: {partial_final}')
    loads = False
    if latest is not None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.metadata import Metadata

        metadata = dcp.FileSystemReader(latest).read_metadata()
        loads = isinstance(metadata, Metadata) and (Path(latest) / 'meta.pt').is_file()
    steps = {r['stopped_at'] for r in results}
    ok = len(results) == gpus and len(steps) == 1 and None not in steps
    ok = ok and latest is not None and loads and not partial_final
    print('PASS' if ok else 'FAIL')
    return 0 if ok else 1


def worker(args: argparse.Namespace) -> None:
    import diskguard
    import lightning as L
    import torch
    from diskguard.lightning import DiskGuardCallback
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.strategies import FSDPStrategy

    class Model(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(*[torch.nn.Linear(1024, 1024) for _ in range(4)])

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            if self.global_step == 6 and self.global_rank == 0 and not (Path(args.dir) / 'filler').exists():
                fill(Path(args.dir), leave=2 << 20)  # the disk fills midway
            loss = self.net(batch[0]).square().mean()
            self.log('loss', loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters())

    data = torch.utils.data.TensorDataset(torch.randn(4096, 1024))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    checkpoint = ModelCheckpoint(dirpath=Path(args.dir) / 'ckpts', every_n_train_steps=2, save_top_k=-1)
    guard = DiskGuardCallback(
        warn=None,
        critical=None,
        check_every_steps=1,
        retention=diskguard.RetentionPolicy(diskguard.KeepLast(2)),
    )
    trainer = L.Trainer(
        accelerator='gpu',
        devices=args.gpus,
        strategy=FSDPStrategy(state_dict_type='sharded'),
        max_steps=400,
        callbacks=[checkpoint, guard],
        logger=False,
        enable_progress_bar=False,
    )
    trainer.fit(Model(), loader)
    g = guard._guard
    result = {
        'rank': trainer.global_rank,
        'stopped_at': trainer.global_step,
        'should_stop': bool(trainer.should_stop),
        'reason': getattr(g, 'stop_reason', None),
    }
    Path(args.results, f'rank-{trainer.global_rank}.json').write_text(json.dumps(result))


def fill(directory: Path, leave: int) -> None:
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize - leave
    fd = os.open(directory / 'filler', os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.posix_fallocate(fd, 0, max(free, 4096))
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--gpus', type=int, default=0)
    parser.add_argument('--size', default='96m')
    parser.add_argument('--dir')
    parser.add_argument('--results')
    args = parser.parse_args()
    if os.environ.get('DISKGUARD_GPU_CHECK_WORKER'):
        worker(args)
        return
    raise SystemExit(supervise(args))


if __name__ == '__main__':
    main()
