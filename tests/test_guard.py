"""DiskGuard on real filesystems: levels, the action ladder, budget, hung mounts, state, and runs with
real torch on tmpfs sized for a few checkpoints (keep-last larger than the disk, another process
filling the disk mid-run, a budget smaller than the filesystem)."""

from __future__ import annotations

import logging
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskguard
import pytest
from conftest import mounted_tmpfs, slow_fuse
from diskguard import (
    DiskGuard,
    DiskSpaceWarning,
    InsufficientSpaceError,
    KeepBest,
    KeepLast,
    Protect,
    RetentionPolicy,
)

MiB = 1024 * 1024


def import_torch() -> Any:
    """torch, for the tests marked ``torch`` (CI runs the rest on interpreters without it)."""
    return pytest.importorskip('torch', reason='needs torch: pip install -e .[test]')


def write_checkpoint(path: Path, size: int = MiB) -> None:
    """A complete torch-style zip (what retention verifies) of ``size`` bytes, really allocated."""
    body = b'PK\x03\x04' + os.urandom(size - 26)
    path.write_bytes(body + b'PK\x05\x06' + b'\0' * 18)


def used_under(directory: Path) -> int:
    """Allocated bytes under ``directory``, as ``du`` counts them."""
    total = 0
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total + os.lstat(directory).st_blocks * 512


def quietly(call: Any, *args: Any) -> list[str]:
    """Runs ``call`` and returns the DiskSpaceWarning messages it issued."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        call(*args)
    return [str(w.message) for w in caught if issubclass(w.category, DiskSpaceWarning)]


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs with a checkpoint directory in it."""
    with mounted_tmpfs(tmp_path / 'disk', size='16m', nr_inodes=256) as where:
        (where / 'ckpt').mkdir()
        yield where / 'ckpt'


# ----- levels and the ladder -----


def test_one_warning_per_level_change_with_hysteresis(disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    guard = DiskGuard(disk, warn=0.5, critical=None, check_every_steps=1)
    total = diskguard.usage(disk).total
    filler = disk.parent / 'other-job.bin'

    def fill(fraction: float) -> list[str]:
        filler.write_bytes(b'\0' * int(total * fraction))
        return quietly(guard.check)

    caplog.set_level(logging.INFO, logger='diskguard')
    first = fill(0.52)
    assert len(first) == 1 and 'ok -> warn' in first[0] and 'warn 50.0%' in first[0]
    assert fill(0.53) == [], 'no warning per check at the same level'
    assert fill(0.49) == [] and guard.level == 'warn', 'just below the threshold: hysteresis holds'
    assert fill(0.51) == [] and guard.level == 'warn'
    assert fill(0.40) == [] and guard.level == 'ok', 'back to ok: a log record, not a warning'
    records = [r.getMessage() for r in caplog.records if 'disk level' in r.getMessage()]
    assert len(records) == 2 and 'warn -> ok' in records[1]


def test_warnings_point_at_the_training_loop(disk: Path) -> None:
    write_checkpoint(disk / 'step=1.pt')
    guard = DiskGuard(disk, budget=MiB + MiB // 2, check_every_steps=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        guard.step()
    assert caught and all(w.filename == __file__ for w in caught), [(w.filename, w.lineno) for w in caught]


def test_making_room_spares_the_newest_the_best_and_the_protected(
    disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    names = [f'step={s}-val_loss={loss}.pt' for s, loss in [(1, 0.9), (2, 0.1), (3, 0.8), (4, 0.7), (5, 0.6)]]
    for name in names:
        write_checkpoint(disk / name)
    policy = RetentionPolicy(KeepLast(5), KeepBest(1, 'val_loss'), Protect(names[2]))
    # Holding five, the budget leaves room for half a checkpoint: the ladder needs two.
    guard = DiskGuard(disk, budget=used_under(disk) + MiB // 2, retention=policy, critical=None, warn=None)
    caplog.set_level(logging.INFO, logger='diskguard.guard')
    warned = quietly(guard.check)
    # Each deletion is a log record; one warning says retention no longer keeps what it asks.
    deleted = [r.getMessage() for r in caplog.records if r.getMessage().startswith('deleted')]
    assert [m.split()[1].rsplit('/', 1)[1] for m in deleted] == [names[0], names[3]], deleted
    assert all('although kept as among the last 5' in m for m in deleted)
    assert not [m for m in warned if m.startswith('deleted')]
    assert len([m for m in warned if 'can no longer keep what its rules ask' in m]) == 1, warned
    assert sorted(os.listdir(disk)) == sorted([names[1], names[2], names[4]])
    assert not guard.should_stop and guard.status().forced_deletions == 2


def test_on_full_stop_deletes_nothing_the_rules_keep(disk: Path) -> None:
    for step in range(1, 5):
        write_checkpoint(disk / f'step={step}.pt')
    guard = DiskGuard(
        disk, budget=used_under(disk) + MiB // 2, retention=RetentionPolicy(KeepLast(4)), on_full='stop'
    )
    warned = quietly(guard.check)
    assert len(os.listdir(disk)) == 4
    assert guard.should_stop and guard.step() is True
    assert guard.stop_reason is not None and "on_full='stop'" in guard.stop_reason
    assert any(m.startswith('stopping the run') for m in warned)


def test_before_save_refuses_what_cannot_fit_and_keeps_the_newest(disk: Path) -> None:
    write_checkpoint(disk / 'step=1.pt')
    guard = DiskGuard(disk, budget=2 * MiB)
    with pytest.raises(InsufficientSpaceError) as refused:
        quietly(guard.before_save, disk / 'step=2.pt', 3 * MiB)
    assert refused.value.needed > 3 * MiB and refused.value.available < 2 * MiB
    assert 'tried' in str(refused.value) and 'step=2.pt' in str(refused.value)
    assert os.listdir(disk) == ['step=1.pt']
    assert guard.should_stop


def test_status_is_a_readable_report(disk: Path) -> None:
    write_checkpoint(disk / 'step=1.pt', 2 * MiB)
    guard = DiskGuard(disk, budget='10MiB', watch=['/dev/shm'])
    guard.check()
    status = guard.status()
    report = str(status)
    assert f'checkpoint directory {disk}' in report and 'temp directory' in report
    assert 'budget of' in report and 'watched /dev/shm' in report
    assert status.largest_checkpoint == 2 * MiB and status.reserve > 2 * MiB
    assert status.held >= 2 * MiB and status.level == 'ok' and not status.should_stop
    budget = next(s for s in status.spaces if s.name.startswith('budget'))
    assert budget.total == 10 * MiB and budget.room == 10 * MiB - status.held


def test_forecast_counts_checkpoints(disk: Path) -> None:
    write_checkpoint(disk / 'step=1.pt', 2 * MiB)
    guard = DiskGuard(disk, critical=None)
    guard.check()
    forecast = guard.forecast(remaining_saves=20, save_interval=60.0)
    # 16 MiB holds about seven more 2 MiB checkpoints with nothing deleted.
    assert forecast.saves_until_full is not None and 5 <= forecast.saves_until_full <= 8
    assert 'checkpoints' in forecast.summary
    kept = DiskGuard(disk, critical=None, retention=RetentionPolicy(KeepLast(2)))
    assert kept.forecast(remaining_saves=20, save_interval=60.0).fits


def test_checks_are_due_every_n_steps_or_every_t_seconds(disk: Path) -> None:
    by_steps = DiskGuard(disk, check_every_steps=10, check_every_seconds=1e6)
    for step in range(1, 101):
        by_steps.step(step)
    assert by_steps.status().checks == 10, 'the first call, then every 10 steps'
    by_time = DiskGuard(disk, check_every_steps=10**9, check_every_seconds=0.05)
    deadline = time.monotonic() + 0.5
    calls = 0
    while time.monotonic() < deadline:
        by_time.step()
        calls += 1
    assert calls > 1000 and 5 <= by_time.status().checks <= 12, by_time.status().checks


def test_a_step_measures_again_once_the_last_figures_may_no_longer_decide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Far from every threshold (a tmpfs that may grow to 2 TiB, as the temp directory too), a
    step's check within 50 ms of the last measurement grades the same figures again, without a
    statfs; check() measures. 20 MiB before ``min_free`` (microseconds at that speed), every step measures: each one's
    figure is what the disk holds at that step."""
    with mounted_tmpfs(tmp_path / 'big', size='2T', nr_inodes=None) as big:
        monkeypatch.setattr(tempfile, 'tempdir', str(big))
        guard = DiskGuard(big, warn=None, critical=None, check_every_steps=1)
        for _ in range(5):  # a loaded machine may take longer than the window: try again
            started = time.monotonic()
            guard.check()
            before = guard.metrics()['disk/free_bytes']
            (big / 'other-job.bin').write_bytes(b'x' * 4 * MiB)
            guard.step()
            after_step = guard.metrics()['disk/free_bytes']
            if time.monotonic() - started < 0.04:
                break
            (big / 'other-job.bin').unlink()
        assert after_step == before, 'graded again within the window'
        guard.check()
        assert guard.metrics()['disk/free_bytes'] <= before - 4 * MiB
        checks = guard.status().checks
        for _ in range(3):
            guard.step()
        assert guard.status().checks == checks + 3, 'every due check counts'

        avail = diskguard.usage(big).avail
        near = DiskGuard(big, warn=None, critical=None, min_free=avail - 20 * MiB, check_every_steps=1)
        seen = []
        for _ in range(6):
            with open(big / 'filler', 'ab') as f:
                f.write(b'x' * 256 * 1024)
            near.step()
            seen.append((near.metrics()['disk/free_bytes'], diskguard.usage(big).avail))
        assert all(logged == real for logged, real in seen), seen


# ----- hung mounts -----


def test_a_hung_mount_is_reported_and_never_waited_on(open_dir: Path) -> None:
    with slow_fuse(open_dir / 'slow', statfs_delay=3.0) as hung:
        started = time.monotonic()
        with pytest.warns(DiskSpaceWarning, match='did not answer within 0.2 s'):
            guard = DiskGuard(open_dir / 'ckpt', watch=[hung], statfs_timeout=0.2, check_every_steps=1)
        assert time.monotonic() - started < 1.5
        threads = len(os.listdir('/proc/self/task'))
        longest = 0.0
        for step in range(200):  # every one is due
            before = time.monotonic()
            assert guard.step(step) is False
            longest = max(longest, time.monotonic() - before)
        assert longest < 0.1, f'a due check waited {longest:.2f}s on the hung mount'
        assert len(os.listdir('/proc/self/task')) == threads, 'no thread per check'
        hung_space = next(s for s in guard.status().spaces if str(hung) in s.name)
        assert not hung_space.responsive
        assert 'NOT RESPONDING' in str(guard.status())


def test_other_threads_run_while_a_check_waits_for_statfs(slow_statfs_mount: Path, open_dir: Path) -> None:
    from test_gil import assert_runs_alongside

    guard = DiskGuard(open_dir / 'ckpt', watch=[slow_statfs_mount], statfs_timeout=5.0)
    assert_runs_alongside(guard.check)


def test_reading_the_status_during_a_slow_check_holds_no_other_thread(
    slow_statfs_mount: Path, open_dir: Path
) -> None:
    """status() waits for the engine's lock while another thread's check waits on statfs: it must
    wait without the GIL, or every Python thread would freeze with it."""
    import threading

    from test_gil import assert_runs_alongside

    guard = DiskGuard(open_dir / 'ckpt', watch=[slow_statfs_mount], statfs_timeout=5.0)
    checking = threading.Thread(target=guard.check)
    checking.start()
    time.sleep(0.05)  # the check now holds the engine, waiting on the slow statfs
    try:
        assert_runs_alongside(lambda: (guard.status(), guard.should_stop, guard.level))
    finally:
        checking.join()


# ----- what the run holds, walked off the training thread -----


def test_a_due_check_never_waits_for_the_walk_of_what_the_run_holds(open_dir: Path) -> None:
    """The periodic rescan walks the directory on a thread of its own. An entry whose lstat blocks
    (a hung FUSE mount inside the directory) stalls that walk, never the due check: right after the
    check returns, the walk is still inside the slow request, so what another process wrote is not
    counted yet (a walk inside the check would have finished, and counted it, before returning).
    Once the request is answered the walk lands at a later check and the file counts."""
    import threading

    run = open_dir / 'ckpt'
    run.mkdir()
    guard = DiskGuard(run, warn=None, critical=None, rescan_interval=0.001, check_every_steps=1)
    assert guard.status().held < MiB
    inside = threading.Event()
    with slow_fuse(run / 'slow', statfs_delay=0.0, getattr_delay=5.0, getattr_seen=inside):
        code = 'import sys; open(sys.argv[1], "wb").write(b"x" * (4 << 20))'
        subprocess.run([sys.executable, '-c', code, str(run / 'written-by-another.bin')], check=True)
        guard.check()  # due: starts the walk, which blocks in the FUSE request for 5 s
        assert guard.status().held < MiB, 'the due check returned before the walk finished'
        assert inside.wait(timeout=60), 'the walk reached the slow entry'
        deadline = time.monotonic() + 60
        while guard.status().held < 4 * MiB and time.monotonic() < deadline:
            guard.check()
            time.sleep(0.05)  # polling: the walk lands once the server answers
        assert guard.status().held >= 4 * MiB, 'what another process wrote is counted'
        guard.close()


def test_a_rescan_lands_in_a_run_that_saves_between_every_two_checks(tmp_path: Path) -> None:
    """A walk that began before a save still lands (the save's entry is taken from the guard's
    own accounting): a run saving between every two checks learns what another writer put there,
    and what it holds matches the disk."""
    guard = DiskGuard(tmp_path, warn=None, critical=None, rescan_interval=0.001, budget='1GiB')
    (tmp_path / 'train.log').write_bytes(b'x' * (3 << 20))  # written behind the guard's back
    deadline = time.monotonic() + 60
    step = 0
    while guard.status().held < 3 << 20 and time.monotonic() < deadline:
        step += 1
        path = tmp_path / f'step={step}.bin'
        guard.before_save(path, 64 * 1024)
        path.write_bytes(b'y' * (64 * 1024))
        guard.after_save(path, 64 * 1024)  # its own check starts or lands a walk
        guard.check()
    on_disk = sum(p.stat().st_blocks * 512 for p in tmp_path.iterdir()) + tmp_path.stat().st_blocks * 512
    held = guard.status().held
    assert held >= 3 << 20, f'the log was never counted after {step} saves'
    assert abs(held - on_disk) <= 64 * 1024, (held, on_disk)


# ----- state and pickling -----


@pytest.mark.torch
def test_state_dict_survives_torch_load_weights_only(disk: Path, tmp_path: Path) -> None:
    torch = import_torch()
    guard = DiskGuard(disk, budget='64MiB')
    write_checkpoint(disk / 'step=1.pt', 2 * MiB)
    guard.after_save(disk / 'step=1.pt', 2 * MiB)
    for step in range(7):
        guard.step(step)
    torch.save({'guard': guard.state_dict()}, tmp_path / 'state.pt')
    state = torch.load(tmp_path / 'state.pt', weights_only=True)['guard']
    assert without_trend_ages(state) == without_trend_ages(guard.state_dict())
    resumed = DiskGuard(disk, budget='64MiB')
    resumed.load_state_dict(state)
    # A resumed run is a live run of its own (its id is fresh); everything else travels.
    again, before = resumed.state_dict(), guard.state_dict()
    assert again.pop('run_id') != before.pop('run_id')
    assert without_trend_ages(again) == without_trend_ages(before)
    assert resumed.status().largest_checkpoint == 2 * MiB
    assert len(state['trend']['samples']) >= 1, 'the trend history travels with the state'


def without_trend_ages(state: dict[str, Any]) -> dict[str, Any]:
    """A state_dict without the trend's ages (seconds before the moment of saving, which moves)."""
    trend = state['trend']
    kept = {k: v for k, v in trend.items() if 'age' not in k and k not in ('samples', 'saves', 'latest')}
    counts = (len(trend['samples']), len(trend['saves']))
    return {**{k: v for k, v in state.items() if k != 'trend'}, 'trend': kept, 'counts': counts}


def test_the_guard_pickles_and_works_after(disk: Path) -> None:
    write_checkpoint(disk / 'step=1.pt')
    guard = DiskGuard(disk, budget='12MiB', retention=RetentionPolicy(KeepLast(2)), emergency_reserve='1MiB')
    guard.after_save(disk / 'step=1.pt', MiB)
    copy = pickle.loads(pickle.dumps(guard))
    assert without_trend_ages(copy.state_dict()) == without_trend_ages(guard.state_dict())
    for step in range(2, 5):
        write_checkpoint(disk / f'step={step}.pt')
        copy.after_save(disk / f'step={step}.pt', MiB)
    assert sorted(n for n in os.listdir(disk) if n.endswith('.pt')) == ['step=3.pt', 'step=4.pt']
    assert copy.step() is False and copy.status().saves == 4
    guard.close()
    copy.close()
    assert [n for n in os.listdir(disk) if n.startswith('.diskguard-reserve')] == []


def test_the_emergency_reserve_is_released_at_the_stop_and_removed_on_exit(disk: Path) -> None:
    guard = DiskGuard(disk, budget='6MiB', emergency_reserve='2MiB', on_full='stop')
    status = guard.status()
    assert status.emergency_reserve is not None
    reserve = Path(status.emergency_reserve[0])
    assert reserve.name.startswith(f'.diskguard-reserve-{os.getpid()}-')
    assert reserve.stat().st_blocks * 512 >= 2 * MiB, 'preallocated'
    assert diskguard.plan(disk).items == [], 'not a checkpoint'
    write_checkpoint(disk / 'step=1.pt', 2 * MiB)
    warned = quietly(guard.after_save, disk / 'step=1.pt', 2 * MiB)
    assert guard.should_stop and not reserve.exists()
    assert any('released the emergency reserve' in m for m in warned)
    script = (
        'import diskguard, os, sys; '
        f'g = diskguard.DiskGuard({str(disk)!r}, emergency_reserve="1MiB"); '
        'print(g.status().emergency_reserve[0], flush=True); sys.exit(0)'
    )
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, check=True)
    assert Path(done.stdout.strip()).parent == disk
    assert not Path(done.stdout.strip()).exists(), 'removed on exit'


# ----- hostile arguments -----

BAD_ARGUMENTS: list[tuple[str, Any]] = [
    ('warn', True),
    ('warn', math.nan),
    ('warn', math.inf),
    ('warn', -0.1),
    ('warn', 2),
    ('warn', '85%'),
    ('critical', False),
    ('critical', math.nan),
    ('critical', 0.0),
    ('min_free', True),
    ('min_free', -1),
    ('min_free', math.nan),
    ('min_free', 2**64),
    ('min_free', 'lots'),
    ('budget', 0),
    ('budget', -5),
    ('budget', math.inf),
    ('budget', True),
    ('budget', [1]),
    ('retention', 'keep3'),
    ('retention', KeepLast(3)),
    ('watch', '/dev/shm'),
    ('watch', 5),
    ('watch', [None]),
    ('watch', ['']),
    ('reserve', 'big'),
    ('reserve', -1),
    ('reserve', True),
    ('reserve', math.nan),
    ('on_full', 'delete'),
    ('on_full', None),
    ('on_full', 1),
    ('check_every_steps', 0),
    ('check_every_steps', -1),
    ('check_every_steps', 1.5),
    ('check_every_steps', True),
    ('check_every_steps', 2**64),
    ('check_every_seconds', 0),
    ('check_every_seconds', math.nan),
    ('check_every_seconds', math.inf),
    ('check_every_seconds', True),
    ('check_every_seconds', '10s'),
    ('statfs_timeout', 0),
    ('statfs_timeout', math.nan),
    ('statfs_timeout', -1.0),
    ('hysteresis', -0.1),
    ('hysteresis', 0.5),
    ('hysteresis', math.nan),
    ('rescan_interval', 0),
    ('rescan_interval', math.inf),
    ('emergency_reserve', 0),
    ('emergency_reserve', -1),
    ('emergency_reserve', True),
    ('emergency_reserve', 2**64),
]


@pytest.mark.parametrize(('name', 'value'), BAD_ARGUMENTS, ids=[f'{n}={v!r}' for n, v in BAD_ARGUMENTS])
def test_bad_arguments_are_named_with_what_is_allowed(disk: Path, name: str, value: Any) -> None:
    with pytest.raises((TypeError, ValueError)) as err:
        DiskGuard(disk, **{name: value})
    message = str(err.value)
    assert name in message and 'expected' in message, message
    assert [n for n in os.listdir(disk) if n.startswith('.diskguard')] == []


@pytest.mark.parametrize('path', [None, 5, '', 'a\0b', '/', '/dev/zero', '/etc/passwd', 'fifo', 'link'])
def test_bad_paths(path: Any, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / 'fifo')
    (tmp_path / 'link').symlink_to(tmp_path)
    if path in ('fifo', 'link'):
        path = tmp_path / path
    with pytest.raises((TypeError, ValueError)) as err:
        DiskGuard(path)
    message = str(err.value)
    assert message.startswith('path=') and ('expected' in message or 'cannot' in message), message


@pytest.mark.parametrize(
    ('call', 'args', 'name'),
    [
        ('before_save', ('step=1.pt', -1), 'nbytes'),
        ('before_save', ('step=1.pt', True), 'nbytes'),
        ('before_save', ('step=1.pt', 2**64), 'nbytes'),
        ('before_save', ('step=1.pt', 1.5), 'nbytes'),
        ('before_save', ('/etc/passwd', 10), 'path'),
        ('before_save', ('../escape.pt', 10), 'path'),
        ('after_save', ('step=1.pt', 'big'), 'nbytes'),
        ('after_save', (None, 10), 'path'),
        ('step', ('x',), 'step'),
        ('step', (1.5,), 'step'),
        ('step', (True,), 'step'),
        ('forecast', (-1, 60.0), 'remaining_saves'),
        ('forecast', (True, 60.0), 'remaining_saves'),
        ('forecast', (10, math.nan), 'save_interval'),
        ('forecast', (10, 0), 'save_interval'),
        ('forecast', (10, 60.0, -1), 'checkpoint_size'),
        ('load_state_dict', ('state',), 'state'),
        ('load_state_dict', ({'version': 1},), 'missing'),
        (
            'load_state_dict',
            (
                {
                    'version': 1,
                    'level': 'ok',
                    'largest_checkpoint': 0,
                    'saves': 0,
                    'calls': 0,
                    'last_step': 'x',
                    'trend': {},
                },
            ),
            'last_step',
        ),
        (
            'load_state_dict',
            ({'version': 1, 'level': 'bad', 'largest_checkpoint': 0, 'saves': 0, 'calls': 0, 'trend': {}},),
            'level',
        ),
        (
            'load_state_dict',
            ({'version': 1, 'level': 'ok', 'largest_checkpoint': 0, 'saves': -1, 'calls': 0, 'trend': {}},),
            'saves',
        ),
        (
            'load_state_dict',
            ({'version': 1, 'level': 'ok', 'largest_checkpoint': 0, 'saves': 0, 'calls': 0, 'trend': 'x'},),
            'state',
        ),
        ('load_state_dict', ({'version': 2},), 'version'),
    ],
)
def test_bad_call_arguments_are_named(disk: Path, call: str, args: tuple[Any, ...], name: str) -> None:
    guard = DiskGuard(disk, check_every_steps=1)
    fixed = tuple(str(disk / a) if isinstance(a, str) and a.endswith('.pt') else a for a in args)
    with pytest.raises((TypeError, ValueError)) as err:
        getattr(guard, call)(*fixed)
    assert name in str(err.value), str(err.value)
    assert os.listdir(disk) == []


# ----- guarded runs with real torch on real tmpfs -----


class Run:
    """A small model trained on synthetic data, saving through the guard every step."""

    def __init__(self, guard: DiskGuard, directory: Path, width: int = 384) -> None:
        torch = self.torch = import_torch()
        torch.manual_seed(0)
        self.guard, self.directory = guard, directory
        self.model = torch.nn.Sequential(
            torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, 1)
        )
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.saved: list[int] = []
        self.refused: InsufficientSpaceError | None = None

    def train_step(self) -> None:
        x = self.torch.randn(32, self.model[0].in_features)
        loss = (self.model(x) - x.sum(dim=1, keepdim=True)).pow(2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def save(self, step: int) -> bool:
        state = {'step': step, 'model': self.model.state_dict(), 'opt': self.opt.state_dict()}
        try:
            self.guard.save(state, self.directory / f'step={step}.pt')
        except InsufficientSpaceError as refused:
            self.refused = refused
            return False
        self.saved.append(step)
        return True

    def run(self, steps: int, between: Any = None) -> int:
        """Returns the last step run; stops when the guard says so (after a final save)."""
        for step in range(1, steps + 1):
            self.train_step()
            if not self.save(step):
                return step
            if between is not None:
                between(step)
            if self.guard.step(step):
                self.save(step + 1) if step + 1 not in self.saved else None
                return step
        return steps

    def check_every_checkpoint_loads(self) -> list[int]:
        left = sorted(p for p in os.listdir(self.directory) if p.endswith('.pt'))
        assert [p for p in os.listdir(self.directory) if p.startswith('.diskguard-')] == [], 'no partial save'
        steps = []
        for name in left:
            loaded = self.torch.load(self.directory / name, weights_only=True)
            assert set(loaded) == {'step', 'model', 'opt'}
            steps.append(loaded['step'])
        return sorted(steps)


def checkpoint_bytes() -> int:
    probe = Run.__new__(Run)
    Run.__init__(probe, None, Path('.'))  # type: ignore[arg-type]
    probe.train_step()
    return sum(t.numel() * t.element_size() for t in probe.model.state_dict().values()) * 3


@pytest.mark.torch
@pytest.mark.filterwarnings('ignore::diskguard.DiskSpaceWarning')
def test_keep_last_larger_than_the_disk_holds_still_finishes(tmp_path: Path) -> None:
    size = checkpoint_bytes()  # about 1.8 MB: model and Adam's two moments
    with mounted_tmpfs(tmp_path / 'disk', size='12m', nr_inodes=256) as disk:
        guard = DiskGuard(disk, retention=RetentionPolicy(KeepLast(50)), check_every_steps=1)
        run = Run(guard, disk)
        assert run.run(25) == 25 and run.refused is None and not guard.should_stop
        steps = run.check_every_checkpoint_loads()
        assert steps[-1] == 25, 'the newest is the last save'
        assert 12 * MiB // size - 3 <= len(steps) < 12 * MiB // size, steps
        assert guard.status().forced_deletions == 25 - len(steps)


@pytest.mark.torch
@pytest.mark.filterwarnings('ignore::diskguard.DiskSpaceWarning')
@pytest.mark.parametrize('fill', ['some', 'everything'])
def test_another_process_filling_the_disk_mid_run(tmp_path: Path, fill: str) -> None:
    with mounted_tmpfs(tmp_path / 'disk', size='16m', nr_inodes=256) as disk:
        (disk / 'ckpt').mkdir()
        directory = disk / 'ckpt'
        guard = DiskGuard(directory, retention=RetentionPolicy(KeepLast(3)), check_every_steps=1)
        run = Run(guard, directory)
        amount = 6 * MiB if fill == 'some' else 1 << 40
        writer = (
            'import sys\n'
            f'left = {amount}\n'
            f'with open({str(disk / "other-job.bin")!r}, "wb", buffering=0) as f:\n'
            '    while left > 0:\n'
            '        try:\n'
            '            left -= f.write(b"\\0" * min(left, 65536))\n'
            '        except OSError:\n'
            '            break\n'
        )

        def other_job(step: int) -> None:
            if step == 5:
                subprocess.run([sys.executable, '-c', writer], check=True)

        last = run.run(20, between=other_job)
        steps = run.check_every_checkpoint_loads()
        newest = diskguard.latest_complete(directory)
        assert newest is not None and run.torch.load(newest, weights_only=True)['step'] == steps[-1]
        if fill == 'some':
            assert last == 20 and not guard.should_stop, guard.stop_reason
            assert steps[-1] == 20
        else:
            assert guard.should_stop and last < 20
            assert guard.stop_reason is not None
            assert steps[-1] >= 5, 'what was saved before the disk filled survives'


@pytest.mark.torch
@pytest.mark.filterwarnings('ignore::diskguard.DiskSpaceWarning')
def test_a_budget_smaller_than_the_filesystem_is_honoured(tmp_path: Path) -> None:
    size = checkpoint_bytes()
    budget = 8 * MiB
    with mounted_tmpfs(tmp_path / 'disk', size='64m', nr_inodes=256) as disk:
        guard = DiskGuard(disk, budget=budget, retention=RetentionPolicy(KeepLast(20)), check_every_steps=1)
        run = Run(guard, disk)
        peak = 0

        def measure(step: int) -> None:
            nonlocal peak
            peak = max(peak, used_under(disk))

        assert run.run(15, between=measure) == 15 and not guard.should_stop
        assert peak <= budget, f'held {peak} under a budget of {budget}'
        steps = run.check_every_checkpoint_loads()
        assert steps[-1] == 15 and len(steps) >= budget // size - 3


# ----- found by review: each deleted or stopped where it must not -----


def test_a_relative_directory_stays_put_after_chdir_and_unpickling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for run in ('runA', 'runB'):
        (tmp_path / run / 'ckpt').mkdir(parents=True)
    for step in (1, 2, 3):
        write_checkpoint(tmp_path / 'runB' / 'ckpt' / f'step={step}.pt', 64 * 1024)
    monkeypatch.chdir(tmp_path / 'runA')
    guard = DiskGuard(
        'ckpt',
        warn=None,
        critical=None,
        budget='1MiB',
        reserve='600KiB',
        retention=RetentionPolicy(KeepLast(1)),
    )
    pickled = pickle.dumps(guard)
    monkeypatch.chdir(tmp_path / 'runB')  # a library or hydra changes the working directory
    quietly(guard.check)
    quietly(pickle.loads(pickled).check)
    assert sorted(os.listdir(tmp_path / 'runB' / 'ckpt')) == ['step=1.pt', 'step=2.pt', 'step=3.pt']
    assert guard.status().dir == str(tmp_path / 'runA' / 'ckpt')


def test_a_trailing_slash_does_not_get_a_symlink_past_the_refusal(tmp_path: Path) -> None:
    (tmp_path / 'real').mkdir()
    (tmp_path / 'link').symlink_to(tmp_path / 'real')
    for spelling in (f'{tmp_path}/link/', f'{tmp_path}/link/.', f'{tmp_path}/link'):
        with pytest.raises(ValueError, match='got a symlink'):
            DiskGuard(spelling)


def test_overwriting_a_checkpoint_is_not_counted_twice(disk: Path) -> None:
    for step in (1, 2, 3):
        write_checkpoint(disk / f'step={step}.pt')
    guard = DiskGuard(disk, warn=None, critical=None, budget='12MiB', retention=RetentionPolicy(KeepLast(4)))
    last = disk / 'last.pt'
    for _ in range(12):
        guard.before_save(last, MiB)
        write_checkpoint(last)
        quietly(guard.after_save, last, MiB)
    assert guard.status().held <= used_under(disk) + MiB // 4, 'the run holds what is on disk'
    assert sorted(os.listdir(disk)) == ['last.pt', 'step=1.pt', 'step=2.pt', 'step=3.pt']
    assert not guard.should_stop


def test_a_small_watched_tmpfs_is_graded_by_thresholds_not_by_checkpoint_size(tmp_path: Path) -> None:
    with (
        mounted_tmpfs(tmp_path / 'disk', size='64m', nr_inodes=256) as disk,
        mounted_tmpfs(tmp_path / 'shm', size='8m', nr_inodes=64) as shm,
    ):
        guard = DiskGuard(disk, watch=[shm])
        guard.before_save(disk / 'step=1.pt', 10 * MiB)  # 10 MiB would never fit in the 8 MiB /dev/shm
        write_checkpoint(disk / 'step=1.pt', 10 * MiB)
        assert quietly(guard.after_save, disk / 'step=1.pt', 10 * MiB) == []
        assert not guard.should_stop, guard.stop_reason


def test_a_refused_emergency_reserve_leaves_no_file(disk: Path) -> None:
    for size in (2**63, 2**64 - 1, '8EiB'):
        with pytest.raises(ValueError, match='emergency_reserve='):
            DiskGuard(disk, emergency_reserve=size)
    assert os.listdir(disk) == []


def test_a_forked_child_leaves_the_parents_reserve_alone(disk: Path) -> None:
    script = (
        'import os, sys, diskguard\n'
        f'g = diskguard.DiskGuard({str(disk)!r}, emergency_reserve="1MiB")\n'
        'pid = os.fork()\n'
        'if pid == 0:\n'
        '    sys.exit(0)  # a data-loader worker ending normally: its finalizers run\n'
        'os.waitpid(pid, 0)\n'
        'print(sorted(os.listdir(sys.argv[1])))\n'
    )
    done = subprocess.run(
        [sys.executable, '-c', script, str(disk)], capture_output=True, text=True, timeout=60, check=True
    )
    assert '.diskguard-reserve-' in done.stdout, done.stdout + done.stderr
    assert os.listdir(disk) == [], 'and the parent removes it on exit'


def test_making_room_on_btrfs_deletes_only_what_is_needed(btrfs_quota: Path) -> None:
    """btrfs shows freed space only at its next commit: the guard credits what it deleted instead
    of deleting every deletable checkpoint while statfs still reads full."""
    ckpt = btrfs_quota / 'ckpt'
    ckpt.mkdir()
    for step in range(1, 7):
        write_checkpoint(ckpt / f'step={step}.pt', 6 * MiB)
    os.sync()
    avail = diskguard.usage(ckpt).avail
    filler = btrfs_quota.parent / 'other-job.bin'  # outside the quota'd subvolume
    with open(filler, 'wb') as f:
        f.truncate(0)
        f.write(b'\1' * (avail - 40 * MiB))
        os.fsync(f.fileno())
    os.sync()
    avail = diskguard.usage(ckpt).avail
    # No room above min_free: the next save and a final one (about 13 MiB) need three deletions.
    guard = DiskGuard(ckpt, warn=None, critical=None, min_free=avail, retention=RetentionPolicy(KeepLast(6)))
    quietly(guard.check)
    left = sorted(os.listdir(ckpt))
    assert 'step=6.pt' in left
    assert len(left) == 3, f'three 6 MiB deletions make the room, not five: {left}'


def test_the_emergency_reserve_is_released_before_a_save_is_refused(disk: Path) -> None:
    guard = DiskGuard(
        disk, warn=None, critical=None, budget='10MiB', emergency_reserve='5MiB', on_full='stop'
    )
    write_checkpoint(disk / 'step=1.pt')
    quietly(guard.after_save, disk / 'step=1.pt', MiB)
    messages = quietly(guard.before_save, disk / 'step=2.pt', 5 * MiB)  # fits only without the reserve
    assert guard.should_stop and 'without the emergency reserve' in (guard.stop_reason or '')
    assert not [n for n in os.listdir(disk) if n.startswith('.diskguard-reserve-')]
    assert any('released the emergency reserve' in m for m in messages), messages


def test_a_refusal_is_not_replaced_by_a_warning_turned_into_an_error(
    disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_checkpoint(disk / 'step=1.pt')
    guard = DiskGuard(disk, budget=2 * MiB)
    caplog.set_level(logging.INFO, logger='diskguard')
    with warnings.catch_warnings():
        warnings.simplefilter('error', DiskSpaceWarning)
        with pytest.raises(InsufficientSpaceError):
            guard.before_save(disk / 'step=2.pt', 3 * MiB)
    assert any('stopping the run' in r.getMessage() for r in caplog.records), 'every event still logged'


def test_after_save_measures_the_file_rather_than_trusting_the_caller(disk: Path) -> None:
    for step in (1, 2):
        write_checkpoint(disk / f'step={step}.pt')
    guard = DiskGuard(disk, warn=None, critical=None, budget='8MiB', retention=RetentionPolicy(KeepLast(3)))
    write_checkpoint(disk / 'step=3.pt')
    assert quietly(guard.after_save, disk / 'step=3.pt', 2**60) == []
    assert sorted(os.listdir(disk)) == ['step=1.pt', 'step=2.pt', 'step=3.pt']
    assert not guard.should_stop and guard.status().held <= used_under(disk)
