"""The diskguard command: the README's default job, JSON output, the mount table, and errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import diskguard
from conftest import run


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
    assert done.returncode == 2, 'exits with the Nagios code of CRITICAL'
    assert not done.stderr
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
    assert done.returncode == 2
    assert done.stderr.startswith('diskguard: error: warn=2: expected a fraction in (0, 1]')
    assert len(done.stderr.splitlines()) == 1 and 'Traceback' not in done.stderr


def test_status_exits_with_the_worst_level(tmpfs: Path) -> None:
    assert run('status', str(tmpfs)).returncode == 0
    (tmpfs / 'x').write_bytes(b'\0' * (14 * 1024 * 1024))  # 14 of 16 MiB: about 88%, past warn 85%
    warned = run('status', str(tmpfs))
    assert warned.returncode == 1, warned.stdout
    assert 'status      WARN' in warned.stdout
    (tmpfs / 'y').write_bytes(b'\0' * (1536 * 1024))  # past critical 95%
    assert run('status', str(tmpfs), '/').returncode == 2, 'the worst of several paths counts'


def test_status_takes_the_threshold_syntax_of_every_subcommand(tmpfs: Path) -> None:
    """Issue 21: ``-w/--warning PCT%|SIZE`` and ``-c/--critical PCT%|SIZE``, as check and watch."""
    (tmpfs / 'x').write_bytes(b'\0' * (12 * 1024 * 1024))  # 12 of 16 MiB: about 75%
    assert run('status', str(tmpfs)).returncode == 0
    warned = run('status', '-w', '70%', str(tmpfs))
    assert warned.returncode == 1 and not warned.stderr, warned.stderr
    assert 'status      WARN: ' in warned.stdout and 'used >= warn 70%' in warned.stdout
    assert run('status', '--warning', '70%', '-c', '74%', str(tmpfs)).returncode == 2
    floor = run('status', '--json', '-c', '8MiB', str(tmpfs))  # 4 MiB available, under an 8 MiB floor
    assert floor.returncode == 2 and not floor.stderr, floor.stderr
    assert json.loads(floor.stdout)['reasons'] == ['4.0 MiB available < min_free 8.0 MiB']
    assert run('status', '-w', '10MiB', str(tmpfs)).returncode == 1
    bad = run('status', '-w', '90%', '-c', '80%', str(tmpfs))
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1, bad.stderr
    assert bad.stderr.startswith('diskguard: error: ') and 'must not exceed' in bad.stderr


def test_status_old_fractions_still_work_with_a_deprecation_message(tmpfs: Path) -> None:
    """``--warn 0.85`` and ``--critical 0.95`` (fractions, for space and inodes) keep their meaning."""
    (tmpfs / 'x').write_bytes(b'\0' * (12 * 1024 * 1024))  # about 75%
    warned = run('status', '--warn', '0.7', str(tmpfs))
    assert warned.returncode == 1 and 'status      WARN' in warned.stdout
    assert warned.stderr == (
        'diskguard: warning: --warn 0.7 (a fraction) is deprecated: write -w 70% --inodes-warn 70%, '
        'as every subcommand takes it (PCT% used, or a SIZE of available space)\n'
    )
    critical = run('status', '-w', '50%', '--inodes-warn', '50%', '--critical', '0.74', '--json', str(tmpfs))
    assert critical.returncode == 2 and json.loads(critical.stdout)['level'] == 'critical'
    assert critical.stderr == (
        'diskguard: warning: --critical 0.74 (a fraction) is deprecated: write -c 74% --inodes-critical 74%, '
        'as every subcommand takes it (PCT% used, or a SIZE of available space)\n'
    )
    both = run('status', '--warn', '0.5', '--critical', '0.9', '--inodes-warn', '80%', str(tmpfs))
    assert both.returncode == 1 and len(both.stderr.splitlines()) == 2
    assert 'write -w 50%, ' in both.stderr and 'write -c 90% --inodes-critical 90%, ' in both.stderr
    # The fraction still sets the inode threshold too: 1 of 64 inodes used is past 1%.
    inodes = run('status', '--warn', '0.01', '--json', str(tmpfs))
    assert inodes.returncode == 1
    assert any(r.startswith('inodes ') for r in json.loads(inodes.stdout)['reasons'])


def test_errors_are_one_line_with_usage_or_unknown_codes(tmp_path: Path) -> None:
    bad_size = run('status', '--min-free', '0.5', str(tmp_path))
    assert bad_size.returncode == 2
    assert bad_size.stderr.startswith(
        "diskguard: error: --min-free='0.5': a size without a unit is ambiguous"
    )
    bytes_only = run('status', '--min-free', '1B', str(tmp_path))
    assert bytes_only.returncode == 0, bytes_only.stderr
    loop = tmp_path / 'loop'
    loop.symlink_to('loop')  # statfs fails with ELOOP: the state cannot be known
    failed = run('status', str(loop))
    assert failed.returncode == 3, failed.stderr
    assert failed.stderr.startswith('diskguard: error: [Errno 40] ') and str(loop) in failed.stderr
    assert len(failed.stderr.splitlines()) == 1
    fifo_proc = tmp_path / 'proc'
    (fifo_proc / 'self').mkdir(parents=True)
    os.mkfifo(fifo_proc / 'self' / 'mountinfo')
    fifo = run('mounts', '--proc-root', str(fifo_proc), '--pid', 'self')
    assert fifo.returncode == 2, fifo.stderr
    assert 'proc_root=' in fifo.stderr and 'regular file' in fifo.stderr


def test_names_that_are_not_utf8_are_printed_not_fatal(tmp_path: Path) -> None:
    odd = os.fsencode(tmp_path) + b'/caf\xe9'
    os.mkdir(odd)
    done = subprocess.run(
        [sys.executable, '-m', 'diskguard', 'status', odd], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    # Shown as an escape (diskguard.ops.escape.text), so the output stays valid UTF-8.
    assert b'caf\\xe9' in done.stdout
    done.stdout.decode('utf-8')


def test_misspelt_options_get_a_suggestion_and_the_subcommands_usage(tmp_path: Path) -> None:
    """Issue 20.9: ``--dryrun`` used to print the top-level usage, ``--warm`` no hint."""
    dry = run('prune', str(tmp_path), '--dryrun')
    assert dry.returncode == 2
    assert dry.stderr.startswith('usage: diskguard prune ')
    assert dry.stderr.rstrip().endswith('--dryrun: did you mean --dry-run?')
    keep = run('prune', str(tmp_path), '--keep-lst', '3')
    assert keep.returncode == 2 and 'did you mean --keep-last?' in keep.stderr
    warm = run('check', '/', '--warm', '80%')
    assert warm.returncode == 3 and warm.stdout.rstrip().endswith('--warm: did you mean --warning?')
    watch = run('watch', '/', '--once', '--intervall', '5s')
    assert watch.returncode == 2 and 'usage: diskguard watch' in watch.stderr
    assert 'did you mean --interval?' in watch.stderr


def test_a_dir_that_does_not_exist_is_a_usage_error_everywhere(tmp_path: Path) -> None:
    """Issue 20.9: one table: bad input exits 2 in every subcommand, 3 (UNKNOWN) in check only."""
    missing = str(tmp_path / 'missing')
    for args in (['du', missing], ['prune', missing, '--keep-last', '1'], ['orphans', missing]):
        done = run(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert (
            done.stderr
            == f"diskguard: error: DIR='{missing}': no such " + done.stderr.split(' no such ', 1)[1]
        )
    assert run('check', missing).returncode == 3
    assert run('du', str(tmp_path), '--top', '0').returncode == 2
    assert run('prune', str(tmp_path), '--keep-last', 'x').returncode == 2


def test_status_in_a_deleted_working_directory_is_a_clear_error(tmp_path: Path) -> None:
    """Issue 16's residue: it printed ``mount None`` and exited 0."""
    gone = tmp_path / 'gone'
    script = f'import os, sys; os.makedirs({str(gone)!r}, exist_ok=True); os.chdir({str(gone)!r}); os.rmdir({str(gone)!r}); from diskguard.cli import main; sys.exit(main(sys.argv[1:]))'
    # As the installed `diskguard` command runs: sys.path[0] is never the (deleted) working directory.
    # `python -c` puts the working directory there, and CPython 3.13.0 then fails every lookup of a
    # missing module attribute with "returned NULL without setting an exception" (PyO3's module
    # init makes one), which is CPython's bug, not what this test is about.
    env = {**os.environ, 'PYTHONSAFEPATH': '1'}
    for args in ([], ['status', '.'], ['status', 'sub/dir']):
        done = subprocess.run(
            [sys.executable, '-c', script, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
        assert done.returncode == 3, (args, done.stdout)
        assert done.stderr.startswith('diskguard: error: [Errno 2] the current directory was deleted')
        assert 'mount       None' not in done.stdout
    absolute = subprocess.run(
        [sys.executable, '-c', script, 'status', '/'],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert absolute.returncode in (0, 1, 2) and 'mount       /' in absolute.stdout


def test_demo_budget_takes_a_size_with_its_unit_as_every_other_option(tmp_path: Path) -> None:
    """``demo --budget 500`` ran a demo under 500 bytes while ``--min-free 500`` and ``--budget
    GLOB=500`` are refused as ambiguous: the same parser and the same one-line usage error (exit 2,
    naming the option, the value and what is allowed), before torch is even imported."""
    # --epochs 1 and --dir: should the value be taken, the run stays short and leaves nothing behind.
    demo = ['demo', '--epochs', '1', '--dir', str(tmp_path)]
    bare = run(*demo, '--budget', '500')
    assert (bare.returncode, bare.stdout) == (2, ''), bare.stdout
    assert bare.stderr == (
        "diskguard: error: --budget='500': a size without a unit is ambiguous: write '500GiB', or '4096B' "
        'for bytes\n'
    )
    for value, allowed in [
        ('lots', "expected a size such as '500GiB'"),
        ('0B', 'expected a size of at least one byte'),
    ]:
        wrong = run(*demo, '--budget', value)
        assert wrong.returncode == 2 and wrong.stdout == '', wrong.stdout
        assert wrong.stderr.startswith(f"diskguard: error: --budget='{value}': {allowed}"), wrong.stderr
    assert os.listdir(tmp_path) == []
