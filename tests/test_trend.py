"""diskguard.TrendMonitor and forecast_run through the Python API."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import diskguard
import pytest
from diskguard import TrendMonitor
from hypothesis import given, settings
from hypothesis import strategies as st

GB = 10**9


def test_linear_fill_forecast() -> None:
    m = TrendMonitor()
    assert m.estimate() is None and m.time_to_full() is None, 'nothing before warmup'
    for minute in range(361):
        used = 100 * GB + 2_000_000 * 60 * minute  # 2 MB/s
        m.add_sample(used, 500 * GB - used, t=60.0 * minute)
    e = m.estimate()
    assert e is not None
    assert e.rate == pytest.approx(2e6) and e.step_rate == 0 and e.next_save == 0
    assert e.time_to_full == pytest.approx(e.avail / 2e6)
    assert m.will_fill_within(e.avail / 2e6 + 1) and not m.will_fill_within(3600)
    assert m.is_rising_fast(1e6) and not m.is_rising_fast(3e6)


def test_tagged_save_then_prune_never_alarms_but_untagged_would_look_like_growth() -> None:
    tagged, untagged = TrendMonitor(), TrendMonitor()
    used, size = 100 * GB, 40 * GB
    alarms = []
    for minute in range(48 * 60):
        t = 60.0 * minute
        if minute % 60 == 0:
            used += size
            tagged.record_write(size, t=t)
        if minute % 60 == 30:
            used -= size
            tagged.record_free(size, t=t)
        tagged.add_sample(used, 200 * GB - used, t=t)
        untagged.add_sample(used, 200 * GB - used, t=t)
        alarms.append(tagged.will_fill_within(24 * 3600))
    assert not any(alarms)
    e = tagged.estimate()
    assert e is not None and abs(e.rate) < 1e3


def test_saves_without_retention_are_growth_and_the_run_forecast_counts_checkpoints() -> None:
    m = TrendMonitor()
    used = 100 * GB
    for minute in range(8 * 60):
        t = 60.0 * minute
        if minute % 60 == 0:
            used += 10 * GB
            m.record_write(10 * GB, t=t)
        m.add_sample(used, 300 * GB - used, t=t)
    e = m.estimate()
    assert e is not None and e.step_rate == pytest.approx(10 * GB / 3600, rel=0.01)
    forecast = m.forecast_run(10 * GB, 3600, remaining_saves=30)
    assert not forecast.fits and forecast.saves_until_full == 13, forecast.summary
    assert str(forecast).startswith('full in ~13 checkpoints (save 13 of 30, in ~13.0 h)')
    kept = m.forecast_run('10GB', 3600, remaining_seconds=30 * 3600, keep_last=2, existing=8)
    assert kept.fits and kept.peak_bytes == pytest.approx(10 * GB), kept.summary


def test_forecast_run_function() -> None:
    f = diskguard.forecast_run('100GiB', '10GiB', 600, remaining_saves=20, keep_last=3, existing=0)
    assert f.fits and f.peak_bytes == 40 * 2**30 and f.peak_at_save == 4
    f = diskguard.forecast_run('35GiB', '10GiB', 600, remaining_saves=20, keep_last=3)
    assert f.saves_until_full == 4 and f.seconds_until_full == 2400
    with pytest.raises(ValueError, match='give exactly one'):
        diskguard.forecast_run(1, 1, 600)
    with pytest.raises(ValueError, match='save_interval=0'):
        diskguard.forecast_run(1, 1, 0, remaining_saves=1)
    with pytest.raises(ValueError, match='keep_last=0'):
        diskguard.forecast_run(1, 1, 1, remaining_saves=1, keep_last=0)


def test_monitor_samples_a_real_path_with_monotonic_time(tmpfs: Path) -> None:
    m = TrendMonitor(warmup=0.0, window=60.0)
    before = time.monotonic()
    u = m.sample(tmpfs)
    assert u.total == 16 * 2**20 and len(m) == 1
    with pytest.raises(ValueError, match='time went backwards'):
        m.add_sample(0, 0, t=before - 10)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match='window=-1: expected a positive'):
        TrendMonitor(window=-1)
    with pytest.raises(ValueError, match='fill_significance=-1: expected a finite t-statistic >= 0'):
        TrendMonitor(fill_significance=-1)
    with pytest.raises(ValueError, match='capacity=2: expected from 8'):
        TrendMonitor(capacity=2)
    m = TrendMonitor()
    with pytest.raises(ValueError, match='t=NaN'):
        m.add_sample(1, 1, t=float('nan'))
    with pytest.raises(ValueError, match='no sample yet'):
        m.forecast_run(1, 60, remaining_saves=1)


def test_evaluation_harness_targets() -> None:
    """The committed harness (benchmarks/trend_harness.py), on its published seed and two others.
    Long traces: diskguard warns no later than least squares over 6 h on every fill. Run starts
    (issue 18): smooth fills within 10 minutes of least squares over 1 h; untagged staircases alarm
    by their third step (their second where ten more steps would fill the disk) and trail least
    squares over 1 h by at most one step (and the five minutes a step must stand), the step that
    rule alarms on and that looks exactly like one file landing; no alarm at all, counted from t = 0, on any trace that never fills (one file
    of any size, a few files within minutes, the sawtooth, a noisy and an idle disk)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent.parent / 'benchmarks'))
    import trend_harness

    for seed in (0, 100, 400):
        rows = trend_harness.evaluate(seed)
        assert sum(row.early for row in rows) == 18 and sum(not row.early for row in rows) == 9
        for row in rows:
            ours = row.outcomes['diskguard']
            if not row.fills:
                assert ours.alarm_episodes == 0, (seed, row.name)
                continue
            assert ours.warned and ours.lead_hours is not None, (seed, row.name)
            if row.target == '1':
                assert row.margin >= -10 / 60 and row.met, (seed, row.name, row.margin)
            elif row.target == '2':
                assert row.step_hours is not None and row.alarm_step is not None
                assert row.alarm_step <= 3 + 1e-9, (seed, row.name, row.alarm_step)
                stand = (300 + trend_harness.STEP) / 3600  # a step stands five minutes, seen a sample later
                assert row.margin >= -row.step_hours - stand, (seed, row.name, row.margin)
            else:
                assert row.met, (seed, row.name, row.margin)
        by_name = {row.name: row for row in rows}
        for name in ('save-then-prune sawtooth', 'save-then-prune sawtooth, untagged'):
            sawtooth = by_name[name].outcomes['least squares 6 h']
            assert sawtooth.alarm_episodes > 0, (
                'the sawtooth fools the baseline, so the trace tests something'
            )
        for name in ('noisy shared disk', 'one file, 1/5 of the free space', 'a few files within minutes'):
            fooled = by_name[f'run start: {name}'].outcomes['least squares 1 h']
            assert fooled.alarm_episodes > 0, f'{name} fools the 1 h baseline'


def test_an_early_fill_alarms_within_minutes() -> None:
    m = TrendMonitor()
    first_alarm = None
    for minute in range(60):
        used = 700 * GB + minute * GB + (GB // 5 if minute % 2 else 0)  # 60 GB/h, 0.2 GB wobble
        m.add_sample(used, 1000 * GB - used, t=60.0 * minute)
        if first_alarm is None and m.will_fill_within(24 * 3600):
            first_alarm = minute
    assert first_alarm is not None and first_alarm <= 10
    e = m.estimate()
    assert e is not None and e.rate == pytest.approx(GB / 60, rel=0.05)
    assert e.time_to_full == pytest.approx(e.avail / (GB / 60), rel=0.05)
    f = m.forecast_run(10 * GB, 3600, remaining_saves=10)
    assert f.saves_until_full == 4, f.summary  # the early background rate counts in the run forecast


def test_an_untagged_staircase_is_a_fill_from_its_second_step_and_the_same_steps_pruned_are_not() -> None:
    staircase, sawtooth = TrendMonitor(), TrendMonitor()
    alarms: dict[str, list[int]] = {'staircase': [], 'sawtooth': []}
    for minute in range(240):
        t = 60.0 * minute
        stairs = 700 * GB + (minute // 30) * 30 * GB  # 30 GB every 30 min, never deleted
        # Steady state: two checkpoints at t = 0, the older pruned at minute 20, then a save every
        # 30 minutes pruned 20 minutes later. Untagged, like the staircase.
        teeth = 700 * GB + (60 * GB if minute % 30 < 20 else 30 * GB)
        staircase.add_sample(stairs, 1000 * GB - stairs, t=t)
        sawtooth.add_sample(teeth, 1000 * GB - teeth, t=t)
        for name, m in (('staircase', staircase), ('sawtooth', sawtooth)):
            if m.will_fill_within(24 * 3600):
                alarms[name].append(minute)
    # The first step is a burst like any file landing; the second counts once it has stood five
    # minutes (a save pruned right away is no step): eight more would fill the disk.
    assert alarms['staircase'] == list(range(65, 240))
    assert alarms['sawtooth'] == []
    assert (staircase.shape(), sawtooth.shape()) == ('staircase', 'sawtooth')


def _alarms(
    used_at: Callable[[float], float], seconds: float, interval: float = 60.0
) -> tuple[TrendMonitor, list[float]]:
    """Samples `700 GB + used_at(t)` of a 1000 GB disk (with a 0.2 GB wobble) every `interval` for
    `seconds`; returns the monitor and the times `will_fill_within(24 h)` held."""
    m, alarms = TrendMonitor(), []
    for i in range(int(seconds / interval) + 1):
        t = i * interval
        used = int(700 * GB + used_at(t) + (GB // 5 if i % 2 else 0))
        m.add_sample(used, 1000 * GB - used, t=t)
        if m.will_fill_within(24 * 3600):
            alarms.append(t)
    return m, alarms


@pytest.mark.parametrize('share', [0.2, 0.5, 0.95])
def test_a_single_burst_of_any_size_never_alarms(share: float) -> None:
    """One file of `share` of the free space lands 40 minutes in, then nothing: a burst, not a rate
    (main alarmed at once and for hours at a fifth)."""
    m, alarms = _alarms(lambda t: share * 300 * GB if t >= 2400 else 0.0, 3 * 3600)
    assert alarms == [] and m.time_to_full() is None
    assert m.shape() == 'burst'


def test_a_multi_file_burst_never_alarms() -> None:
    """Three files, 28 GB in all, land within two minutes (the harness's seed 400 case), then
    nothing: one burst."""
    files = [(2400.0, 12 * GB), (2460.0, 5 * GB), (2520.0, 11 * GB)]
    m, alarms = _alarms(lambda t: sum(size for at, size in files if at <= t), 4 * 3600)
    assert alarms == [] and m.shape() == 'burst'


def test_a_regular_staircase_alarms_by_its_third_step() -> None:
    """20 GB every 30 minutes, untagged and never deleted: gentle (the headroom holds more than ten
    steps), so its schedule counts from the third step (once it has stood five minutes), at the
    average rate of the steps seen."""
    m, alarms = _alarms(lambda t: (t // 1800) * 20 * GB, 3 * 3600)
    assert alarms and 2 * 1800 < alarms[0] <= 3 * 1800 + 300, alarms[:3]
    assert alarms == [a for a in alarms if a >= alarms[0]] and alarms[-1] == 3 * 3600
    e = m.estimate()
    assert e is not None and e.background_rate == pytest.approx(20 * GB / 1800, rel=0.05)
    assert m.shape() == 'staircase'


@pytest.mark.parametrize('interval', [5.0, 30.0, 60.0])
def test_a_ramp_is_seen_after_five_minutes_whatever_the_interval(interval: float) -> None:
    """A steady fill from t = 0 (60 GB/h, full in about 5 h) is a ramp once it has lasted five
    minutes, at any sampling interval (main answered after 180 s, 'from the third sample')."""
    m, alarms = _alarms(lambda t: t * GB / 60, 1800, interval)
    assert alarms and 300 - 2 * 60 <= alarms[0] <= 300 + 2 * 60, (interval, alarms[0])
    assert m.shape() == 'ramp'
    e = m.estimate()
    assert e is not None and e.rate == pytest.approx(GB / 60, rel=0.05)


def test_state_dict_without_a_time_works_on_the_callers_clock() -> None:
    """Regression (issue 16): samples on time.time() (far ahead of time.monotonic()) made the
    unargued state_dict() raise ValueError while pickling the same monitor worked."""
    import pickle

    m = TrendMonitor()
    now = time.time()
    for minute in range(10):
        m.add_sample(700 * GB + minute * GB, 300 * GB - minute * GB, t=now + 60.0 * minute)
    state = m.state_dict()
    assert state['latest'][0] == 0.0, 'ages from the latest sample, the newest moment that clock showed'
    resumed = TrendMonitor()
    resumed.load_state_dict(state, t=now + 600.0)
    resumed.add_sample(710 * GB, 290 * GB, t=now + 660.0)
    assert len(resumed) == 11
    again = pickle.loads(pickle.dumps(m)).state_dict()  # restored on the monotonic clock: ages go on
    assert len(again['samples']) == 10 and 0 <= again['latest'][0] < 60


def test_state_carries_what_tells_a_burst_from_a_ramp() -> None:
    """A monitor resumed from its state_dict reads the same shape and raises the same alarm."""
    burst, _ = _alarms(lambda t: 100 * GB if t >= 2400 else 0.0, 3600)
    ramp, _ = _alarms(lambda t: t * GB / 60, 1200)
    for m, shape, alarm in ((burst, 'burst', False), (ramp, 'ramp', True)):
        resumed = TrendMonitor()
        resumed.load_state_dict(m.state_dict(), t=5.0)
        assert (m.shape(), resumed.shape()) == (shape, shape)
        assert m.will_fill_within(24 * 3600) is resumed.will_fill_within(24 * 3600) is alarm


def test_the_first_saves_of_a_tagged_save_then_prune_job_do_not_alarm() -> None:
    m = TrendMonitor()
    used = 700 * GB
    for minute in range(12 * 60):
        t = 60.0 * minute
        if minute % 60 == 0 and minute:
            used += 20 * GB
            m.record_write(20 * GB, t=t)
        if minute % 60 == 20 and minute >= 120:
            used -= 20 * GB
            m.record_free(20 * GB, t=t)
        m.add_sample(used, 1000 * GB - used, t=t)
        assert not m.will_fill_within(24 * 3600), (minute, m.estimate())


def test_state_carries_the_early_forecast() -> None:
    m = TrendMonitor()
    for minute in range(20):
        used = 700 * GB + minute * GB + (GB // 5 if minute % 2 else 0)
        m.add_sample(used, 1000 * GB - used, t=60.0 * minute)
    resumed = TrendMonitor()
    resumed.load_state_dict(m.state_dict(t=19 * 60.0), t=5.0)
    before, after = m.estimate(), resumed.estimate()
    assert before is not None and after is not None and after.time_to_full is not None
    assert after.rate == pytest.approx(before.rate)


def test_readme_forecast_examples_hold() -> None:
    full = diskguard.forecast_run('80GiB', '10GiB', save_interval=1800, remaining_saves=40)
    assert full.summary == (
        'full in ~9 checkpoints (save 9 of 40, in ~4.5 h): the run needs 400.0 GiB of 80.0 GiB available'
    )
    kept = diskguard.forecast_run('80GiB', '10GiB', save_interval=1800, remaining_saves=40, keep_last=3)
    assert kept.summary == 'fits: the remaining 40 saves need at most 40.0 GiB more of 80.0 GiB available'


def _busy_monitor(start: float) -> TrendMonitor:
    """Seven hours of a save-then-prune job on a slowly filling disk, from `start`."""
    m = TrendMonitor()
    for minute in range(7 * 60):
        t = start + 60.0 * minute
        if minute % 60 == 5:
            m.record_write(5 * GB, t=t)
        if minute % 60 == 35:
            m.record_free(5 * GB, t=t)
        used = 100 * GB + 1_000_000 * 60 * minute
        m.add_sample(used, 400 * GB - used, t=t)
    return m


def test_state_dict_is_plain_types_with_ages_and_continues_on_another_clock() -> None:
    m = _busy_monitor(start=50_000.0)
    saved_at = 50_000.0 + 7 * 3600.0
    state = m.state_dict(t=saved_at)

    def plain(value: object) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or type(value) in (str, int, float, bool)

    assert plain(state)
    assert min(row[0] for row in state['samples']) >= 60.0, 'ages, not clock readings'
    resumed = TrendMonitor()
    resumed.load_state_dict(state, t=10.0)  # another host, booted ten seconds ago
    assert resumed.state_dict(t=10.0) == state
    before, after = m.estimate(), resumed.estimate()
    assert before is not None and after is not None
    assert after.rate == pytest.approx(before.rate) and after.time_to_full == pytest.approx(
        before.time_to_full
    )
    resumed.add_sample(300 * GB, 100 * GB, t=20.0)
    assert len(resumed) == len(m) + 1
    with pytest.raises(ValueError, match='time went backwards'):
        resumed.add_sample(1, 1, t=5.0)


def test_state_dict_survives_a_weights_only_style_round_trip_through_json() -> None:
    import json

    m = _busy_monitor(start=0.0)
    state = m.state_dict(t=7 * 3600.0)
    again = TrendMonitor()
    again.load_state_dict(json.loads(json.dumps(state)), t=7 * 3600.0)
    assert again.state_dict(t=7 * 3600.0) == state


def test_records_and_monitor_pickle() -> None:
    import pickle

    # Its clock runs ahead of this host's monotonic one: ages count from its latest event.
    m = _busy_monitor(start=time.monotonic() + 1000.0)
    copy = pickle.loads(pickle.dumps(m))
    assert isinstance(copy, TrendMonitor) and len(copy) == len(m)
    e, e_copy = m.estimate(), copy.estimate()
    assert e is not None and e_copy is not None
    assert e_copy.rate == pytest.approx(e.rate) and e_copy.avail == e.avail
    restored = pickle.loads(pickle.dumps(e))
    assert [getattr(restored, f) for f in ('rate', 'rate_error', 'next_save', 'time_to_full_low')] == [
        e.rate,
        e.rate_error,
        e.next_save,
        e.time_to_full_low,
    ]
    f = diskguard.forecast_run('35GiB', '10GiB', 600, remaining_saves=20, keep_last=3)
    g = pickle.loads(pickle.dumps(f))
    assert (g.peak_bytes, g.peak_at_save, g.fits, g.saves_until_full, g.seconds_until_full, g.summary) == (
        f.peak_bytes,
        f.peak_at_save,
        f.fits,
        f.saves_until_full,
        f.seconds_until_full,
        f.summary,
    )
    empty = pickle.loads(pickle.dumps(TrendMonitor(window=600.0, capacity=10)))
    assert len(empty) == 0 and empty.state_dict()['capacity'] == 10


def test_corrupt_state_dicts_get_clear_errors() -> None:
    good = _busy_monitor(start=0.0).state_dict(t=7 * 3600.0)
    fresh = TrendMonitor()

    def corrupt(**changes: object) -> dict[str, object]:
        state = dict(good)
        state.update(changes)
        return state

    cases: list[tuple[object, type[Exception], str]] = [
        ([1, 2], TypeError, 'state=.*expected a dict'),
        ({}, ValueError, 'no .version.'),
        (corrupt(version=2), ValueError, r"state\['version'\]=2"),
        (corrupt(samples='abc'), TypeError, 'samples=.*a list of rows'),
        (corrupt(samples=[[1.0, 2.0]]), TypeError, 'expected a list of 3 numbers'),
        (corrupt(samples=[[1.0, True, 2.0]]), TypeError, 'samples=True'),
        (corrupt(samples=[[float('nan'), 1.0, 1.0]]), ValueError, r"state\['samples'\] age=NaN"),
        (corrupt(samples=[[1.0, 1.0, 1.0]] * 10_000), ValueError, 'at most capacity=720'),
        (corrupt(capacity=10**12), ValueError, 'capacity=1000000000000'),
        (corrupt(capacity=2**64), ValueError, 'capacity=18446744073709551616'),
        (corrupt(window=-1.0), ValueError, 'window=-1'),
        (corrupt(saves=[[1.0, 0.0]] * 10), ValueError, 'at most 9'),
        (corrupt(latest=[-1.0, 1.0, 1.0]), ValueError, r"state\['latest'\] age=-1"),
        (corrupt(freed_since_write=1), TypeError, 'freed_since_write=1: expected True or False'),
        (corrupt(first_free_age=-3.0), ValueError, r"state\['first_free_age'\]=-3"),
        (corrupt(offset=float('inf')), ValueError, r"state\['offset'\]=inf"),
    ]
    for state, error, message in cases:
        with pytest.raises(error, match=message):
            fresh.load_state_dict(state, t=1.0)  # type: ignore[arg-type]
    assert len(fresh) == 0, 'a refused state leaves the monitor as it was'


def test_capacity_is_bounded_and_huge_runs_are_instant() -> None:
    for capacity, message in [
        (10**12, 'capacity=1000000000000: expected from 8 to 100000 samples'),
        (2**62, 'capacity=4611686018427387904: expected from 8 to 100000'),
        (2**64, r'capacity=18446744073709551616: expected a whole number from 0 to'),
        (-1, 'capacity=-1: expected a whole number'),
    ]:
        with pytest.raises(ValueError, match=message):
            TrendMonitor(capacity=capacity)
    assert len(TrendMonitor(capacity=100_000)) == 0
    started = time.perf_counter()
    f = diskguard.forecast_run('1TiB', '10GiB', 60, remaining_saves=2**32 - 1)
    g = diskguard.forecast_run('1TiB', '10GiB', 60, remaining_seconds=1e300, keep_last=3)
    assert time.perf_counter() - started < 0.05
    assert f.saves_until_full == 103 and not f.fits
    assert g.fits and g.peak_bytes == 40 * 2**30


def test_monitor_forecast_run_works_from_the_first_sample() -> None:
    m = TrendMonitor()
    with pytest.raises(ValueError, match='no sample yet'):
        m.forecast_run(1, 60, remaining_saves=1)
    m.add_sample(700 * GB, 300 * GB, t=0.0)
    f = m.forecast_run(30 * GB, 1800, remaining_saves=20)
    assert f.saves_until_full == 11 and f.seconds_until_full == 11 * 1800


BAD_NUMBERS: list[tuple[object, type[Exception]]] = [
    (True, TypeError),
    ('1', TypeError),
    ([1], TypeError),
    (float('nan'), ValueError),
    (float('inf'), ValueError),
    (-1.0, ValueError),
]


@pytest.mark.parametrize(
    ('name', 'value', 'error'),
    [(n, v, e) for n in ('window', 'warmup', 'fill_significance') for v, e in BAD_NUMBERS],
)
def test_bad_monitor_settings_name_the_argument(name: str, value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=f'^{name}='):
        TrendMonitor(**{name: value})  # type: ignore[arg-type]


def test_bad_arguments_everywhere_name_the_argument() -> None:
    m = TrendMonitor()
    m.add_sample(1, 1, t=1.0)
    calls: list[tuple[str, object, type[Exception]]] = [
        ('window', lambda: TrendMonitor(window=0), ValueError),
        ('capacity', lambda: TrendMonitor(capacity=True), TypeError),
        ('capacity', lambda: TrendMonitor(capacity=720.0), TypeError),
        ('used', lambda: m.add_sample(-1, 1, t=2.0), ValueError),
        ('used', lambda: m.add_sample(2**64, 1, t=2.0), ValueError),
        ('avail', lambda: m.add_sample(1, 1.5, t=2.0), TypeError),
        ('avail', lambda: m.add_sample(1, False, t=2.0), TypeError),
        ('t', lambda: m.add_sample(1, 1, t=float('inf')), ValueError),
        ('t', lambda: m.add_sample(1, 1, t=-5.0), ValueError),
        ('t', lambda: m.add_sample(1, 1, t='now'), TypeError),
        ('nbytes', lambda: m.record_write(-1, t=2.0), ValueError),
        ('nbytes', lambda: m.record_free(None, t=2.0), TypeError),
        ('seconds', lambda: m.will_fill_within(float('nan')), ValueError),
        ('seconds', lambda: m.will_fill_within(-1), ValueError),
        ('seconds', lambda: m.will_fill_within(True), TypeError),
        ('growth_threshold', lambda: m.is_rising_fast(float('nan')), ValueError),
        ('window', lambda: m.is_rising_fast(1.0, window=0), ValueError),
        ('window', lambda: m.is_rising_fast(1.0, window=float('nan')), ValueError),
        ('avail', lambda: diskguard.forecast_run(None, 1, 60, remaining_saves=1), ValueError),
        ('checkpoint_size', lambda: diskguard.forecast_run(1, None, 60, remaining_saves=1), ValueError),
        ('checkpoint_size', lambda: diskguard.forecast_run(1, -5, 60, remaining_saves=1), ValueError),
        ('save_interval', lambda: diskguard.forecast_run(1, 1, float('nan'), remaining_saves=1), ValueError),
        ('save_interval', lambda: diskguard.forecast_run(1, 1, -60, remaining_saves=1), ValueError),
        ('save_interval', lambda: diskguard.forecast_run(1, 1, True, remaining_saves=1), TypeError),
        ('remaining_saves', lambda: diskguard.forecast_run(1, 1, 60, remaining_saves=2**32), ValueError),
        ('remaining_saves', lambda: diskguard.forecast_run(1, 1, 60, remaining_saves=-1), ValueError),
        ('remaining_saves', lambda: diskguard.forecast_run(1, 1, 60, remaining_saves=1.0), TypeError),
        (
            'remaining_seconds',
            lambda: diskguard.forecast_run(1, 1, 60, remaining_seconds=float('nan')),
            ValueError,
        ),
        ('remaining_seconds', lambda: diskguard.forecast_run(1, 1, 60, remaining_seconds=-1), ValueError),
        (
            'remaining_saves / remaining_seconds',
            lambda: diskguard.forecast_run(1, 1, 60, remaining_saves=1, remaining_seconds=1),
            ValueError,
        ),
        ('keep_last', lambda: diskguard.forecast_run(1, 1, 60, remaining_saves=1, keep_last=0), ValueError),
        ('keep_last', lambda: diskguard.forecast_run(1, 1, 60, remaining_saves=1, keep_last=True), TypeError),
        ('existing', lambda: diskguard.forecast_run(1, 1, 60, remaining_saves=1, existing=-1), ValueError),
        ('existing', lambda: diskguard.forecast_run(1, 1, 60, remaining_saves=1, existing='3'), TypeError),
        (
            'background_rate',
            lambda: diskguard.forecast_run(1, 1, 60, remaining_saves=1, background_rate=float('inf')),
            ValueError,
        ),
        (
            'background_rate',
            lambda: diskguard.forecast_run(1, 1, 60, remaining_saves=1, background_rate=False),
            TypeError,
        ),
        ('keep_free', lambda: diskguard.forecast_run(1, 1, 60, remaining_saves=1, keep_free=-1), ValueError),
        ('checkpoint_size', lambda: m.forecast_run(None, 60, remaining_saves=1), ValueError),
        ('save_interval', lambda: m.forecast_run(1, 0, remaining_saves=1), ValueError),
    ]
    for name, call, error in calls:
        with pytest.raises(error, match=f'^{re.escape(name)}='):
            call()  # type: ignore[operator]


ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(['', '10GiB', 'nan', '-1', 'x']),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=2000)
@given(
    settings_=st.dictionaries(
        st.sampled_from(['window', 'capacity', 'warmup', 'fill_significance']), ANYTHING
    ),
    calls=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    'add_sample',
                    'record_write',
                    'record_free',
                    'will_fill_within',
                    'is_rising_fast',
                    'forecast_run',
                    'state',
                ]
            ),
            st.lists(ANYTHING, min_size=3, max_size=3),
        ),
        max_size=12,
    ),
)
def test_any_arguments_give_a_result_or_a_type_or_value_error(
    settings_: dict[str, object], calls: list[tuple[str, list[object]]]
) -> None:
    """Whatever the trend API is given, it answers or raises TypeError/ValueError: no panic, no
    abort, no hang (the deadline), no unbounded memory."""
    try:
        m = TrendMonitor(**settings_)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        m = TrendMonitor(window=3600.0, warmup=0.0, capacity=8)
    for name, (a, b, c) in calls:
        try:
            if name == 'add_sample':
                m.add_sample(a, b, t=c)  # type: ignore[arg-type]
            elif name in ('record_write', 'record_free'):
                getattr(m, name)(a, t=b)
            elif name == 'will_fill_within':
                m.will_fill_within(a)  # type: ignore[arg-type]
            elif name == 'is_rising_fast':
                m.is_rising_fast(a, b)  # type: ignore[arg-type]
            elif name == 'forecast_run':
                diskguard.forecast_run(a, b, c, remaining_saves=a, keep_last=b, existing=c)  # type: ignore[arg-type]
                diskguard.forecast_run(a, b, c, remaining_seconds=c, background_rate=a, keep_free=b)  # type: ignore[arg-type]
                m.forecast_run(a, b, remaining_seconds=c)  # type: ignore[arg-type]
            else:
                state = m.state_dict(t=a)  # type: ignore[arg-type]
                state[str(b)] = c
                m.load_state_dict(state, t=a)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            pass
        m.estimate()
        m.time_to_full()
