//! What a run's early history looks like: a burst, a ramp, a staircase or a sawtooth, and the rate
//! each of them stands for.
//!
//! Before the long window of [`crate::trend::TrendMonitor`] is warmed up, its early forecast reads
//! the background (usage minus the tagged steps) and the tagged saves by their shape:
//!
//! - a **burst** (growth confined to a few consecutive samples, then flat: a file landing, a few
//!   files within minutes, a save) is not a rate: on its own it never raises a time-to-full alarm,
//!   however large. The thresholds and the guard's room check react to a burst that leaves the disk
//!   short;
//! - a **ramp** (growth at every sample, sustained for at least [`RAMP_SPAN`], five minutes) is a
//!   rate as soon as it has lasted that long: a span of time, not a count of samples, so it is the
//!   same whatever the sampling interval (at least three rising steps between stored samples, which
//!   the monitor keeps `window / capacity` apart: a minute with the defaults; four, evenly, when its
//!   first minutes stood out from a flat history as level shifts);
//! - a **staircase** (bursts alike in size that repeat and are never given back: checkpoints without
//!   retention) is a rate from its third step when the steps come on a schedule, and from its second
//!   when ten more such steps would fill the disk, at the average over the steps seen;
//! - a **sawtooth** (bursts given back: save then prune, other tenants' files) is not a rate.
//!
//! The classification is a function of the stored samples and the tagged saves alone, so a monitor
//! restored from its state reads the same shape.

use crate::trend::{cycle_rate, median, rises_steadily, slope_before, steeper};

/// The shape of the early history, from [`early_reading`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// No growth told apart from noise.
    Flat,
    /// Growth confined to a few consecutive samples, then flat: not a rate.
    Burst,
    /// Growth at every sample for at least [`RAMP_SPAN`]: a rate.
    Ramp,
    /// Bursts alike in size that repeat and are never given back: a rate.
    Staircase,
    /// Bursts given back (save then prune, other tenants' files): not a rate.
    Sawtooth,
}

impl Shape {
    /// The shape's name, as Python sees it.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Flat => "flat",
            Shape::Burst => "burst",
            Shape::Ramp => "ramp",
            Shape::Staircase => "staircase",
            Shape::Sawtooth => "sawtooth",
        }
    }
}

/// Seconds growth must be sustained at every sample before it is a ramp (a rate): shorter growth
/// is a burst, such as a few files landing within minutes.
pub const RAMP_SPAN: f64 = 300.0;

/// Rises closer than this (seconds), or at consecutive samples, are one burst: files landing
/// within minutes are one event, not a staircase.
pub const BURST_GAP: f64 = 180.0;

/// Seconds a step must stand, not given back, before a staircase counts it: frameworks prune the
/// checkpoint before last right after a save, and that save is not a step.
pub const STAND: f64 = RAMP_SPAN;

/// One-sided Student-t critical values at p = 0.001 for 1 to 9 degrees of freedom. A fit through a
/// handful of points must clear a far higher bar than one through many: its own residuals say
/// little about the noise. From 10 degrees of freedom on, `fill_significance` (6) is the bar.
const T_CRITICAL: [f64; 9] = [318.31, 22.327, 10.215, 7.173, 5.893, 5.208, 4.785, 4.501, 4.297];

/// The t-statistic a fit through `points` points must reach to count as growth.
fn significance_bar(points: usize, fill_significance: f64) -> f64 {
    let dof = points.saturating_sub(2);
    let small_sample = match dof {
        0 => f64::INFINITY,
        d => T_CRITICAL.get(d - 1).copied().unwrap_or(0.0),
    };
    small_sample.max(fill_significance)
}

/// A change between two samples further than this many spreads (robust standard deviations of
/// the changes) from the usual change is a level shift: a file landing or going, not drift.
const SHIFT_SPREADS: f64 = 8.0;

/// Level shifts smaller than this fraction of the disk are never told apart from drift.
pub(crate) const SHIFT_FLOOR: f64 = 1e-4;

/// A staircase counts from its second step when this many more steps like it would fill the
/// disk; a gentler one waits for its third, which shows its schedule.
const STEEP_STEPS: f64 = 10.0;

/// Rises within this fraction of each other's size are alike: a job's checkpoints are one size,
/// other tenants' files are not.
const ALIKE: f64 = 0.05;

/// Intervals within this fraction of their median (plus half a sample spacing, as a save shows at
/// the first sample after it) are regular: a job saves on a schedule.
const REGULAR: f64 = 0.1;

/// A drift counts once it has moved usage this many times further than usage wandered between two
/// samples before it began (a standard deviation of those changes, shifts included).
const WANDERS: f64 = 8.0;

/// Lengths of the recent stretches the ramp search tries, shortest first.
const STRETCHES: [usize; 15] = [4, 5, 6, 7, 8, 10, 12, 16, 24, 32, 48, 64, 96, 128, 192];

/// One upward level shift: `(sample index, time, net of the shifts before it, size)`.
type Rise = (usize, f64, f64, f64);

/// A burst: rises at consecutive samples or within [`BURST_GAP`] of each other, as one step.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Burst {
    /// When its first rise showed.
    start: f64,
    /// The net of the shifts just before it.
    offset_before: f64,
    /// Bytes it added.
    size: f64,
}

/// The background of the early history split into level shifts and smooth drift.
#[derive(Debug, Default)]
struct Shifts {
    /// Each upward shift: untagged saves or files landing, if that is what they are.
    rises: Vec<Rise>,
    /// The time of the first downward shift: retention (or a tenant) deleting.
    first_fall: Option<f64>,
    /// The net of all shifts, bytes.
    net: f64,
    /// The background with the shifts taken out: `(time, bytes)`.
    smooth: Vec<(f64, f64)>,
    /// The median time between samples.
    spacing: f64,
    /// The changes between consecutive samples, shifts included.
    changes: Vec<f64>,
}

/// Splits `points` (time, background) into level shifts and smooth drift. A shift is a change
/// between consecutive samples more than [`SHIFT_SPREADS`] robust spreads from the median change
/// (and above `floor` bytes); the median change is drift, so a steady fill has no shifts.
fn level_shifts(points: &[(f64, f64)], floor: f64) -> Shifts {
    let changes: Vec<f64> = points.windows(2).map(|w| w[1].1 - w[0].1).collect();
    let mut gaps: Vec<f64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let mut shifts = Shifts {
        smooth: points.to_vec(),
        spacing: if gaps.is_empty() { 0.0 } else { median(&mut gaps) },
        ..Shifts::default()
    };
    shifts.changes.clone_from(&changes);
    let count = changes.len() as f64;
    // Below eight changes the spread of the changes says too little to tell a shift from noise.
    if changes.len() < 8 {
        return shifts;
    }
    let usual = median(&mut changes.clone());
    let mut deviations: Vec<f64> = changes.iter().map(|c| (c - usual).abs()).collect();
    // The median deviation, robust to the shifts themselves; half the mean deviation only when that
    // is zero (samples quantized to a few values, where the median says nothing): with few samples,
    // the shifts would inflate the mean deviation until two files landing read as smooth growth.
    let mean_deviation = deviations.iter().sum::<f64>() / count;
    let median_deviation = 1.4826 * median(&mut deviations);
    let spread = if median_deviation > 0.0 {
        median_deviation
    } else {
        1.2533 * mean_deviation / 2.0
    };
    let threshold = (SHIFT_SPREADS * spread).max(floor);
    for (i, change) in changes.iter().enumerate() {
        let excess = change - usual;
        if excess.abs() > threshold {
            // The whole change goes: the sample that holds a shift shows no drift (it would rise by
            // construction otherwise, and look like steady growth).
            let excess = *change;
            let t = points[i + 1].0;
            if excess > 0.0 {
                shifts.rises.push((i + 1, t, shifts.net, excess));
            } else if shifts.first_fall.is_none() {
                shifts.first_fall = Some(t);
            }
            shifts.net += excess;
        }
        shifts.smooth[i + 1].1 -= shifts.net;
    }
    shifts
}

/// The rises grouped into bursts: a rise at the sample after the previous one, or within
/// [`BURST_GAP`] of it, belongs to the same burst.
fn bursts(rises: &[Rise]) -> Vec<Burst> {
    let mut found: Vec<Burst> = Vec::new();
    let mut previous: Option<(usize, f64)> = None;
    for &(index, t, offset_before, size) in rises {
        let joins = previous.is_some_and(|(i, last)| index == i + 1 || t - last <= BURST_GAP);
        match found.last_mut() {
            Some(burst) if joins => burst.size += size,
            _ => found.push(Burst {
                start: t,
                offset_before,
                size,
            }),
        }
        previous = Some((index, t));
    }
    found
}

/// True when the times of `saves` are evenly spaced (within [`REGULAR`]), `spacing` being the
/// time between samples.
fn regular(saves: &[(f64, f64)], spacing: f64) -> bool {
    let intervals: Vec<f64> = saves.windows(2).map(|w| w[1].0 - w[0].0).collect();
    if intervals.is_empty() {
        return false;
    }
    let usual = median(&mut intervals.clone());
    intervals
        .iter()
        .all(|i| (i - usual).abs() <= REGULAR * usual + spacing / 2.0)
}

/// The rate of a staircase of `steps` (`(time, offset just before)`, oldest first, alike in size,
/// `size` bytes each), bytes per second, or 0 while it is not one yet: from the third step when
/// the steps come on a schedule, from the second when [`STEEP_STEPS`] more would fill the
/// `headroom`. The rate is the average over the steps seen ([`cycle_rate`]).
fn staircase_rate(steps: &[(f64, f64)], size: f64, spacing: f64, now: f64, headroom: f64) -> f64 {
    let steep = size > 0.0 && headroom <= STEEP_STEPS * size;
    let counts = match steps.len() {
        0 | 1 => false,
        2 => steep,
        _ => regular(steps, spacing),
    };
    if counts {
        cycle_rate(steps, now)
    } else {
        0.0
    }
}

impl Shifts {
    /// What the untagged bursts add as a staircase: only while nothing was ever given back (with
    /// falls, the shifts come and go: a sawtooth, or other tenants), and only the bursts that have
    /// stood [`STAND`] and are alike in size to the latest of them.
    fn staircase_rate(&self, bursts: &[Burst], now: f64, headroom: f64) -> f64 {
        if self.first_fall.is_some() {
            return 0.0;
        }
        let stood: Vec<&Burst> = bursts.iter().filter(|b| now - b.start >= STAND).collect();
        let Some(latest) = stood.last() else {
            return 0.0;
        };
        let alike: Vec<(f64, f64)> = stood
            .iter()
            .filter(|b| (b.size - latest.size).abs() <= ALIKE * latest.size)
            .map(|b| (b.start, b.offset_before))
            .collect();
        staircase_rate(&alike, latest.size, self.spacing, now, headroom)
    }
}

/// The standard deviation of `changes` (0 below two).
fn wander(changes: &[f64]) -> f64 {
    if changes.len() < 2 {
        return 0.0;
    }
    let count = changes.len() as f64;
    let mean = changes.iter().sum::<f64>() / count;
    (changes.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / (count - 1.0)).sqrt()
}

/// True when nearly every step of `points` rises: all of three or more, or as [`rises_steadily`]
/// demands of a long stretch and of each of its halves (flat, then a short rise, is no ramp).
fn rises_throughout(points: &[(f64, f64)]) -> bool {
    let steps = points.len().saturating_sub(1);
    let all_rise = points.windows(2).all(|w| w[1].1 > w[0].1);
    let half = points.len() / 2;
    (steps >= 3 && all_rise)
        || (rises_steadily(points) && rises_steadily(&points[..=half]) && rises_steadily(&points[half..]))
}

/// A stretch of the raw background is a ramp only when each of its steps is within this factor of
/// its median step: a ramp rises evenly; files landing in a row, between samples that only
/// wobble, do not.
const EVEN_STEPS: f64 = 3.0;

/// True when every one of four or more steps of `points` rises, each within [`EVEN_STEPS`] of the
/// median step: in the raw series three alike files may land at three samples in a row.
fn rises_evenly(points: &[(f64, f64)]) -> bool {
    let steps: Vec<f64> = points.windows(2).map(|w| w[1].1 - w[0].1).collect();
    if steps.len() < 4 {
        return false;
    }
    let usual = median(&mut steps.clone());
    steps
        .iter()
        .all(|&s| s > 0.0 && s >= usual / EVEN_STEPS && s <= EVEN_STEPS * usual)
}

/// Which series a ramp is searched in.
#[derive(Clone, Copy, PartialEq)]
enum Series {
    /// The background with level shifts taken out.
    Smooth,
    /// The background as measured: a steep ramp whose first minutes stood out from the flat
    /// history before it shows as shifts, so it is searched here too, rising evenly.
    Raw,
}

/// The steepest recent stretch of `points` that is a ramp: it rises throughout (evenly, in the raw
/// series), has lasted at least [`RAMP_SPAN`], its slope clears the small-sample bar, and it has
/// risen further than usage wandered before it ([`WANDERS`]); `changes` are the raw changes between
/// samples.
fn ramp(
    points: &[(f64, f64)],
    series: Series,
    changes: &[f64],
    now: f64,
    fill_significance: f64,
) -> Option<(f64, f64)> {
    let lengths = STRETCHES
        .iter()
        .copied()
        .filter(|&n| n < points.len())
        .chain([points.len()]);
    let mut best = None;
    for length in lengths {
        let from = points.len() - length;
        let recent = &points[from..];
        let duration = recent[recent.len() - 1].0 - recent[0].0;
        let rises = match series {
            Series::Smooth => rises_throughout(recent),
            Series::Raw => rises_evenly(recent),
        };
        if duration < RAMP_SPAN || !rises {
            continue;
        }
        let before = wander(&changes[..from.min(changes.len())]);
        let bar = significance_bar(length, fill_significance);
        let significant = slope_before(recent, now).filter(|&(slope, error)| {
            slope > 0.0 && slope > bar * error && slope * duration > WANDERS * before
        });
        best = steeper(best, significant);
    }
    best
}

/// The saves a job tagged, as the early forecast reads them.
pub(crate) struct Tagged<'a> {
    /// `(time, offset just before)` of each save, those since retention started when it has.
    pub saves: &'a [(f64, f64)],
    /// When the first free came.
    pub first_free: Option<f64>,
    /// Bytes of the latest save.
    pub size: f64,
}

impl Tagged<'_> {
    /// The rate tagged saves stand for: once retention has freed something, the cycle rate over
    /// the saves since (two at least: save then prune reads flat); before, only a staircase's
    /// ([`staircase_rate`] over the saves that have stood [`STAND`]: two saves may be one save and
    /// the one before the first prune).
    fn rate(&self, spacing: f64, now: f64, headroom: f64) -> f64 {
        if let Some(since) = self.first_free {
            let retained: Vec<(f64, f64)> = self.saves.iter().copied().filter(|&(t, _)| t >= since).collect();
            return if retained.len() >= 2 {
                cycle_rate(&retained, now)
            } else {
                0.0
            };
        }
        let stood: Vec<(f64, f64)> = self
            .saves
            .iter()
            .copied()
            .filter(|&(t, _)| now - t >= STAND)
            .collect();
        staircase_rate(&stood, self.size, spacing, now, headroom)
    }
}

/// The early forecast's reading of a history: its rates and its shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarlyReading {
    /// Background rate (ramp and untagged staircase), bytes per second; the smooth fit's (at most
    /// 0) when neither counts.
    pub background_rate: f64,
    /// Standard error of the background rate.
    pub rate_error: f64,
    /// The tagged saves' rate.
    pub step_rate: f64,
    /// What the history looks like.
    pub shape: Shape,
}

/// Reads `points` (`(time, background)` of the stored samples, oldest first) and the `tagged`
/// saves at `now`, with `headroom` bytes left after the next save; `floor` is the smallest level
/// shift told apart from drift. Needs three samples.
pub(crate) fn early_reading(
    points: &[(f64, f64)],
    tagged: &Tagged<'_>,
    now: f64,
    headroom: f64,
    floor: f64,
    fill_significance: f64,
) -> Option<EarlyReading> {
    let shifts = level_shifts(points, floor);
    let all = slope_before(&shifts.smooth, now)?;
    let ramp = steeper(
        ramp(
            &shifts.smooth,
            Series::Smooth,
            &shifts.changes,
            now,
            fill_significance,
        ),
        ramp(points, Series::Raw, &shifts.changes, now, fill_significance),
    );
    let bursts = bursts(&shifts.rises);
    let staircase = shifts.staircase_rate(&bursts, now, headroom);
    let step_rate = tagged.rate(shifts.spacing, now, headroom);
    let shape = if ramp.is_some() {
        Shape::Ramp
    } else if staircase > 0.0 || step_rate > 0.0 {
        Shape::Staircase
    } else if (shifts.first_fall.is_some() && !bursts.is_empty()) || tagged.first_free.is_some() {
        Shape::Sawtooth
    } else if !bursts.is_empty() || !tagged.saves.is_empty() {
        Shape::Burst
    } else {
        Shape::Flat
    };
    let (drift_rate, rate_error) = ramp.unwrap_or((all.0.min(0.0), all.1));
    Some(EarlyReading {
        background_rate: drift_rate + staircase,
        rate_error,
        step_rate,
        shape,
    })
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact zeros on purpose: a burst is no rate at all
mod tests {
    use super::*;

    /// Every minute for `minutes`, a flat background wobbling by 0.1 plus `rises` (minute, bytes).
    fn flat_with(minutes: usize, rises: &[(usize, f64)]) -> Vec<(f64, f64)> {
        let mut level = 0.0;
        (0..minutes)
            .map(|i| {
                level += rises.iter().filter(|r| r.0 == i).map(|r| r.1).sum::<f64>();
                let t = i as f64 * 60.0;
                (t, level + if i % 2 == 0 { 0.1 } else { -0.1 })
            })
            .collect()
    }

    const NONE: Tagged<'static> = Tagged {
        saves: &[],
        first_free: None,
        size: 0.0,
    };

    fn read(points: &[(f64, f64)], headroom: f64) -> EarlyReading {
        let now = points.last().expect("points").0;
        early_reading(points, &NONE, now, headroom, 1.0, 6.0).expect("three samples")
    }

    #[test]
    fn a_single_burst_of_any_size_is_no_rate() {
        for size in [20.0, 200.0, 1e6] {
            let points = flat_with(120, &[(40, size)]);
            for end in 41..=120 {
                let r = read(&points[..end], 1.5 * size);
                assert_eq!(r.shape, Shape::Burst, "{size} at minute {end}: {r:?}");
                assert!(r.background_rate <= 0.0, "{size} at minute {end}: {r:?}");
            }
        }
    }

    #[test]
    fn a_few_files_within_minutes_are_one_burst() {
        let files = [(40, 12.0), (41, 3.0), (43, 13.0)];
        assert_eq!(bursts(&level_shifts(&flat_with(60, &files), 1.0).rises).len(), 1);
        let points = flat_with(180, &files);
        for end in 41..=180 {
            let r = read(&points[..end], 40.0);
            assert_eq!(r.shape, Shape::Burst, "minute {end}: {r:?}");
            assert!(r.background_rate <= 0.0, "minute {end}: {r:?}");
        }
    }

    #[test]
    fn two_files_landing_early_between_noisy_samples_are_no_ramp() {
        // The harness's run-start noisy disk, seed 1400, in GB every two minutes: files of 13.6 and
        // 12.7 GB land four minutes apart while the noise rises. With so few samples, the spread
        // of the changes must not come from the files themselves.
        let used = [
            -0.89, -0.148, 0.909, -1.078, -0.02, -0.018, 13.572, 15.491, 28.163, 29.041,
        ];
        let points: Vec<(f64, f64)> = used
            .iter()
            .enumerate()
            .map(|(i, &gb)| (i as f64 * 120.0, gb * 1e9))
            .collect();
        let r = read(&points, 270e9);
        assert_ne!(r.shape, Shape::Ramp, "{r:?}");
        assert!(r.background_rate <= 0.0, "{r:?}");
    }

    /// The harness's run-start noisy disk, seed 7600, the first 124 samples (GB, two minutes apart):
    /// other tenants' files come and go, then three of about 18 GB land at three samples in a row.
    const THREE_FILES_IN_A_ROW: [f64; 124] = [
        -0.154, -0.246, -0.03, -0.949, -0.808, 0.035, -2.296, -1.161, 0.919, 1.196, -0.614, -0.794, 9.609,
        8.367, 7.581, 7.788, 7.357, 7.438, 7.611, 6.175, 7.514, 7.816, 6.926, 7.508, 7.605, 8.979, 7.427,
        8.174, 8.867, 7.263, 8.626, 25.724, 26.027, 25.235, 24.938, 23.576, 23.915, 23.832, 25.399, 23.719,
        25.423, 24.752, 23.884, 24.418, 7.477, 7.493, 7.565, 7.07, 6.871, 7.892, 8.752, 8.958, 6.393, 6.456,
        7.132, -0.034, 0.41, -0.195, -1.68, 0.329, 0.335, 1.431, -0.004, 0.144, 13.438, 12.896, 12.514,
        15.914, 13.962, 13.743, 14.993, 14.136, 16.862, 14.1, 14.179, 14.192, 15.252, 12.118, 18.724, 28.617,
        30.13, 30.039, 29.54, 31.157, 29.803, 30.147, 28.955, 29.412, 31.325, 31.162, 31.311, 29.969, 28.752,
        30.5, 28.919, 27.991, 31.551, 27.267, 29.986, 27.84, 29.23, 46.35, 44.138, 43.408, 44.537, 47.273,
        34.739, 34.905, 34.979, 34.774, 51.268, 51.725, 50.999, 51.011, 49.22, 50.318, 51.293, 30.775,
        40.531, 42.967, 41.646, 61.162, 76.99, 97.516,
    ];

    #[test]
    fn three_alike_files_at_consecutive_samples_are_no_ramp_in_the_raw_series() {
        let points: Vec<(f64, f64)> = THREE_FILES_IN_A_ROW
            .iter()
            .enumerate()
            .map(|(i, &gb)| (i as f64 * 120.0, gb * 1e9))
            .collect();
        let r = read(&points, 200e9);
        assert_ne!(r.shape, Shape::Ramp, "{r:?}");
        assert!(r.background_rate <= 0.0, "{r:?}");
    }

    #[test]
    fn a_regular_staircase_is_a_rate_from_its_third_step_a_steep_one_from_its_second() {
        let steps = [(30, 20.0), (60, 20.0), (90, 20.0), (120, 20.0)];
        let points = flat_with(130, &steps);
        let gentle = |end: usize| read(&points[..end], 1000.0);
        assert_eq!(gentle(89).shape, Shape::Burst, "two steps of a gentle staircase");
        assert_eq!(
            gentle(95).shape,
            Shape::Burst,
            "the third has not stood five minutes"
        );
        let third = gentle(96);
        assert_eq!(third.shape, Shape::Staircase);
        assert!((third.background_rate - 20.0 / 1800.0).abs() < 1e-3, "{third:?}");
        assert_eq!(read(&points[..65], 150.0).shape, Shape::Burst, "not stood yet");
        let steep = read(&points[..66], 150.0);
        assert_eq!(steep.shape, Shape::Staircase, "seven more steps fill it");
        assert!((steep.background_rate - 20.0 / 1800.0).abs() < 1e-3, "{steep:?}");
    }

    #[test]
    fn only_a_regular_staircase_of_alike_rises_counts() {
        let rate = |rises: &[(usize, f64)]| read(&flat_with(130, rises), 1000.0).background_rate.max(0.0);
        let irregular = [(30, 20.0), (41, 20.0), (90, 20.0), (97, 20.0)];
        assert_eq!(rate(&irregular), 0.0, "tenants' files land at random times");
        let unlike = [(30, 20.0), (60, 14.0), (90, 9.0), (120, 17.0)];
        assert_eq!(rate(&unlike), 0.0, "and come in all sizes");
        let pruned = [(30, 20.0), (45, -20.0), (60, 20.0), (75, -20.0), (90, 20.0)];
        assert_eq!(rate(&pruned), 0.0, "a sawtooth is not a staircase");
        assert_eq!(read(&flat_with(130, &pruned), 1000.0).shape, Shape::Sawtooth);
    }

    #[test]
    fn a_ramp_is_a_rate_once_it_has_lasted_five_minutes_whatever_the_interval() {
        for interval in [10.0, 30.0, 60.0] {
            // Flat for ten minutes, then 1 byte per second with a wobble of 2.
            let points: Vec<(f64, f64)> = (0..=1800)
                .map(|i| f64::from(i) * interval)
                .take_while(|&t| t <= 1800.0)
                .enumerate()
                .map(|(i, t)| (t, (t - 600.0).max(0.0) + if i % 2 == 0 { 1.0 } else { -1.0 }))
                .collect();
            let seen = (1..=points.len())
                .find(|&end| points[end - 1].0 > 600.0 && read(&points[..end], 1e9).shape == Shape::Ramp)
                .map(|end| points[end - 1].0 - 600.0)
                .expect("seen");
            // Noise that happens to rise just before the ramp may lengthen it by a sample or two.
            assert!(
                (RAMP_SPAN - 2.0 * interval..=RAMP_SPAN + 2.0 * interval).contains(&seen),
                "{interval}: {seen}"
            );
            let r = read(&points, 1e9);
            assert!((r.background_rate - 1.0).abs() < 0.05, "{r:?}");
        }
    }
}
