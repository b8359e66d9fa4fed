"""The GIL is released while a syscall blocks, so a hung mount never freezes the training process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import diskguard
import pytest
from conftest import slow_fuse


def assert_runs_alongside(call: Callable[[], object]) -> None:
    """Runs `call` (which blocks for about a second) in a thread; this thread must keep running."""
    go = threading.Event()
    finished = threading.Event()
    results: list[object] = []

    def worker() -> None:
        go.wait()  # start the call only once the main thread is watching
        results.append(call())
        finished.set()

    started = time.monotonic()
    thread = threading.Thread(target=worker)
    thread.start()
    # The longest stretch in which this thread could not run. Holding the GIL through the blocked
    # call would freeze it for the whole server delay; released, it only waits for switches.
    longest_stall = 0.0
    last = time.monotonic()
    go.set()
    while not finished.is_set():
        now = time.monotonic()
        longest_stall = max(longest_stall, now - last)
        last = now
    # The stall can end with the call already finished, so measure the last stretch too.
    longest_stall = max(longest_stall, time.monotonic() - last)
    elapsed = time.monotonic() - started
    thread.join()
    assert elapsed >= 0.9, 'the call really blocked for the server delay'
    assert longest_stall < 0.3, f'the main thread stalled {longest_stall:.2f}s while the call blocked'
    assert len(results) == 1


@pytest.mark.parametrize('call', [diskguard.usage, diskguard.check], ids=['usage', 'check'])
def test_other_threads_run_while_statfs_blocks(
    slow_statfs_mount: Path, call: Callable[[Path], object]
) -> None:
    assert_runs_alongside(lambda: call(slow_statfs_mount))


def test_other_threads_run_while_the_mount_is_resolved(open_dir: Path) -> None:
    """The mount fields resolve lazily (realpath and stat, which a hung mount blocks too)."""
    with slow_fuse(open_dir / 'slow', statfs_delay=0.0, getattr_delay=1.0) as where:
        u = diskguard.usage(where)
        assert_runs_alongside(lambda: u.mount_point)
        assert u.mount_point == str(where)


def test_slow_mount_reports_the_server_figures(slow_statfs_mount: Path) -> None:
    u = diskguard.usage(slow_statfs_mount)
    assert (u.total, u.avail, u.reserved) == (1000 * 4096, 500 * 4096, 100 * 4096)
    assert u.fs_type == 'fuse.slowfuse' and u.mount_point == str(slow_statfs_mount)
    assert (u.inodes_total, u.inodes_free) == (100, 40)
