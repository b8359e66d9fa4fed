"""Cost of DiskGuard.step() on the training hot path.

Run: ``python benchmarks/bench_guard.py [DIR]`` (default: a fresh temporary directory). Contenders run
interleaved in one process, several rounds; the script prints median nanoseconds per call and ratios:

- ``step()`` when no check is due, next to an empty Python method call (target: about one call);
- ``step()`` when every call is due, next to one ``os.statvfs`` per watched filesystem (a due check
  asks each filesystem through its worker thread, with a time limit, then grades and decides).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import timeit

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


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix='diskguard-bench-')
    idle = diskguard.DiskGuard(path, check_every_steps=10**12, check_every_seconds=1e9)
    idle.step()  # the first call is always due
    due = diskguard.DiskGuard(path, check_every_steps=1)
    watched = [s.name for s in due.status().spaces if not s.name.startswith('budget')]
    statvfs_paths = [path, tempfile.gettempdir()][: len(watched)]
    env = {'idle': idle, 'due': due, 'empty': Empty(), 'os': os, 'paths': statvfs_paths}

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
            'DiskGuard.step() due': ('due.step()', env),
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
