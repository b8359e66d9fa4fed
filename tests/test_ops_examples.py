"""The operations examples run: the cron line against a real tmpfs and a local SMTP server, and the
watch daemon's unit and config file (only machine-specific paths, hosts and ports substituted)."""

from __future__ import annotations

import configparser
import json
import shlex
import subprocess
import sys
from pathlib import Path

from diskguard.cli import build_parser
from test_ops_alerts import Mailbox

OPS = Path(__file__).resolve().parent.parent / 'examples' / 'ops'


def cron_command() -> list[str]:
    line = next(x for x in (OPS / 'diskguard.cron').read_text().splitlines() if x.startswith('0 8 '))
    command = line.split(None, 6)[6]  # minute hour day month weekday user COMMAND
    return shlex.split(command.replace('\\%', '%'))  # cron turns an unescaped % into a newline


def test_the_cron_check_mails_when_not_ok(tmpfs: Path, tmp_path: Path) -> None:
    args = cron_command()
    assert args[:3] == ['diskguard', 'check', '/workspace']
    (tmpfs / 'alice').mkdir()
    (tmpfs / 'alice' / 'ckpt.pt').write_bytes(b'\1' * 15 * 1024 * 1024)  # 15 of 16 MiB: critical
    login = tmp_path / 'smtp-login'
    login.write_text('ops\nsecret\n')
    textfiles = tmp_path / 'textfile'
    textfiles.mkdir()
    box = Mailbox(login=('ops', 'secret'))
    swap = {
        '/workspace': str(tmpfs),
        '/workspace/*=500GiB': f'{tmpfs}/*=8MiB',
        'smtp.example.com': '127.0.0.1',
        '/etc/diskguard/smtp-login': str(login),
        '/var/lib/prometheus/node-exporter': str(textfiles),
    }
    try:
        command = [swap.get(a, a) for a in args[1:]] + [
            '--smtp-port',
            str(box.port),
            '--smtp-security',
            'none',
        ]
        done = subprocess.run(
            [sys.executable, '-m', 'diskguard', *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        box.close()
    assert done.returncode == 2, done.stdout + done.stderr
    ((rcpt, msg),) = box.messages
    assert rcpt == ['ops@example.com'] and msg['Subject'].startswith('[diskguard] CRITICAL on ')
    body = msg.get_content()
    assert body.startswith(f'DISK CRITICAL - {tmpfs} ') and f'{tmpfs}/alice (owner root)' in body
    assert 'largest: ckpt.pt 15.0 MiB' in body
    assert 'diskguard_level{' in (textfiles / 'diskguard.prom').read_text()


def test_the_systemd_unit_and_config_run(tmp_path: Path) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(OPS / 'diskguard-watch.service')
    exec_start = shlex.split(unit['Service']['ExecStart'])
    assert exec_start[0] == '/usr/local/bin/diskguard' and unit['Service']['StateDirectory'] == 'diskguard'
    args = build_parser().parse_args(exec_start[1:])
    assert args.command == 'watch' and args.config == '/etc/diskguard/diskguard.toml'
    login = tmp_path / 'smtp-login'
    login.write_text('ops\nsecret\n')
    textfiles = tmp_path / 'textfile'
    textfiles.mkdir()
    config = (OPS / 'diskguard.toml').read_text()
    for old, new in {
        '/etc/diskguard/smtp-login': str(login),
        '/var/lib/prometheus/node-exporter': str(textfiles),
        '127.0.0.1:9101': '127.0.0.1:0',
        'smtp.example.com': '127.0.0.1',
    }.items():
        config = config.replace(old, new)
    (tmp_path / 'diskguard.toml').write_text(config)
    done = subprocess.run(
        [
            sys.executable,
            '-m',
            'diskguard',
            exec_start[1],
            '--config',
            str(tmp_path / 'diskguard.toml'),
            '--once',
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={'STATE_DIRECTORY': str(tmp_path / 'state'), 'PATH': '/usr/bin:/bin'},
    )
    assert done.returncode == 0, done.stderr
    state = json.loads((tmp_path / 'state' / 'watch.json').read_text())
    assert set(state['paths']) == {'/workspace', '/tmp'}
    assert 'diskguard_avail_bytes{path="/tmp"' in (textfiles / 'diskguard.prom').read_text()
