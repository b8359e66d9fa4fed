"""Real filesystems for the tests: size-limited tmpfs, loop-mounted ext4 with reserved blocks, overlay,
and a btrfs subvolume under a qgroup limit (a real quota: writes fail with EDQUOT while statvfs
still shows room).

Each fixture mounts in ``setup`` and unmounts in ``teardown``. Mounting needs root (CI and the
developers' machines run as root); elsewhere the fixtures skip with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

NOBODY = 65534


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, capture_output=True, text=True)


def _require_mounting() -> None:
    if os.geteuid() != 0:
        pytest.skip('mounting test filesystems needs root (run as root, as CI does)')


def _umount(target: Path) -> None:
    result = subprocess.run(['umount', str(target)], check=False, capture_output=True, text=True)
    if result.returncode != 0:
        # Something still holds it open; detach it so the next test starts clean.
        subprocess.run(['umount', '-l', str(target)], check=False, capture_output=True, text=True)


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str = '16m', nr_inodes: int | None = 64) -> Iterator[Path]:
    _require_mounting()
    where.mkdir(parents=True, exist_ok=True)
    options = f'size={size}' + (f',nr_inodes={nr_inodes}' if nr_inodes else '')
    try:
        _run('mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(where))
    except subprocess.CalledProcessError as err:
        pytest.skip(f'cannot mount tmpfs here: {err.stderr.strip()}')
    try:
        yield where
    finally:
        _umount(where)


@dataclass
class Ext4:
    mount_point: Path
    image: Path
    device: str


@contextlib.contextmanager
def mounted_ext4(
    where: Path, image: Path, size_mb: int = 64, reserved_percent: int = 5, inodes: int = 128
) -> Iterator[Ext4]:
    _require_mounting()
    if shutil.which('mkfs.ext4') is None:
        pytest.skip('mkfs.ext4 is not installed (Debian package e2fsprogs)')
    where.mkdir(parents=True, exist_ok=True)
    with open(image, 'wb') as f:
        f.truncate(size_mb * 1024 * 1024)
    _run('mkfs.ext4', '-q', '-F', '-m', str(reserved_percent), '-N', str(inodes), str(image))
    try:
        _run('mount', '-o', 'loop', str(image), str(where))
    except subprocess.CalledProcessError as err:
        pytest.skip(f'cannot loop-mount ext4 here: {err.stderr.strip()}')
    try:
        device = _run('findmnt', '-n', '-o', 'SOURCE', '--target', str(where)).stdout.strip()
        yield Ext4(where, image, device)
    finally:
        _umount(where)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs with 64 inodes."""
    with mounted_tmpfs(tmp_path / 'tmpfs') as where:
        yield where


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A scratch directory every user can traverse (pytest's own tmp_path is root-only), for tests
    that act as an unprivileged user."""
    base = Path(tempfile.mkdtemp(prefix='diskguard-test-'))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def ext4(open_dir: Path) -> Iterator[Ext4]:
    """A 64 MiB ext4 image with a 5% root reserve and 128 inodes, mounted at a path with a space."""
    with mounted_ext4(open_dir / 'ext4 mnt', open_dir / 'ext4.img') as fs:
        yield fs


QUOTA_LIMIT = 64 * 1024 * 1024


@contextlib.contextmanager
def mounted_btrfs_quota(where: Path, image: Path, limit: int = QUOTA_LIMIT) -> Iterator[Path]:
    """A loop-mounted btrfs with quotas on and a subvolume limited to ``limit`` bytes; yields the
    subvolume. The filesystem itself (256 MiB) has room to spare, so only the quota says no."""
    _require_mounting()
    if shutil.which('mkfs.btrfs') is None:
        pytest.fail(
            'mkfs.btrfs is not installed: install the Debian/Ubuntu package btrfs-progs '
            '(apt-get install -y btrfs-progs); the EDQUOT tests need a real btrfs qgroup'
        )
    where.mkdir(parents=True, exist_ok=True)
    with open(image, 'wb') as f:
        f.truncate(256 * 1024 * 1024)
    _run('mkfs.btrfs', '-q', '-f', str(image))
    try:
        _run('mount', '-o', 'loop', str(image), str(where))
    except subprocess.CalledProcessError as err:
        pytest.skip(f'cannot loop-mount btrfs here: {err.stderr.strip()}')
    try:
        subvolume = where / 'quota'
        _run('btrfs', 'quota', 'enable', str(where))
        _run('btrfs', 'subvolume', 'create', str(subvolume))
        _run('btrfs', 'qgroup', 'limit', str(limit), str(subvolume))
        yield subvolume
    finally:
        _umount(where)


@pytest.fixture
def btrfs_quota(open_dir: Path) -> Iterator[Path]:
    """A btrfs subvolume limited to 64 MiB by a qgroup, on a 256 MiB filesystem."""
    with mounted_btrfs_quota(open_dir / 'btrfs', open_dir / 'btrfs.img') as subvolume:
        yield subvolume


def ext4_reserved_blocks(image: Path) -> tuple[int, int, int]:
    """(reserved block count, block count, block size) as the superblock records them."""
    out = subprocess.run(['dumpe2fs', '-h', str(image)], check=True, capture_output=True, text=True).stdout
    fields = dict(line.split(':', 1) for line in out.splitlines() if ':' in line)
    return (
        int(fields['Reserved block count']),
        int(fields['Block count']),
        int(fields['Block size']),
    )


@contextlib.contextmanager
def as_user(uid: int = NOBODY) -> Iterator[None]:
    """Runs the block with an unprivileged effective uid, as a training job in a container would."""
    os.setegid(uid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def fill_until_enospc(directory: Path, chunk: int = 64 * 1024) -> int:
    """Writes one file until the filesystem refuses; returns the bytes written."""
    written = 0
    block = b'\0' * chunk
    with open(directory / 'filler', 'wb', buffering=0) as f:
        while True:
            try:
                n = f.write(block)
            except OSError as err:
                assert err.errno == 28, err
                return written
            written += n or 0
            if not n:
                return written


@contextlib.contextmanager
def slow_fuse(
    where: Path, statfs_delay: float, getattr_delay: float = 0.0, getattr_seen: threading.Event | None = None
) -> Iterator[Path]:
    """A FUSE mount whose statfs (and optionally getattr) blocks, like a hung NFS server. Yields
    once the server has answered the kernel's INIT (the mount works); ``getattr_seen`` is set when
    a GETATTR reaches the server (a caller is then inside the slow request)."""
    _require_mounting()
    if not os.path.exists('/dev/fuse'):
        pytest.skip('no /dev/fuse on this machine: the kernel has no FUSE')
    where.mkdir()
    server = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).parent / 'slow_fuse.py'),
            str(where),
            str(statfs_delay),
            str(getattr_delay),
            *(['announce'] if getattr_seen is not None else []),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline().strip()
        if first != 'ready':
            pytest.skip(f'cannot mount FUSE here: {first}')
        # Mounted is not yet served: wait until the server has answered INIT.
        second = server.stdout.readline().strip()
        assert second == 'initialized', f'the FUSE server did not start: {second!r}'
        if getattr_seen is not None:
            threading.Thread(
                target=_watch_for_getattr, args=(server.stdout, getattr_seen), daemon=True
            ).start()
        yield where
    finally:
        _umount(where)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


def _watch_for_getattr(lines: IO[str], seen: threading.Event) -> None:
    for line in lines:  # ends when the server exits
        if line.strip() == 'getattr':
            seen.set()


@pytest.fixture
def slow_statfs_mount(open_dir: Path) -> Iterator[Path]:
    """A FUSE mount whose statfs blocks for one second (tests/slow_fuse.py)."""
    with slow_fuse(open_dir / 'slow', 1.0) as where:
        yield where


def run(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``diskguard ARGS`` in a subprocess of this interpreter, as a user would run the command."""
    return subprocess.run(
        [sys.executable, '-m', 'diskguard', *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )
