use super::*;

const GB: f64 = 1e9;

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn bytes(v: f64) -> u64 {
    v.max(0.0) as u64
}

fn monitor() -> TrendMonitor {
    TrendMonitor::new(TrendConfig::default()).expect("valid")
}

#[test]
fn linear_fill_gives_rate_and_time_to_full() {
    let mut m = monitor();
    let capacity = 500.0 * GB;
    let rate = 1e6; // 1 MB/s
    for i in 0..=360 {
        let t = f64::from(i) * 60.0;
        let used = 100.0 * GB + rate * t;
        m.add_sample(t, bytes(used), bytes(capacity - used))
            .expect("sample");
    }
    let e = m.estimate().expect("warmed up");
    assert!((e.rate - rate).abs() < 1.0, "{e:?}");
    let expected = (capacity - 100.0 * GB - rate * 21600.0) / rate;
    assert!((e.time_to_full.expect("filling") - expected).abs() < 60.0);
    assert!(
        m.will_fill_within(expected + 60.0).expect("valid")
            && !m.will_fill_within(expected - 600.0).expect("valid")
    );
}

#[test]
fn early_forecast_from_three_samples_then_the_long_fit() {
    let mut m = monitor();
    m.add_sample(0.0, 10, 10).expect("sample");
    m.add_sample(60.0, 10, 10).expect("sample");
    assert!(m.estimate().is_none(), "two samples give no uncertainty");
    for i in 2..360 {
        m.add_sample(f64::from(i) * 60.0, 10, 10).expect("sample");
        assert!(
            m.background_rate(f64::from(i) * 60.0).is_none(),
            "the long fit waits for warmup"
        );
        let e = m.estimate().expect("early forecast");
        assert!(e.time_to_full.is_none() && e.rate.abs() < 1e-9, "flat: {e:?}");
    }
    m.add_sample(360.0 * 60.0, 10, 10).expect("sample");
    assert!(m.background_rate(360.0 * 60.0).is_some());
}

/// Samples every minute from a disk of `total` bytes starting at `start` used; `used_at(minute)`
/// adds to it; `tags(minute)` are the tagged writes (+) and frees (-). Returns the minutes at
/// which `will_fill_within(24 h)` held.
fn alarms_over(
    minutes: u32,
    used_at: impl Fn(u32) -> f64,
    tags: impl Fn(u32) -> Option<f64>,
    m: &mut TrendMonitor,
) -> Vec<u32> {
    let total = 1000.0 * GB;
    let mut alarms = Vec::new();
    for minute in 0..minutes {
        let t = f64::from(minute) * 60.0;
        match tags(minute) {
            Some(b) if b > 0.0 => m.record_write(t, bytes(b)).expect("write"),
            Some(b) => m.record_free(t, bytes(-b)).expect("free"),
            None => {}
        }
        // A deterministic wobble of 0.2 GB, so the noise is not zero.
        let wobble = 0.2 * GB * (f64::from(minute) * 2.39).sin();
        let used = (700.0 * GB + used_at(minute) + wobble).min(total);
        m.add_sample(t, bytes(used), bytes(total - used)).expect("sample");
        if m.will_fill_within(24.0 * 3600.0).expect("valid") {
            alarms.push(minute);
        }
    }
    alarms
}

#[test]
fn a_fill_from_the_run_start_alarms_within_minutes() {
    let mut m = monitor();
    let alarms = alarms_over(60, |minute| f64::from(minute) * GB, |_| None, &mut m); // 60 GB/h
    assert!(alarms.first().is_some_and(|&first| first <= 10), "{alarms:?}");
    assert_eq!(alarms.len(), 60 - alarms[0] as usize, "and stays on");
    let e = m.estimate().expect("early forecast");
    assert!((e.rate - GB / 60.0).abs() < 0.05 * GB / 60.0, "{e:?}");
    let expected = e.avail / (GB / 60.0);
    assert!(
        (e.time_to_full.expect("filling") - expected).abs() < 0.05 * expected,
        "{e:?}"
    );
}

#[test]
fn an_untagged_staircase_alarms_at_its_second_step_not_its_first() {
    // 30 GB every 30 minutes from 70 %, never deleted and never tagged: full in about 5 h. Its
    // first step is a burst like any file landing; the second, once it has stood five minutes
    // (not pruned right after the save), counts: eight more would fill it.
    let mut m = monitor();
    let steps = |minute: u32| f64::from(minute / 30) * 30.0 * GB;
    let alarms = alarms_over(120, steps, |_| None, &mut m);
    assert_eq!(alarms, (65..120).collect::<Vec<u32>>());
    assert_eq!(m.shape(), Some(Shape::Staircase));
    let e = m.estimate().expect("early forecast");
    assert!(
        (e.background_rate - 30.0 * GB / 1800.0).abs() < 0.1 * 30.0 * GB / 1800.0,
        "{e:?}"
    );
}

#[test]
fn a_steep_save_then_prune_job_pruning_right_after_each_save_never_alarms() {
    // 60 GB checkpoints (a fifth of the free space) hourly from minute 60; from the second save
    // on, the one before is deleted a minute later, as frameworks do.
    let on_disk = |minute: u32| {
        let written = minute / 60;
        let pruned = (2..=written).filter(|k| k * 60 < minute).count();
        f64::from(written - u32::try_from(pruned).expect("few")) * 60.0 * GB
    };
    let tags = |minute: u32| match (minute / 60, minute % 60) {
        (k, 0) if k >= 1 => Some(60.0 * GB),
        (k, 1) if k >= 2 => Some(-60.0 * GB),
        _ => None,
    };
    let mut tagged = monitor();
    assert_eq!(
        alarms_over(12 * 60, on_disk, tags, &mut tagged),
        Vec::<u32>::new()
    );
    let mut untagged = monitor();
    assert_eq!(
        alarms_over(12 * 60, on_disk, |_| None, &mut untagged),
        Vec::<u32>::new()
    );
    assert_eq!(untagged.shape(), Some(Shape::Sawtooth));
}

#[test]
fn one_file_of_any_size_never_alarms() {
    for share in [0.2, 0.5, 0.9] {
        // A file of `share` of the free space lands at minute 40, then nothing, for a day.
        let mut m = monitor();
        let file = |minute: u32| if minute >= 40 { share * 300.0 * GB } else { 0.0 };
        assert_eq!(alarms_over(24 * 60, file, |_| None, &mut m), Vec::<u32>::new());
        let mut early = monitor();
        alarms_over(120, file, |_| None, &mut early);
        assert_eq!(early.shape(), Some(Shape::Burst), "{share}");
    }
}

#[test]
fn a_resumed_monitor_reads_the_same_shape() {
    let mut burst = monitor();
    alarms_over(
        90,
        |minute| if minute >= 40 { 60.0 * GB } else { 0.0 },
        |_| None,
        &mut burst,
    );
    let mut ramp = monitor();
    alarms_over(30, |minute| f64::from(minute) * GB, |_| None, &mut ramp);
    for (m, shape) in [(burst, Shape::Burst), (ramp, Shape::Ramp)] {
        let state = m.state(m.last_event_time().expect("events")).expect("state");
        let resumed = TrendMonitor::from_state(&state, 7.0).expect("valid");
        assert_eq!((m.shape(), resumed.shape()), (Some(shape), Some(shape)));
        assert_eq!(
            m.will_fill_within(86400.0).expect("valid"),
            resumed.will_fill_within(86400.0).expect("valid")
        );
    }
}

#[test]
fn the_first_saves_of_a_save_then_prune_cycle_do_not_alarm() {
    // A job keeps its newest 20 GB checkpoint: saves hourly from minute 60, deletes the one
    // before 20 minutes after each save from the second on.
    let on_disk = |minute: u32| {
        let written = minute / 60;
        let pruned = (2..=written).filter(|k| k * 60 + 20 <= minute).count();
        f64::from(written - u32::try_from(pruned).expect("few")) * 20.0 * GB
    };
    let tags = |minute: u32| match (minute / 60, minute % 60) {
        (k, 0) if k >= 1 => Some(20.0 * GB),
        (k, 20) if k >= 2 => Some(-20.0 * GB),
        _ => None,
    };
    let mut tagged = monitor();
    assert_eq!(
        alarms_over(24 * 60, on_disk, tags, &mut tagged),
        Vec::<u32>::new()
    );
    let mut untagged = monitor();
    assert_eq!(
        alarms_over(24 * 60, on_disk, |_| None, &mut untagged),
        Vec::<u32>::new()
    );
}

#[test]
fn an_untagged_sawtooth_from_its_prune_does_not_alarm() {
    // Steady state at t = 0: two 180 GB checkpoints, the older pruned at minute 30; a save
    // every two hours, pruned half an hour later. 96 % full at every save.
    let on_disk = |minute: u32| if minute % 120 < 30 { 360.0 * GB } else { 180.0 * GB };
    let mut m = TrendMonitor::new(TrendConfig::default()).expect("valid");
    let start = |minute: u32| on_disk(minute) - 100.0 * GB;
    assert_eq!(alarms_over(12 * 60, start, |_| None, &mut m), Vec::<u32>::new());
}

#[test]
fn a_resumed_monitor_continues_its_early_forecast() {
    let mut m = monitor();
    alarms_over(40, |minute| f64::from(minute) * GB, |_| None, &mut m);
    let state = m.state(40.0 * 60.0).expect("state");
    let resumed = TrendMonitor::from_state(&state, 10.0).expect("valid");
    let (a, b) = (m.estimate().expect("early"), resumed.estimate().expect("early"));
    assert!(
        (a.rate - b.rate).abs() < 1e-6 * a.rate && b.time_to_full.is_some(),
        "{a:?} {b:?}"
    );
}

#[test]
fn tagged_sawtooth_is_not_growth() {
    let mut m = monitor();
    let size = 40.0 * GB;
    let capacity = 200.0 * GB;
    let mut used = 100.0 * GB;
    for minute in 0..(48 * 60) {
        let t = f64::from(minute) * 60.0;
        if minute % 60 == 0 {
            used += size;
            m.record_write(t, bytes(size)).expect("write");
        }
        if minute % 60 == 30 {
            used -= size;
            m.record_free(t, bytes(size)).expect("free");
        }
        m.add_sample(t, bytes(used), bytes(capacity - used))
            .expect("sample");
        if minute > 60 {
            assert!(
                !m.will_fill_within(24.0 * 3600.0).expect("valid"),
                "false alarm at minute {minute}: {:?}",
                m.estimate()
            );
        }
    }
}

#[test]
fn saves_without_retention_fill() {
    let mut m = monitor();
    let capacity = 300.0 * GB;
    let mut used = 100.0 * GB;
    for minute in 0..(12 * 60) {
        let t = f64::from(minute) * 60.0;
        if minute % 120 == 0 {
            used += 10.0 * GB;
            m.record_write(t, 10_000_000_000).expect("write");
        }
        m.add_sample(t, bytes(used), bytes(capacity - used))
            .expect("sample");
    }
    let e = m.estimate().expect("warmed up");
    assert!(
        (e.step_rate - 10.0 * GB / 7200.0).abs() / (10.0 * GB / 7200.0) < 0.2,
        "{e:?}"
    );
    assert!(e.background_rate.abs() < 1e3);
    assert!(
        (e.next_save - 10.0 * GB).abs() < 1.0,
        "no retention: the next save needs room"
    );
}

#[test]
fn next_save_that_cannot_fit_is_full_now() {
    let mut m = monitor();
    m.record_write(0.0, 50).expect("write");
    m.record_write(1.0, 50).expect("write");
    for i in 1..5 {
        m.add_sample(f64::from(i) * 60.0, 1000, 40).expect("sample");
    }
    assert_eq!(m.time_to_full(), Some(0.0));
}

#[test]
fn a_writer_that_started_within_the_window_is_seen() {
    let mut m = monitor();
    let mut used = 100.0 * GB;
    for minute in 0..(12 * 60) {
        let t = f64::from(minute) * 60.0;
        if minute >= 9 * 60 {
            used += 10e6 * 60.0; // 10 MB/s for the last three hours
        }
        m.add_sample(t, bytes(used), bytes(1000.0 * GB - used))
            .expect("sample");
    }
    let e = m.estimate().expect("warmed up");
    assert!((e.background_rate - 10e6).abs() < 1e6, "{e:?}");
}

#[test]
fn irregular_sampling_gives_the_same_rate() {
    let mut m = monitor();
    let rate = 3e6;
    let mut t = 0.0;
    let mut step = 0u32;
    while t < 13.0 * 3600.0 {
        let used = 100.0 * GB + rate * t;
        m.add_sample(t, bytes(used), bytes(1000.0 * GB - used))
            .expect("sample");
        step += 1;
        t += [31.0, 240.0, 600.0, 75.0, 1200.0][step as usize % 5];
    }
    let e = m.estimate().expect("warmed up");
    assert!((e.rate - rate).abs() / rate < 0.01, "{e:?}");
}

#[test]
fn a_file_landing_is_not_a_fill() {
    let mut m = monitor();
    for minute in 0..(12 * 60) {
        let used = if minute >= 10 * 60 { 300.0 * GB } else { 100.0 * GB };
        m.add_sample(f64::from(minute) * 60.0, bytes(used), bytes(1000.0 * GB - used))
            .expect("sample");
    }
    assert_eq!(m.time_to_full(), None, "{:?}", m.estimate());
}

#[test]
fn memory_is_bounded_and_time_is_checked() {
    let mut m = TrendMonitor::new(TrendConfig {
        capacity: 16,
        ..TrendConfig::default()
    })
    .expect("valid");
    for i in 0..100_000 {
        m.add_sample(f64::from(i), 1, 1).expect("sample");
    }
    assert!(m.len() <= 16);
    assert!(m.add_sample(5.0, 1, 1).is_err(), "backwards");
    assert!(m.add_sample(f64::NAN, 1, 1).is_err());
    assert!(TrendMonitor::new(TrendConfig {
        window: -1.0,
        ..TrendConfig::default()
    })
    .is_err());
    assert!(TrendMonitor::new(TrendConfig {
        fill_significance: f64::NAN,
        ..TrendConfig::default()
    })
    .is_err());
}

#[test]
fn rising_fast_rule() {
    let mut m = monitor();
    for i in 0..10u32 {
        m.add_sample(f64::from(i) * 60.0, 1000 * u64::from(i), 0)
            .expect("sample");
    }
    assert!(m.is_rising_fast(10.0, 300.0).expect("valid"));
    assert!(!m.is_rising_fast(20.0, 300.0).expect("valid"));
    assert!(m.is_rising_fast(f64::NAN, 300.0).is_err());
    assert!(m.is_rising_fast(10.0, 0.0).is_err());
}

fn plan() -> RunPlan {
    RunPlan {
        checkpoint_size: 10,
        save_interval: 600.0,
        remaining_saves: 10,
        keep_last: Some(3),
        existing: 3,
        background_rate: 0.0,
        avail: 100,
        keep_free: 0,
    }
}

#[test]
fn retention_means_one_extra_checkpoint_at_each_save() {
    let f = plan().forecast().expect("valid");
    assert!(
        (f.peak_bytes - 10.0).abs() < 1e-9 && f.fits && f.saves_until_full.is_none(),
        "{f:?}"
    );
    assert_eq!(
        f.summary,
        "fits: the remaining 10 saves need at most 10 B more of 100 B available"
    );
}

#[test]
fn without_retention_reports_training_units() {
    let f = RunPlan {
        keep_last: None,
        existing: 0,
        avail: 95,
        ..plan()
    }
    .forecast()
    .expect("valid");
    assert!(!f.fits);
    assert_eq!(f.saves_until_full, Some(10));
    let f = RunPlan {
        keep_last: None,
        existing: 0,
        avail: 35,
        ..plan()
    }
    .forecast()
    .expect("valid");
    assert_eq!(f.saves_until_full, Some(4));
    assert_eq!(f.seconds_until_full, Some(2400.0));
    assert!(
        f.summary
            .starts_with("full in ~4 checkpoints (save 4 of 10, in ~40 min)"),
        "{}",
        f.summary
    );
}

#[test]
fn keep_last_grows_to_its_limit_then_holds() {
    let f = RunPlan {
        existing: 0,
        avail: 35,
        ..plan()
    }
    .forecast()
    .expect("valid");
    assert!(
        (f.peak_bytes - 40.0).abs() < 1e-9,
        "three kept plus the one being written"
    );
    assert_eq!(f.saves_until_full, Some(4));
    let f = RunPlan {
        existing: 0,
        avail: 40,
        ..plan()
    }
    .forecast()
    .expect("valid");
    assert!(f.fits);
}

#[test]
fn background_growth_counts_until_the_end() {
    let f = RunPlan {
        background_rate: 0.1,
        ..plan()
    }
    .forecast()
    .expect("valid");
    assert!((f.peak_bytes - (10.0 + 600.0)).abs() < 1e-9, "{f:?}");
    assert!(!f.fits && f.saves_until_full == Some(2), "{f:?}");
    assert!(RunPlan {
        save_interval: 0.0,
        ..plan()
    }
    .forecast()
    .is_err());
    assert!(RunPlan {
        keep_last: Some(0),
        ..plan()
    }
    .forecast()
    .is_err());
}

#[test]
fn least_squares_edge_cases() {
    assert!(least_squares([(0.0, 1.0), (1.0, 2.0)].into_iter()).is_none());
    assert!(least_squares([(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)].into_iter()).is_none());
    let (slope, error) = least_squares([(0.0, 0.0), (1.0, 2.0), (2.0, 4.0)].into_iter()).expect("fit");
    assert!((slope - 2.0).abs() < 1e-12 && error.abs() < 1e-12);
}

/// The walk the closed form replaced: one step per save.
fn walked(plan: &RunPlan) -> (f64, u32, Option<u32>) {
    let (size, room) = (
        plan.checkpoint_size as f64,
        plan.avail.saturating_sub(plan.keep_free) as f64,
    );
    let mut kept = plan.existing;
    let (mut peak, mut peak_at, mut first_full) = (0.0f64, 0u32, None);
    for save in 1..=plan.remaining_saves {
        let t = f64::from(save) * plan.save_interval;
        let during = size * (f64::from(kept) + 1.0 - f64::from(plan.existing)) + plan.background_rate * t;
        if during > peak {
            (peak, peak_at) = (during, save);
        }
        if first_full.is_none() && during > room {
            first_full = Some(save);
        }
        kept = plan.keep_last.map_or(kept + 1, |n| (kept + 1).min(n));
    }
    let end = f64::from(plan.remaining_saves) * plan.save_interval;
    let after = size * (f64::from(kept) - f64::from(plan.existing)) + plan.background_rate * end;
    if after > peak {
        (peak, peak_at) = (after, 0);
    }
    (peak, peak_at, first_full)
}

#[test]
fn closed_form_matches_the_save_by_save_walk() {
    let mut checked = 0;
    for remaining_saves in [0, 1, 2, 3, 5, 17] {
        for keep_last in [None, Some(1), Some(2), Some(4), Some(9)] {
            for existing in [0, 1, 3, 12] {
                for background_rate in [-0.05, 0.0, 0.01, 0.2] {
                    for avail in [0, 25, 60, 400] {
                        let p = RunPlan {
                            remaining_saves,
                            keep_last,
                            existing,
                            background_rate,
                            avail,
                            ..plan()
                        };
                        let f = p.forecast().expect("valid");
                        let (peak, peak_at, first_full) = walked(&p);
                        assert!((f.peak_bytes - peak).abs() < 1e-9, "{p:?}: {f:?} vs {peak}");
                        assert_eq!(
                            (f.peak_at_save, f.saves_until_full),
                            (peak_at, first_full),
                            "{p:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 6 * 5 * 4 * 4 * 4);
}

#[test]
fn four_billion_saves_take_no_time() {
    let started = std::time::Instant::now();
    let f = RunPlan {
        remaining_saves: u32::MAX,
        keep_last: None,
        existing: u32::MAX,
        avail: 1 << 30,
        ..plan()
    }
    .forecast()
    .expect("valid");
    assert_eq!(f.saves_until_full, Some(107_374_183), "{f:?}");
    assert!(started.elapsed().as_millis() < 50);
}

#[test]
fn remaining_seconds_become_whole_saves() {
    let spec = RunSpec {
        checkpoint_size: 10,
        save_interval: 600.0,
        remaining: Remaining::Seconds(1799.0),
        keep_last: None,
        existing: 0,
        keep_free: 0,
    };
    assert_eq!(spec.plan(100, 0.0).expect("valid").remaining_saves, 2);
    let endless = RunSpec {
        remaining: Remaining::Seconds(1e300),
        ..spec
    };
    assert_eq!(endless.plan(100, 0.0).expect("valid").remaining_saves, u32::MAX);
    for bad in [f64::NAN, f64::INFINITY, -1.0] {
        let bad = RunSpec {
            remaining: Remaining::Seconds(bad),
            ..spec
        };
        assert!(bad.plan(100, 0.0).is_err());
    }
    assert!(Remaining::from_options(Some(1), Some(1.0)).is_err());
    assert!(Remaining::from_options(None, None).is_err());
}

#[test]
fn capacity_is_bounded_and_not_reserved() {
    for capacity in [0, 7, MAX_CAPACITY + 1, usize::MAX] {
        let config = TrendConfig {
            capacity,
            ..TrendConfig::default()
        };
        let err = TrendMonitor::new(config).expect_err("out of range");
        assert!(
            err.to_string().starts_with(&format!("capacity={capacity}:")),
            "{err}"
        );
    }
    let m = TrendMonitor::new(TrendConfig {
        capacity: MAX_CAPACITY,
        ..TrendConfig::default()
    })
    .expect("valid");
    assert_eq!(m.samples.capacity(), 0, "nothing reserved up front");
}

fn busy_monitor() -> TrendMonitor {
    let mut m = monitor();
    for minute in 0..(7 * 60) {
        let t = 1000.0 + f64::from(minute) * 60.0;
        if minute % 60 == 5 {
            m.record_write(t, 5_000_000_000).expect("write");
        }
        if minute % 60 == 35 {
            m.record_free(t, 5_000_000_000).expect("free");
        }
        m.add_sample(
            t,
            100_000_000_000 + 60_000_000 * u64::try_from(minute).expect("positive"),
            400_000_000_000,
        )
        .expect("sample");
    }
    m
}

#[test]
fn state_round_trips_across_clocks() {
    let m = busy_monitor();
    let now = m.last_event_time().expect("events") + 30.0;
    let state = m.state(now).expect("state");
    assert!(state.samples.iter().all(|s| s[0] >= 30.0));
    let moved = TrendMonitor::from_state(&state, 5.0e6).expect("valid");
    assert_eq!(
        moved.state(5.0e6).expect("state"),
        state,
        "the same ages on another clock"
    );
    let (a, b) = (m.estimate().expect("warm"), moved.estimate().expect("warm"));
    assert!((a.rate - b.rate).abs() < 1e-6 * a.rate.abs() && a.next_save == b.next_save);
    assert!(m.state(now - 60.0).is_err(), "before the latest event");
}

#[test]
fn corrupt_states_are_refused() {
    let good = busy_monitor().state(30_000.0).expect("state");
    let mut too_many = good.clone();
    too_many.samples = vec![[1.0, 1.0, 1.0]; 721];
    let mut nan = good.clone();
    nan.samples[3][1] = f64::NAN;
    let mut disorder = good.clone();
    disorder.samples.swap(1, 2);
    let mut negative = good.clone();
    negative.latest = Some([1.0, -5.0, 1.0]);
    let mut saves = good.clone();
    saves.saves = vec![[1.0, 0.0]; SAVE_MEMORY + 1];
    let mut missing = good.clone();
    missing.last_event_age = None;
    for bad in [too_many, nan, disorder, negative, saves, missing] {
        let err = TrendMonitor::from_state(&bad, 1.0).expect_err("corrupt");
        assert!(err.to_string().starts_with("state["), "{err}");
    }
    assert!(TrendMonitor::from_state(&good, f64::NAN).is_err());
}
