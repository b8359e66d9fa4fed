"""Per-call cost of diskguard.usage() and check() next to raw os.statvfs, shutil.disk_usage and psutil.

Run: ``python benchmarks/bench_usage.py [PATH]``. All contenders run interleaved in one process, in
several rounds; the script prints each one's median per-call time and its ratio to os.statvfs (one
syscall is the floor). Targets: usage() within 1.3x of os.statvfs, check() within 2x.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import timeit
from collections.abc import Callable

import diskguard

try:
    import psutil
except ImportError:  # psutil is a test extra; the comparison is skipped without it
    psutil = None


def contenders(path: str) -> dict[str, Callable[[], object]]:
    found: dict[str, Callable[[], object]] = {
        'os.statvfs': lambda: os.statvfs(path),
        'diskguard.usage': lambda: diskguard.usage(path),
        'diskguard.check': lambda: diskguard.check(path),
        'diskguard.check(min_free=str)': lambda: diskguard.check(path, min_free='20GiB'),
        'shutil.disk_usage': lambda: shutil.disk_usage(path),
    }
    if psutil is not None:
        found['psutil.disk_usage'] = lambda: psutil.disk_usage(path)
    return found


def measure(path: str, rounds: int = 15, number: int = 20_000) -> dict[str, float]:
    """Median nanoseconds per call for each contender, rounds interleaved so drift hits all alike."""
    funcs = contenders(path)
    samples: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(rounds):
        for name, func in funcs.items():
            samples[name].append(timeit.timeit(func, number=number) / number * 1e9)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else os.getcwd()
    medians = measure(path)
    floor = medians['os.statvfs']
    print(f'per-call time on {path} ({diskguard.usage(path).fs_type}), median of 15 rounds x 20000 calls')
    print(f'{"contender":<32} {"ns/call":>9} {"vs os.statvfs":>14}')
    for name, ns in medians.items():
        print(f'{name:<32} {ns:>9.0f} {ns / floor:>13.2f}x')
    usage_ratio = medians['diskguard.usage'] / floor
    check_ratio = medians['diskguard.check'] / floor
    print(f'targets: usage {usage_ratio:.2f}x (<= 1.3x), check {check_ratio:.2f}x (<= 2x)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
