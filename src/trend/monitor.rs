//! The monitor: samples and tagged writes and frees in, rates and time to full out.

use super::statistics::{
    bucket_medians, cycle_rate, rises_in_both_halves, rises_steadily, slope_before, steeper, BUCKETS,
};
use super::{
    non_negative, positive, Reading, RunPlan, RunSpec, Sample, Save, Shape, TrendConfig, TrendEstimate,
    TrendMonitor, SAVE_MEMORY,
};
use crate::error::{Error, Result};
use crate::trend_shape::{early_reading, EarlyReading, Tagged, SHIFT_FLOOR};
use std::collections::VecDeque;

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

    pub(super) fn check_time(&mut self, t: f64) -> Result<()> {
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
    pub(super) fn window_samples(&self, now: f64) -> Vec<&Sample> {
        let start = now - self.config.window;
        self.samples.iter().filter(|s| s.t >= start).collect()
    }

    /// The background drift `(rate, standard error)` once warmed up: the long fit when the whole
    /// window rises (or falls), else the steepest recent writer, else flat or falling.
    pub(super) fn background_rate(&self, now: f64) -> Option<(f64, f64)> {
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
    pub(super) fn recent_writer_rate(&self, all: &[(f64, f64)], now: f64) -> Option<(f64, f64)> {
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
    pub(super) fn retained_saves(&self) -> Vec<(f64, f64)> {
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
    pub(super) fn early_reading(&self, now: f64, headroom: f64) -> Option<EarlyReading> {
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

    pub(super) fn step_rate(&self, now: f64) -> f64 {
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
    pub(super) fn full_now(&self) -> Option<f64> {
        let Reading { avail, .. } = self.latest?;
        (avail - self.next_save() <= 0.0).then_some(0.0)
    }

    pub(super) fn next_save(&self) -> f64 {
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
}
