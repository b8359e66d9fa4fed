"""Evaluation harness for time-to-full forecasts: does each method warn before the disk is full,
how early, and does it cry wolf on disks that never fill?

Run: ``python benchmarks/trend_harness.py``. Deterministic (seeded). Every trace is sampled every
2 minutes; every method is asked the same question at every sample: "will the disk be full within
the horizon (24 h)?". Methods:

- ``diskguard``: :class:`diskguard.TrendMonitor` with its defaults (12 h window), told about the
  checkpoint writes and frees the training job itself makes (that is what the guard knows), never
  about other writers; its alarm uses the early end of the forecast (``time_to_full_low``);
- ``least squares``: Prometheus ``predict_linear(avail[6h], 24h) < 0``, the node-mixin alert rule;
- ``3-sample avg``: the hand-written rule, average growth over the last three samples.

Each method gives a time to full; one alarm rule with hysteresis turns it into an alarm for all of
them alike (on when full within the horizon, off again only past 1.25x the horizon). Lead time is
measured from the start of the last uninterrupted alarm before the disk fills: an alarm that
switched off again warned nobody.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from diskguard import TrendMonitor

GB = 10**9
HOUR = 3600.0
STEP = 120.0  # seconds between samples
HORIZON = 24 * HOUR
LS_WINDOW = 6 * HOUR


@dataclass
class Trace:
    name: str
    capacity: int
    fills: bool
    times: list[float] = field(default_factory=list)
    used: list[int] = field(default_factory=list)
    # Per sample: the tagged events that happened since the previous sample, as (kind, bytes).
    events: list[list[tuple[str, int]]] = field(default_factory=list)


def build(
    name: str,
    capacity_gb: float,
    hours: float,
    fills: bool,
    used_at: Callable[[float, random.Random], float],
    events_at: Callable[[float], list[tuple[str, int]]] | None = None,
    seed: int = 0,
) -> Trace:
    """Samples `used_at(t)` every STEP seconds until `hours` pass or the disk fills."""
    rng = random.Random(seed)
    trace = Trace(name, int(capacity_gb * GB), fills)
    t = 0.0
    while t <= hours * HOUR:
        used = min(int(used_at(t, rng)), trace.capacity)
        trace.times.append(t)
        trace.used.append(used)
        trace.events.append(events_at(t) if events_at else [])
        if used >= trace.capacity:
            break
        t += STEP
    return trace


def saves(
    period_h: float, size_gb: float, prune_after_min: float | None
) -> Callable[[float], list[tuple[str, int]]]:
    """Tagged events of a job that saves every `period_h` and, with retention, deletes the previous
    checkpoint `prune_after_min` later (a run in steady state: one checkpoint exists at the start).
    Without retention (None) it keeps everything."""

    def events(t: float) -> list[tuple[str, int]]:
        found = []
        phase = t % (period_h * HOUR)
        if phase < STEP:
            found.append(('write', int(size_gb * GB)))
        if prune_after_min is not None and prune_after_min * 60 <= phase < prune_after_min * 60 + STEP:
            found.append(('free', int(size_gb * GB)))
        return found

    return events


def checkpoint_bytes(t: float, period_h: float, size_gb: float, prune_after_min: float | None) -> float:
    """Bytes on disk from the job's checkpoints at time t (matches `saves`)."""
    period = period_h * HOUR
    written = int(t // period) + 1
    if prune_after_min is None:
        return written * size_gb * GB
    # One checkpoint from before the trace, plus those written, minus those pruned.
    pruned = sum(1 for k in range(written) if k * period + prune_after_min * 60 <= t)
    return (1 + written - pruned) * size_gb * GB


def tenants(
    seed: int, hours: float, rate_per_h: float, size_gb: tuple[float, float], life_min: tuple[float, float]
):
    """Other users' temporary files on a shared disk: (start, end, bytes) intervals."""
    rng = random.Random(seed)
    files = []
    t = 0.0
    while t < hours * HOUR:
        t += rng.expovariate(rate_per_h / HOUR)
        files.append((t, t + rng.uniform(*life_min) * 60, rng.uniform(*size_gb) * GB))
    return files


def traces(seed: int = 0) -> list[Trace]:
    """The traces; `seed` shifts every random stream (0 is the published table)."""
    noise = lambda rng, gb: rng.gauss(0, gb * GB)
    shared = tenants(7 + seed, 96, rate_per_h=2.0, size_gb=(2, 20), life_min=(10, 120))
    busy = lambda t: sum(b for s, e, b in shared if s <= t < e)
    outside_start = 30 * HOUR
    return [
        build(
            'linear fill',
            1000,
            200,
            True,
            lambda t, r: 600 * GB + 4 * GB * t / HOUR + noise(r, 0.2),
            seed=1 + seed,
        ),
        build(
            'checkpoints, no retention',
            1000,
            200,
            True,
            lambda t, r: 500 * GB + checkpoint_bytes(t, 2, 20, None) + noise(r, 0.2),
            saves(2, 20, None),
            seed=2 + seed,
        ),
        build(
            'save-then-prune sawtooth',
            1000,
            96,
            False,
            lambda t, r: 600 * GB + checkpoint_bytes(t, 2, 180, 30) + noise(r, 0.2),
            saves(2, 180, 30),
            seed=3 + seed,
        ),
        build(
            'log growth + checkpoints',
            1000,
            200,
            True,
            lambda t, r: 540 * GB + 2.5 * GB * t / HOUR + checkpoint_bytes(t, 1, 60, 20) + noise(r, 0.2),
            saves(1, 60, 20),
            seed=4 + seed,
        ),
        build(
            'outside writer mid-run',
            1000,
            200,
            True,
            lambda t, r: 700 * GB + max(0.0, t - outside_start) * 8 * GB / HOUR + noise(r, 0.2),
            seed=5 + seed,
        ),
        build(
            'fast writer (dataset copy)',
            1000,
            200,
            True,
            lambda t, r: 600 * GB + max(0.0, t - 20 * HOUR) * 25 * GB / HOUR + noise(r, 0.2),
            seed=9 + seed,
        ),
        build(
            'noisy shared disk',
            1000,
            96,
            False,
            lambda t, r: 700 * GB + busy(t) + noise(r, 1.0),
            seed=6 + seed,
        ),
        build('idle disk', 1000, 96, False, lambda t, r: 900 * GB + noise(r, 0.05), seed=8 + seed),
    ]


def ttf_diskguard(trace: Trace) -> Iterator[float | None]:
    monitor = TrendMonitor()
    for t, used, events in zip(trace.times, trace.used, trace.events, strict=True):
        for kind, nbytes in events:
            (monitor.record_write if kind == 'write' else monitor.record_free)(nbytes, t=t)
        avail = trace.capacity - used
        monitor.add_sample(used, avail, t=t)
        estimate = monitor.estimate()
        yield 0.0 if avail <= 0 else (estimate.time_to_full_low if estimate else monitor.time_to_full())


def ttf_least_squares(trace: Trace) -> Iterator[float | None]:
    """predict_linear over LS_WINDOW of avail: the fitted value now, extrapolated by the slope."""
    start = 0
    for i, t in enumerate(trace.times):
        while trace.times[start] < t - LS_WINDOW:
            start += 1
        xs = trace.times[start : i + 1]
        ys = [trace.capacity - u for u in trace.used[start : i + 1]]
        if len(xs) < 2:
            yield None
            continue
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
        fitted_now = my + slope * (t - mx)
        yield 0.0 if fitted_now <= 0 else (fitted_now / -slope if slope < 0 else None)


def ttf_three_samples(trace: Trace) -> Iterator[float | None]:
    for i in range(len(trace.times)):
        avail = trace.capacity - trace.used[i]
        if avail <= 0:
            yield 0.0
        elif i < 3:
            yield None
        else:
            rate = (trace.used[i] - trace.used[i - 3]) / (trace.times[i] - trace.times[i - 3])
            yield avail / rate if rate > 0 else None


def alarms(times_to_full: Iterator[float | None]) -> list[bool]:
    """The one alarm rule, with hysteresis: on within HORIZON, off past 1.25 x HORIZON."""
    on, out = False, []
    for ttf in times_to_full:
        if ttf is not None and ttf <= HORIZON:
            on = True
        elif ttf is None or ttf > 1.25 * HORIZON:
            on = False
        out.append(on)
    return out


METHODS = {
    'diskguard': ttf_diskguard,
    'least squares': ttf_least_squares,
    '3-sample avg': ttf_three_samples,
}


@dataclass
class Outcome:
    warned: bool
    lead_hours: float | None
    alarm_episodes: int
    first_alarm_hours: float | None


def score(trace: Trace, alarms: list[bool]) -> Outcome:
    episodes = sum(1 for i, a in enumerate(alarms) if a and (i == 0 or not alarms[i - 1]))
    first = next((trace.times[i] / HOUR for i, a in enumerate(alarms) if a), None)
    if not trace.fills:
        return Outcome(False, None, episodes, first)
    end = trace.times[-1]  # the moment the disk is full
    last_quiet = max((i for i, a in enumerate(alarms[:-1]) if not a), default=-1)
    if last_quiet == len(alarms) - 2 and not alarms[-2]:
        return Outcome(False, 0.0, episodes, first)
    start = trace.times[last_quiet + 1]
    return Outcome(True, (end - start) / HOUR, episodes, first)


def evaluate(seed: int = 0) -> dict[str, dict[str, Outcome]]:
    """{trace name: {method: outcome}} for every trace and method."""
    results: dict[str, dict[str, Outcome]] = {}
    for trace in traces(seed):
        results[trace.name] = {name: score(trace, alarms(method(trace))) for name, method in METHODS.items()}
    return results


def fills(name: str) -> bool:
    return name in {
        'linear fill',
        'checkpoints, no retention',
        'log growth + checkpoints',
        'outside writer mid-run',
        'fast writer (dataset copy)',
    }


def main() -> int:
    results = evaluate()
    print(
        f'horizon {HORIZON / HOUR:.0f} h, samples every {STEP:.0f} s, least squares over {LS_WINDOW / HOUR:.0f} h'
    )
    header = f'{"trace":<28} {"fills":<6}' + ''.join(f' {m:>28}' for m in METHODS)
    print(header)
    print('-' * len(header))
    for name, by_method in results.items():
        cells = []
        for outcome in by_method.values():
            if fills(name):
                cell = f'lead {outcome.lead_hours:5.1f} h' if outcome.warned else 'MISSED'
                cell += f' ({outcome.alarm_episodes} alarms)'
            else:
                cell = 'no alarm' if outcome.alarm_episodes == 0 else f'{outcome.alarm_episodes} FALSE ALARMS'
            cells.append(f' {cell:>28}')
        print(f'{name:<28} {"yes" if fills(name) else "no":<6}' + ''.join(cells))
    ok = all(
        (r['diskguard'].warned and (r['diskguard'].lead_hours or 0) >= (r['least squares'].lead_hours or 0))
        if fills(name)
        else r['diskguard'].alarm_episodes == 0
        for name, r in results.items()
    )
    print(
        f'targets (lead >= least squares on every fill, no false alarm on the rest): {"met" if ok else "NOT met"}'
    )
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
