"""A shared machine: another local user (a real unprivileged uid, 65534, acting through ``setpriv``)
controls names, files and symlinks in a sticky world-writable directory on a real tmpfs, while the
commands run as root. They must neither write where that user chooses nor let a name crash an
output or forge a line, a perfdata label or a terminal escape (issue 17, items 1 to 3).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NOBODY, mounted_tmpfs
from diskguard.ops import atomic
from diskguard.ops import escape as names
from diskguard.ops.budgets import Budget
from diskguard.ops.prometheus import TEXTFILE_NAME, MetricsServer, write_textfile
from diskguard.ops.watch import Settings, Watcher

HOSTILE_BUDGET = "x | 'root_fs'=0B;1;2;0;100 'x"


@pytest.fixture
def shared(open_dir: Path) -> Iterator[Path]:
    """A sticky, world-writable directory (mode 1777, like /tmp) on its own 32 MiB tmpfs."""
    with mounted_tmpfs(open_dir / 'shared', size='32m', nr_inodes=None) as where:
        where.chmod(0o1777)
        yield where


def as_other_user(*cmd: str | bytes | Path) -> None:
    """Runs ``cmd`` as the other user: uid and gid 65534, no supplementary groups."""
    subprocess.run(
        ['setpriv', '--reuid', str(NOBODY), '--regid', str(NOBODY), '--clear-groups', *cmd],
        check=True,
        capture_output=True,
        timeout=30,
    )


def as_other_user_python(code: str, *args: str | Path) -> None:
    """Runs Python ``code`` as the other user. The interpreter starts as root and drops to uid and
    gid 65534 at once, after loading the modules the code needs: a Python installed under /root (as
    pyenv's is, and CI's venvs point at it) is not readable by that user, so it cannot be exec'd as it."""
    prelude = f'import json, os, sys\nos.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})\n'
    subprocess.run([sys.executable, '-c', prelude + code, *args], check=True, capture_output=True, timeout=30)


def diskguard(*args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    """``diskguard ARGS`` as root, output kept as the bytes written."""
    return subprocess.run(
        [sys.executable, '-m', 'diskguard', *args], check=False, capture_output=True, timeout=120
    )


def victim(open_dir: Path) -> Path:
    """A root-owned 0600 file the other user would like the monitor to overwrite."""
    path = open_dir / 'victim'
    path.write_bytes(b'root only\n')
    path.chmod(0o600)
    return path


# -- 1. files are created exclusively beside their target ------------------------------------------


def test_state_file_and_textfile_never_follow_planted_symlinks(shared: Path, open_dir: Path) -> None:
    target = victim(open_dir)
    state = shared / 'watch.json'
    pid = os.getpid()
    # The names the monitor used to write through (pid-based), for this process, and the final names.
    for name in (f'watch.json.{pid}.tmp', f'.{TEXTFILE_NAME}.{pid}.tmp', TEXTFILE_NAME, 'watch.json'):
        as_other_user('ln', '-s', str(target), str(shared / name))

    watcher = Watcher(Settings(paths=[str(shared)], state_file=str(state), textfile=str(shared)))
    watcher.step()

    assert target.read_bytes() == b'root only\n'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    for path, mode in ((state, 0o600), (shared / TEXTFILE_NAME, 0o644)):
        st = path.lstat()
        assert stat.S_ISREG(st.st_mode), path
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, mode), path
    assert json.loads(state.read_text())['version'] == 1
    assert 'diskguard_up' in (shared / TEXTFILE_NAME).read_text()
    # Only the planted pid names remain (the other user's own links); no temporary file of ours.
    ours = {p.name for p in shared.iterdir() if p.name.endswith('.tmp') and not p.is_symlink()}
    assert ours == set()


def test_a_planted_temporary_name_is_skipped_not_opened(
    shared: Path, open_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = victim(open_dir)
    tokens = iter(['planted', 'fresh'])
    monkeypatch.setattr(atomic.secrets, 'token_hex', lambda _n: next(tokens))
    as_other_user('ln', '-s', str(target), str(shared / '.out.planted.tmp'))

    atomic.write_file(str(shared / 'out'), b'new\n', 0o640)

    assert target.read_bytes() == b'root only\n'
    assert (shared / '.out.planted.tmp').is_symlink()
    assert (shared / 'out').read_bytes() == b'new\n'
    assert stat.S_IMODE((shared / 'out').stat().st_mode) == 0o640
    assert not (shared / '.out.fresh.tmp').exists()


def test_the_mode_does_not_depend_on_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        atomic.write_file(str(tmp_path / 'metrics.prom'), b'x 1\n', 0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / 'metrics.prom').stat().st_mode) == 0o644


def test_a_directory_symlink_another_user_planted_is_not_followed(shared: Path, open_dir: Path) -> None:
    """``--textfile /tmp/prom`` or a state file under ``/tmp/dg/``: the other user's symlink there would
    send root's writes into a directory of their choosing (``fs.protected_symlinks=0`` here)."""
    elsewhere = open_dir / 'elsewhere'
    elsewhere.mkdir()
    as_other_user('ln', '-s', str(elsewhere), str(shared / 'prom'))
    as_other_user('ln', '-s', str(elsewhere), str(shared / 'dg'))

    with pytest.raises(PermissionError, match='not following'):
        write_textfile(str(shared / 'prom'), 'x 1\n')
    with pytest.raises(PermissionError, match='not following'):
        atomic.write_file(str(shared / 'dg' / 'watch.json'), b'{}', 0o600)
    assert list(elsewhere.iterdir()) == []

    # Symlinks root (or the directory's owner) made are followed as before, relative ones too.
    os.symlink('../elsewhere', shared / 'mine')
    (open_dir / 'link').symlink_to(shared / 'mine')
    write_textfile(str(open_dir / 'link'), 'x 1\n')
    assert (elsewhere / TEXTFILE_NAME).read_text() == 'x 1\n'


FORGED_STATE = """
import json, sys
state = {'version': 1, 'paths': {sys.argv[2]: {'level': 2, 'alerted_level': 2, 'alerted_at': 1e12}},
         'pending': [{'channel': 'webhook', 'alert': {'title': 'FORGED', 'lines': ['FORGED']},
                      'attempts': 0, 'next_attempt': 0, 'error': ''}], 'trends': {}}
open(sys.argv[1], 'w').write(json.dumps(state))
"""


@pytest.mark.parametrize('planted', ['fifo', 'dev-zero', 'forged'])
def test_a_state_file_another_user_planted_is_ignored(shared: Path, planted: str) -> None:
    """watch reads back only a state file it could have written: a FIFO would hang it at start,
    /dev/zero grow its memory without bound, and forged levels silence the next CRITICAL alert."""
    state = shared / 'watch.json'
    if planted == 'fifo':
        as_other_user('mkfifo', '-m', '666', str(state))
    elif planted == 'dev-zero':
        as_other_user('ln', '-s', '/dev/zero', str(state))
    else:
        as_other_user_python(FORGED_STATE, str(state), str(shared))
    script = (
        'import logging, sys; from diskguard.ops.watch import Settings, Watcher; logging.basicConfig(); '
        'w = Watcher(Settings(paths=[sys.argv[1]], state_file=sys.argv[2])); '
        'print(len(w.tracked), len(w.outbox.pending()))'
    )
    limit = 'import resource; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))'
    loaded = subprocess.run(
        [sys.executable, '-c', f'{limit}\n{script}', str(shared), str(state)],
        check=False, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ['0', '0'], loaded.stdout
    assert 'ignoring the state file' in loaded.stderr


# -- 2 and 3. names are data in every output --------------------------------------------------------


def assert_clean_text(output: bytes) -> str:
    """Valid UTF-8 with no terminal escape and no carriage return."""
    text = output.decode('utf-8')  # strict: raises on any byte that is not UTF-8
    assert '\x1b' not in text and '\r' not in text, text
    return text


def test_a_non_utf8_budget_directory_does_not_stop_the_textfile(shared: Path, open_dir: Path) -> None:
    as_other_user('mkdir', os.fsencode(shared) + b'/\xff\xfe')
    textfile = open_dir / 'textfile'
    textfile.mkdir()
    state = open_dir / 'state.json'

    watched = diskguard(
        'watch', str(shared), '--once', '--budget', f'{shared}/*=1GiB', '--textfile', str(textfile),
        '--state-file', str(state),
    )  # fmt: skip
    assert watched.returncode == 0, watched.stderr
    text = (textfile / TEXTFILE_NAME).read_bytes().decode('utf-8')
    assert f'directory="{shared}/\\\\xff\\\\xfe"' in text

    checked = diskguard('check', str(shared), '--budget', f'{shared}/*=1GiB', '--textfile', str(textfile))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert_clean_text(checked.stdout)

    as_json = diskguard('check', str(shared), '--budget', f'{shared}/*=1GiB', '--json')
    payload = json.loads(assert_clean_text(as_json.stdout))
    assert payload['budgets'][0]['directory'] == f'{shared}/\\xff\\xfe'


def test_metrics_scrape_with_a_non_utf8_name(shared: Path, open_dir: Path) -> None:
    as_other_user('mkdir', os.fsencode(shared) + b'/\xff')
    settings = Settings(
        paths=[str(shared)], state_file=str(open_dir / 's.json'), budgets=[Budget(f'{shared}/*', 1 << 30)]
    )
    watcher = Watcher(settings)
    watcher.server = MetricsServer('127.0.0.1', 0)
    try:
        watcher.step()
        url = f'http://127.0.0.1:{watcher.server.port}/metrics'
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            body = response.read().decode('utf-8')
        assert f'directory="{shared}/\\\\xff"' in body
    finally:
        watcher.server.close()


def test_a_budget_name_cannot_inject_perfdata(shared: Path) -> None:
    as_other_user('mkdir', str(shared / HOSTILE_BUDGET))
    as_other_user('dd', 'if=/dev/zero', f'of={shared / HOSTILE_BUDGET / "f"}', 'bs=64k', 'count=2')

    result = diskguard('check', str(shared), '--budget', f'{shared}/*=1KiB')
    first = assert_clean_text(result.stdout).splitlines()[0]
    assert result.returncode == 2
    text, perfdata = first.split(' | ')
    assert first.count('|') == 1, first
    assert HOSTILE_BUDGET.replace('|', '\\x7c') in text
    assert 'root_fs' not in perfdata
    # The long output (budget lines) cannot start long perfdata either.
    assert all('|' not in line for line in result.stdout.decode().splitlines()[1:])


def test_checkpoint_names_cannot_forge_prune_lines(shared: Path) -> None:
    for name in ('step=1\ndeleted important.ckpt', 'step=2\r\x1b[2Jall good.ckpt', 'step=3.ckpt'):
        as_other_user('sh', '-c', 'printf x > "$1"', 'sh', str(shared / name))
    result = diskguard('prune', str(shared), '--keep-last', '1', '--dry-run')
    text = assert_clean_text(result.stdout)
    assert result.returncode == 0, result.stderr
    assert not any(line.startswith('deleted') for line in text.splitlines()), text
    assert 'step=1\\x0adeleted important.ckpt' in text
    as_json = diskguard('prune', str(shared), '--keep-last', '1', '--dry-run', '--json')
    assert {i['name'] for i in json.loads(as_json.stdout)['plan']} >= {'step=1\ndeleted important.ckpt'}


def test_du_and_status_tables_escape_names(shared: Path) -> None:
    as_other_user('mkdir', str(shared / 'a\nb\x1b[31m'), os.fsencode(shared) + b'/\xff')
    table = assert_clean_text(diskguard('du', str(shared)).stdout)
    assert 'a\\x0ab\\x1b[31m/' in table and '\\xff/' in table
    as_json = diskguard('du', str(shared), '--json')
    names_found = {e['name'] for e in json.loads(assert_clean_text(as_json.stdout))['top']}
    assert {'a\nb\x1b[31m/', '\\xff/'} <= names_found

    status = diskguard('status', str(shared / 'a\nb\x1b[31m'), os.fsencode(shared) + b'/\xff')
    text = assert_clean_text(status.stdout)
    assert 'disk under ' + str(shared) + '/a\\x0ab\\x1b[31m' in text
    status_json = diskguard('status', os.fsencode(shared) + b'/\xff', '--json')
    assert json.loads(assert_clean_text(status_json.stdout))['path'] == f'{shared}/\\xff'


def test_mount_table_names_are_escaped(tmp_path: Path) -> None:
    proc = tmp_path / 'proc'
    (proc / '1').mkdir(parents=True)
    (proc / '1' / 'mountinfo').write_bytes(
        b'22 1 8:1 / / rw - ext4 /dev/sda1 rw\n'
        b'23 22 8:2 / /ws/\\377\\012fake\\033[2J rw - ext4 /dev/x\\012y rw\n'
    )
    table = assert_clean_text(diskguard('mounts', '--proc-root', str(proc)).stdout)
    assert len(table.splitlines()) == 3
    assert '/ws/\\xff\\x0afake\\x1b[2J' in table
    as_json = json.loads(assert_clean_text(diskguard('mounts', '--proc-root', str(proc), '--json').stdout))
    assert as_json[1]['mount_point'] == '/ws/\\xff\nfake\x1b[2J'


@pytest.mark.parametrize(
    ('name', 'expected'),
    [
        ('plain/name', 'plain/name'),
        ('a\nb', 'a\\x0ab'),
        ('\x1b[31m', '\\x1b[31m'),
        ('x\udcffy', 'x\\xffy'),
        ('rtl\u202eexe.txt', 'rtl\\u202eexe.txt'),
        ('tab\there', 'tab\\x09here'),
        ('caf\u00e9', 'caf\u00e9'),
        (b'raw\xfe', 'raw\\xfe'),
    ],
)
def test_text_rule(name: str | bytes, expected: str) -> None:
    assert names.text(name) == expected


def test_format_rules() -> None:
    assert names.nagios_label("it's a=b|c") == "'it''s a\\x3db\\x7cc'"
    assert names.nagios_text('a | b\nc') == 'a \\x7c b\\x0ac'
    assert names.prometheus_label('a"b\\c\nd\re\udcff') == 'a\\"b\\\\c\\nd\\\\x0de\\\\xff'
    dumped = names.json_dumps({'k\udcfe': ['\udcff', 'ok\n']})
    dumped.encode('utf-8')
    assert json.loads(dumped) == {'k\\xfe': ['\\xff', 'ok\n']}


# -- 7. bounded work per hostile file ---------------------------------------------------------------

HOSTILE_SAFETENSORS = """
import os, sys
claimed = 99 << 20
for n in range(int(sys.argv[2])):
    path = os.path.join(sys.argv[1], f'step={n}.safetensors')
    with open(path, 'wb') as f:
        f.write(claimed.to_bytes(8, 'little') + b'{')
        f.truncate(8 + claimed + 1024)
"""

READ_BYTES_OF_A_PLAN = """
import sys, diskguard

def rchar():
    with open('/proc/self/io') as f:
        return int(next(line for line in f if line.startswith('rchar:')).split()[1])

before = rchar()
plan = diskguard.plan(sys.argv[1], diskguard.RetentionPolicy(diskguard.KeepLast(1)))
print(rchar() - before, sum(1 for i in plan.items if not i.complete))
"""


def test_hostile_sparse_safetensors_cost_a_bounded_read_each(shared: Path) -> None:
    as_other_user_python(HOSTILE_SAFETENSORS, str(shared), '20')
    done = subprocess.run(
        [sys.executable, '-c', READ_BYTES_OF_A_PLAN, str(shared)],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    read, incomplete = map(int, done.stdout.split())
    assert incomplete >= 19  # every one but possibly the newest (kept as the newest complete? never)
    # Each header claims 99 MiB; a bounded check reads one 64 KiB piece of each.
    assert read < 20 * (1 << 20), f'read {read} bytes for 20 hostile files'


# VmHWM is this process's own peak (ru_maxrss would carry the forking test runner's peak across exec).
MAX_RSS_OF_MOUNTS = """
import sys
from diskguard.cli import main
code = main(['mounts', '--proc-root', sys.argv[1], '--json'])
with open('/proc/self/status') as f:
    peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith('VmHWM:'))
print(code, peak, file=sys.stderr)
"""


def mounts_memory(proc: Path) -> tuple[int, int, str]:
    done = subprocess.run(
        [sys.executable, '-c', MAX_RSS_OF_MOUNTS, str(proc)],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    code, rss = map(int, done.stderr.split()[-2:])
    return code, rss, done.stdout


def test_a_crafted_mount_table_cannot_exhaust_memory(tmp_path: Path) -> None:
    proc = tmp_path / 'proc'
    (proc / '1').mkdir(parents=True)
    line = b'1 1 0:1 / /m rw - t s rw\n'
    (proc / '1' / 'mountinfo').write_bytes(line * (20_000_000 // len(line)))
    code, rss, _ = mounts_memory(proc)
    assert code == 2  # refused: more mounts than any real host has
    assert rss < 300 << 20, f'{rss >> 20} MiB'
    # A real busy host's table (20,000 mounts) is still read whole.
    lines = b''.join(b'%d 1 0:1 / /m/%d rw - tmpfs tmpfs rw\n' % (n, n) for n in range(20_000))
    (proc / '1' / 'mountinfo').write_bytes(lines)
    code, _, out = mounts_memory(proc)
    assert code == 0 and len(json.loads(out)) == 20_000


# -- 8. du and budgets: what could not be read -------------------------------------------------------

DEEP_TREE = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
for _ in range(20):
    os.mkdir(sys.argv[2], dir_fd=fd)
    fd = os.open(sys.argv[2], os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
with open(os.open('f', os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), 'wb') as f:
    f.write(b'x' * (6 << 20))
"""


def test_a_deep_tree_is_measured_whole(shared: Path) -> None:
    as_other_user('mkdir', str(shared / 'deep'))
    as_other_user_python(DEEP_TREE, str(shared / 'deep'), 'd' * 250)
    result = diskguard('check', str(shared), '--budget', f'{shared}/*=1MiB', '--json')
    (budget,) = json.loads(result.stdout)['budgets']
    assert budget['errors'] == 0, budget
    assert budget['allocated_bytes'] >= 6 << 20
    assert (budget['state'], result.returncode) == ('CRITICAL', 2)
    du = json.loads(diskguard('du', str(shared), '--json').stdout)
    assert du['errors'] == 0 and du['allocated_bytes'] >= 6 << 20


def test_a_budget_not_fully_measured_is_unknown_not_ok(shared: Path) -> None:
    from conftest import as_user
    from diskguard.ops.budgets import measure
    from diskguard.ops.check import UNKNOWN

    (shared / 'project' / 'locked').mkdir(parents=True)
    (shared / 'project' / 'locked').chmod(0o700)
    (shared / 'project').chmod(0o755)
    with as_user():
        result = measure(Budget(str(shared / 'project'), 1 << 30), str(shared / 'project'))
    assert result.errors == 1
    assert result.state == UNKNOWN
    assert 'locked' in result.describe() and 'at least' in result.describe()
