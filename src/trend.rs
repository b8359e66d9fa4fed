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
//! disk-usage residuals are autocorrelated, and weaker evidence cries wolf on shared disks. Memory is bounded: at most `capacity` samples, spaced at least `window / capacity`
//! apart, and the last [`SAVE_MEMORY`] saves.

use std::collections::VecDeque;

use crate::error::{Error, Result};

/// How many recent saves the step rate is measured over.
pub const SAVE_MEMORY: usize = 9;

/// Settings of a [`TrendMonitor`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendConfig {
    /// Seconds of history the background rate is fitted over; growth must show in both halves.
    pub window: f64,
    /// Samples kept at most (bounded memory).
    pub capacity: usize,
    /// Seconds of history needed before any forecast ("warmed up").
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

impl TrendConfig {
    /// Checks the settings; the error names the argument, its value and what is allowed.
    pub fn validate(&self) -> Result<()> {
        if !(self.window.is_finite() && self.window > 0.0) {
            return Err(Error::invalid(
                "window",
                self.window,
                "expected a positive, finite number of seconds",
            ));
        }
        if !(self.warmup.is_finite() && self.warmup >= 0.0) {
            return Err(Error::invalid("warmup", self.warmup, "expected seconds >= 0"));
        }
        if self.capacity < 8 {
            return Err(Error::invalid(
                "capacity",
                self.capacity,
                "expected at least 8 samples",
            ));
        }
        if !(self.fill_significance.is_finite() && self.fill_significance >= 0.0) {
            return Err(Error::invalid(
                "fill_significance",
                self.fill_significance,
                "expected a t-statistic >= 0",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    t: f64,
    /// `used` minus the running offset of tagged steps: the background.
    background: f64,
    used: f64,
}

/// The running offset just before a tagged save.
#[derive(Debug, Clone, Copy)]
struct Save {
    t: f64,
    offset_before: f64,
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
#[derive(Debug, Clone)]
pub struct TrendMonitor {
    config: TrendConfig,
    samples: VecDeque<Sample>,
    saves: VecDeque<Save>,
    offset: f64,
    last_t: Option<f64>,
    latest: Option<(f64, f64, f64)>,
    last_write: f64,
    freed_since_write: bool,
    ever_freed: bool,
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

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

impl TrendMonitor {
    /// A monitor with `config` (validated).
    pub fn new(config: TrendConfig) -> Result<Self> {
        config.validate()?;
        Ok(TrendMonitor {
            config,
            samples: VecDeque::with_capacity(config.capacity),
            saves: VecDeque::with_capacity(SAVE_MEMORY),
            offset: 0.0,
            last_t: None,
            latest: None,
            last_write: 0.0,
            freed_since_write: false,
            ever_freed: false,
        })
    }

    fn check_time(&mut self, t: f64) -> Result<()> {
        if !t.is_finite() {
            return Err(Error::invalid(
                "t",
                t,
                "expected a finite monotonic time in seconds",
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
        #[allow(clippy::cast_precision_loss)] // byte counts far below 2^53 matter; beyond, f64 is fine
        let (used, avail) = (used as f64, avail as f64);
        self.latest = Some((t, used, avail));
        let spacing = self.config.window / self.config.capacity as f64;
        // Thin samples that come faster than the window needs, so memory stays bounded.
        if let Some(last) = self.samples.back() {
            if t - last.t < spacing {
                return Ok(());
            }
        }
        if self.samples.len() == self.config.capacity {
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
        #[allow(clippy::cast_precision_loss)]
        let bytes = bytes as f64;
        if self.saves.len() == SAVE_MEMORY {
            self.saves.pop_front();
        }
        self.saves.push_back(Save {
            t,
            offset_before: self.offset,
        });
        self.offset += bytes;
        self.last_write = bytes;
        self.freed_since_write = false;
        Ok(())
    }

    /// Tags `bytes` freed by retention (or any deletion we caused) at time `t`.
    pub fn record_free(&mut self, t: f64, bytes: u64) -> Result<()> {
        self.check_time(t)?;
        #[allow(clippy::cast_precision_loss)]
        let bytes = bytes as f64;
        self.offset -= bytes;
        self.freed_since_write = true;
        self.ever_freed = true;
        Ok(())
    }

    /// Number of samples held (bounded by the capacity).
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True before the first stored sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    fn background_rate(&self, now: f64) -> Option<(f64, f64)> {
        let start = now - self.config.window;
        let window: Vec<&Sample> = self.samples.iter().filter(|s| s.t >= start).collect();
        let first = window.first()?;
        if now - first.t < self.config.warmup || window.len() < 6 {
            return None;
        }
        // Long window: least squares over bucket medians (24 buckets per full window), blind to
        // spikes shorter than half a bucket. Buckets keep their width while history is short.
        let buckets = 24usize;
        let width = self.config.window / buckets as f64;
        let mut points = Vec::with_capacity(buckets);
        let mut bucket: Vec<f64> = Vec::new();
        let mut times: Vec<f64> = Vec::new();
        let mut index = 0usize;
        for s in &window {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let b = ((s.t - start).max(0.0) / width).floor() as usize;
            if b != index && !bucket.is_empty() {
                points.push((median(&mut times), median(&mut bucket)));
                bucket.clear();
                times.clear();
            }
            index = b;
            bucket.push(s.background);
            times.push(s.t);
        }
        if !bucket.is_empty() {
            points.push((median(&mut times), median(&mut bucket)));
        }
        let long = least_squares(points.iter().map(|&(t, y)| (t - now, y)))
            .or_else(|| least_squares(window.iter().map(|s| (s.t - now, s.background))))?;
        // A real fill rises across the whole window; another tenant's files come and go within
        // it. So growth counts only when each half of the window shows growth too...
        let half = points.len() / 2;
        let slope_of = |part: &[(f64, f64)]| least_squares(part.iter().map(|&(t, y)| (t - now, y)));
        let rises = |part: &[(f64, f64)]| slope_of(part).is_none_or(|(slope, _)| slope > 0.0);
        let mut best =
            (long.0 > 0.0 && points.len() >= 6 && rises(&points[..half]) && rises(&points[half..]))
                .then_some(long);
        // ...unless a writer started within the window: then usage has risen at most samples since,
        // far more than noise would (a file landing rises at one sample only). Recent stretches from a twelfth
        // to half the window are tried; one reaching back before the writer started is diluted,
        // so the steepest qualifying stretch gives the rate.
        for fraction in [2.0, 4.0, 6.0, 12.0] {
            let start = now - self.config.window / fraction;
            let recent: Vec<(f64, f64)> = window
                .iter()
                .filter(|s| s.t >= start)
                .map(|s| (s.t - now, s.background))
                .collect();
            // A sign test: noise rises at half the steps; demand 3.5 standard deviations more.
            let steps = recent.len().saturating_sub(1);
            let rising = recent.windows(2).filter(|w| w[1].1 > w[0].1).count();
            #[allow(clippy::cast_precision_loss)]
            let (steps_f, rising_f) = (steps as f64, rising as f64);
            let steady = steps >= 8 && rising_f >= steps_f / 2.0 + 3.5 * steps_f.sqrt() / 2.0;
            if !steady {
                continue;
            }
            if let Some((slope, error)) = least_squares(recent.iter().copied()) {
                let significant = slope > 0.0 && slope > self.config.fill_significance * error;
                if significant && best.is_none_or(|(b, _)| slope > b) {
                    best = Some((slope, error));
                }
            }
        }
        Some(best.unwrap_or((long.0.min(0.0), long.1)))
    }

    fn step_rate(&self, now: f64) -> f64 {
        let (Some(first), Some(last)) = (self.saves.front(), self.saves.back()) else {
            return 0.0;
        };
        let span = last.t - first.t;
        if span <= 0.0 {
            return 0.0;
        }
        // Saves that stopped stop counting: past two usual intervals, spread the growth to now.
        #[allow(clippy::cast_precision_loss)] // at most SAVE_MEMORY
        let interval = span / (self.saves.len() - 1) as f64;
        let span = if now - last.t > 2.0 * interval {
            now - first.t
        } else {
            span
        };
        (last.offset_before - first.offset_before) / span
    }

    /// The current forecast, or `None` until warmed up (`warmup` seconds and six samples).
    pub fn estimate(&self) -> Option<TrendEstimate> {
        let (now, _used, avail) = self.latest?;
        let (background_rate, rate_error) = self.background_rate(now)?;
        let step_rate = self.step_rate(now);
        let rate = background_rate + step_rate;
        let next_save = self.next_save();
        let headroom = avail - next_save;
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
        let (_, _, avail) = self.latest?;
        (avail - self.next_save() <= 0.0).then_some(0.0)
    }

    fn next_save(&self) -> f64 {
        // The next save needs room now unless the last one is still waiting for its prune. Until
        // the pattern is known (a prune seen, or two saves without one) a save just made may be
        // about to be pruned, so it does not count yet.
        let pattern_known = self.ever_freed || self.saves.len() >= 2;
        let pending_prune = self.ever_freed && !self.freed_since_write;
        if pattern_known && !pending_prune {
            self.last_write
        } else {
            0.0
        }
    }

    /// Seconds until full: 0 when the next save cannot fit (known from the first sample), `None`
    /// when not filling or not warmed up.
    pub fn time_to_full(&self) -> Option<f64> {
        self.full_now()
            .or_else(|| self.estimate().and_then(|e| e.time_to_full))
    }

    /// True when the disk may be full within `seconds`: judged on the early bound of the forecast
    /// (an alarm should err early), or at once when the next save cannot fit.
    pub fn will_fill_within(&self, seconds: f64) -> bool {
        self.full_now()
            .or_else(|| self.estimate().and_then(|e| e.time_to_full_low))
            .is_some_and(|t| t <= seconds)
    }

    /// The hand-written monitors' rule: average growth of `used` over the last `window` seconds is
    /// above `growth_threshold` bytes per second. Needs two samples in the window.
    pub fn is_rising_fast(&self, growth_threshold: f64, window: f64) -> bool {
        let Some((now, used, _)) = self.latest else {
            return false;
        };
        let start = now - window;
        match self.samples.iter().find(|s| s.t >= start) {
            Some(first) if now > first.t => (used - first.used) / (now - first.t) > growth_threshold,
            _ => false,
        }
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

impl RunPlan {
    /// Checks the plan; the error names the argument, its value and what is allowed.
    pub fn validate(&self) -> Result<()> {
        if !(self.save_interval.is_finite() && self.save_interval > 0.0) {
            return Err(Error::invalid(
                "save_interval",
                self.save_interval,
                "expected positive seconds",
            ));
        }
        if !self.background_rate.is_finite() {
            return Err(Error::invalid(
                "background_rate",
                self.background_rate,
                "expected bytes per second",
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

    /// Walks the remaining saves. Frameworks write the new checkpoint before deleting the oldest, so
    /// each save momentarily holds one more than `keep_last`.
    pub fn forecast(&self) -> Result<RunForecast> {
        self.validate()?;
        #[allow(clippy::cast_precision_loss)]
        let (size, room) = (
            self.checkpoint_size as f64,
            self.avail.saturating_sub(self.keep_free) as f64,
        );
        let mut kept = self.existing;
        let (mut peak, mut peak_at) = (0.0f64, 0u32);
        let mut first_full = None;
        for save in 1..=self.remaining_saves {
            let t = f64::from(save) * self.save_interval;
            let during = size * (f64::from(kept) + 1.0 - f64::from(self.existing)) + self.background_rate * t;
            if during > peak {
                (peak, peak_at) = (during, save);
            }
            if first_full.is_none() && during > room {
                first_full = Some((save, t));
            }
            kept = self.keep_last.map_or(kept + 1, |n| (kept + 1).min(n));
        }
        let end = f64::from(self.remaining_saves) * self.save_interval;
        let after = size * (f64::from(kept) - f64::from(self.existing)) + self.background_rate * end;
        if after > peak {
            (peak, peak_at) = (after, 0);
        }
        let fits = peak <= room;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let show = |b: f64| crate::size::format_size(b.max(0.0) as u64);
        let summary = match first_full {
            None if fits => format!(
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
        };
        Ok(RunForecast {
            peak_bytes: peak,
            peak_at_save: peak_at,
            fits,
            saves_until_full: first_full.map(|(s, _)| s),
            seconds_until_full: first_full.map(|(_, t)| t),
            summary,
        })
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
        assert!(m.will_fill_within(expected + 60.0) && !m.will_fill_within(expected - 600.0));
    }

    #[test]
    fn no_forecast_until_warmed_up() {
        let mut m = monitor();
        for i in 0..360 {
            m.add_sample(f64::from(i) * 60.0, 10, 10).expect("sample");
        }
        assert!(m.estimate().is_none(), "359 minutes is below the 6-hour warmup");
        m.add_sample(360.0 * 60.0, 10, 10).expect("sample");
        assert!(m.estimate().is_some());
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
                    !m.will_fill_within(24.0 * 3600.0),
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
        assert!(m.is_rising_fast(10.0, 300.0));
        assert!(!m.is_rising_fast(20.0, 300.0));
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
}
