//! How fast the disk fills and when it will be full, without being fooled by the checkpoint sawtooth.
//!
//! A plain least-squares fit over a window (Prometheus `predict_linear`) sees every save-then-prune
//! cycle as growth or shrinkage depending on where the window cuts it. We know when our own
//! checkpoints are written and pruned, so [`TrendMonitor`] splits usage into two parts:
//!
//! - **steps we cause**: every tagged write and free moves a running offset. Their net rate is how
//!   much the offset rose from just before one save to just before a later one, over the last
//!   [`SAVE_MEMORY`] saves: always the same phase of the cycle, so a save-then-prune cycle reads as
//!   flat wherever "now" falls, and saves without retention read as their true rate;
//! - **background drift**: usage minus the offset (logs, caches, other writers). Its rate is a
//!   least-squares fit over bucket medians of a long window (so short spikes from other tenants do
//!   not move it). Growth counts only when both halves of the window show it, or when the recent
//!   half rises at nearly every sample (a writer that started within the window; another tenant's
//!   file landing rises at one sample only).
//!
//! Time to full is the headroom left after the next save (`avail - next save`) divided by the sum
//! of both rates, and only once that rate is `fill_significance` standard errors above zero:
//! disk-usage residuals are autocorrelated, and weaker evidence cries wolf on shared disks. Memory
//! is bounded: at most `capacity` samples (at most [`MAX_CAPACITY`]), spaced at least
//! `window / capacity` apart, and the last [`SAVE_MEMORY`] saves.
//!
//! Before the long window is warmed up (`warmup`, 6 h), an **early forecast** answers from the
//! third sample, reading the history by its shape ([`crate::trend_shape`]): a burst (a file
//! landing, a few files within minutes) is never a rate; a ramp is one once it has lasted five
//! minutes; a staircase of alike steps never given back is one from its second or third step; a
//! sawtooth is not. [`TrendMonitor::shape`] says which it sees.
//!
//! [`RunPlan`] answers "will the rest of this run fit?" in closed form (no walk over the saves), and
//! [`TrendState`] carries a monitor across a restart with times as ages.

use std::collections::VecDeque;

use crate::error::{Error, Result};
use crate::trend_shape::{early_reading, EarlyReading, Tagged, SHIFT_FLOOR};
pub use crate::trend_shape::{Shape, RAMP_SPAN};

/// How many recent saves the step rate is measured over.
pub const SAVE_MEMORY: usize = 9;

/// The most samples a monitor may keep: 100 000 samples are about 2.4 MB and an estimate over them
/// a few milliseconds; more history than that is better had with a wider spacing.
pub const MAX_CAPACITY: usize = 100_000;

/// The fewest samples a monitor may keep: the background fit needs six, and its two halves three.
pub const MIN_CAPACITY: usize = 8;

/// Settings of a [`TrendMonitor`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendConfig {
    /// Seconds of history the background rate is fitted over; growth must show in both halves.
    pub window: f64,
    /// Samples kept at most (bounded memory), from [`MIN_CAPACITY`] to [`MAX_CAPACITY`].
    pub capacity: usize,
    /// Seconds of history the long-window forecast waits for ("warmed up"); before it, the early
    /// forecast answers from the third sample.
    pub warmup: f64,
    /// t-statistic the total rate must reach before it counts as filling. Residuals of disk usage
    /// are strongly autocorrelated (files live for hours), so the bar is high.
    pub fill_significance: f64,
}

impl Default for TrendConfig {
    fn default() -> Self {
        TrendConfig {
            window: 12.0 * 3600.0,
            capacity: 720,
            warmup: 6.0 * 3600.0,
            fill_significance: 6.0,
        }
    }
}

/// `Ok` when `value` is a finite number above zero, else the error naming `name`.
fn positive(name: &'static str, value: f64, allowed: &str) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(Error::invalid(name, value, allowed))
    }
}

/// `Ok` when `value` is a finite number at or above zero, else the error naming `name`.
fn non_negative(name: &'static str, value: f64, allowed: &str) -> Result<f64> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(Error::invalid(name, value, allowed))
    }
}

impl TrendConfig {
    /// Checks the settings; the error names the argument, its value and what is allowed.
    pub fn validate(&self) -> Result<()> {
        positive(
            "window",
            self.window,
            "expected a positive, finite number of seconds",
        )?;
        non_negative("warmup", self.warmup, "expected a finite number of seconds >= 0")?;
        if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&self.capacity) {
            return Err(Error::invalid(
                "capacity",
                self.capacity,
                format!("expected from {MIN_CAPACITY} to {MAX_CAPACITY} samples"),
            ));
        }
        non_negative(
            "fill_significance",
            self.fill_significance,
            "expected a finite t-statistic >= 0",
        )?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    t: f64,
    /// `used` minus the running offset of tagged steps: the background.
    background: f64,
    used: f64,
}

/// The running offset just before a tagged save.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Save {
    t: f64,
    offset_before: f64,
}

/// The latest measurement, kept even when thinning drops it from the history.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reading {
    t: f64,
    used: f64,
    avail: f64,
}

/// A forecast from a [`TrendMonitor`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendEstimate {
    /// Total fill rate in bytes per second (background + steps); negative when shrinking.
    pub rate: f64,
    /// Standard error of `rate`.
    pub rate_error: f64,
    /// The background drift part of `rate`.
    pub background_rate: f64,
    /// The part from tagged writes and frees.
    pub step_rate: f64,
    /// Bytes the next save needs on top of what is used now (0 when no saves are tagged, or when a
    /// prune is still due after the last save).
    pub next_save: f64,
    /// Available bytes at the latest sample.
    pub avail: f64,
    /// Seconds until full; `Some(0.0)` when the next save would not fit; `None` when not filling.
    pub time_to_full: Option<f64>,
    /// The same at the rate plus one standard error: the early end of the forecast, for alarms.
    pub time_to_full_low: Option<f64>,
}

/// Growth-rate and time-to-full estimator over `(monotonic time, used, avail)` samples.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendMonitor {
    config: TrendConfig,
    samples: VecDeque<Sample>,
    saves: VecDeque<Save>,
    offset: f64,
    last_t: Option<f64>,
    latest: Option<Reading>,
    last_write_bytes: f64,
    freed_since_write: bool,
    /// When retention first freed a checkpoint: saves before it built up the kept set once.
    first_free_t: Option<f64>,
}

/// Least-squares slope and its standard error over `(x, y)` points; `None` below three points or
/// with no spread in x.
pub fn least_squares(points: impl Iterator<Item = (f64, f64)> + Clone) -> Option<(f64, f64)> {
    let (mut n, mut sx, mut sy) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in points.clone() {
        n += 1.0;
        sx += x;
        sy += y;
    }
    if n < 3.0 {
        return None;
    }
    let (mx, my) = (sx / n, sy / n);
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for (x, y) in points.clone() {
        sxx += (x - mx) * (x - mx);
        sxy += (x - mx) * (y - my);
    }
    if sxx <= f64::EPSILON {
        return None;
    }
    let slope = sxy / sxx;
    let residual: f64 = points.map(|(x, y)| (y - my - slope * (x - mx)).powi(2)).sum();
    let error = (residual / (n - 2.0) / sxx).sqrt();
    Some((slope, error))
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 0 {
        f64::midpoint(values[mid - 1], values[mid])
    } else {
        values[mid]
    }
}

/// Buckets per full window of the background fit: spikes shorter than half a bucket do not move it.
const BUCKETS: usize = 24;

/// `(time, median background)` of each bucket of `window` samples, buckets `width` seconds wide
/// from `start`: robust points for the long fit.
fn bucket_medians(window: &[&Sample], start: f64, width: f64) -> Vec<(f64, f64)> {
    let mut points = Vec::with_capacity(BUCKETS);
    let (mut times, mut values): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut index = 0usize;
    for s in window {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a small bucket number
        let bucket = ((s.t - start).max(0.0) / width).floor() as usize;
        if bucket != index && !values.is_empty() {
            points.push((median(&mut times), median(&mut values)));
            times.clear();
            values.clear();
        }
        index = bucket;
        times.push(s.t);
        values.push(s.background);
    }
    if !values.is_empty() {
        points.push((median(&mut times), median(&mut values)));
    }
    points
}

/// The least-squares slope (and error) of `points` with times taken relative to `now`.
pub(crate) fn slope_before(points: &[(f64, f64)], now: f64) -> Option<(f64, f64)> {
    least_squares(points.iter().map(|&(t, y)| (t - now, y)))
}

/// A real fill rises across the whole window; another tenant's files come and go within it. So
/// growth counts only when each half of the window shows growth too (a half too short to fit
/// does not object).
fn rises_in_both_halves(points: &[(f64, f64)], now: f64) -> bool {
    let rises = |part: &[(f64, f64)]| slope_before(part, now).is_none_or(|(slope, _)| slope > 0.0);
    let half = points.len() / 2;
    points.len() >= 6 && rises(&points[..half]) && rises(&points[half..])
}

/// A sign test: usage rose at far more steps than noise would (noise rises at half the steps; a
/// file landing at one). Demands eight steps and 3.5 standard deviations above half.
pub(crate) fn rises_steadily(points: &[(f64, f64)]) -> bool {
    let steps = points.len().saturating_sub(1);
    let rising = points.windows(2).filter(|w| w[1].1 > w[0].1).count();
    let (steps_f, rising_f) = (steps as f64, rising as f64);
    steps >= 8 && rising_f >= steps_f / 2.0 + 3.5 * steps_f.sqrt() / 2.0
}

/// Which of two candidate `(slope, error)` rates rises faster; the first wins ties.
pub(crate) fn steeper(a: Option<(f64, f64)>, b: Option<(f64, f64)>) -> Option<(f64, f64)> {
    match (a, b) {
        (Some(a), Some(b)) if b.0 > a.0 => Some(b),
        (None, b) => b,
        (a, _) => a,
    }
}

/// The net rate of steps measured at the same phase of each save cycle: how much the running
/// offset rose from just before the first of `saves` (`(time, offset just before)`) to just before
/// the last, over the time between them. Saves that stopped stop counting: past two usual
/// intervals, the growth is spread to `now`.
pub(crate) fn cycle_rate(saves: &[(f64, f64)], now: f64) -> f64 {
    let (Some(&(first_t, first_offset)), Some(&(last_t, last_offset))) = (saves.first(), saves.last()) else {
        return 0.0;
    };
    let span = last_t - first_t;
    if span <= 0.0 {
        return 0.0;
    }
    let interval = span / (saves.len() - 1) as f64;
    let span = if now - last_t > 2.0 * interval {
        now - first_t
    } else {
        span
    };
    (last_offset - first_offset) / span
}

impl TrendMonitor {
    /// A monitor with `config` (validated). Memory grows with the samples added, never beyond
    /// `capacity`; nothing is reserved up front.
    pub fn new(config: TrendConfig) -> Result<Self> {
        config.validate()?;
        Ok(TrendMonitor {
            config,
            samples: VecDeque::new(),
            saves: VecDeque::new(),
            offset: 0.0,
            last_t: None,
            latest: None,
            last_write_bytes: 0.0,
            freed_since_write: false,
            first_free_t: None,
        })
    }

    fn check_time(&mut self, t: f64) -> Result<()> {
        if !(t.is_finite() && t >= 0.0) {
            return Err(Error::invalid(
                "t",
                t,
                "expected a finite monotonic time >= 0 in seconds",
            ));
        }
        if let Some(last) = self.last_t {
            if t < last {
                return Err(Error::invalid(
                    "t",
                    t,
                    format!("time went backwards (last was {last}); pass time.monotonic() values"),
                ));
            }
        }
        self.last_t = Some(t);
        Ok(())
    }

    /// Adds a measurement at monotonic time `t` (seconds).
    pub fn add_sample(&mut self, t: f64, used: u64, avail: u64) -> Result<()> {
        self.check_time(t)?;
        let (used, avail) = (used as f64, avail as f64);
        self.latest = Some(Reading { t, used, avail });
        let spacing = self.config.window / self.config.capacity as f64;
        // Thin samples that come faster than the window needs, so memory stays bounded.
        if let Some(last) = self.samples.back() {
            if t - last.t < spacing {
                return Ok(());
            }
        }
        if self.samples.len() >= self.config.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            t,
            background: used - self.offset,
            used,
        });
        Ok(())
    }

    /// Tags a checkpoint (or any write we caused) of `bytes` at time `t`.
    pub fn record_write(&mut self, t: f64, bytes: u64) -> Result<()> {
        self.check_time(t)?;
        let bytes = bytes as f64;
        if self.saves.len() >= SAVE_MEMORY {
            self.saves.pop_front();
        }
        self.saves.push_back(Save {
            t,
            offset_before: self.offset,
        });
        self.offset += bytes;
        self.last_write_bytes = bytes;
        self.freed_since_write = false;
        Ok(())
    }

    /// Tags `bytes` freed by retention (or any deletion we caused) at time `t`.
    pub fn record_free(&mut self, t: f64, bytes: u64) -> Result<()> {
        self.check_time(t)?;
        let bytes = bytes as f64;
        self.offset -= bytes;
        self.freed_since_write = true;
        self.first_free_t.get_or_insert(t);
        Ok(())
    }

    /// Time of the latest sample, write or free: later times must not come before it.
    pub fn last_event_time(&self) -> Option<f64> {
        self.last_t
    }

    /// Number of samples held (bounded by the capacity).
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True before the first stored sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The samples of the last `window` seconds before `now`, oldest first.
    fn window_samples(&self, now: f64) -> Vec<&Sample> {
        let start = now - self.config.window;
        self.samples.iter().filter(|s| s.t >= start).collect()
    }

    /// The background drift `(rate, standard error)` once warmed up: the long fit when the whole
    /// window rises (or falls), else the steepest recent writer, else flat or falling.
    fn background_rate(&self, now: f64) -> Option<(f64, f64)> {
        let window = self.window_samples(now);
        let first = window.first()?;
        if now - first.t < self.config.warmup || window.len() < 6 {
            return None;
        }
        // Buckets keep their width while history is short.
        let width = self.config.window / BUCKETS as f64;
        let points = bucket_medians(&window, now - self.config.window, width);
        let all: Vec<(f64, f64)> = window.iter().map(|s| (s.t, s.background)).collect();
        let long = slope_before(&points, now).or_else(|| slope_before(&all, now))?;
        let whole_window = (long.0 > 0.0 && rises_in_both_halves(&points, now)).then_some(long);
        let rate = steeper(whole_window, self.recent_writer_rate(&all, now));
        Some(rate.unwrap_or((long.0.min(0.0), long.1)))
    }

    /// The rate of a writer that started within the window: usage has risen at most samples since,
    /// far more than noise would. Recent stretches from a twelfth to half the window are tried; one
    /// reaching back before the writer started is diluted, so the steepest significant one counts.
    fn recent_writer_rate(&self, all: &[(f64, f64)], now: f64) -> Option<(f64, f64)> {
        let mut best = None;
        for fraction in [2.0, 4.0, 6.0, 12.0] {
            let start = now - self.config.window / fraction;
            let from = all.partition_point(|&(t, _)| t < start);
            let recent = &all[from..];
            if !rises_steadily(recent) {
                continue;
            }
            let significant = slope_before(recent, now)
                .filter(|&(slope, error)| slope > 0.0 && slope > self.config.fill_significance * error);
            best = steeper(best, significant);
        }
        best
    }

    /// Tagged saves as `(time, offset just before)`, those since retention started when it has:
    /// the saves before the first free built up the kept set once, they are not a rate.
    fn retained_saves(&self) -> Vec<(f64, f64)> {
        let since = self.first_free_t.unwrap_or(f64::NEG_INFINITY);
        let saves: Vec<(f64, f64)> = self.saves.iter().map(|s| (s.t, s.offset_before)).collect();
        let retained: Vec<(f64, f64)> = saves.iter().copied().filter(|&(t, _)| t >= since).collect();
        // Once the memory holds only saves from before the first free, all of them count.
        if retained.is_empty() {
            saves
        } else {
            retained
        }
    }

    /// The early forecast's reading of the history, from the first samples on: its rates and its
    /// shape (burst, ramp, staircase, sawtooth; see [`crate::trend_shape`]), with `headroom` bytes
    /// left after the next save. Needs three samples.
    fn early_reading(&self, now: f64, headroom: f64) -> Option<EarlyReading> {
        let points: Vec<(f64, f64)> = self.samples.iter().map(|s| (s.t, s.background)).collect();
        let Reading { used, avail, .. } = self.latest?;
        let saves = self.retained_saves();
        let tagged = Tagged {
            saves: &saves,
            first_free: self.first_free_t,
            size: self.last_write_bytes,
        };
        early_reading(
            &points,
            &tagged,
            now,
            headroom,
            SHIFT_FLOOR * (used + avail),
            self.config.fill_significance,
        )
    }

    /// What the history looks like now (burst, ramp, staircase, sawtooth or flat), as the early
    /// forecast reads it; `None` below three samples.
    pub fn shape(&self) -> Option<Shape> {
        let Reading { t: now, avail, .. } = self.latest?;
        self.early_reading(now, avail - self.next_save()).map(|r| r.shape)
    }

    fn step_rate(&self, now: f64) -> f64 {
        cycle_rate(&self.retained_saves(), now)
    }

    /// The current forecast: the long-window one once warmed up (`warmup` seconds and six samples),
    /// the early one before; `None` below three samples.
    pub fn estimate(&self) -> Option<TrendEstimate> {
        let Reading { t: now, avail, .. } = self.latest?;
        let next_save = self.next_save();
        let headroom = avail - next_save;
        let (background_rate, rate_error, step_rate) = if let Some((rate, error)) = self.background_rate(now)
        {
            (rate, error, self.step_rate(now))
        } else {
            let early = self.early_reading(now, headroom)?;
            (early.background_rate, early.rate_error, early.step_rate)
        };
        let rate = background_rate + step_rate;
        // Filling only when the rate is clearly above zero: a flat disk with other tenants' files
        // coming and going has a small positive slope half the time, and a forecast from it cries wolf.
        let filling = rate > 0.0 && rate > self.config.fill_significance * rate_error;
        let at_rate = |r: f64| {
            if headroom <= 0.0 {
                Some(0.0)
            } else if filling {
                Some(headroom / r)
            } else {
                None
            }
        };
        Some(TrendEstimate {
            rate,
            rate_error,
            background_rate,
            step_rate,
            next_save,
            avail,
            time_to_full: at_rate(rate),
            time_to_full_low: at_rate(rate + rate_error),
        })
    }

    /// 0 when the next save already cannot fit; known from the first sample, before any trend.
    fn full_now(&self) -> Option<f64> {
        let Reading { avail, .. } = self.latest?;
        (avail - self.next_save() <= 0.0).then_some(0.0)
    }

    fn next_save(&self) -> f64 {
        // The next save needs room now unless the last one is still waiting for its prune. Until
        // the pattern is known (a prune seen, or two saves without one) a save just made may be
        // about to be pruned, so it does not count yet.
        let ever_freed = self.first_free_t.is_some();
        let pattern_known = ever_freed || self.saves.len() >= 2;
        let pending_prune = ever_freed && !self.freed_since_write;
        if pattern_known && !pending_prune {
            self.last_write_bytes
        } else {
            0.0
        }
    }

    /// Seconds until full: 0 when the next save cannot fit (known from the first sample), `None`
    /// when not filling (or below three samples).
    pub fn time_to_full(&self) -> Option<f64> {
        self.full_now()
            .or_else(|| self.estimate().and_then(|e| e.time_to_full))
    }

    /// True when the disk may be full within `seconds` (`>= 0`): judged on the early bound of the
    /// forecast (an alarm should err early), or at once when the next save cannot fit.
    pub fn will_fill_within(&self, seconds: f64) -> Result<bool> {
        let seconds = non_negative("seconds", seconds, "expected seconds >= 0 (a number, not NaN)")?;
        Ok(self
            .full_now()
            .or_else(|| self.estimate().and_then(|e| e.time_to_full_low))
            .is_some_and(|t| t <= seconds))
    }

    /// The hand-written monitors' rule: average growth of `used` over the last `window` seconds is
    /// above `growth_threshold` bytes per second. Needs two samples in the window.
    pub fn is_rising_fast(&self, growth_threshold: f64, window: f64) -> Result<bool> {
        if !growth_threshold.is_finite() {
            return Err(Error::invalid(
                "growth_threshold",
                growth_threshold,
                "expected a finite number of bytes per second",
            ));
        }
        let window = positive("window", window, "expected a positive, finite number of seconds")?;
        let Some(Reading { t: now, used, .. }) = self.latest else {
            return Ok(false);
        };
        let start = now - window;
        Ok(match self.samples.iter().find(|s| s.t >= start) {
            Some(first) if now > first.t => (used - first.used) / (now - first.t) > growth_threshold,
            _ => false,
        })
    }

    /// The plan of the rest of a run as this monitor sees the disk: its latest `avail` and its
    /// background rate (0 until it has one; a shrinking background is not counted on). Needs one
    /// sample.
    pub fn run_plan(&self, spec: &RunSpec) -> Result<RunPlan> {
        let Some(Reading { avail, .. }) = self.latest else {
            return Err(Error::NotReady(
                "the monitor has no sample yet: add one (sample() or add_sample()) first".to_owned(),
            ));
        };
        let background = self.estimate().map_or(0.0, |e| e.background_rate.max(0.0));
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // avail came from a u64
        spec.plan(avail.max(0.0) as u64, background)
    }

    /// The monitor's history as plain numbers, with times as ages: seconds before `now` (the
    /// moment of saving, on the clock the samples use, not before the latest event).
    pub fn state(&self, now: f64) -> Result<TrendState> {
        if !now.is_finite() || self.last_t.is_some_and(|last| now < last) {
            return Err(Error::invalid(
                "t",
                now,
                format!(
                    "expected a finite time on the samples' clock, not before the latest event ({})",
                    self.last_t
                        .map_or_else(|| "none yet".to_owned(), |t| t.to_string())
                ),
            ));
        }
        let age = |t: f64| now - t;
        Ok(TrendState {
            config: self.config,
            samples: self
                .samples
                .iter()
                .map(|s| [age(s.t), s.used, s.background])
                .collect(),
            saves: self.saves.iter().map(|s| [age(s.t), s.offset_before]).collect(),
            offset: self.offset,
            latest: self.latest.map(|r| [age(r.t), r.used, r.avail]),
            last_event_age: self.last_t.map(age),
            last_write_bytes: self.last_write_bytes,
            freed_since_write: self.freed_since_write,
            first_free_age: self.first_free_t.map(age),
        })
    }

    /// [`Self::state`] with ages from `clock_now`, or from the latest event when the samples' clock
    /// runs ahead of the one `clock_now` reads (times passed in from `time.time()`, say): what
    /// saving without a time argument means, so it never fails.
    pub fn state_now(&self, clock_now: f64) -> Result<TrendState> {
        self.state(self.last_t.map_or(clock_now, |last| clock_now.max(last)))
    }

    /// A monitor continuing from `state` (validated), its ages counted back from `now`: a job
    /// resumed on another host, with another monotonic clock, continues its forecast.
    pub fn from_state(state: &TrendState, now: f64) -> Result<Self> {
        if !(now.is_finite() && now >= 0.0) {
            return Err(Error::invalid(
                "t",
                now,
                "expected a finite monotonic time >= 0 in seconds",
            ));
        }
        state.validate()?;
        let time = |age: f64| now - age;
        Ok(TrendMonitor {
            config: state.config,
            samples: state
                .samples
                .iter()
                .map(|&[age, used, background]| Sample {
                    t: time(age),
                    background,
                    used,
                })
                .collect(),
            saves: state
                .saves
                .iter()
                .map(|&[age, offset_before]| Save {
                    t: time(age),
                    offset_before,
                })
                .collect(),
            offset: state.offset,
            last_t: state.last_event_age.map(time),
            latest: state.latest.map(|[age, used, avail]| Reading {
                t: time(age),
                used,
                avail,
            }),
            last_write_bytes: state.last_write_bytes,
            freed_since_write: state.freed_since_write,
            first_free_t: state.first_free_age.map(time),
        })
    }
}

/// A [`TrendMonitor`]'s history in plain numbers, for a checkpoint: times are ages (seconds before
/// the moment the state was taken), so it means the same on any host and any monotonic clock.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendState {
    /// The monitor's settings.
    pub config: TrendConfig,
    /// Stored samples, oldest first: `[age, used, background]` (background = used - offset then).
    pub samples: Vec<[f64; 3]>,
    /// Tagged saves, oldest first: `[age, running offset just before the save]`.
    pub saves: Vec<[f64; 2]>,
    /// The running offset of tagged writes and frees.
    pub offset: f64,
    /// The latest measurement, `[age, used, avail]` (it may be newer than the last stored sample).
    pub latest: Option<[f64; 3]>,
    /// Age of the latest sample, write or free; later times must not come before it.
    pub last_event_age: Option<f64>,
    /// Bytes of the latest tagged write.
    pub last_write_bytes: f64,
    /// A free was tagged after the latest write.
    pub freed_since_write: bool,
    /// Age of the first tagged free (`None`: none yet).
    pub first_free_age: Option<f64>,
}

/// The check of one loaded number: `field` names where it sits in the state.
fn state_number(field: &'static str, value: f64, non_negative_only: bool) -> Result<()> {
    let fits = value.is_finite() && (!non_negative_only || value >= 0.0);
    if fits {
        Ok(())
    } else {
        let rule = if non_negative_only {
            "expected a finite number >= 0"
        } else {
            "expected a finite number"
        };
        Err(Error::invalid(field, value, rule))
    }
}

/// Ages must run from oldest to newest (never increasing) and be no younger than the last event.
fn ages_in_order(field: &'static str, ages: impl Iterator<Item = f64>, newest: f64) -> Result<()> {
    let mut previous = f64::INFINITY;
    for age in ages {
        state_number(field, age, true)?;
        if age > previous || age < newest {
            return Err(Error::invalid(
                field,
                age,
                format!("expected ages oldest first, none younger than the last event ({newest})"),
            ));
        }
        previous = age;
    }
    Ok(())
}

impl TrendState {
    /// Checks a state (perhaps loaded from a corrupt or hostile checkpoint): settings valid, no
    /// more samples than the capacity nor saves than [`SAVE_MEMORY`], every number finite, byte
    /// counts and ages `>= 0`, ages in order. The error names the field, the value and the rule.
    pub fn validate(&self) -> Result<()> {
        self.config.validate()?;
        self.validate_lengths()?;
        let newest = self.newest_age()?;
        self.validate_samples(newest)?;
        for &[_, offset_before] in &self.saves {
            state_number("state['saves'] offset", offset_before, false)?;
        }
        ages_in_order("state['saves'] age", self.saves.iter().map(|s| s[0]), newest)?;
        ages_in_order("state['first_free_age']", self.first_free_age.into_iter(), newest)?;
        state_number("state['offset']", self.offset, false)?;
        state_number("state['last_write_bytes']", self.last_write_bytes, true)?;
        Ok(())
    }

    /// No more samples than the capacity, nor saves than [`SAVE_MEMORY`]: memory stays bounded.
    fn validate_lengths(&self) -> Result<()> {
        if self.samples.len() > self.config.capacity {
            return Err(Error::invalid(
                "state['samples']",
                format!("{} samples", self.samples.len()),
                format!("expected at most capacity={}", self.config.capacity),
            ));
        }
        if self.saves.len() > SAVE_MEMORY {
            return Err(Error::invalid(
                "state['saves']",
                format!("{} saves", self.saves.len()),
                format!("expected at most {SAVE_MEMORY}"),
            ));
        }
        Ok(())
    }

    /// The age of the last event, which every other age must be at least (0 for an empty state).
    fn newest_age(&self) -> Result<f64> {
        match self.last_event_age {
            Some(age) => state_number("state['last_event_age']", age, true).map(|()| age),
            None if self.samples.is_empty() && self.saves.is_empty() && self.latest.is_none() => Ok(0.0),
            None => Err(Error::invalid(
                "state['last_event_age']",
                "None",
                "expected the age of the last event when the state holds samples or saves",
            )),
        }
    }

    /// The samples and the latest measurement: byte counts `>= 0`, ages in order.
    fn validate_samples(&self, newest: f64) -> Result<()> {
        for &[_, used, background] in &self.samples {
            state_number("state['samples'] used", used, true)?;
            state_number("state['samples'] background", background, false)?;
        }
        ages_in_order("state['samples'] age", self.samples.iter().map(|s| s[0]), newest)?;
        match self.latest {
            Some([age, used, avail]) => {
                ages_in_order("state['latest'] age", std::iter::once(age), newest)?;
                state_number("state['latest'] used", used, true)?;
                state_number("state['latest'] avail", avail, true)
            }
            None if !self.samples.is_empty() => Err(Error::invalid(
                "state['latest']",
                "None",
                "expected the latest measurement when the state holds samples",
            )),
            None => Ok(()),
        }
    }
}

/// How much of a run is left: a number of saves, or seconds (turned into whole saves).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Remaining {
    /// Saves still to come.
    Saves(u32),
    /// Seconds left in the run.
    Seconds(f64),
}

impl Remaining {
    /// Exactly one of a count of saves and a number of seconds.
    pub fn from_options(saves: Option<u32>, seconds: Option<f64>) -> Result<Self> {
        match (saves, seconds) {
            (Some(n), None) => Ok(Remaining::Saves(n)),
            (None, Some(s)) => Ok(Remaining::Seconds(s)),
            (given, _) => Err(Error::invalid(
                "remaining_saves / remaining_seconds",
                if given.is_some() {
                    "both given"
                } else {
                    "neither given"
                },
                "give exactly one (saves still to come, or seconds left in the run)",
            )),
        }
    }

    /// The saves still to come at one save every `save_interval` seconds (> 0).
    pub fn saves(self, save_interval: f64) -> Result<u32> {
        match self {
            Remaining::Saves(n) => Ok(n),
            Remaining::Seconds(s) => {
                let s = non_negative("remaining_seconds", s, "expected a finite number of seconds >= 0")?;
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped to u32
                let n = (s / save_interval).floor().min(f64::from(u32::MAX)) as u32;
                Ok(n)
            }
        }
    }
}

/// The rest of a run as the job knows it: checkpoint size, schedule, retention. With the disk's
/// `avail` and background rate it becomes a [`RunPlan`] ([`RunSpec::plan`],
/// [`TrendMonitor::run_plan`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunSpec {
    /// Bytes one checkpoint takes.
    pub checkpoint_size: u64,
    /// Seconds between saves.
    pub save_interval: f64,
    /// How much of the run is left.
    pub remaining: Remaining,
    /// Checkpoints kept by retention (`None`: all are kept).
    pub keep_last: Option<u32>,
    /// Checkpoints on disk now.
    pub existing: u32,
    /// Bytes that must stay free.
    pub keep_free: u64,
}

impl RunSpec {
    /// The plan on a disk with `avail` bytes available, filling at `background_rate` bytes/second
    /// besides the checkpoints (validated).
    pub fn plan(&self, avail: u64, background_rate: f64) -> Result<RunPlan> {
        let mut plan = RunPlan {
            checkpoint_size: self.checkpoint_size,
            save_interval: self.save_interval,
            remaining_saves: 0,
            keep_last: self.keep_last,
            existing: self.existing,
            background_rate,
            avail,
            keep_free: self.keep_free,
        };
        plan.validate()?;
        plan.remaining_saves = self.remaining.saves(self.save_interval)?;
        Ok(plan)
    }
}

/// What the rest of a run will do to the disk: checkpoint size, schedule and retention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunPlan {
    /// Bytes one checkpoint takes.
    pub checkpoint_size: u64,
    /// Seconds between saves.
    pub save_interval: f64,
    /// Saves still to come.
    pub remaining_saves: u32,
    /// Checkpoints kept by retention (`None`: all are kept).
    pub keep_last: Option<u32>,
    /// Checkpoints on disk now.
    pub existing: u32,
    /// Background fill rate in bytes per second (logs, caches, other writers).
    pub background_rate: f64,
    /// Bytes available now.
    pub avail: u64,
    /// Bytes that must stay free.
    pub keep_free: u64,
}

/// The answer to "will the rest of this run fit?".
#[derive(Debug, Clone, PartialEq)]
pub struct RunForecast {
    /// The most the run will need on top of what is used now, at its worst moment.
    pub peak_bytes: f64,
    /// Which save (1-based) reaches that peak; 0 when the background alone peaks at the end.
    pub peak_at_save: u32,
    /// The peak fits in `avail - keep_free`.
    pub fits: bool,
    /// The first save that will not fit, if any ("full in ~3 checkpoints").
    pub saves_until_full: Option<u32>,
    /// Seconds from now until that save.
    pub seconds_until_full: Option<f64>,
    /// One sentence in training units.
    pub summary: String,
}

/// The first of the saves `from..=to` whose need exceeds `room`, where `need` is linear (so
/// monotone) over them: a binary search, so a run of 2**32 saves costs 32 evaluations.
fn first_above(from: u32, to: u32, need: impl Fn(u32) -> f64, room: f64) -> Option<u32> {
    if need(from) > room {
        return Some(from);
    }
    if need(to) <= room {
        return None;
    }
    let (mut fits, mut over) = (from, to);
    while over - fits > 1 {
        let mid = fits + (over - fits) / 2;
        if need(mid) > room {
            over = mid;
        } else {
            fits = mid;
        }
    }
    Some(over)
}

impl RunPlan {
    /// Checks the plan; the error names the argument, its value and what is allowed.
    pub fn validate(&self) -> Result<()> {
        positive(
            "save_interval",
            self.save_interval,
            "expected a positive, finite number of seconds",
        )?;
        if !self.background_rate.is_finite() {
            return Err(Error::invalid(
                "background_rate",
                self.background_rate,
                "expected a finite number of bytes per second",
            ));
        }
        if self.keep_last == Some(0) {
            return Err(Error::invalid(
                "keep_last",
                0,
                "expected at least 1 (the newest checkpoint is always kept), or None",
            ));
        }
        Ok(())
    }

    /// Checkpoints on disk just before save `save` (1-based); after the last save for
    /// `remaining_saves + 1`. Retention trims to `keep_last` after each save, so the count before
    /// the first save is whatever exists now.
    fn kept_before(&self, save: u32) -> f64 {
        let existing = u64::from(self.existing);
        let grown = existing + u64::from(save.saturating_sub(1));
        let kept = match self.keep_last {
            Some(n) if save > 1 => grown.min(u64::from(n)),
            _ => grown,
        };
        kept as f64
    }

    /// Bytes needed on top of what is used now while save `save` is written: the checkpoints kept
    /// then, plus the one being written, plus the background since now.
    fn need_during(&self, save: u32) -> f64 {
        let size = self.checkpoint_size as f64;
        let t = f64::from(save) * self.save_interval;
        size * (self.kept_before(save) + 1.0 - f64::from(self.existing)) + self.background_rate * t
    }

    /// Bytes needed on top of what is used now once the last save is done and pruned.
    fn need_after(&self) -> f64 {
        let size = self.checkpoint_size as f64;
        let kept_after = if self.remaining_saves == 0 {
            f64::from(self.existing)
        } else {
            let last = self.remaining_saves;
            // The count before a save one past the last, had there been one.
            self.keep_last.map_or(self.kept_before(last) + 1.0, |n| {
                (self.kept_before(last) + 1.0).min(f64::from(n))
            })
        };
        let end = f64::from(self.remaining_saves) * self.save_interval;
        size * (kept_after - f64::from(self.existing)) + self.background_rate * end
    }

    /// The saves split into stretches over which [`Self::need_during`] is linear: the first save
    /// (whatever exists may exceed `keep_last`), the saves while the kept count grows, and those
    /// once it holds at `keep_last`.
    fn linear_stretches(&self) -> Vec<(u32, u32)> {
        let last = self.remaining_saves;
        let mut stretches = Vec::with_capacity(3);
        if last >= 1 {
            stretches.push((1, 1));
        }
        if last >= 2 {
            let growth_ends = self.keep_last.map(|n| {
                // The save at which `existing + save - 1` reaches `keep_last`.
                let reach = (i64::from(n) - i64::from(self.existing) + 1).clamp(2, i64::from(last));
                u32::try_from(reach).unwrap_or(last)
            });
            match growth_ends {
                Some(kink) if kink > 2 && kink < last => {
                    stretches.push((2, kink));
                    stretches.push((kink, last));
                }
                _ => stretches.push((2, last)),
            }
        }
        stretches
    }

    /// Works out the remaining saves in closed form. Frameworks write the new checkpoint before
    /// deleting the oldest, so each save momentarily holds one more than `keep_last`. The need is
    /// linear over each of at most three stretches of saves, so the peak is at a stretch's end and
    /// the first save that does not fit is found by bisection: bounded work for any count.
    pub fn forecast(&self) -> Result<RunForecast> {
        self.validate()?;
        let room = self.avail.saturating_sub(self.keep_free) as f64;
        let (mut peak, mut peak_at) = (0.0f64, 0u32);
        let mut first_full = None;
        for (from, to) in self.linear_stretches() {
            for save in [from, to] {
                let need = self.need_during(save);
                if need > peak {
                    (peak, peak_at) = (need, save);
                }
            }
            if first_full.is_none() {
                first_full = first_above(from, to, |s| self.need_during(s), room);
            }
        }
        let after = self.need_after();
        if after > peak {
            (peak, peak_at) = (after, 0);
        }
        let first_full = first_full.map(|save| (save, f64::from(save) * self.save_interval));
        Ok(RunForecast {
            peak_bytes: peak,
            peak_at_save: peak_at,
            fits: peak <= room,
            saves_until_full: first_full.map(|(s, _)| s),
            seconds_until_full: first_full.map(|(_, t)| t),
            summary: self.summary(peak, room, first_full),
        })
    }

    /// The forecast in one sentence of training units.
    fn summary(&self, peak: f64, room: f64, first_full: Option<(u32, f64)>) -> String {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // saturating, shown only
        let show = |b: f64| crate::size::format_size(b.max(0.0) as u64);
        match first_full {
            None if peak <= room => format!(
                "fits: the remaining {} saves need at most {} more of {} available",
                self.remaining_saves,
                show(peak),
                show(room)
            ),
            None => format!(
                "fits every save, but background growth needs {} of {} by the end",
                show(peak),
                show(room)
            ),
            Some((save, t)) => format!(
                "full in ~{save} checkpoint{} (save {save} of {}, in ~{}): the run needs {} of {} available",
                if save == 1 { "" } else { "s" },
                self.remaining_saves,
                human_duration(t),
                show(peak),
                show(room)
            ),
        }
    }
}

/// `"45 min"`, `"3.5 h"`, `"2.0 days"`.
pub fn human_duration(seconds: f64) -> String {
    if seconds < 90.0 * 60.0 {
        format!("{:.0} min", seconds / 60.0)
    } else if seconds < 48.0 * 3600.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else {
        format!("{:.1} days", seconds / 86400.0)
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact on purpose: the closed form must equal the walk, and state round trips
mod tests {
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
}
