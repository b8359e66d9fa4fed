"""diskguard.usage() against `df` on real filesystems: tmpfs, reserved-block ext4, overlay and /."""

from __future__ import annotations

import errno
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import diskguard
import pytest
from conftest import as_user, ext4_reserved_blocks, fill_until_enospc, mounted_tmpfs

NUMBER_FIELDS = 'size,used,avail,pcent,fstype,source'
INODE_FIELDS = 'itotal,iused,iavail,ipcent'


def df(path: Path | str) -> dict[str, str]:
    """What `df -B1` and `df -i` print for the filesystem holding `path`."""

    def row(*args: str) -> str:
        out = subprocess.run(['df', *args, str(path)], check=True, capture_output=True, text=True).stdout
        return out.splitlines()[1]

    size, used, avail, pcent, fstype, source = row('-B1', f'--output={NUMBER_FIELDS}').split()
    itotal, iused, iavail, ipcent = row(f'--output={INODE_FIELDS}').split()
    target = row('--output=target').strip()
    return {
        'size': size,
        'used': used,
        'avail': avail,
        'pcent': pcent,
        'fstype': fstype,
        'source': source,
        'itotal': itotal,
        'iused': iused,
        'iavail': iavail,
        'ipcent': ipcent,
        'target': target,
    }


def as_df(u: diskguard.DiskUsage) -> dict[str, str]:
    """Our figures rendered the way df renders them (Use% rounded up, '-' where df has none)."""
    inodes = u.inodes_total is not None
    return {
        'size': str(u.total),
        'used': str(u.used),
        'avail': str(u.avail),
        'pcent': f'{math.ceil(u.percent_used)}%' if u.used + u.avail else '-',
        'fstype': u.fs_type,
        'source': str(u.device),
        'itotal': str(u.inodes_total) if inodes else '0',
        'iused': str(u.inodes_used) if inodes else '0',
        'iavail': str(u.inodes_free) if inodes else '0',
        'ipcent': f'{math.ceil(u.inodes_percent_used or 0)}%' if inodes else '-',
        'target': str(u.mount_point),
    }


def assert_matches_df(path: Path | str) -> diskguard.DiskUsage:
    """Compares every figure with df. On a busy shared disk the figures move between the two
    programs, so it takes a reading only when df agrees with itself before and after ours."""
    for _ in range(20):
        before = df(path)
        ours = diskguard.usage(path)
        after = df(path)
        if before == after:
            assert as_df(ours) == before
            return ours
    pytest.fail(f'{path}: df never read the same twice in a row; the filesystem is too busy to compare')


def test_tmpfs_matches_df(tmpfs: Path) -> None:
    (tmpfs / 'data').write_bytes(os.urandom(3 * 1024 * 1024))
    for i in range(10):
        (tmpfs / f'f{i}').write_text('x')
    u = assert_matches_df(tmpfs)
    assert u.fs_type == 'tmpfs'
    assert u.total == 16 * 1024 * 1024
    assert u.used >= 3 * 1024 * 1024
    assert u.reserved == 0, 'tmpfs reserves nothing for root'
    assert u.inodes_total == 64
    assert u.inodes_used == 12, 'root directory, data and ten files'
    assert u.mount_point == str(tmpfs)
    assert u.path_exists and u.queried_path == str(tmpfs)


def test_reserved_block_ext4_matches_df(ext4) -> None:
    (ext4.mount_point / 'ckpt').write_bytes(os.urandom(10 * 1024 * 1024))
    os.sync()
    u = assert_matches_df(ext4.mount_point)
    assert u.fs_type == 'ext4'
    assert u.device == ext4.device
    assert u.mount_point == str(ext4.mount_point), 'the space in the mount point is decoded'
    # free includes root's reserve, avail does not. The gap is the superblock's reserved blocks
    # (-m 5) plus up to 2% the kernel holds back for delayed allocation.
    assert u.free == u.avail + u.reserved
    assert u.total == u.used + u.free
    reserved_blocks, blocks, block_size = ext4_reserved_blocks(ext4.image)
    assert reserved_blocks == blocks * 5 // 100
    assert reserved_blocks * block_size <= u.reserved <= (reserved_blocks + blocks // 50) * block_size
    # df's Use% leaves the reserve out of the denominator, so it reads higher than used/total.
    assert u.percent_used > 100 * u.used / u.total
    assert u.inodes_total is not None and u.inodes_total >= 128


def test_root_filesystem_matches_df() -> None:
    u = assert_matches_df('/')
    assert u.mount_point == '/'


def test_non_root_user_hits_enospc_when_percent_used_reaches_100(ext4) -> None:
    """The failure we exist for: used/total says ~95%, yet a non-root job can write nothing more."""
    ext4.mount_point.chmod(0o777)
    with as_user():
        written = fill_until_enospc(ext4.mount_point)
    os.sync()
    u = assert_matches_df(ext4.mount_point)
    assert written > 0
    assert u.avail < 1024 * 1024, 'nothing left for non-root'
    assert u.reserved > 0 and u.free >= u.reserved, 'only the root reserve is left'
    assert u.used / u.total < 0.97, 'the naive used/total never reaches 100%'
    assert u.percent_used > 99.0, "df's percent says full, which is what the job sees"
    result = diskguard.check(ext4.mount_point)
    assert result.level == diskguard.Level.CRITICAL
    # Root can still write into the reserve: the numbers are right for the job, not for root.
    (ext4.mount_point / 'root-can').write_bytes(b'x' * 4096)


def test_inode_exhaustion_is_reported_while_bytes_are_free(tmpfs: Path) -> None:
    created = 0
    with pytest.raises(OSError) as exhausted:
        while True:
            (tmpfs / f'n{created}').touch()
            created += 1
    assert exhausted.value.errno == errno.ENOSPC
    u = assert_matches_df(tmpfs)
    assert u.inodes_free == 0 and u.inodes_percent_used == 100.0
    assert u.avail > 15 * 1024 * 1024, 'bytes are nearly all free'
    result = diskguard.check(tmpfs)
    assert result.level == diskguard.Level.CRITICAL
    assert any(r.startswith('inodes 100.0% used') for r in result.reasons), result.reasons


def test_missing_path_is_answered_by_nearest_existing_ancestor(tmpfs: Path) -> None:
    target = tmpfs / 'runs' / 'exp1' / 'checkpoints'
    u = diskguard.usage(target)
    assert u.path == str(target)
    assert u.queried_path == str(tmpfs)
    assert not u.path_exists
    assert u.mount_point == str(tmpfs)
    assert u.total == 16 * 1024 * 1024
    target.mkdir(parents=True)
    u = diskguard.usage(target)
    assert u.path_exists and u.queried_path == str(target)


def test_relative_missing_path_resolves_against_the_working_directory(tmpfs: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmpfs)
    u = diskguard.usage('not-yet')
    assert u.queried_path == '.' and not u.path_exists
    assert u.mount_point == str(tmpfs)


def test_overlay_is_flagged_and_reports_its_upper_filesystem(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / 'layers', size='8m', nr_inodes=None) as layers:
        for d in ('lower', 'upper', 'work'):
            (layers / d).mkdir()
        merged = tmp_path / 'merged'
        merged.mkdir()
        options = f'lowerdir={layers}/lower,upperdir={layers}/upper,workdir={layers}/work'
        mount = subprocess.run(['mount', '-t', 'overlay', 'overlay', '-o', options, str(merged)], check=False)
        if mount.returncode != 0:
            pytest.skip('the kernel here does not mount overlayfs')
        try:
            u = assert_matches_df(merged)
            assert u.is_overlay and u.fs_type == 'overlay'
            assert u.mount is not None and u.mount.is_overlay
            assert u.total == diskguard.usage(layers).total, 'statfs passes through to the upper layer'
        finally:
            subprocess.run(['umount', str(merged)], check=False)


def test_read_only_mount_is_flagged(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / 'ro') as where:
        subprocess.run(['mount', '-o', 'remount,ro', str(where)], check=True)
        u = diskguard.usage(where)
        assert u.read_only
        assert u.mount is not None and u.mount.read_only


def test_usage_accepts_str_bytes_and_pathlike(tmpfs: Path) -> None:
    expected = diskguard.usage(str(tmpfs)).total
    assert diskguard.usage(os.fsencode(tmpfs)).total == expected
    assert diskguard.usage(tmpfs).total == expected

    class Custom:
        def __fspath__(self) -> bytes:
            return os.fsencode(tmpfs)

    assert diskguard.usage(Custom()).total == expected  # type: ignore[arg-type]


def test_non_utf8_names_round_trip(tmpfs: Path) -> None:
    raw = os.fsencode(tmpfs) + b'/caf\xe9-\xff'
    os.mkdir(raw)
    u = diskguard.usage(raw)
    assert u.path_exists
    assert os.fsencode(u.path) == raw, 'surrogate escapes keep the original bytes'
    missing = diskguard.usage(raw + b'/\xfe\xfd/x')
    assert os.fsencode(missing.queried_path) == raw


@pytest.mark.parametrize(
    ('path', 'kind', 'words'),
    [
        ('', ValueError, ['path', 'non-empty']),
        ('/tmp/a\0b', ValueError, ['path', 'NUL']),
        (b'/tmp/a\0b', ValueError, ['path', 'NUL']),
    ],
)
def test_unusable_paths_raise_value_error_naming_the_argument(path, kind, words) -> None:
    with pytest.raises(kind) as raised:
        diskguard.usage(path)
    for word in words:
        assert word in str(raised.value)


def test_wrong_type_raises_type_error() -> None:
    with pytest.raises(TypeError, match=r'path=42: expected a path \(str, bytes or os.PathLike\), got int'):
        diskguard.usage(42)  # type: ignore[arg-type]


def test_os_failures_are_the_matching_oserror_subclass(tmp_path: Path) -> None:
    a_file = tmp_path / 'file'
    a_file.write_text('x')
    with pytest.raises(NotADirectoryError) as through_file:
        diskguard.usage(a_file / 'sub')
    assert through_file.value.errno == errno.ENOTDIR
    assert through_file.value.filename == str(a_file / 'sub')

    too_long = '/' + 'a' * 5000
    with pytest.raises(OSError) as long_name:
        diskguard.usage(too_long)
    assert long_name.value.errno == errno.ENAMETOOLONG
    assert long_name.value.filename == too_long


def test_permission_denied_for_an_unprivileged_user(open_dir: Path) -> None:
    private = open_dir / 'private'
    private.mkdir(mode=0o700)
    (private / 'inner').mkdir()
    with as_user():
        assert diskguard.usage(open_dir).path_exists, 'the open directory itself is reachable'
        with pytest.raises(PermissionError) as denied:
            diskguard.usage(private / 'inner')
    assert denied.value.errno == errno.EACCES
    assert denied.value.filename == str(private / 'inner')


def test_mounts_lists_the_table_with_decoded_names(ext4) -> None:
    table = diskguard.mounts()
    ours = [m for m in table if m.mount_point == str(ext4.mount_point)]
    assert len(ours) == 1
    m = ours[0]
    assert m.fs_type == 'ext4' and m.source == ext4.device and not m.read_only
    st = os.stat(ext4.mount_point)
    assert (m.major, m.minor) == (os.major(st.st_dev), os.minor(st.st_dev))
    assert any(m.mount_point == '/' for m in table)


def test_mounts_from_a_foreign_proc_root_reads_pid_one(tmp_path: Path) -> None:
    host_proc = tmp_path / 'host proc'
    (host_proc / '1').mkdir(parents=True)
    (host_proc / '1' / 'mountinfo').write_text(
        '1 0 8:1 / / rw - ext4 /dev/sda1 rw\n'
        '2 1 8:2 / /data\\040sets ro - xfs /dev/sdb1 rw\n'
        '3 1 0:40 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw\n'
    )
    table = diskguard.mounts(host_proc)
    assert [m.mount_point for m in table] == ['/', '/data sets', '/var/lib/docker/overlay2/x/merged']
    assert table[1].read_only and table[1].fs_type == 'xfs'
    assert table[2].is_overlay
    with pytest.raises(FileNotFoundError):
        diskguard.mounts(host_proc, pid='self')
    with pytest.raises(ValueError, match='pid'):
        diskguard.mounts(host_proc, pid='../1')


def test_rust_logs_reach_the_diskguard_logger(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    assert [type(h) for h in logging.getLogger('diskguard').handlers] == [logging.NullHandler]
    with caplog.at_level(logging.DEBUG, logger='diskguard'):
        diskguard.usage(tmp_path / 'missing' / 'dir')
    records = [r for r in caplog.records if r.name.startswith('diskguard.')]
    assert any('measured its ancestor' in r.getMessage() for r in records), caplog.records
    assert all(r.name == 'diskguard.usage' for r in records)


def test_import_pulls_in_no_heavy_frameworks() -> None:
    code = 'import sys, diskguard; print(sorted(m for m in ("torch", "lightning", "pytorch_lightning", "lightning_fabric", "transformers") if m in sys.modules))'
    out = subprocess.run([sys.executable, '-c', code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == '[]'


def test_records_read_like_python(tmpfs: Path) -> None:
    u = diskguard.usage(tmpfs)
    assert repr(u).startswith(f"DiskUsage(path='{tmpfs}', total={16 * 2**20}, used=")
    assert repr(u.mount) == f"Mount(mount_point='{tmpfs}', fs_type='tmpfs', source='tmpfs', read_only=False)"
    assert repr(diskguard.check(tmpfs)) == f"CheckResult(level=Level.OK, reasons=[], path='{tmpfs}')"
    assert repr(diskguard.Level.WARN) == 'Level.WARN' and str(diskguard.Level.WARN) == 'warn'
