"""diskguard.TrendMonitor and forecast_run through the Python API."""

from __future__ import annotations

import time
from pathlib import Path

import diskguard
import pytest
from diskguard import TrendMonitor

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
    with pytest.raises(ValueError, match='fill_significance=-1: expected a t-statistic >= 0'):
        TrendMonitor(fill_significance=-1)
    with pytest.raises(ValueError, match='capacity=2'):
        TrendMonitor(capacity=2)
    m = TrendMonitor()
    with pytest.raises(ValueError, match='t=NaN'):
        m.add_sample(1, 1, t=float('nan'))
    with pytest.raises(ValueError, match='not warmed up'):
        m.forecast_run(1, 60, remaining_saves=1)


def test_evaluation_harness_targets() -> None:
    """The committed harness (benchmarks/trend_harness.py), on its published seed and two others:
    diskguard warns no later than the least-squares rule on every trace that fills, and never on a
    trace that does not."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent.parent / 'benchmarks'))
    import trend_harness

    for seed in (0, 100, 500):
        results = trend_harness.evaluate(seed)
        for name, by_method in results.items():
            ours, least_squares = by_method['diskguard'], by_method['least squares']
            if trend_harness.fills(name):
                assert ours.warned, (seed, name)
                assert ours.lead_hours is not None
                assert ours.lead_hours >= (least_squares.lead_hours or 0.0), (seed, name)
            else:
                assert ours.alarm_episodes == 0, (seed, name)
        sawtooth = results['save-then-prune sawtooth']['least squares']
        assert sawtooth.alarm_episodes > 0, 'the sawtooth fools the baseline, so the trace tests something'


def test_readme_forecast_examples_hold() -> None:
    full = diskguard.forecast_run('80GiB', '10GiB', save_interval=1800, remaining_saves=40)
    assert full.summary == (
        'full in ~9 checkpoints (save 9 of 40, in ~4.5 h): the run needs 400.0 GiB of 80.0 GiB available'
    )
    kept = diskguard.forecast_run('80GiB', '10GiB', save_interval=1800, remaining_saves=40, keep_last=3)
    assert kept.summary == 'fits: the remaining 40 saves need at most 40.0 GiB more of 80.0 GiB available'
