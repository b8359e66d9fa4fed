"""``diskguard check``: Nagios exit codes, the status line and perfdata, JSON, budgets, and UNKNOWN
for every bad argument, on real size-limited tmpfs mounts."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import diskguard
import pytest
from conftest import run
from diskguard.ops.check import OK, UNKNOWN, WARNING, quote_label, worst

MIB = 1024 * 1024


def fill_to(where: Path, fraction: float, slack: int = 0) -> None:
    """Rewrites one filler file so that df's percent used is about ``fraction`` (plus ``slack`` bytes)."""
    filler = where / 'fill'
    filler.unlink(missing_ok=True)
    u = diskguard.usage(where)
    need = max(0, math.ceil(fraction * (u.used + u.avail)) - u.used + slack)
    filler.write_bytes(b'\1' * need)


PERF = re.compile(r"'([^']*)'=(\d+)B;(\d*);(\d*);0;(\d+)")


def perf_of(line: str) -> dict[str, tuple[int, int, int, int]]:
    data = line.split(' | ', 1)[1]
    return {m[1]: (int(m[2]), int(m[3]), int(m[4]), int(m[5])) for m in PERF.finditer(data)}


@pytest.mark.parametrize(
    ('fraction', 'code', 'name'), [(0.0, 0, 'OK'), (0.5, 1, 'WARNING'), (0.8, 2, 'CRITICAL')]
)
def test_exit_code_status_line_and_perfdata(tmpfs: Path, fraction: float, code: int, name: str) -> None:
    if fraction:
        fill_to(tmpfs, fraction, slack=8 * 4096)
    done = run('check', str(tmpfs), '-w', '40%', '-c', '70%')
    assert done.returncode == code, done.stdout + done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith(f'DISK {name} - {tmpfs} ')
    used, warn, crit, total = perf_of(first)[str(tmpfs)]
    u = diskguard.usage(tmpfs)
    assert total == u.total == 16 * MIB
    assert abs(used - u.used) <= 64 * 1024
    # Thresholds in used bytes of what non-root can use (df's denominator).
    assert warn == math.ceil(0.4 * (u.used + u.avail)) and crit == math.ceil(0.7 * (u.used + u.avail))
    inodes = re.search(rf"'{re.escape(str(tmpfs))} inodes'=(\d+);(\d+);(\d+);0;64", first)
    assert inodes is not None, first


def test_free_space_floors_become_used_byte_thresholds(tmpfs: Path) -> None:
    fill_to(tmpfs, 0.5, slack=8 * 4096)  # about 8 MiB avail
    done = run('check', str(tmpfs), '-w', '10MiB', '-c', '2MiB')
    assert done.returncode == 1, done.stdout
    used, warn, crit, _ = perf_of(done.stdout.splitlines()[0])[str(tmpfs)]
    u = diskguard.usage(tmpfs)
    assert warn == u.used + u.avail - 10 * MIB and crit == u.used + u.avail - 2 * MIB
    assert warn < used < crit


def test_inode_thresholds(tmpfs: Path) -> None:
    for i in range(40):  # 41 of 64 inodes: 64%
        (tmpfs / f'f{i}').touch()
    assert run('check', str(tmpfs), '--inodes-warn', '50%', '--inodes-critical', '90%').returncode == 1
    assert run('check', str(tmpfs), '--inodes-warn', '50%', '--inodes-critical', '60%').returncode == 2
    assert run('check', str(tmpfs)).returncode == 0


def test_worst_of_several_paths_and_json(tmpfs: Path, tmp_path: Path) -> None:
    fill_to(tmpfs, 0.5, slack=8 * 4096)
    done = run(
        'check', str(tmpfs), str(tmpfs / 'not-yet'), '-w', '40%', '-c', '90%', '--json', '--nearest-ancestor'
    )
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report['state'] == 'WARNING' and report['exit_code'] == 1
    first, second = report['filesystems']
    assert first['state'] == 'WARNING' and first['reasons']
    assert second['usage']['queried_path'] == str(tmpfs) and second['usage']['path_exists'] is False
    assert first['warning_used_bytes'] < first['usage']['used'] < first['critical_used_bytes']


def test_label_quoting() -> None:
    assert quote_label("it's") == "'it''s'"
    assert quote_label('a=b|c') == "'a\\x3db\\x7cc'"


def test_unknown_outranks_ok_but_not_a_real_problem() -> None:
    assert worst([OK, UNKNOWN]) == UNKNOWN
    assert worst([UNKNOWN, WARNING]) == WARNING
    assert worst([]) == OK


def test_an_unmeasurable_path_is_unknown(open_dir: Path) -> None:
    from conftest import as_user

    locked = open_dir / 'locked'
    locked.mkdir(mode=0o700)
    with as_user():
        from diskguard.ops.check import Limits, check_path

        r = check_path(str(locked / 'x'), Limits())
    assert r.state == UNKNOWN and r.usage is None and 'Permission denied' in r.reasons[0]


@pytest.mark.parametrize(
    'args',
    [
        ['-w', '150%'],
        ['-w', 'nan%'],
        ['-w', 'inf%'],
        ['-w', '0%'],
        ['-c', '-5%'],
        ['-w', 'lots'],
        ['-w', ''],
        ['-w', '90%', '-c', '80%'],
        ['-w', '1GiB', '-c', '2GiB'],
        ['--inodes-warn', '101%'],
        ['--inodes-warn', '96%'],
        ['--budget', '/tmp'],
        ['--budget', '/tmp=0'],
        ['--budget', '/tmp=-1GiB'],
        ['--textfile', '/nonexistent-dir'],
        ['--proc-root', '/nonexistent-proc'],
        ['--config', '/nonexistent.toml'],
        ['--bogus'],
        ['-w'],
        ['--webhook', 'ftp://x'],
        ['--email', 'not-an-address'],
        ['--email', 'ops@example.com', '--smtp-port', '70000'],
        ['--email', 'ops@example.com', '--smtp-login-file', '/nonexistent'],
    ],
)
def test_bad_arguments_are_unknown_in_one_line(args: list[str]) -> None:
    done = run('check', '/', *args)
    assert done.returncode == UNKNOWN, done.stdout + done.stderr
    assert done.stdout.startswith('DISK UNKNOWN - ') and len(done.stdout.splitlines()) == 1
    assert 'Traceback' not in done.stderr


@pytest.mark.parametrize(
    ('args', 'message'),
    [
        (['-w', '90%', '-c', '80%'], '--warning=90%: must not exceed --critical=80%'),
        (['--inodes-warn', '96%'], '--inodes-warn=96%: must not exceed --inodes-critical=95%'),
        (
            ['-w', '1GiB', '-c', '2GiB'],
            (
                '--warning=1.0 GiB free: must be at least --critical=2.0 GiB free '
                '(a warning comes before the critical floor)'
            ),
        ),
    ],
)
def test_threshold_order_errors_name_the_flags(args: list[str], message: str) -> None:
    """The core checks the order of the thresholds and says so in the flags' words (issue 21: the
    CLI no longer checks it again itself)."""
    assert run('check', '/', *args).stdout == f'DISK UNKNOWN - {message}\n'
    watch = run('watch', '/', '--once', '--state-file', '/nonexistent/s.json', *args)
    assert watch.returncode == 2 and watch.stderr == f'diskguard: error: {message}\n'


def test_a_fifo_path_is_measured_not_read(tmpfs: Path) -> None:
    os.mkfifo(tmpfs / 'pipe')
    done = run('check', str(tmpfs / 'pipe'))
    assert done.returncode == 0, done.stdout
    assert done.stdout.startswith(f'DISK OK - {tmpfs / "pipe"} ')


def test_budget_over_its_limit_is_critical_and_names_dir_owner_and_largest(tmpfs: Path) -> None:
    alice = tmpfs / 'alice'
    (alice / 'ckpt').mkdir(parents=True)
    (alice / 'ckpt' / 'model.pt').write_bytes(b'\1' * 3 * MIB)
    (alice / 'logs').mkdir()
    (alice / 'logs' / 'x.log').write_bytes(b'\1' * 100_000)
    (tmpfs / 'bob').mkdir()
    os.chown(tmpfs / 'bob', 65534, 65534)
    done = run('check', str(tmpfs), '--budget', f'{tmpfs}/*=2MiB', '--json')
    report = json.loads(done.stdout)
    assert done.returncode == 2
    budgets = {b['directory']: b for b in report['budgets']}
    a = budgets[str(alice)]
    assert a['state'] == 'CRITICAL' and a['owner'] == 'root' and a['limit_bytes'] == 2 * MIB
    assert a['allocated_bytes'] >= 3 * MIB
    assert [c['name'] for c in a['largest']] == ['ckpt', 'logs']
    assert budgets[str(tmpfs / 'bob')]['state'] == 'OK' and budgets[str(tmpfs / 'bob')]['owner'] == 'nobody'
    text = run('check', str(tmpfs), '--budget', f'{tmpfs}/*=2MiB')
    assert f'budget {alice} (owner root)' in text.stdout.splitlines()[0]
    assert 'largest: ckpt 3.0 MiB' in text.stdout


# -- issue 20: config paths, missing paths, units, budgets, failed alerts, wording, notes, textfiles ----


def test_check_config_reads_paths(tmpfs: Path, tmp_path: Path) -> None:
    """Issue 20.5: ``paths`` in --config is enough."""
    config = tmp_path / 'c.toml'
    config.write_text(f'paths = ["{tmpfs}"]\nwarning = "40%"\n')
    fill_to(tmpfs, 0.5, slack=8 * 4096)
    done = run('check', '--config', str(config))
    assert done.returncode == 1 and done.stdout.startswith(f'DISK WARNING - {tmpfs} '), done.stdout
    none = tmp_path / 'none.toml'
    none.write_text('warning = "40%"\n')
    assert run('check', '--config', str(none)).stdout.startswith(
        'DISK UNKNOWN - check: give at least one PATH'
    )


def test_a_missing_path_is_unknown_unless_its_ancestor_is_asked_for(tmpfs: Path) -> None:
    """Issue 20.6: a typo in a monitored path must not pass as OK for the nearest existing ancestor."""
    typo = tmpfs / 'workspce'
    done = run('check', str(typo))
    assert done.returncode == 3 and done.stdout.startswith(f'DISK UNKNOWN - {typo}: does not exist')
    asked = run('check', str(typo), '--nearest-ancestor')
    assert asked.returncode == 0 and asked.stdout.startswith(f'DISK OK - {typo} ')


@pytest.mark.parametrize('args', [['--budget', '/tmp/*=500'], ['--budget', '/tmp=4096'], ['-w', '85']])
def test_a_size_without_a_unit_is_refused_as_ambiguous(args: list[str]) -> None:
    """Issue 20.6: ``=500`` meant 500 bytes while ``-w 85`` was refused; now both are."""
    done = run('check', '/', *args)
    assert done.returncode == 3 and 'ambiguous' in done.stdout, done.stdout


def test_budgets_that_match_nothing_or_overlap_are_unknown(tmpfs: Path) -> None:
    """Issue 20.6: a glob matching nothing is reported; overlapping budgets are refused, naming both."""
    (tmpfs / 'users' / 'alice').mkdir(parents=True)
    nothing = run('check', str(tmpfs), '--budget', f'{tmpfs}/nobody-*=1GiB')
    assert nothing.returncode == 3, nothing.stdout
    assert f'budget UNKNOWN: {tmpfs}/nobody-*: cannot measure: matches no directory' in nothing.stdout
    both = run('check', str(tmpfs), '--budget', f'{tmpfs}/*=1GiB', '--budget', f'{tmpfs}/users/*=2GiB')
    assert both.returncode == 3, both.stdout
    assert f"{tmpfs}/users: cannot measure: overlaps budget '{tmpfs}/users/*'" in both.stdout
    apart = run('check', str(tmpfs), '--budget', f'{tmpfs}/users/*=1GiB')
    assert apart.returncode == 0, apart.stdout


def test_a_failed_alert_goes_to_stderr_json_and_the_exit_code_when_asked(tmpfs: Path) -> None:
    """Issue 17.6: never silent: each failed channel on stderr and in --json; --alert-failure-critical."""
    from test_ops_alerts import free_port

    fill_to(tmpfs, 0.5, slack=8 * 4096)
    args = ['check', str(tmpfs), '-w', '40%', '-c', '90%', '--proc-root', '/proc']
    args += ['--webhook', f'http://127.0.0.1:{free_port()}/hook']
    done = run(*args, '--json')
    assert done.returncode == 1
    ((alert),) = json.loads(done.stdout)['alerts']
    assert alert['channel'] == 'webhook (generic) to 127.0.0.1' and alert['ok'] is False
    assert 'Connection refused' in alert['error']
    assert 'diskguard check: alert via webhook (generic) to 127.0.0.1 not delivered: ' in done.stderr
    strict = run(*args, '--alert-failure-critical')
    assert strict.returncode == 2 and strict.stdout.startswith('DISK CRITICAL - ')
    assert 'alert not delivered via webhook (generic) to 127.0.0.1' in strict.stdout.splitlines()[0]


def test_check_alert_lines_carry_their_own_state_once(tmpfs: Path, tmp_path: Path) -> None:
    """Issue 20.7: each line says its state; a budget line appears once."""
    from test_ops_alerts import Recorder

    (tmpfs / 'alice').mkdir()
    (tmpfs / 'alice' / 'x.pt').write_bytes(b'\1' * 3 * MIB)
    hook = Recorder()
    url = tmp_path / 'url'
    url.write_text(hook.url)
    try:
        done = run(
            'check',
            str(tmpfs),
            '-w',
            '10%',
            '-c',
            '90%',
            '--budget',
            f'{tmpfs}/*=2MiB',
            '--webhook-file',
            str(url),
        )
    finally:
        hook.close()
    assert done.returncode == 2
    ((body),) = hook.bodies
    lines = body['text'].splitlines()
    assert lines[0].startswith(f'WARNING: {tmpfs} ') and lines[1].startswith(
        f'CRITICAL: budget {tmpfs}/alice '
    )
    assert len(lines) == 2 and body['text'].count(f'{tmpfs}/alice (owner') == 1
    assert body['title'].endswith(f': {tmpfs} WARNING, budget {tmpfs}/alice CRITICAL')


def test_the_container_note_once_on_stderr_and_proc_root_silences_it(tmpfs: Path) -> None:
    """Issue 20.8: cron mails whatever is printed: the note is not on stdout, once, and --proc-root
    (/proc when the container's view is what is wanted) silences it without another line."""
    from diskguard.ops.container import CONTAINER_NOTE, in_container

    done = run('check', str(tmpfs), str(tmpfs))
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 1
    assert done.stderr == (f'note: {CONTAINER_NOTE}\n' if in_container() else '')
    quiet = run('check', str(tmpfs), '--proc-root', '/proc')
    assert quiet.returncode == 0 and len(quiet.stdout.splitlines()) == 1 and quiet.stderr == ''


def test_check_and_watch_never_replace_each_others_textfile(tmpfs: Path, tmp_path: Path) -> None:
    """Issue 20.4: one producer per file: check's run leaves watch's budget and forecast series."""
    (tmpfs / 'alice').mkdir()
    textfiles = tmp_path / 'textfiles'
    textfiles.mkdir()
    common = [str(tmpfs), '--textfile', str(textfiles), '--proc-root', '/proc']
    watched = run(
        'watch', '--once', *common, '--budget', f'{tmpfs}/*=1GiB', '--state-file', str(tmp_path / 's')
    )
    assert watched.returncode == 0, watched.stderr
    watch_file = (textfiles / 'diskguard.prom').read_text()
    assert 'diskguard_budget_bytes{' in watch_file and 'diskguard_time_to_full_seconds{' in watch_file
    assert run('check', *common).returncode == 0
    assert (textfiles / 'diskguard.prom').read_text() == watch_file
    assert 'diskguard_level{' in (textfiles / 'diskguard-check.prom').read_text()
