"""``diskguard watch``: alerts only on level changes (with hysteresis and a reminder period), a state
file that survives restarts (no re-alert, the trend kept), budgets alerting with directory, owner and
largest children, the TOML config, clean exit on SIGINT, and one-line errors for bad settings."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import diskguard
import diskguard.ops.check
import pytest
from conftest import run
from diskguard._diskguard import _Grading
from diskguard.ops.alerts import Email, SmtpSettings, Webhook
from diskguard.ops.budgets import Budget
from diskguard.ops.check import CRITICAL, OK, WARNING, Limits
from diskguard.ops.parse import Threshold
from diskguard.ops.watch import Settings, Watcher
from test_ops_alerts import Mailbox, Recorder, free_port
from test_ops_check import fill_to

MIB = 1024 * 1024


@pytest.fixture
def hook() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def settings(path: Path, state: Path, hook: Recorder, **more: object) -> Settings:
    return Settings(
        paths=[str(path)],
        limits=Limits(Threshold(fraction=0.5), Threshold(fraction=0.8)),
        hysteresis=0.1,
        reminder=3600.0,
        state_file=str(state),
        channels=[Webhook(hook.url)],
        **more,  # type: ignore[arg-type]
    )


def test_alerts_on_changes_only_with_hysteresis_and_reminders(
    tmpfs: Path, tmp_path: Path, hook: Recorder
) -> None:
    clock = Clock()
    w = Watcher(settings(tmpfs, tmp_path / 'state.json', hook), clock=clock)
    assert w.step() is None and hook.bodies == []  # OK from the start: nothing to say
    fill_to(tmpfs, 0.6)
    clock.now += 60
    alert = w.step()
    assert alert is not None and alert.state == 'WARNING' and 'WARNING (was OK)' in alert.text
    clock.now += 60
    assert w.step() is None  # still WARNING: no repeat
    fill_to(tmpfs, 0.45)  # below the threshold but within the hysteresis band
    clock.now += 60
    assert w.step() is None and w.tracked[str(tmpfs)].level == WARNING
    clock.now += 3600
    reminder = w.step()
    assert reminder is not None and 'still WARNING' in reminder.text
    fill_to(tmpfs, 0.9)
    clock.now += 60
    assert 'CRITICAL (was WARNING)' in (w.step() or pytest.fail('no alert')).text
    fill_to(tmpfs, 0.1)
    clock.now += 60
    assert 'OK (was CRITICAL)' in (w.step() or pytest.fail('no alert')).text
    w.finish()
    assert [b['state'] for b in hook.bodies] == ['WARNING', 'WARNING', 'CRITICAL', 'OK']


def test_each_path_is_measured_once_per_step(
    tmpfs: Path, tmp_path: Path, hook: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21: one measurement grades a path, at its thresholds and at the eased ones (it took
    two, which could also disagree on a disk that changed in between)."""
    measured: list[str] = []
    real = diskguard.ops.check.usage

    def counting(path: str) -> diskguard.DiskUsage:
        measured.append(path)
        return real(path)

    monkeypatch.setattr(diskguard.ops.check, 'usage', counting)
    (tmpfs / 'sub').mkdir()
    both = settings(tmpfs, tmp_path / 'state.json', hook)
    both.paths.append(str(tmpfs / 'sub'))
    clock = Clock()
    w = Watcher(both, clock=clock)
    fill_to(tmpfs, 0.6)
    assert w.step() is not None and measured == [str(tmpfs), str(tmpfs / 'sub')]
    fill_to(tmpfs, 0.45)  # within the hysteresis band: held, still from one measurement
    clock.now += 60
    assert w.step() is None and w.tracked[str(tmpfs)].level == WARNING
    assert measured == [str(tmpfs), str(tmpfs / 'sub')] * 2
    w.finish()


def with_hysteresis(previous: int, entering: int, staying: int) -> int:
    """The core's rule (watch grades with it) on Nagios states: UNKNOWN holds no level."""
    levels = (diskguard.Level.OK, diskguard.Level.WARN, diskguard.Level.CRITICAL)
    held = levels[previous] if previous < len(levels) else None
    return int(_Grading.settle(held, levels[entering], levels[staying]))


def test_with_hysteresis_rules() -> None:
    assert with_hysteresis(OK, WARNING, OK) == WARNING  # rising: at once
    assert with_hysteresis(WARNING, OK, WARNING) == WARNING  # inside the band: stays
    assert with_hysteresis(WARNING, OK, OK) == OK
    assert with_hysteresis(CRITICAL, OK, WARNING) == WARNING
    assert with_hysteresis(3, OK, OK) == OK  # from UNKNOWN, no band


def test_a_restart_neither_realerts_nor_forgets_the_trend(
    tmpfs: Path, tmp_path: Path, hook: Recorder
) -> None:
    clock = Clock()
    state = tmp_path / 'state.json'
    fill_to(tmpfs, 0.6)
    first = Watcher(settings(tmpfs, state, hook), clock=clock)
    for _ in range(5):
        first.step()
        clock.now += 60
    first.finish()
    assert len(hook.bodies) == 1
    saved = json.loads(state.read_text())
    assert saved['paths'][str(tmpfs)]['alerted_level'] == WARNING
    trend = saved['trends'][str(tmpfs)]  # keyed by mount point: the monitor's state_dict
    assert len(trend['monitor']['samples']) == 5 and trend['latest'] == clock.now - 60
    second = Watcher(settings(tmpfs, state, hook), clock=clock)
    assert len(second.trends[str(tmpfs)].monitor) == 5  # the trend's samples are back
    assert second.step() is None and len(hook.bodies) == 1
    assert len(second.trends[str(tmpfs)].monitor) == 6


def test_a_state_file_with_the_old_sample_list_still_restores_the_trend(
    tmpfs: Path, tmp_path: Path, hook: Recorder
) -> None:
    clock = Clock()
    state = tmp_path / 'state.json'
    samples = [[clock.now - 60.0 * (3 - i), 1000, 3000] for i in range(3)]
    state.write_text(json.dumps({'version': 1, 'paths': {}, 'budgets': {}, 'trends': {str(tmpfs): samples}}))
    w = Watcher(settings(tmpfs, state, hook), clock=clock)
    assert len(w.trends[str(tmpfs)].monitor) == 3
    w.step()
    assert len(json.loads(state.read_text())['trends'][str(tmpfs)]['monitor']['samples']) == 4


def test_watch_forecasts_as_the_trend_monitor_does_and_sees_a_ramp_within_minutes(
    tmpfs: Path, tmp_path: Path, hook: Recorder
) -> None:
    """A steady fill from about half full, sampled every 5 s (the issue's admin trial, where watch
    kept its own samples and said +Inf for minutes): watch's forecast is a TrendMonitor's, fed the
    same samples, and it answers once the ramp has lasted five minutes (a span, not a count)."""
    from diskguard import TrendMonitor

    clock = Clock()
    textfile = tmp_path / 'prom'
    textfile.mkdir()
    w = Watcher(settings(tmpfs, tmp_path / 's.json', hook, textfile=str(textfile)), clock=clock)
    fill_to(tmpfs, 0.48)
    same = TrendMonitor(window=12 * 3600.0, capacity=720, warmup=6 * 3600.0)
    first_forecast = None
    for i in range(100):  # 8 min 20 s: 16 KiB every 5 s, about 190 KiB a minute, into one file
        with open(tmpfs / 'grow', 'ab') as f:
            f.write(b'\1' * 16 * 1024)
        w.step()
        u = diskguard.usage(tmpfs)
        same.add_sample(u.used, u.avail, t=clock.now)
        text = (textfile / 'diskguard.prom').read_text()
        line = next(x for x in text.splitlines() if x.startswith('diskguard_time_to_full_seconds{'))
        seconds = float(line.rsplit(' ', 1)[1])
        expected = same.time_to_full()
        assert seconds == (math.inf if expected is None else pytest.approx(expected)), i
        if first_forecast is None and seconds != math.inf:
            first_forecast = 5.0 * i
        clock.now += 5
    assert first_forecast is not None and 240 <= first_forecast <= 420, first_forecast
    assert w.trends[str(tmpfs)].monitor.shape() == 'ramp'


def test_paths_on_one_filesystem_share_its_forecast(tmpfs: Path, tmp_path: Path, hook: Recorder) -> None:
    (tmpfs / 'a').mkdir()
    clock = Clock()
    s = settings(tmpfs, tmp_path / 's.json', hook)
    s.paths = [str(tmpfs / 'a'), str(tmpfs / 'b-not-yet'), str(tmp_path)]
    w = Watcher(s, clock=clock)
    for _ in range(3):
        w.step()
        clock.now += 60
    assert len(w.trends[str(tmpfs)].monitor) == 3  # one sample per step, not one per path
    assert len(w.trends) == 2


def test_a_damaged_state_file_is_ignored_with_a_warning(
    tmpfs: Path, tmp_path: Path, hook: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / 'state.json'
    state.write_text('{"paths": {"x": {"level": "high"}}}')
    w = Watcher(settings(tmpfs, state, hook))
    assert w.tracked == {} and 'ignoring the state file' in caplog.text
    w.step()
    assert json.loads(state.read_text())['version'] == 1


def test_forecast_time_to_full_is_published(tmpfs: Path, tmp_path: Path, hook: Recorder) -> None:
    clock = Clock()
    textfile = tmp_path / 'prom'
    textfile.mkdir()
    w = Watcher(
        settings(
            tmpfs, tmp_path / 's.json', hook, textfile=str(textfile), trend_warmup=0.0, trend_window=600.0
        ),
        clock=clock,
    )
    for i in range(12):  # a steady writer: 256 KiB a minute
        (tmpfs / f'grow{i}').write_bytes(b'\1' * 256 * 1024)
        w.step()
        clock.now += 60
    text = (textfile / 'diskguard.prom').read_text()
    line = next(x for x in text.splitlines() if x.startswith('diskguard_time_to_full_seconds{'))
    seconds = float(line.rsplit(' ', 1)[1])
    assert 0 < seconds < 4 * 3600, line  # about 12 MiB left at 256 KiB/min: under an hour


def test_budgets_alert_naming_directory_owner_and_largest(
    tmpfs: Path, tmp_path: Path, hook: Recorder
) -> None:
    (tmpfs / 'alice' / 'big').mkdir(parents=True)
    (tmpfs / 'alice' / 'big' / 'x.pt').write_bytes(b'\1' * 3 * MIB)
    (tmpfs / 'alice' / 'small').mkdir()
    w = Watcher(settings(tmpfs, tmp_path / 's.json', hook, budgets=[Budget(f'{tmpfs}/*', 2 * MIB)]))
    alert = w.step()
    assert alert is not None
    assert f'CRITICAL (was OK): budget {tmpfs}/alice (owner root) 3.0 MiB of 2.0 MiB budget' in alert.text
    assert 'largest: big 3.0 MiB, small 0 B' in alert.text or 'largest: big 3.0 MiB' in alert.text
    w.finish()
    assert hook.bodies[0]['state'] == 'CRITICAL'


def test_config_file_and_clean_exit_on_sigint(tmpfs: Path, tmp_path: Path, hook: Recorder) -> None:
    config = tmp_path / 'diskguard.toml'
    state = tmp_path / 'state.json'
    config.write_text(
        f'paths = ["{tmpfs}"]\ninterval = "1s"\nwarning = "10%"\ncritical = "99%"\n'
        f'webhook = "{hook.url}"\nwebhook_format = "slack"\nstate_file = "{state}"\n'
        f'[budgets]\n"{tmpfs}/*" = "1GiB"\n'
    )
    fill_to(tmpfs, 0.3)
    proc = subprocess.Popen(
        [sys.executable, '-m', 'diskguard', 'watch', '--config', str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not state.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert 'SIGINT received' in err and 'Traceback' not in err
    assert len(hook.bodies) == 1 and hook.bodies[0]['text'].startswith('[diskguard] WARNING on ')


@pytest.mark.parametrize(
    ('args', 'message'),
    [
        (['--interval=-5s'], "--interval='-5s'"),
        (['--interval', '0'], "--interval='0'"),
        (['--interval', 'nan'], "--interval='nan'"),
        (['--interval', '2y'], "--interval='2y'"),
        (['--listen', '127.0.0.1:70000'], "--listen='127.0.0.1:70000'"),
        (['--listen', 'localhost'], "--listen='localhost'"),
        (['--hysteresis', '200%'], "--hysteresis='200%'"),
        (['--reminder', '1s'], "--reminder='1s'"),
        (['--warning', '85'], "--warning='85'"),
        (['--textfile', '/nonexistent'], "--textfile='/nonexistent'"),
    ],
)
def test_bad_watch_settings_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    done = run('watch', str(tmp_path), '--once', '--state-file', str(tmp_path / 's.json'), *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f'diskguard: error: {message}') and len(done.stderr.splitlines()) == 1


def test_bad_config_files(tmp_path: Path) -> None:
    config = tmp_path / 'c.toml'
    config.write_text('paths = ["/"]\nintervall = "1m"\n')
    done = run('watch', '--config', str(config), '--once')
    assert done.returncode == 2 and 'unknown setting(s) intervall' in done.stderr
    config.write_text('paths = [\n')
    assert 'not valid TOML' in run('watch', '--config', str(config), '--once').stderr
    config.write_text('paths = ["/"]\nbudgets = 5\n')
    assert 'must be a table' in run('watch', '--config', str(config), '--once').stderr
    assert 'give at least one PATH' in run('watch', '--once').stderr


def test_a_budget_scan_stops_when_the_monitor_does(open_dir: Path) -> None:
    from conftest import slow_fuse
    from diskguard.ops.budgets import Interrupted, measure

    with slow_fuse(open_dir / 'slow', statfs_delay=0.0, getattr_delay=1.0) as where:
        started = time.monotonic()
        with pytest.raises(Interrupted):
            measure(Budget(str(where), MIB), str(where), should_stop=lambda: True)
        assert time.monotonic() - started < 10


def test_a_full_disk_does_not_stop_the_monitor(
    tmpfs: Path, tmp_path: Path, hook: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """The state file and the textfile live on the disk that filled up: writes fail, alerts go on."""
    (tmpfs / 'prom').mkdir()
    w = Watcher(settings(tmpfs, tmpfs / 'state.json', hook, textfile=str(tmpfs / 'prom')))
    w.step()
    fill_to(tmpfs, 1.0)  # nothing left: ENOSPC for every write
    alert = w.step()
    w.sender.wait(30)  # alerts go out off the check loop
    assert alert is not None and alert.state == 'CRITICAL' and hook.bodies[-1]['state'] == 'CRITICAL'
    assert 'cannot save the state file' in caplog.text or 'cannot write the textfile' in caplog.text
    assert [p.name for p in tmpfs.iterdir() if p.name.endswith('.tmp')] == []


def test_state_file_that_is_a_directory(tmp_path: Path) -> None:
    done = run('watch', str(tmp_path), '--once', '--state-file', str(tmp_path))
    assert done.returncode == 2 and 'is a directory' in done.stderr


def test_a_port_already_taken_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(
            'watch', str(tmp_path), '--listen', f'127.0.0.1:{port}', '--state-file', str(tmp_path / 's.json')
        )
    assert done.returncode == 3, done.stderr
    assert done.stderr.splitlines()[-1].endswith(
        f'--listen=127.0.0.1:{port}: cannot listen there (Address already in use)'
    )
    assert 'Traceback' not in done.stderr


# -- issue 20 and 17: no lost alert, never blocking, what the title says, the config ------------------


def test_an_alert_no_channel_took_stays_pending_then_goes_out_exactly_once(
    tmpfs: Path, tmp_path: Path
) -> None:
    """Issue 20.1: both channels refused, then back (after a restart from the state file): the alert
    goes out once on each, and not again."""
    hook_port, smtp_port = free_port(), free_port()
    state = tmp_path / 'state.json'
    s = Settings(
        paths=[str(tmpfs)],
        limits=Limits(Threshold(fraction=0.5), Threshold(fraction=0.8)),
        state_file=str(state),
        channels=[
            Webhook(f'http://127.0.0.1:{hook_port}/send?key=k'),
            Email(['ops@example.com'], SmtpSettings('127.0.0.1', smtp_port, 'none')),
        ],
    )
    clock = Clock()
    fill_to(tmpfs, 0.9)
    down = Watcher(s, clock=clock)
    assert down.step() is not None
    down.finish()
    saved = json.loads(state.read_text())
    assert {p['channel'] for p in saved['pending']} == {c.name for c in s.channels}
    assert all(p['attempts'] == 1 and 'refused' in p['error'] for p in saved['pending'])
    hook, box = Recorder(port=hook_port), Mailbox(port=smtp_port)
    try:
        clock.now += 120
        up = Watcher(s, clock=clock)
        assert up.step() is None  # nothing new to say, only what is pending
        up.finish()
        clock.now += 3000
        up.step()
        up.finish()
    finally:
        hook.close()
        box.close()
    assert len(hook.bodies) == 1 and hook.bodies[0]['state'] == 'CRITICAL'
    assert len(box.messages) == 1 and 'CRITICAL (was OK)' in box.messages[0][1].get_content()
    assert json.loads(state.read_text())['pending'] == []


def test_an_alert_answered_with_a_redirect_stays_pending_then_goes_out_exactly_once(
    tmpfs: Path, tmp_path: Path, hook: Recorder
) -> None:
    """A webhook answering its POST with 302 to a page anyone can GET did not take the alert (urllib
    used to follow it as a GET and count the page's 200 as delivered): the alert stays pending, naming
    the status and the Location, the page sees no request; once the hook answers 200, the next tick
    sends it, once."""
    hook.status = 302
    hook.location = hook.url.split('/send')[0] + '/landing'
    state = tmp_path / 'state.json'
    clock = Clock()
    w = Watcher(settings(tmpfs, state, hook), clock=clock)
    fill_to(tmpfs, 0.9)
    assert w.step() is not None
    w.finish()
    (pending,) = json.loads(state.read_text())['pending']
    assert f'HTTP 302: redirect not followed, to {hook.location} (' in pending['error'], pending
    assert hook.gets == [] and 200 not in hook.answers
    assert [d.ok for d in w.sender.deliveries] == [False]
    hook.status, hook.location = 200, None
    for _ in range(2):
        clock.now += 120  # past the retry (one interval), within the reminder period
        assert w.step() is None  # nothing new to say, only what is pending
        w.finish()
    assert hook.answers.count(200) == 1 and hook.bodies[-1]['state'] == 'CRITICAL'
    assert json.loads(state.read_text())['pending'] == [] and hook.gets == []


def test_a_hanging_channel_never_delays_the_checks(tmpfs: Path, tmp_path: Path) -> None:
    """Issue 17.6: a webhook that never answers: the step returns at once, the send is bounded."""
    silent = socket.socket()
    silent.bind(('127.0.0.1', 0))
    silent.listen()
    try:
        s = Settings(
            paths=[str(tmpfs)],
            limits=Limits(Threshold(fraction=0.5), Threshold(fraction=0.8)),
            state_file=str(tmp_path / 's.json'),
            channels=[Webhook(f'http://127.0.0.1:{silent.getsockname()[1]}/x')],
        )
        fill_to(tmpfs, 0.9)
        w = Watcher(s)
        w.sender.total = 2.0
        started = time.monotonic()
        assert w.step() is not None
        assert time.monotonic() - started < 1.5
        assert w.sender.wait(10)  # done within its bound
        w.finish()
    finally:
        silent.close()
    (pending,) = json.loads((tmp_path / 's.json').read_text())['pending']
    assert 'timed out' in pending['error']


def test_the_title_says_what_changed_and_its_own_state(tmpfs: Path, tmp_path: Path, hook: Recorder) -> None:
    """Issue 20.7: a filesystem entering WARNING while a budget is CRITICAL goes out as WARNING."""
    (tmpfs / 'alice').mkdir()
    (tmpfs / 'alice' / 'x.pt').write_bytes(b'\1' * 3 * MIB)
    w = Watcher(settings(tmpfs, tmp_path / 's.json', hook, budgets=[Budget(f'{tmpfs}/*', 2 * MIB)]))
    first = w.step()
    assert first is not None and first.title.endswith(f': budget {tmpfs}/alice CRITICAL (was OK)')
    fill_to(tmpfs, 0.6)
    second = w.step()
    assert second is not None and second.state == 'WARNING'
    assert second.title.startswith('[diskguard] WARNING on ') and second.title.endswith(
        f': {tmpfs} WARNING (was OK)'
    )
    assert second.text.startswith(f'WARNING (was OK): {tmpfs} ')
    w.finish()
    assert [b['state'] for b in hook.bodies] == ['CRITICAL', 'WARNING']


def test_once_exits_with_the_level_and_says_nothing_when_all_went_out(
    tmpfs: Path, tmp_path: Path, hook: Recorder
) -> None:
    """Issue 20.2: the cron form: exit code as check, silent unless a human is needed."""
    args = ['watch', '--once', str(tmpfs), '-w', '40%', '-c', '70%', '--state-file', str(tmp_path / 's.json')]
    args += ['--proc-root', '/proc']
    assert (ok := run(*args)).returncode == 0 and ok.stdout == ok.stderr == ''
    fill_to(tmpfs, 0.5)
    url = tmp_path / 'url'
    url.write_text(hook.url)
    url.chmod(0o600)  # a secret: no warning
    warned = run(*args, '--webhook-file', str(url))
    assert warned.returncode == 1 and warned.stdout == warned.stderr == ''
    assert [b['state'] for b in hook.bodies] == ['WARNING']
    gone = run(*args, '--webhook', f'http://127.0.0.1:{free_port()}/x', '-c', '45%')
    assert gone.returncode == 2 and 'kept to retry later' in gone.stderr


def test_once_without_a_channel_prints_the_alert_on_stdout(tmp_path: Path) -> None:
    """With no channel set, what would have been alerted is printed on stdout (as check prints its
    line), the names escaped; the exit code stays the level's. It is the alert: the next run, with
    nothing changed, says nothing again."""
    missing = tmp_path / 'gone\nFORGED: x\x1b[2J'
    args = ['watch', '--once', str(missing), '--state-file', str(tmp_path / 's.json'), '--proc-root', '/proc']
    first = run(*args)
    assert first.returncode == 3 and first.stderr == '', first.stderr
    shown = str(tmp_path) + '/gone\\x0aFORGED: x\\x1b[2J'
    assert first.stdout.startswith('[diskguard] UNKNOWN on '), first.stdout
    assert f'UNKNOWN (was OK): {shown}: does not exist' in first.stdout, first.stdout
    assert '\x1b' not in first.stdout and '\nFORGED' not in first.stdout
    again = run(*args)
    assert again.returncode == 3 and again.stdout == again.stderr == ''


@pytest.mark.parametrize(
    ('line', 'message'),
    [
        ('paths = "/tmp"', 'paths must be a list of strings such as ["/workspace", "/tmp"], not a string'),
        ('paths = ["/tmp"]\nemail = "ops@example.com"', 'email must be a list of strings'),
        ('paths = ["/tmp"]\ninterval = ["60s"]', 'interval must be one value'),
        ('paths = ["/tmp"]\nnearest_ancestor = "yes"', 'nearest_ancestor must be true or false'),
    ],
)
def test_the_config_refuses_a_string_where_a_list_is_expected(
    tmp_path: Path, line: str, message: str
) -> None:
    """Issue 17.10: ``paths = "/tmp"`` used to watch /, t, m and p."""
    config = tmp_path / 'c.toml'
    config.write_text(line + '\n')
    done = run('watch', '--config', str(config), '--once', '--state-file', str(tmp_path / 's.json'))
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert run('check', '--config', str(config)).stdout.startswith('DISK UNKNOWN - ')


@pytest.mark.parametrize(
    'content',
    [
        '[]',
        'null',
        '{"paths": []}',
        '{"budgets": {"x": 1}}',
        '{"paths": {"/": {"level": 0, "alerted_level": 99, "alerted_at": 0}}}',
        '{"paths": {"/": {"level": -1, "alerted_level": 0, "alerted_at": 0}}}',
        'fifo',
    ],
)
def test_a_state_file_of_any_shape_never_stops_the_monitor(tmp_path: Path, content: str) -> None:
    """A state file that is JSON but not the shape written (a list, a level out of range) used to
    crash ``watch`` at start or at its first alert (AttributeError, IndexError), which under
    ``Restart=on-failure`` is a restart loop; a FIFO there blocked it for good. Each is ignored with
    a warning, and the next state file written is whole."""
    state = tmp_path / 'state.json'
    if content == 'fifo':
        os.mkfifo(state)
    else:
        state.write_text(content)
    done = run('watch', '--once', str(tmp_path), '-w', '99%', '-c', '99.5%', '--state-file', str(state),
               '--proc-root', '/proc', timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert 'ignoring the state file' in done.stderr and 'Error' not in done.stderr, done.stderr
    assert json.loads(state.read_text())['version'] == 1


def test_a_reminder_is_not_held_by_a_clock_set_back(tmpfs: Path, tmp_path: Path, hook: Recorder) -> None:
    """Alerted (by the clock of the time) a year ahead of now: the reminder used to wait that year."""
    clock = Clock()
    clock.now = 1.8e9
    w = Watcher(settings(tmpfs, tmp_path / 'state.json', hook), clock=clock)
    fill_to(tmpfs, 0.6)
    assert (first := w.step()) is not None and first.state == 'WARNING'
    clock.now -= 365 * 86400  # the clock was a year ahead when the alert went out
    reminder = w.step()
    assert reminder is not None and 'still WARNING' in reminder.text
    clock.now += 60
    assert w.step() is None  # and then at the usual period again
