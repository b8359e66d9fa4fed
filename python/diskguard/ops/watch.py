"""``diskguard watch``: a long-running monitor with a forecast, alerts, Prometheus output and a state file.

Each interval it grades every path (the same thresholds as ``check``), samples a
:class:`diskguard.TrendMonitor` per filesystem (paths on one mount share it) for the time to full,
measures budgets less often, and alerts only when a level changes. Levels have hysteresis: a level is entered at its threshold and
left only ``hysteresis`` below it, so a disk hovering at 85% does not alert every interval; while not
OK, a reminder goes out at most every ``reminder``. Alerts go out on a background thread within a
bounded time (:class:`diskguard.ops.outbox.Sender`); one a channel did not take stays pending and is
retried on later ticks with backoff. The state file (levels, when each was alerted, pending alerts,
each trend monitor's ``state_dict()``) is rewritten atomically each interval, so a restart neither
re-alerts, nor loses an undelivered alert, nor forgets the trend. SIGTERM and SIGINT finish the
current step and exit 0; ``--once`` exits with the Nagios code of what it measured (and with no
channel set, prints the alert on stdout).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import TrendMonitor
from . import atomic, options, parse
from . import escape as names
from .alerts import TOTAL_TIME, Alert, Channel, summarize
from .budgets import Budget, BudgetResult, Interrupted, measure, refused, targets
from .check import OK, STATE_NAMES, WARNING, FsResult, Limits, check_path, summary, worst
from .container import CONTAINER_NOTE, host_path, host_table, in_container
from .outbox import Outbox, Sender
from .prometheus import MetricsServer, render, textfile_directory, write_textfile

log = logging.getLogger('diskguard.watch')

#: Samples kept per path in the state file.
MAX_SAMPLES = 720


def default_state_file() -> str:
    """``$STATE_DIRECTORY/watch.json`` under systemd (``StateDirectory=``), else the XDG state dir."""
    base = os.environ.get('STATE_DIRECTORY') or os.path.join(
        os.environ.get('XDG_STATE_HOME') or os.path.expanduser('~/.local/state'), 'diskguard'
    )
    return os.path.join(base.split(':')[0], 'watch.json')


#: The largest state file read: it holds levels, trend samples and at most 20 pending alerts per
#: channel, far below this.
STATE_MAX = 16 * 1024 * 1024


def _read_own_state(path: str) -> bytes:
    """The state file's bytes, only if it is what :meth:`Watcher._save_state` writes: a regular file
    (not a symlink, a FIFO or a device), owned by this user, writable by nobody else, of bounded size.
    In a shared directory another user could otherwise plant levels that silence alerts, alerts the
    monitor would send for them, or a FIFO that hangs it at start."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError('not a regular file')
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise ValueError(
                f'not written by this monitor (owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o})'
            )
        with os.fdopen(os.dup(fd), 'rb') as f:
            data = f.read(STATE_MAX + 1)
    finally:
        os.close(fd)
    if len(data) > STATE_MAX:
        raise ValueError(f'larger than {STATE_MAX} bytes')
    return data


@dataclass
class Tracked:
    """What the monitor remembers about one path or budgeted directory."""

    level: int = OK
    alerted_level: int = OK
    alerted_at: float = 0.0


class Trend:
    """One filesystem's forecast: a :class:`diskguard.TrendMonitor`, the same the guard uses (a burst
    is not a rate; a ramp is one once it has lasted five minutes, whatever the interval). The state
    file keeps its ``state_dict()`` with the time of its latest sample, so a restart continues it;
    ``saved`` is that entry, or the sample list of an older state file."""

    def __init__(self, window: float, warmup: float, saved: object = None) -> None:
        self.window, self.warmup = window, warmup
        self.monitor = TrendMonitor(window=window, capacity=MAX_SAMPLES, warmup=warmup)
        self.latest: float | None = None
        if isinstance(saved, dict):
            kept = saved['monitor']
            if (kept['window'], kept['warmup']) != (window, warmup):
                log.info('the trend settings changed; restarting a trend')
                return
            self.latest = None if saved['latest'] is None else float(saved['latest'])
            self.monitor.load_state_dict(kept, t=self.latest)
        elif isinstance(saved, list):
            for when, used, avail in saved:
                self.add(float(when), int(used), int(avail))

    def add(self, when: float, used: int, avail: int) -> None:
        try:
            self.monitor.add_sample(used, avail, when)
        except ValueError:
            # The clock went backwards (or the state file is from the future): start over.
            log.warning('the clock went backwards; restarting a trend')
            self.monitor = TrendMonitor(window=self.window, capacity=MAX_SAMPLES, warmup=self.warmup)
            self.monitor.add_sample(used, avail, when)
        self.latest = when

    def state(self) -> dict[str, Any]:
        """What the state file keeps: the monitor's ``state_dict()``, its ages counted from the
        latest sample, and that sample's time on the watch's clock."""
        return {'latest': self.latest, 'monitor': self.monitor.state_dict(t=self.latest)}


@dataclass
class Settings:
    """Everything ``watch`` needs, validated."""

    paths: list[str]
    interval: float = 60.0
    limits: Limits = field(default_factory=Limits)
    hysteresis: float = 0.05
    reminder: float = 24 * 3600.0
    forecast_horizon: float = 24 * 3600.0
    budgets: list[Budget] = field(default_factory=list)
    budget_interval: float = 3600.0
    state_file: str | None = None
    textfile: str | None = None
    listen: tuple[str, int] | None = None
    proc_root: str | None = None
    channels: list[Channel] = field(default_factory=list)
    trend_window: float = 12 * 3600.0
    trend_warmup: float = 6 * 3600.0


class Watcher:
    """One monitor: :meth:`step` measures, decides and alerts once; :meth:`run` repeats it."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.s = settings
        self.clock = clock
        self.tracked: dict[str, Tracked] = {}
        self.budget_tracked: dict[str, Tracked] = {}
        # Keyed by mount point: paths on one filesystem share its forecast.
        self.trends: dict[str, Trend] = {}
        self.budget_results: list[BudgetResult] = []
        self.budgets_measured_at = -math.inf
        self.stop = threading.Event()
        self.server: MetricsServer | None = None
        self.host_table = host_table(settings.proc_root) if settings.proc_root else None
        # Alerts no channel has taken yet: retried from one interval on, doubling up to an hour.
        self.outbox = Outbox(settings.channels, retry=max(settings.interval, 30.0))
        self.sender = Sender(self.outbox, clock=clock)
        #: The worst level of the last step (the exit code of ``--once``).
        self.level = OK
        # Levels are left only ``hysteresis`` past their thresholds (the core's one rule).
        self.grading = settings.limits.with_hysteresis(settings.hysteresis)
        self._load_state()

    # -- state -----------------------------------------------------------------------------------

    def _trend(self, key: str, saved: object = None) -> Trend:
        if key not in self.trends:
            self.trends[key] = Trend(self.s.trend_window, self.s.trend_warmup, saved)
        return self.trends[key]

    def _load_state(self) -> None:
        if not self.s.state_file or not os.path.exists(self.s.state_file):
            return
        try:
            data = json.loads(_read_own_state(self.s.state_file))
            if not isinstance(data, dict):
                raise TypeError(f'expected a JSON object, not {type(data).__name__}')
            for key, table in (('paths', self.tracked), ('budgets', self.budget_tracked)):
                for name, t in data.get(key, {}).items():
                    table[name] = Tracked(
                        _level(t['level']), _level(t['alerted_level']), float(t['alerted_at'])
                    )
            for key, saved in data.get('trends', {}).items():
                self._trend(key, saved)
            self.outbox.load(list(data.get('pending', [])))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            # A damaged state file costs at most one repeated alert; never refuse to start over it.
            log.warning('ignoring the state file %s: %s', self.s.state_file, err)
            self.tracked.clear()
            self.budget_tracked.clear()
            self.trends.clear()

    def _save_state(self) -> None:
        if not self.s.state_file:
            return

        def table(items: dict[str, Tracked]) -> dict[str, Any]:
            return {
                name: {
                    'level': t.level,
                    'alerted_level': t.alerted_level,
                    'alerted_at': t.alerted_at,
                }
                for name, t in items.items()
            }

        data = {
            'version': 1,
            'paths': table(self.tracked),
            'budgets': table(self.budget_tracked),
            # Alerts a channel has not taken: sent on the next tick (or run of --once) when due.
            'pending': self.outbox.to_json(),
            'trends': {key: trend.state() for key, trend in self.trends.items()},
        }
        directory = os.path.dirname(os.path.abspath(self.s.state_file))
        os.makedirs(directory, exist_ok=True)
        # Exclusively created beside it, 0600: the state is the monitor's own (diskguard.ops.atomic).
        atomic.write_file(self.s.state_file, json.dumps(data).encode(), 0o600)

    # -- one step --------------------------------------------------------------------------------

    def _grade(self, path: str, now: float, sampled: set[str]) -> tuple[FsResult, float | None]:
        """Measures and grades one path once; its filesystem's trend gets one sample per step
        (``sampled``)."""
        t = self.tracked.setdefault(path, Tracked())
        graded = check_path(path, self.s.limits, grading=self.grading, previous=t.level)
        if graded.usage is None:
            t.level = graded.state
            return graded, None
        u = graded.usage
        level = graded.state
        key = u.mount_point or u.queried_path
        trend = self._trend(key)
        if key not in sampled:
            trend.add(now, u.used, u.avail)
            sampled.add(key)
        time_to_full: float | None = None
        estimate = trend.monitor.estimate()
        if estimate is not None:
            time_to_full = estimate.time_to_full
            if trend.monitor.will_fill_within(self.s.forecast_horizon):
                level = max(level, WARNING)
                low = estimate.time_to_full_low
                graded.reasons.append(f'forecast: full in ~{_hours(low if low is not None else 0.0)}')
        if self.host_table is not None:
            graded.host_path = host_path(path, self.host_table)
        graded.state = level
        t.level = level
        return graded, time_to_full

    def _measure_budgets(self, now: float) -> None:
        if not self.s.budgets or now - self.budgets_measured_at < self.s.budget_interval:
            return
        self.budgets_measured_at = now
        results = []
        try:
            for b, d, problem in targets(self.s.budgets):
                results.append(
                    refused(b, d, problem) if problem else measure(b, d, should_stop=self.stop.is_set)
                )
        except Interrupted:
            return  # shutting down: keep the previous figures
        self.budget_results = results
        for r in results:
            self.budget_tracked.setdefault(r.directory, Tracked()).level = r.state

    def _changes(
        self, items: dict[str, Tracked], describe: dict[str, str], now: float, kind: str = ''
    ) -> list[tuple[int, str, str]]:
        """(level, what changed for the title, the line) of each item whose level changed or is due
        a reminder. An item counts as alerted once its alert is in the outbox, which keeps it until
        a channel takes it."""
        changes = []
        for name, t in items.items():
            if name not in describe:
                continue
            state = STATE_NAMES[t.level]
            if t.level != t.alerted_level:
                was = STATE_NAMES[t.alerted_level]
                changes.append(
                    (t.level, f'{kind}{name} {state} (was {was})', f'{state} (was {was}): {describe[name]}')
                )
            elif t.level != OK and (
                # Alerted further ahead than a reminder period: the clock was set back (or the state
                # file is damaged); waiting for that time would hold the reminder for as long.
                now - t.alerted_at >= self.s.reminder or not t.alerted_at <= now + self.s.reminder
            ):
                changes.append((t.level, f'{kind}{name} still {state}', f'still {state}: {describe[name]}'))
            else:
                continue
            t.alerted_level, t.alerted_at = t.level, now
        return changes

    def step(self) -> Alert | None:
        """Measures everything once, publishes metrics, saves the state; returns the alert sent."""
        now = self.clock()
        sampled: set[str] = set()
        graded = [self._grade(p, now, sampled) for p in self.s.paths]
        results = [r for r, _ in graded]
        self._measure_budgets(now)
        text = render(results, self.budget_results, {r.path: ttf for r, ttf in graded})
        if self.s.textfile:
            self._keep_going('write the textfile', lambda: write_textfile(str(self.s.textfile), text))
        if self.server is not None:
            self.server.update(text)
        self.level = worst([r.state for r in results] + [b.state for b in self.budget_results])
        changes = self._changes(self.tracked, {r.path: summary(r) for r in results}, now)
        changes += self._changes(
            self.budget_tracked,
            {b.directory: 'budget ' + b.describe() for b in self.budget_results},
            now,
            kind='budget ',
        )
        alert = None
        if changes:
            # The title's state is that of what changed, not the worst of everything.
            state = worst([level for level, _, _ in changes])
            alert = Alert.about(
                STATE_NAMES[state],
                [line for _, _, line in changes],
                subject=summarize([c for _, c, _ in changes]),
            )
            log.info('alert: %s', names.text(alert.as_text().replace('\n', ' | ')))
            self.outbox.add(alert, now)
        self.sender.dispatch(now)
        self._keep_going('save the state file', self._save_state)
        return alert

    def finish(self, timeout: float = TOTAL_TIME) -> None:
        """Waits (at most ``timeout`` seconds) for the alerts on their way, then saves the state, so
        that what was delivered is not sent again and what was not stays pending."""
        deadline = time.monotonic() + timeout
        while self.sender.wait(max(0.0, deadline - time.monotonic())) and time.monotonic() < deadline:
            # What came due while the last batch was out (alerts of earlier ticks) goes out now.
            if not self.sender.dispatch(self.clock()):
                break
        self._keep_going('save the state file', self._save_state)

    @staticmethod
    def _keep_going(what: str, write: Callable[[], object]) -> None:
        """Runs a write the monitor can live without: on a full disk (the very moment it matters)
        a failed write is logged and the monitor goes on measuring and alerting."""
        try:
            write()
        except OSError as err:
            log.warning('cannot %s: %s', what, err)

    def run(self) -> int:
        """Steps every ``interval`` until SIGTERM/SIGINT (or :attr:`stop` is set)."""
        if self.s.listen is not None:
            host, port = self.s.listen
            try:
                self.server = MetricsServer(host, port)
            except OSError as err:
                raise OSError(
                    err.errno, f'--listen={host}:{port}: cannot listen there ({err.strerror})'
                ) from None
            log.info('serving /metrics on %s:%d', self.s.listen[0], self.server.port)
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                self.step()
                self.stop.wait(max(0.0, self.s.interval - (time.monotonic() - started)))
        finally:
            if self.server is not None:
                self.server.close()
            self.finish()
        log.info('stopped')
        return 0


def _level(value: Any) -> int:
    """A level read from the state file: one of the states' numbers, else ValueError."""
    level = int(value)
    if not 0 <= level < len(STATE_NAMES):
        raise ValueError(f'level {value!r}: expected 0 to {len(STATE_NAMES) - 1}')
    return level


def _hours(seconds: float) -> str:
    return f'{seconds / 3600:.1f} h' if seconds >= 3600 else f'{seconds / 60:.0f} min'


# -- the command -----------------------------------------------------------------------------------


def add_watch_command(commands: Any) -> None:
    summary = 'monitor paths: forecast, alerts on level changes, Prometheus metrics'
    p = options.add_subcommand(commands, 'watch', run_watch, summary)
    options.add_paths_option(p, 'watch')
    p.add_argument('--interval', metavar='DURATION', help='how often to measure (60s)')
    p.add_argument('--hysteresis', metavar='PCT%', help='how far below a threshold a level is left (5%%)')
    p.add_argument('--reminder', metavar='DURATION', help='repeat an unresolved alert this often (24h)')
    p.add_argument('--forecast-horizon', metavar='DURATION', help='warn when full within this (24h)')
    p.add_argument('--budget-interval', metavar='DURATION', help='how often to scan budgets (1h)')
    p.add_argument(
        '--state-file', metavar='FILE', help=f'where to remember levels and samples ({default_state_file()})'
    )
    p.add_argument('--listen', metavar='HOST:PORT', help='serve /metrics, e.g. 127.0.0.1:9101')
    p.add_argument('--config', metavar='FILE', help='a TOML file with these settings (see examples/)')
    p.add_argument(
        '--once',
        action='store_true',
        help='one measurement (alerts on changes, pending ones retried; with no channel, printed), '
        'then exit 0/1/2/3 as check: for cron',
    )
    options.add_threshold_options(p)
    options.add_scope_options(p)
    p.add_argument(
        '--textfile', metavar='DIR', help='write DIR/diskguard.prom for node_exporter (atomically)'
    )
    options.add_alert_options(p)


def settings_from(args: argparse.Namespace) -> Settings:
    config = options.load_config(args.config)

    def setting(name: str, default: Any = None) -> Any:
        return options.option(args, config, name, default)

    paths = options.paths_from(args, config, 'watch')
    textfile = setting('textfile')
    listen = setting('listen')
    state_file = str(setting('state_file', default_state_file()))
    if os.path.isdir(state_file):
        raise ValueError(f'--state-file={state_file!r}: is a directory (give a file name in it)')
    return Settings(
        paths=paths,
        interval=parse.duration('--interval', setting('interval', '60s'), minimum=1),
        limits=options.limits_from(args, config),
        hysteresis=parse.percentage('--hysteresis', str(setting('hysteresis', '5%'))),
        reminder=parse.duration('--reminder', setting('reminder', '24h'), minimum=60),
        forecast_horizon=parse.duration('--forecast-horizon', setting('forecast_horizon', '24h')),
        budgets=options.budgets_from(args, config),
        budget_interval=parse.duration('--budget-interval', setting('budget_interval', '1h'), minimum=1),
        state_file=state_file,
        textfile=None if textfile is None else textfile_directory(str(textfile)),
        listen=None if listen is None else parse.listen_address('--listen', str(listen)),
        proc_root=setting('proc_root'),
        channels=options.channels_from(args, config),
        trend_window=parse.duration('trend_window', config.get('trend_window', '12h'), minimum=60),
        trend_warmup=parse.duration('trend_warmup', config.get('trend_warmup', '6h'), minimum=0),
    )


def run_watch(args: argparse.Namespace) -> int:
    """Measure PATHs every --interval: levels with hysteresis, a time-to-full forecast, budgets,
    alerts (webhook, e-mail) on level changes with a reminder period, and Prometheus output.
    SIGTERM/SIGINT exit cleanly; the state file survives restarts."""
    if not logging.getLogger().handlers:
        # Under cron (--once) only what needs a human: failed deliveries, failed writes, warnings.
        level = logging.WARNING if args.once else logging.INFO
        logging.basicConfig(level=level, format='diskguard watch: %(message)s', stream=sys.stderr)
    settings = settings_from(args)
    watcher = Watcher(settings)
    if settings.proc_root is None and in_container():
        log.warning('%s', CONTAINER_NOTE)
    if args.once:
        alert = watcher.step()
        watcher.finish()
        if alert is not None and not settings.channels:
            # No channel to take it: the alert is the output, on stdout as check prints its line
            # (cron mails it; by hand it is seen). Each line escaped for the terminal.
            print('\n'.join(names.text(line) for line in alert.as_text().split('\n')), flush=True)
        return watcher.level

    def stop(signum: int, _frame: object) -> None:
        log.info('%s received: finishing', signal.Signals(signum).name)
        watcher.stop.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        log.info(
            'watching %s every %s',
            ', '.join(settings.paths),
            _hours(settings.interval) if settings.interval >= 60 else f'{settings.interval:g} s',
        )
        return watcher.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
