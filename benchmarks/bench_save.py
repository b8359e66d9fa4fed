"""diskguard.save next to plain torch.save, on tmpfs by default.

Run: ``python benchmarks/bench_save.py [DIR]`` (default ``/dev/shm``, a tmpfs, so the disk's speed
does not drown the difference). For a large (64 MiB) and a small (1 MiB) state dict, rounds of
``torch.save(sd, path)`` and ``diskguard.save(sd, path)`` are interleaved (9 and 51 rounds) and the medians compared.
Target: at most 1.05x. The durability diskguard adds (fsync of the file and of the directory) is
timed apart, on a file plain torch.save just wrote: on tmpfs it is nearly free, on a real disk it is
the cost of the data reaching the device, which plain torch.save does not pay.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import diskguard
import torch

# label: (tensors, floats each, rounds); more rounds where one takes about a millisecond.
SIZES = {'64 MiB': (16, 1024 * 1024, 9), '1 MiB': (16, 16 * 1024, 51)}


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def fsync_cost(path: Path) -> float:
    """The file's and its directory's fsync, as diskguard.save does them."""
    start = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dir_fd)
    os.close(dir_fd)
    return time.perf_counter() - start


def bench(directory: Path, label: str, tensors: int, floats: int, rounds: int) -> None:
    state = {f'layer{i}.weight': torch.randn(floats) for i in range(tensors)}
    samples: dict[str, list[float]] = {'torch.save': [], 'diskguard.save': [], 'fsync': []}
    plain, safe = directory / 'plain.pt', directory / 'safe.pt'
    for _ in range(rounds):
        samples['torch.save'].append(timed(lambda: torch.save(state, plain)))
        samples['fsync'].append(fsync_cost(plain))
        samples['diskguard.save'].append(timed(lambda: diskguard.save(state, safe)))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratio = medians['diskguard.save'] / medians['torch.save']
    print(
        f'{label:>7} ({rounds} rounds): torch.save {medians["torch.save"] * 1e3:8.2f} ms   '
        f'diskguard.save {medians["diskguard.save"] * 1e3:8.2f} ms   ratio {ratio:.3f}x   '
        f'(of which fsync file+dir {medians["fsync"] * 1e3:.3f} ms)'
    )


def main() -> int:
    base = Path(sys.argv[1]) if len(sys.argv) > 1 else Path('/dev/shm')
    directory = Path(tempfile.mkdtemp(prefix='diskguard-bench-save-', dir=base))
    print(f'interleaved rounds in {directory} ({diskguard.usage(directory).fs_type}), medians')
    try:
        for label, (tensors, floats, rounds) in SIZES.items():
            bench(directory, label, tensors, floats, rounds)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
