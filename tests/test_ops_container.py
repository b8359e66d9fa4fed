"""Containers: with the host's /proc (``--proc-root``), paths are reported by their host mount
points; without it, the commands say the container's view is all they see."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import diskguard
from diskguard.ops.container import CONTAINER_NOTE, host_path, in_container


def fake_host_proc(where: Path, lines: list[str]) -> Path:
    """A proc root whose pid 1 mount table is ``lines``, as the host's /proc would show it."""
    (where / '1').mkdir(parents=True)
    (where / '1' / 'mountinfo').write_text(''.join(line + '\n' for line in lines))
    return where


def host_line(mount_id: int, dev: tuple[int, int], root: str, mount_point: str) -> str:
    return f'{mount_id} 1 {dev[0]}:{dev[1]} {root} {mount_point} rw,relatime shared:1 - tmpfs tmpfs rw'


def test_host_mount_points_through_the_hosts_proc(tmpfs: Path, tmp_path: Path) -> None:
    (tmpfs / 'alice').mkdir()
    st = os.stat(tmpfs)
    dev = (os.major(st.st_dev), os.minor(st.st_dev))
    proc = fake_host_proc(
        tmp_path / 'host_proc',
        [
            host_line(1, (8, 1), '/', '/'),
            host_line(40, dev, '/', '/srv/data'),
            host_line(41, dev, '/', '/mnt/a\\040long/x'),
        ],
    )
    table = diskguard.mounts(proc)
    assert host_path(str(tmpfs / 'alice'), table) == '/srv/data/alice'
    assert host_path(str(tmpfs / 'not-yet'), table) == '/srv/data'  # answered by its existing ancestor
    done = subprocess.run(
        [sys.executable, '-m', 'diskguard', 'check', str(tmpfs / 'alice'), '--proc-root', str(proc), '--json'],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report['filesystems'][0]['host_path'] == '/srv/data/alice'
    assert report['notes'] == []
    text = subprocess.run(
        [sys.executable, '-m', 'diskguard', 'check', str(tmpfs), '--proc-root', str(proc)],
        capture_output=True, text=True, timeout=60, check=False,
    ).stdout  # fmt: skip
    assert f'{tmpfs}: host mount point /srv/data' in text


def test_a_bind_mounted_subdirectory_maps_to_its_host_directory(tmpfs: Path, tmp_path: Path) -> None:
    st = os.stat(tmpfs)
    dev = (os.major(st.st_dev), os.minor(st.st_dev))
    # The host sees the whole filesystem at /data; the container's mount is its subdirectory /ws.
    proc = fake_host_proc(tmp_path / 'host_proc', [host_line(40, dev, '/', '/data')])
    (tmpfs / 'ws').mkdir()
    bind = tmp_path / 'workspace'
    bind.mkdir()
    subprocess.run(['mount', '--bind', str(tmpfs / 'ws'), str(bind)], check=True)
    try:
        (bind / 'run1').mkdir()
        assert host_path(str(bind / 'run1'), diskguard.mounts(proc)) == '/data/ws/run1'
    finally:
        subprocess.run(['umount', str(bind)], check=False)


def test_no_host_view_says_so(tmpfs: Path, tmp_path: Path) -> None:
    other = fake_host_proc(tmp_path / 'host_proc', [host_line(1, (8, 1), '/', '/')])
    assert host_path(str(tmpfs), diskguard.mounts(other)) is None
    done = subprocess.run(
        [sys.executable, '-m', 'diskguard', 'check', str(tmpfs), '--json'],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    notes = json.loads(done.stdout)['notes']
    assert notes == ([CONTAINER_NOTE] if in_container() else [])


def test_du_reports_the_host_path(tmpfs: Path, tmp_path: Path) -> None:
    (tmpfs / 'alice').mkdir()
    st = os.stat(tmpfs)
    proc = fake_host_proc(
        tmp_path / 'host_proc', [host_line(40, (os.major(st.st_dev), os.minor(st.st_dev)), '/', '/srv')]
    )
    done = subprocess.run(
        [sys.executable, '-m', 'diskguard', 'du', str(tmpfs / 'alice'), '--proc-root', str(proc), '--json'],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)['host_path'] == '/srv/alice'
    text = subprocess.run(
        [sys.executable, '-m', 'diskguard', 'du', str(tmpfs / 'alice'), '--proc-root', str(proc)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert text.stdout.splitlines()[-1] == 'on the host: /srv/alice'
    missing = subprocess.run(
        [sys.executable, '-m', 'diskguard', 'du', str(tmpfs), '--proc-root', str(tmp_path / 'nope')],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert missing.returncode == 2 and missing.stderr.startswith('diskguard: error: --proc-root=')
