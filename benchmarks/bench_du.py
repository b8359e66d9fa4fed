"""``diskguard.du`` next to ``du -s`` and a Python ``os.scandir`` walk on a generated tree, warm cache.

Run: ``python benchmarks/bench_du.py [--files 200000] [--rounds 5] [--dir DIR]``. It generates (once,
reused if present) a tree of FILES small files in nested directories under DIR (default
``/tmp/diskguard-bench-du``), reads it once to warm the cache, then times each contender in
interleaved rounds and prints medians and the ratio to ``du -s``. It also checks that all three agree
on the allocated total. Target: diskguard at least 2x faster than ``du -s`` with 2 cores.

Wall time only shows the parallel speed-up when the cores are free, so the CPU time (user + system)
of each contender and the load average are printed too: on a shared machine the CPU column says
whether each does the same work, the wall column how much of the machine it got.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import time
from collections.abc import Callable

import diskguard

FILES_PER_DIR = 100
DIRS_PER_LEVEL = 20


def generate(root: str, files: int) -> None:
    """``files`` files of 0 to 8 KiB, 100 per directory, in a tree 20 directories wide."""
    marker = os.path.join(root, f'.complete-{files}')
    if os.path.exists(marker):
        return
    made = 0
    directory = 0
    while made < files:
        parts = []
        n = directory
        while True:
            parts.append(f'd{n % DIRS_PER_LEVEL:02d}')
            n //= DIRS_PER_LEVEL
            if n == 0:
                break
        where = os.path.join(root, *parts)
        os.makedirs(where, exist_ok=True)
        for i in range(min(FILES_PER_DIR, files - made)):
            with open(os.path.join(where, f'f{i}'), 'wb') as f:
                f.write(b'x' * ((made * 37) % 8192))
            made += 1
        directory += 1
    open(marker, 'w').close()


def scandir_walk(root: str) -> int:
    """The straightforward Python answer: allocated bytes, hard links once, no symlink following."""
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [root]
    root_dev = os.lstat(root).st_dev
    total += os.lstat(root).st_blocks * 512
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if st.st_nlink > 1 and not entry.is_dir(follow_symlinks=False):
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                if entry.is_dir(follow_symlinks=False):
                    if st.st_dev != root_dev:
                        continue
                    stack.append(entry.path)
                total += st.st_blocks * 512
    return total


def du_s(root: str) -> int:
    out = subprocess.run(['du', '-s', '-x', '-B1', root], check=True, capture_output=True, text=True).stdout
    return int(out.split()[0])


def cpu_seconds() -> float:
    """User + system time of this process and its waited-for children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def du_halves_in_parallel(root: str) -> int:
    """Two ``du -s`` processes on disjoint halves of the tree at once: the machine's own answer to
    whether metadata system calls run in parallel here (if this is no faster than one ``du``, no
    threaded scanner can be either)."""
    parts = sorted(os.path.join(root, p) for p in os.listdir(root) if not p.startswith('.'))
    halves = [parts[: len(parts) // 2], parts[len(parts) // 2 :]]
    procs = [
        subprocess.Popen(['du', '-s', '-x', '-B1', '-c', *half], stdout=subprocess.PIPE, text=True)
        for half in halves
    ]
    total = os.lstat(root).st_blocks * 512
    for proc in procs:
        out, _ = proc.communicate()
        total += int(out.splitlines()[-1].split()[0])
    return total


def contenders(root: str) -> dict[str, Callable[[], int]]:
    return {
        'du -s -x': lambda: du_s(root),
        '2 du on halves': lambda: du_halves_in_parallel(root),
        'diskguard.du': lambda: diskguard.du(root).allocated,
        'os.scandir walk': lambda: scandir_walk(root),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--files', type=int, default=200_000)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--dir', default='/tmp/diskguard-bench-du')
    args = parser.parse_args()
    started = time.perf_counter()
    generate(args.dir, args.files)
    print(f'tree: {args.files:,} files under {args.dir} (ready in {time.perf_counter() - started:.1f} s)')
    funcs = contenders(args.dir)
    totals = {name: func() for name, func in funcs.items()}  # also warms the cache
    assert len(set(totals.values())) == 1, f'the contenders disagree: {totals}'
    samples: dict[str, list[float]] = {name: [] for name in funcs}
    cpu: dict[str, list[float]] = {name: [] for name in funcs}
    load = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, func in funcs.items():
            before = cpu_seconds()
            t = time.perf_counter()
            func()
            samples[name].append(time.perf_counter() - t)
            cpu[name].append(cpu_seconds() - before)
    medians = {name: statistics.median(v) for name, v in samples.items()}
    base = medians['du -s -x']
    cores = len(os.sched_getaffinity(0))
    print(
        f'warm cache, median of {args.rounds} interleaved rounds, {cores} cores, '
        f'load average {load:.1f} -> {os.getloadavg()[0]:.1f}, total {totals["du -s -x"]:,} B'
    )
    print(f'{"contender":<18} {"wall":>9} {"du / it":>8} {"CPU":>9}')
    for name, seconds in medians.items():
        print(
            f'{name:<18} {seconds * 1000:>7.0f}ms {base / seconds:>7.2f}x '
            f'{statistics.median(cpu[name]) * 1000:>7.0f}ms'
        )
    print(f'target: diskguard.du >= 2x faster than du -s: {base / medians["diskguard.du"]:.2f}x')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
