"""The diskguard command: the README's default job, JSON output, the mount table, and errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import diskguard


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, '-m', 'diskguard', *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def test_default_job_reports_the_current_directory(tmpfs: Path) -> None:
    done = run(cwd=tmpfs)
    assert done.returncode == 0, done.stderr
    assert f'mount       {tmpfs}  (tmpfs on tmpfs)' in done.stdout
    assert 'size        16.0 MiB' in done.stdout
    assert 'inodes      1 of 64 used' in done.stdout
    assert 'status      OK' in done.stdout


def test_status_json_matches_the_api(tmpfs: Path) -> None:
    (tmpfs / 'x').write_bytes(b'\0' * (31 * 512 * 1024))  # 15.5 of 16 MiB: 97%
    done = run('status', '--json', str(tmpfs / 'not-yet'))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    u = diskguard.usage(tmpfs)
    assert report['total'] == u.total and report['avail'] == u.avail and report['used'] == u.used
    assert report['queried_path'] == str(tmpfs) and report['path_exists'] is False
    assert report['level'] == 'critical' and report['reasons']


def test_mounts_lists_real_mounts(tmpfs: Path) -> None:
    done = run('mounts', '--json')
    assert done.returncode == 0, done.stderr
    table = json.loads(done.stdout)
    assert {'mount_point': str(tmpfs), 'fs_type': 'tmpfs'}.items() <= next(
        m for m in table if m['mount_point'] == str(tmpfs)
    ).items()
    text = run('mounts')
    assert str(tmpfs) in text.stdout and text.stdout.startswith('MOUNT POINT')


def test_bad_threshold_is_a_clear_error() -> None:
    done = run('status', '--warn', '2')
    assert done.returncode == 1
    assert done.stderr.startswith('diskguard: warn=2: expected a fraction in (0, 1]')
