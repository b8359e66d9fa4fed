"""Retention over 10,000 checkpoint files: diskguard's plan and plan+apply, next to the hand-written
cleanup (glob, sort by mtime, unlink the oldest) and the floor (unlinkat of the same files in a
tight loop, no decisions).

Run: ``python benchmarks/bench_retention.py [DIR]`` (default: a fresh directory under the system
temp dir). Each round recreates the files, then times one contender; rounds are interleaved and
medians compared. Targets: plan alone within 20 ms; plan + apply within 1.2x of the floor.
"""

from __future__ import annotations

import glob
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from diskguard import KeepLast, RetentionPolicy, apply, plan

FILES = 10_000
KEEP = 10
ROUNDS = 7


def checkpoint_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as z:
        z.writestr('archive/data.pkl', b'\x80\x04K\x01.')
    return buffer.getvalue()


def populate(directory: Path, payload: bytes) -> list[str]:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    names = []
    base = time.time() - FILES
    for i in range(FILES):
        name = f'epoch={i // 100}-step={i}.ckpt'
        path = directory / name
        path.write_bytes(payload)
        os.utime(path, (base + i, base + i))
        names.append(name)
    return names


def hand_written(directory: Path) -> None:
    """The common cleanup: glob, sort by time, unlink all but the newest KEEP."""
    files = sorted(glob.glob(str(directory / '*.ckpt')), key=os.path.getmtime)
    for path in files[:-KEEP]:
        os.unlink(path)


def floor(directory: Path, names: list[str]) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names[:-KEEP]:
            os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def ours_plan(directory: Path) -> None:
    plan(directory, RetentionPolicy(KeepLast(KEEP)))


def ours_apply(directory: Path) -> None:
    apply(plan(directory, RetentionPolicy(KeepLast(KEEP))))


def main() -> int:
    base = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix='diskguard-bench-'))
    directory = base / 'ckpts'
    payload = checkpoint_bytes()
    contenders: dict[str, Callable[[list[str]], None]] = {
        'floor: unlinkat loop': lambda names: floor(directory, names),
        'hand-written cleanup': lambda names: hand_written(directory),
        'diskguard plan + apply': lambda names: ours_apply(directory),
        'diskguard plan only': lambda names: ours_plan(directory),
    }
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    try:
        for _ in range(ROUNDS):
            for name, run in contenders.items():
                names = populate(directory, payload)
                os.sync()
                start = time.perf_counter()
                run(names)
                samples[name].append(time.perf_counter() - start)
                left = len(os.listdir(directory))
                expected = FILES if name == 'diskguard plan only' else KEEP
                assert left == expected, f'{name} left {left} files, expected {expected}'
    finally:
        shutil.rmtree(base if len(sys.argv) <= 1 else directory, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    floor_time = medians['floor: unlinkat loop']
    print(f'{FILES} checkpoint files, keep the last {KEEP}; median of {ROUNDS} interleaved rounds')
    print(f'{"contender":<26} {"ms":>9} {"vs floor":>9}')
    for name, seconds in medians.items():
        print(f'{name:<26} {seconds * 1e3:>9.1f} {seconds / floor_time:>8.2f}x')
    plan_ms = medians['diskguard plan only'] * 1e3
    ratio = medians['diskguard plan + apply'] / floor_time
    print(f'targets: plan {plan_ms:.1f} ms (<= 20 ms), plan + apply {ratio:.2f}x the floor (<= 1.2x)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
