"""``diskguard du`` and ``diskguard.du``: the same totals as coreutils ``du``, hard links once, no
symlink following, one filesystem, owners, unreadable directories, cancellation; and ``orphans``."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import diskguard
import diskguard.ops.commands  # imported as root: the unprivileged user cannot read the stdlib here
import diskguard.ops.watch
import pytest
from conftest import NOBODY, as_user, mounted_tmpfs, run, slow_fuse
from diskguard.cli import main

MIB = 1024 * 1024


def coreutils_du(path: Path, *extra: str) -> int:
    out = subprocess.run(
        ['du', '-s', '-x', '-B1', *extra, str(path)], check=True, capture_output=True, text=True
    )
    return int(out.stdout.split()[0])


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / 'tree'
    (root / 'alice' / 'ckpt').mkdir(parents=True)
    (root / 'bob').mkdir()
    (root / 'alice' / 'ckpt' / 'model.pt').write_bytes(b'\1' * 3 * MIB)
    (root / 'alice' / 'notes.txt').write_bytes(b'hello')
    with open(root / 'bob' / 'sparse', 'wb') as f:
        f.truncate(50 * MIB)  # 50 MiB long, nothing allocated
    os.link(root / 'alice' / 'ckpt' / 'model.pt', root / 'bob' / 'model-link.pt')
    os.symlink('/usr', root / 'bob' / 'usr-link')
    os.chown(root / 'bob', NOBODY, NOBODY)
    os.chown(root / 'bob' / 'sparse', NOBODY, NOBODY)
    return root


def test_totals_match_coreutils_du(tree: Path) -> None:
    r = diskguard.du(tree)
    assert r.allocated == coreutils_du(tree)
    assert r.apparent == coreutils_du(tree, '--apparent-size')
    assert r.errors == 0 and not r.cancelled
    children = {c.name: c for c in r.children}
    # The hard link counts once, under whichever name was met first; the symlink is not followed.
    assert children['alice'].allocated + children['bob'].allocated + 4096 >= 3 * MIB
    assert r.allocated < 4 * MIB + 64 * 1024
    assert children['bob'].apparent >= 50 * MIB  # sparse: long but not allocated
    assert children['bob'].uid == NOBODY


def test_reports_pickle(tree: Path) -> None:
    report = diskguard.du(tree)
    back = pickle.loads(pickle.dumps(report))
    fields = ['root', 'allocated', 'apparent', 'files', 'dirs', 'errors', 'error_samples']
    fields += ['other_filesystems', 'cancelled']
    assert [getattr(back, f) for f in fields] == [getattr(report, f) for f in fields]
    entry = ['name', 'is_dir', 'uid', 'allocated', 'apparent', 'files', 'dirs']
    assert report.children, 'the tree has entries'
    assert [[getattr(c, f) for f in entry] for c in back.children] == [
        [getattr(c, f) for f in entry] for c in report.children
    ]
    owner = ['uid', 'allocated', 'apparent', 'files', 'dirs']
    assert [[getattr(o, f) for f in owner] for o in back.owners] == [
        [getattr(o, f) for f in owner] for o in report.owners
    ]


def test_other_filesystems_are_skipped_unless_asked(tree: Path) -> None:
    with mounted_tmpfs(tree / 'alice' / 'mnt', size='8m', nr_inodes=None) as inner:
        (inner / 'big').write_bytes(b'\1' * 2 * MIB)
        one = diskguard.du(tree)
        both = diskguard.du(tree, one_filesystem=False)
        assert one.other_filesystems == 1
        assert both.allocated - one.allocated >= 2 * MIB
        assert one.allocated == coreutils_du(tree)


def test_cli_by_dir_by_user_top_and_json(tree: Path) -> None:
    done = run('du', str(tree), '--top', '1')
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ['SIZE', 'APPARENT', 'FILES']
    assert lines[1].split()[-1] in ('alice/', 'bob/') and '... and 1 more' in done.stdout
    assert lines[-1].endswith(f'total of {tree}')
    users = json.loads(run('du', str(tree), '--by', 'user', '--json').stdout)
    names = {u['name'] for u in users['top']}
    assert names == {'root', 'nobody'}
    assert sum(u['allocated_bytes'] for u in users['top']) == users['allocated_bytes']
    by_size = json.loads(run('du', str(tree), '--json', '--apparent-size').stdout)
    assert by_size['top'][0]['name'] == 'bob/' and by_size['top'][0]['owner'] == 'nobody'


def test_unreadable_directories_are_counted_not_fatal(
    open_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (open_dir / 'mine' / 'deep').mkdir(parents=True)
    (open_dir / 'locked').mkdir(mode=0o700)
    (open_dir / 'locked' / 'x').write_bytes(b'x' * 10_000)
    with as_user():
        r = diskguard.du(open_dir)
    assert r.errors == 1 and 'locked' in r.error_samples[0] and 'Permission denied' in r.error_samples[0]
    with as_user():
        code = main(['du', str(open_dir)])
    out = capsys.readouterr()
    assert code == 0 and 'could not be read' in out.err and f'total of {open_dir}' in out.out


def test_progress_callback_errors_cancel_the_scan_and_the_gil_is_free(open_dir: Path) -> None:
    ticks: list[float] = []
    with slow_fuse(open_dir / 'slow', statfs_delay=0.0, getattr_delay=1.5) as where:
        calls: list[tuple[int, int]] = []

        def progress(entries: int, allocated: int) -> None:
            calls.append((entries, allocated))
            if len(calls) == 3:
                raise RuntimeError('stop here')

        def tick() -> None:
            for _ in range(10):
                ticks.append(time.monotonic())
                time.sleep(0.05)

        other = threading.Thread(target=tick)
        started = time.monotonic()
        other.start()
        with pytest.raises(RuntimeError, match='stop here'):
            diskguard.du(where, progress=progress)
        other.join()
    assert len(calls) == 3
    assert time.monotonic() - started < 10
    assert len(ticks) == 10  # another thread ran while the scan waited on the slow mount


def test_ctrl_c_stops_the_command(open_dir: Path) -> None:
    inside = threading.Event()
    with slow_fuse(open_dir / 'slow', statfs_delay=0.0, getattr_delay=2.0, getattr_seen=inside) as where:
        # As from a terminal: a shell's background job (`pytest &`) ignores SIGINT, a child inherits
        # an ignored signal (a handled one is reset at exec), and Python keeps it ignored.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            proc = subprocess.Popen(
                [sys.executable, '-m', 'diskguard', 'du', str(where)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        # Interrupt once du is inside the slow request, not after a guessed delay (under load
        # the interpreter may not have started by then, or the scan may have finished).
        assert inside.wait(timeout=60), 'du never reached the FUSE mount'
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert 'interrupted' in err and 'Traceback' not in err


@pytest.mark.parametrize(
    ('args', 'message'),
    [
        (['--top', '0'], "--top='0'"),
        (['--top', 'many'], "--top='many'"),
        (['--top', '99999999999'], '--top='),
        (['--threads', '0'], "--threads='0'"),
        (['--threads', '1000'], "--threads='1000'"),
        (['--by', 'size'], 'invalid choice'),
    ],
)
def test_bad_du_arguments(tree: Path, args: list[str], message: str) -> None:
    done = run('du', str(tree), *args)
    assert done.returncode == 2 and message in done.stderr and 'Traceback' not in done.stderr


def test_du_of_odd_roots(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / 'pipe')
    r = diskguard.du(tmp_path / 'pipe')  # examined, never opened: no hang
    assert r.files == 1 and r.children == []
    os.symlink('/usr', tmp_path / 'link')
    assert diskguard.du(tmp_path / 'link').files == 1  # the link itself, not /usr
    missing = run('du', str(tmp_path / 'missing'))
    # A DIR that does not exist is a usage error (2), the same in every subcommand but check.
    assert missing.returncode == 2 and missing.stderr.startswith("diskguard: error: DIR='")
    with pytest.raises(ValueError, match='threads=0'):
        diskguard.du(tmp_path, threads=0)
    with pytest.raises(TypeError, match='threads=True'):
        diskguard.du(tmp_path, threads=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        diskguard.du('')
    with pytest.raises(TypeError, match=r'^dir=123: expected a path'):
        diskguard.du(123)  # type: ignore[arg-type]


def test_orphans_lists_then_deletes(tmp_path: Path) -> None:
    ckpt = tmp_path / 'ckpt'
    ckpt.mkdir()
    (ckpt / 'epoch=1.ckpt').write_bytes(b'PK' + b'\0' * 100)
    stale = ckpt / 'epoch=2.ckpt.tmp'
    stale.write_bytes(b'\0' * 4096)
    old = time.time() - 7200
    os.utime(stale, (old, old))
    listed = json.loads(run('orphans', str(ckpt), '--no-temp-dir', '--json').stdout)
    assert [o['path'] for o in listed['orphans']] == [str(stale)] and stale.exists()
    done = run('orphans', str(ckpt), '--no-temp-dir', '--delete')
    assert done.returncode == 0 and f'deleted  {stale}' in done.stdout
    assert not stale.exists() and (ckpt / 'epoch=1.ckpt').exists()
    assert run('orphans', str(ckpt), '--min-age', '-1h').returncode == 2
    assert run('orphans', str(ckpt / 'epoch=1.ckpt')).returncode == 2
    missing = run('orphans', str(tmp_path / 'missing'))
    assert missing.returncode == 2 and 'no such directory' in missing.stderr


def test_progress_goes_to_stderr_only_when_it_is_a_terminal(open_dir: Path) -> None:
    import pty

    with slow_fuse(open_dir / 'slow', statfs_delay=0.0, getattr_delay=0.5) as where:
        leader, follower = pty.openpty()
        try:
            on_tty = subprocess.run(
                [sys.executable, '-m', 'diskguard', 'du', str(where)],
                stdout=subprocess.PIPE, stderr=follower, timeout=60, check=False,
            )  # fmt: skip
            os.close(follower)
            seen = b''
            while True:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # EIO: the terminal's other end is closed and drained
                    break
                if not chunk:
                    break
                seen += chunk
        finally:
            os.close(leader)
        piped = run('du', str(where))
    assert b'scanned 0 entries' in seen, (on_tty, seen)
    assert 'scanned' not in piped.stderr
