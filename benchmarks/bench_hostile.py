"""What another user's files and connections cost the tools (issue 17): guard start with hostile
checkpoints beside honest ones, and the monitor's loop with idle ``/metrics`` connections.

Run: ``python benchmarks/bench_hostile.py [--files 100] [--rounds 5] [--connections 300,1000,3000]``.

1. Guard start: a directory of FILES sparse ``step=N.safetensors`` files whose header claims
   99 MiB (a few KiB on disk each), next to the same number of small honest checkpoints (the
   baseline). Prints the median ``DiskGuard(dir)`` start time of each side by side and the ratio.
   Target: under 1 s with 100 hostile files.
2. Idle connections: ``diskguard watch --interval 1s --listen`` limited to 256 descriptors, and N idle
   connections to it; prints, for each N, the longest gap between two textfile rewrites (the loop is
   on time when it stays near the 1 s interval).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import diskguard


def hostile(directory: str, files: int) -> None:
    claimed = 99 << 20
    for n in range(files):
        with open(os.path.join(directory, f'step={n}.safetensors'), 'wb') as f:
            f.write(claimed.to_bytes(8, 'little') + b'{')
            f.truncate(8 + claimed + 1024)


def honest(directory: str, files: int) -> None:
    header = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    for n in range(files):
        with open(os.path.join(directory, f'step={n}.safetensors'), 'wb') as f:
            f.write(len(header).to_bytes(8, 'little') + header + bytes(8))


def start_time(directory: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        guard = diskguard.DiskGuard(directory)
        guard.status()
        times.append(time.perf_counter() - started)
        del guard
    return statistics.median(times)


def guard_start(files: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        honest(a, files)
        hostile(b, files)
        base, ours = start_time(a, rounds), start_time(b, rounds)
    print(f'guard start, {files} files (median of {rounds}):')
    print(f'  honest checkpoints   {base * 1000:8.1f} ms')
    print(f'  hostile sparse files {ours * 1000:8.1f} ms   ratio {ours / base:.2f}x')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def loop_gaps(connections: int, seconds: float = 8.0) -> tuple[int, float]:
    """(connections opened, longest gap between textfile rewrites) while they are held."""
    work = tempfile.mkdtemp()
    port = free_port()
    watch = subprocess.Popen(
        [
            'sh', '-c', 'ulimit -n 256 && exec "$@"', 'sh', sys.executable, '-m', 'diskguard', 'watch', work,
            '--interval', '1s', '--listen', f'127.0.0.1:{port}', '--textfile', work,
            '--state-file', os.path.join(work, 'state.json'),
        ],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    held: list[socket.socket] = []
    try:
        target = os.path.join(work, 'diskguard.prom')
        while not os.path.exists(target):
            time.sleep(0.05)
        # At most 20 s of opening: past a few thousand, connects wait on the kernel's SYN backlog.
        opening_ends = time.monotonic() + 20
        for _ in range(connections):
            if time.monotonic() > opening_ends:
                break
            try:
                held.append(socket.create_connection(('127.0.0.1', port), timeout=5))
            except OSError:
                break
        last_ino, last_change, longest = os.stat(target).st_ino, time.monotonic(), 0.0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ino = os.stat(target).st_ino
            now = time.monotonic()
            if ino != last_ino:
                longest = max(longest, now - last_change)
                last_ino, last_change = ino, now
            time.sleep(0.02)
        longest = max(longest, time.monotonic() - last_change)
        return len(held), longest
    finally:
        for s in held:
            s.close()
        watch.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            watch.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--files', type=int, default=100)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--connections', default='300,1000,3000')
    args = parser.parse_args()
    guard_start(args.files, args.rounds)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print('watch --interval 1s, ulimit -n 256, idle /metrics connections held for 8 s:')
    for n in map(int, args.connections.split(',')):
        opened, gap = loop_gaps(n)
        print(f'  {opened:6d} idle connections: longest gap between rewrites {gap:.2f} s')


if __name__ == '__main__':
    main()
