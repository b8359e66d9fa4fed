"""Cost of DiskGuard.step() on the training hot path.

Run: ``python benchmarks/bench_guard.py [DIR]`` (default: a fresh temporary directory). Contenders run
interleaved in one process, several rounds; the script prints median nanoseconds per call and ratios:

- ``step()`` when no check is due, next to an empty Python method call (target: about one call);
- ``step()`` when every call is due, next to one ``os.statvfs`` per watched filesystem: on a disk
  far from its thresholds, where a due check grades the last figures again for up to 50 ms, and
  with ``min_free`` just under what is available, where every due check measures each filesystem,
  grades and decides.
- ``--many N``: a directory of N files (200,000 for the issue's figure), a guard with
  ``rescan_interval=1`` and every call due: the median and the longest ``step()`` over 10 s, during
  which the walk of what the run holds (about half a second on 200,000 files) runs about ten times
  on its own thread. Target: no call longer than about a millisecond. Side by side, the baseline: the
  synchronous walk a due ``step()`` did before (``guard.rescan()``, the same walk on the calling
  thread), and the guard's construction time now and with its first walk on the calling thread.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable

import diskguard


class Empty:
    """The floor: a method call that does nothing."""

    def step(self, step: int | None = None) -> bool:
        return False


def medians(stmts: dict[str, tuple[str, dict[str, object]]], rounds: int, number: int) -> dict[str, float]:
    """Median ns per call for each statement, rounds interleaved so drift hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in stmts}
    for _ in range(rounds):
        for name, (stmt, env) in stmts.items():
            samples[name].append(timeit.timeit(stmt, globals=env, number=number) / number * 1e9)
    return {name: statistics.median(values) for name, values in samples.items()}


def table(title: str, results: dict[str, float], floor_name: str, floor: float) -> None:
    print(title)
    print(f'  {"contender":<44} {"ns/call":>9} {"ratio":>8}')
    for name, ns in results.items():
        print(f'  {name:<44} {ns:>9.0f} {ns / floor:>7.2f}x')
    print(f'  (ratio to {floor_name})')


def calls(step: Callable[[], object], seconds: float) -> list[float]:
    """The duration of each call of ``step`` made during ``seconds``."""
    durations = []
    clock = time.perf_counter
    end = clock() + seconds
    while (t0 := clock()) < end:
        step()
        durations.append(clock() - t0)
    return durations


def summary(name: str, durations: list[float]) -> str:
    durations = sorted(durations)
    over = sum(1 for d in durations if d > 1e-3)
    tail = durations[int(len(durations) * 0.9999)]
    return (
        f'  {name:<44} {len(durations):>8} calls: median {statistics.median(durations) * 1e6:8.1f} us, '
        f'99.99th pct {tail * 1e3:7.2f} ms, max {durations[-1] * 1e3:8.2f} ms, {over} over 1 ms'
    )


def many_files(count: int) -> int:
    """A due step() on a directory of ``count`` files while rescans run (see the module docstring)."""
    path = tempfile.mkdtemp(prefix='diskguard-bench-many-')
    try:
        for i in range(count):
            with open(os.path.join(path, f'shard_{i:07d}.distcp'), 'wb') as f:
                f.write(b'x')
        start = time.perf_counter()
        guard = diskguard.DiskGuard(path, warn=None, critical=None, check_every_steps=1, rescan_interval=1.0)
        built = time.perf_counter() - start
        start = time.perf_counter()
        guard.step()
        first = time.perf_counter() - start
        due = calls(guard.step, 10.0)
        # The same due step() with no walk ever due: what a check costs here without any rescan (it
        # waits for the statfs worker thread, so a busy machine's scheduling shows in its tail).
        quiet = diskguard.DiskGuard(path, warn=None, critical=None, check_every_steps=1, rescan_interval=1e9)
        quiet.step()
        no_walk = calls(quiet.step, 10.0)
        del quiet
        # The same loop around an empty method: its longest call is the machine's own jitter
        # (preemption on a busy machine), the floor no step() can beat.
        floor = calls(Empty().step, 10.0)
        # The baseline: the walk a due step() did on the training thread before it moved off it.
        walks = [timeit.timeit(guard.rescan, number=1) for _ in range(5)]
        print(f'{count} files in {path}; rescan_interval=1, every step() due')
        print(
            f'  guard built in {built * 1e3:.1f} ms (its first walk on its own thread); with that walk on '
            f'the calling thread, as before: {(built + statistics.median(walks)) * 1e3:.0f} ms'
        )
        print(f'  first step() {first * 1e3:.2f} ms')
        print(summary('DiskGuard.step() due, walk on its own thread', due))
        print(summary('DiskGuard.step() due, no walk due', no_walk))
        print(summary('baseline: the synchronous walk (rescan())', walks))
        print(summary('empty method call (floor)', floor))
    finally:
        shutil.rmtree(path)
    return 0


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == '--many':
        return many_files(int(sys.argv[2]))
    path = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix='diskguard-bench-')
    idle = diskguard.DiskGuard(path, check_every_steps=10**12, check_every_seconds=1e9)
    idle.step()  # the first call is always due
    due = diskguard.DiskGuard(path, check_every_steps=1)
    # A few MiB before min_free: no figure stays fresh, every due check measures.
    near = diskguard.DiskGuard(
        path,
        warn=None,
        critical=None,
        check_every_steps=1,
        min_free=max(0, diskguard.usage(path).avail - 64 * 2**20),
    )
    watched = [s.name for s in due.status().spaces if not s.name.startswith('budget')]
    statvfs_paths = [path, tempfile.gettempdir()][: len(watched)]
    env = {'idle': idle, 'due': due, 'near': near, 'empty': Empty(), 'os': os, 'paths': statvfs_paths}

    not_due = medians(
        {
            'empty method call: empty.step()': ('empty.step()', env),
            'DiskGuard.step() not due': ('idle.step()', env),
            'empty method call: empty.step(7)': ('empty.step(7)', env),
            'DiskGuard.step(7) not due': ('idle.step(7)', env),
        },
        rounds=15,
        number=200_000,
    )
    statvfs_name = f'os.statvfs x {len(statvfs_paths)} (one per watched filesystem)'
    when_due = medians(
        {
            statvfs_name: ('for p in paths: os.statvfs(p)', env),
            'DiskGuard.step() due, figures still fresh': ('due.step()', env),
            'DiskGuard.step() due, measured': ('near.step()', env),
        },
        rounds=9,
        number=2_000,
    )
    print(f'DiskGuard on {path}; watched filesystems: {"; ".join(watched)}')
    table(
        'not due (median of 15 rounds x 200000 calls)',
        not_due,
        'empty.step()',
        not_due['empty method call: empty.step()'],
    )
    table('due (median of 9 rounds x 2000 calls)', when_due, statvfs_name, when_due[statvfs_name])
    return 0


if __name__ == '__main__':
    sys.exit(main())
