//! Trend monitoring and run forecasts.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use super::usage::{measure, PyDiskUsage};
use super::{py_repr, size_arg};
use crate::error::Error;
use crate::trend::{RunForecast, RunPlan, TrendConfig, TrendEstimate, TrendMonitor};

/// Monotonic seconds on the clock `time.monotonic()` reads (CLOCK_MONOTONIC).
pub(crate) fn monotonic_now() -> PyResult<f64> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_err(|e| PyOSError::new_err(format!("clock_gettime: {e}")))?;
    #[allow(clippy::cast_precision_loss)]
    let seconds = now.tv_sec() as f64 + now.tv_nsec() as f64 * 1e-9;
    Ok(seconds)
}

/// A forecast from `TrendMonitor.estimate()`.
#[pyclass(frozen, get_all, name = "TrendEstimate", module = "diskguard")]
pub struct PyTrendEstimate {
    rate: f64,
    rate_error: f64,
    background_rate: f64,
    step_rate: f64,
    next_save: f64,
    avail: f64,
    time_to_full: Option<f64>,
    time_to_full_low: Option<f64>,
}

#[pymethods]
impl PyTrendEstimate {
    fn __repr__(&self) -> String {
        format!(
            "TrendEstimate(rate={:.1}, background_rate={:.1}, step_rate={:.1}, time_to_full={})",
            self.rate,
            self.background_rate,
            self.step_rate,
            self.time_to_full
                .map_or_else(|| "None".to_owned(), |t| format!("{t:.0}"))
        )
    }
}

impl From<TrendEstimate> for PyTrendEstimate {
    fn from(e: TrendEstimate) -> Self {
        PyTrendEstimate {
            rate: e.rate,
            rate_error: e.rate_error,
            background_rate: e.background_rate,
            step_rate: e.step_rate,
            next_save: e.next_save,
            avail: e.avail,
            time_to_full: e.time_to_full,
            time_to_full_low: e.time_to_full_low,
        }
    }
}

/// The answer to "will the rest of this run fit?".
#[pyclass(frozen, get_all, name = "RunForecast", module = "diskguard")]
pub struct PyRunForecast {
    peak_bytes: f64,
    peak_at_save: u32,
    fits: bool,
    saves_until_full: Option<u32>,
    seconds_until_full: Option<f64>,
    summary: String,
}

#[pymethods]
impl PyRunForecast {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "RunForecast(fits={}, summary={})",
            py_repr(py, self.fits),
            py_repr(py, &self.summary)
        )
    }

    fn __str__(&self) -> String {
        self.summary.clone()
    }
}

impl From<RunForecast> for PyRunForecast {
    fn from(f: RunForecast) -> Self {
        PyRunForecast {
            peak_bytes: f.peak_bytes,
            peak_at_save: f.peak_at_save,
            fits: f.fits,
            saves_until_full: f.saves_until_full,
            seconds_until_full: f.seconds_until_full,
            summary: f.summary,
        }
    }
}

/// Will the rest of a run fit: checkpoint size, schedule and retention against the space left.
#[pyfunction(name = "forecast_run")]
#[pyo3(signature = (
    avail, checkpoint_size, save_interval, *, remaining_saves=None, remaining_seconds=None,
    keep_last=None, existing=0, background_rate=0.0, keep_free=None,
))]
#[allow(clippy::too_many_arguments)] // mirrors the Python keyword arguments one to one
pub(crate) fn forecast_run_py(
    avail: &Bound<'_, PyAny>,
    checkpoint_size: &Bound<'_, PyAny>,
    save_interval: f64,
    remaining_saves: Option<u32>,
    remaining_seconds: Option<f64>,
    keep_last: Option<u32>,
    existing: u32,
    background_rate: f64,
    keep_free: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyRunForecast> {
    let avail = size_arg("avail", Some(avail))?.unwrap_or(0);
    let remaining = (remaining_saves, remaining_seconds);
    forecast(
        avail,
        checkpoint_size,
        save_interval,
        remaining,
        keep_last,
        existing,
        background_rate,
        keep_free,
    )
}

/// Builds and walks a [`RunPlan`]; both `forecast_run`s end here.
#[allow(clippy::too_many_arguments)] // the plan's fields, one to one
fn forecast(
    avail: u64,
    checkpoint_size: &Bound<'_, PyAny>,
    save_interval: f64,
    (remaining_saves, remaining_seconds): (Option<u32>, Option<f64>),
    keep_last: Option<u32>,
    existing: u32,
    background_rate: f64,
    keep_free: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyRunForecast> {
    let plan = RunPlan {
        checkpoint_size: size_arg("checkpoint_size", Some(checkpoint_size))?.unwrap_or(0),
        save_interval,
        remaining_saves: saves_left(remaining_saves, remaining_seconds, save_interval)?,
        keep_last,
        existing,
        background_rate,
        avail,
        keep_free: size_arg("keep_free", keep_free)?.unwrap_or(0),
    };
    Ok(plan.forecast()?.into())
}

/// The saves still to come, from a count or from the time left in the run.
pub(crate) fn saves_left(saves: Option<u32>, seconds: Option<f64>, interval: f64) -> PyResult<u32> {
    match (saves, seconds) {
        (Some(n), None) => Ok(n),
        (None, Some(s)) if s.is_finite() && s >= 0.0 && interval > 0.0 => {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped to u32 range
            let n = (s / interval).floor().min(f64::from(u32::MAX)) as u32;
            Ok(n)
        }
        (None, Some(s)) => Err(Error::invalid("remaining_seconds", s, "expected seconds >= 0 and save_interval > 0").into()),
        _ => Err(PyValueError::new_err(
            "remaining_saves / remaining_seconds: give exactly one (saves still to come, or seconds left in the run)",
        )),
    }
}

/// Growth rate and time to full from periodic samples, with tagged checkpoint writes and frees.
#[pyclass(name = "TrendMonitor", module = "diskguard")]
pub struct PyTrendMonitor {
    monitor: TrendMonitor,
}

pub(crate) fn time_or_now(t: Option<f64>) -> PyResult<f64> {
    t.map_or_else(monotonic_now, Ok)
}

#[pymethods]
impl PyTrendMonitor {
    #[new]
    #[pyo3(signature = (*, window=43200.0, capacity=720, warmup=21600.0, fill_significance=6.0))]
    fn new(window: f64, capacity: usize, warmup: f64, fill_significance: f64) -> PyResult<Self> {
        let config = TrendConfig {
            window,
            capacity,
            warmup,
            fill_significance,
        };
        Ok(PyTrendMonitor {
            monitor: TrendMonitor::new(config)?,
        })
    }

    /// Adds a measurement; `t` defaults to `time.monotonic()`.
    #[pyo3(signature = (used, avail, t=None))]
    fn add_sample(&mut self, used: u64, avail: u64, t: Option<f64>) -> PyResult<()> {
        Ok(self.monitor.add_sample(time_or_now(t)?, used, avail)?)
    }

    /// Measures `path` (statfs with the GIL released) and adds the sample; returns the usage.
    fn sample(&mut self, py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<PyDiskUsage> {
        let usage = measure(py, path)?;
        self.monitor
            .add_sample(monotonic_now()?, usage.used, usage.avail)?;
        Ok(PyDiskUsage::new(usage))
    }

    #[pyo3(signature = (nbytes, t=None))]
    fn record_write(&mut self, nbytes: u64, t: Option<f64>) -> PyResult<()> {
        Ok(self.monitor.record_write(time_or_now(t)?, nbytes)?)
    }

    #[pyo3(signature = (nbytes, t=None))]
    fn record_free(&mut self, nbytes: u64, t: Option<f64>) -> PyResult<()> {
        Ok(self.monitor.record_free(time_or_now(t)?, nbytes)?)
    }

    fn estimate(&self) -> Option<PyTrendEstimate> {
        self.monitor.estimate().map(PyTrendEstimate::from)
    }

    fn time_to_full(&self) -> Option<f64> {
        self.monitor.time_to_full()
    }

    fn will_fill_within(&self, seconds: f64) -> bool {
        self.monitor.will_fill_within(seconds)
    }

    #[pyo3(signature = (growth_threshold, window=1800.0))]
    fn is_rising_fast(&self, growth_threshold: f64, window: f64) -> bool {
        self.monitor.is_rising_fast(growth_threshold, window)
    }

    /// `forecast_run` with this monitor's latest `avail` and background rate.
    #[pyo3(signature = (
        checkpoint_size, save_interval, *, remaining_saves=None, remaining_seconds=None, keep_last=None,
        existing=0, keep_free=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn forecast_run(
        &self,
        checkpoint_size: &Bound<'_, PyAny>,
        save_interval: f64,
        remaining_saves: Option<u32>,
        remaining_seconds: Option<f64>,
        keep_last: Option<u32>,
        existing: u32,
        keep_free: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyRunForecast> {
        let Some(estimate) = self.monitor.estimate() else {
            return Err(PyValueError::new_err(
                "the monitor is not warmed up yet: add samples over its warmup period first",
            ));
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let avail = estimate.avail.max(0.0) as u64;
        let remaining = (remaining_saves, remaining_seconds);
        let background = estimate.background_rate.max(0.0);
        forecast(
            avail,
            checkpoint_size,
            save_interval,
            remaining,
            keep_last,
            existing,
            background,
            keep_free,
        )
    }

    fn __len__(&self) -> usize {
        self.monitor.len()
    }
}
