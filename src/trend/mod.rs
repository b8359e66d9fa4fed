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

mod forecast;
mod monitor;
mod state;
mod statistics;
#[cfg(test)]
#[allow(clippy::float_cmp)] // exact on purpose: the closed form must equal the walk, and state round trips
mod tests;

use std::collections::VecDeque;

use crate::error::{Error, Result};
pub use crate::trend_shape::{Shape, RAMP_SPAN};
pub use forecast::{human_duration, Remaining, RunForecast, RunPlan, RunSpec};
pub use state::TrendState;
pub use statistics::least_squares;
pub(crate) use statistics::{cycle_rate, median, rises_steadily, slope_before, steeper};

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
