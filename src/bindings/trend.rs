//! Trend monitoring and run forecasts.

use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use super::convert::{
    flag, number, opt_number, opt_whole, py_repr, rebuild, repr_of, size_arg, whole, wrong_type, Reduced,
};
use super::usage::{measure, PyDiskUsage};
use crate::error::Error;
use crate::size::SIZE_RULE;
use crate::trend::{
    Remaining, RunForecast, RunSpec, Shape, TrendConfig, TrendEstimate, TrendMonitor, TrendState,
};

/// Monotonic seconds on the clock `time.monotonic()` reads (`CLOCK_MONOTONIC`).
pub(crate) fn monotonic_now() -> PyResult<f64> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_err(|e| PyOSError::new_err(format!("clock_gettime: {e}")))?;
    let seconds = now.tv_sec() as f64 + now.tv_nsec() as f64 * 1e-9;
    Ok(seconds)
}

/// A time argument `t`: a number, or `None` for `time.monotonic()` now.
pub(crate) fn time_or_now(t: Option<&Bound<'_, PyAny>>) -> PyResult<f64> {
    opt_number("t", t)?.map_or_else(monotonic_now, Ok)
}

/// A size argument that has no default: `None` is refused, not read as 0.
fn required_size(name: &'static str, obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    size_arg(name, Some(obj))?.ok_or_else(|| Error::invalid(name, "None", SIZE_RULE).into())
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
    /// Rebuilds an estimate from its fields (what pickling does).
    #[new]
    #[allow(clippy::too_many_arguments)] // the record's fields, one to one
    fn new(
        rate: &Bound<'_, PyAny>,
        rate_error: &Bound<'_, PyAny>,
        background_rate: &Bound<'_, PyAny>,
        step_rate: &Bound<'_, PyAny>,
        next_save: &Bound<'_, PyAny>,
        avail: &Bound<'_, PyAny>,
        time_to_full: Option<&Bound<'_, PyAny>>,
        time_to_full_low: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        Ok(PyTrendEstimate {
            rate: number("rate", rate)?,
            rate_error: number("rate_error", rate_error)?,
            background_rate: number("background_rate", background_rate)?,
            step_rate: number("step_rate", step_rate)?,
            next_save: number("next_save", next_save)?,
            avail: number("avail", avail)?,
            time_to_full: opt_number("time_to_full", time_to_full)?,
            time_to_full_low: opt_number("time_to_full_low", time_to_full_low)?,
        })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py, Bound<'py, PyTuple>>> {
        let e = slf.get();
        let fields = (
            e.rate,
            e.rate_error,
            e.background_rate,
            e.step_rate,
            e.next_save,
            e.avail,
            e.time_to_full,
            e.time_to_full_low,
        );
        Ok(rebuild(slf.as_any(), fields.into_pyobject(slf.py())?))
    }

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
    /// Rebuilds a forecast from its fields (what pickling does).
    #[new]
    fn new(
        peak_bytes: &Bound<'_, PyAny>,
        peak_at_save: &Bound<'_, PyAny>,
        fits: bool,
        saves_until_full: Option<&Bound<'_, PyAny>>,
        seconds_until_full: Option<&Bound<'_, PyAny>>,
        summary: String,
    ) -> PyResult<Self> {
        Ok(PyRunForecast {
            peak_bytes: number("peak_bytes", peak_bytes)?,
            peak_at_save: whole("peak_at_save", peak_at_save)?,
            fits,
            saves_until_full: opt_whole("saves_until_full", saves_until_full)?,
            seconds_until_full: opt_number("seconds_until_full", seconds_until_full)?,
            summary,
        })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py, Bound<'py, PyTuple>>> {
        let f = slf.get();
        let fields = (
            f.peak_bytes,
            f.peak_at_save,
            f.fits,
            f.saves_until_full,
            f.seconds_until_full,
            f.summary.clone(),
        );
        Ok(rebuild(slf.as_any(), fields.into_pyobject(slf.py())?))
    }

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

/// The run arguments both `forecast_run`s share, converted into the core's [`RunSpec`].
#[allow(clippy::too_many_arguments)] // the Python keyword arguments, one to one
fn run_spec(
    checkpoint_size: &Bound<'_, PyAny>,
    save_interval: &Bound<'_, PyAny>,
    remaining_saves: Option<&Bound<'_, PyAny>>,
    remaining_seconds: Option<&Bound<'_, PyAny>>,
    keep_last: Option<&Bound<'_, PyAny>>,
    existing: Option<&Bound<'_, PyAny>>,
    keep_free: Option<&Bound<'_, PyAny>>,
) -> PyResult<RunSpec> {
    Ok(RunSpec {
        checkpoint_size: required_size("checkpoint_size", checkpoint_size)?,
        save_interval: number("save_interval", save_interval)?,
        remaining: Remaining::from_options(
            opt_whole("remaining_saves", remaining_saves)?,
            opt_number("remaining_seconds", remaining_seconds)?,
        )?,
        keep_last: opt_whole("keep_last", keep_last)?,
        existing: opt_whole("existing", existing)?.unwrap_or(0),
        keep_free: size_arg("keep_free", keep_free)?.unwrap_or(0),
    })
}

/// Will the rest of a run fit: checkpoint size, schedule and retention against the space left.
#[pyfunction(name = "forecast_run")]
#[pyo3(signature = (
    avail, checkpoint_size, save_interval, *, remaining_saves=None, remaining_seconds=None,
    keep_last=None, existing=None, background_rate=None, keep_free=None,
))]
#[pyo3(
    text_signature = "(avail, checkpoint_size, save_interval, *, remaining_saves=None, remaining_seconds=None, keep_last=None, existing=0, background_rate=0.0, keep_free=None)"
)]
#[allow(clippy::too_many_arguments)] // mirrors the Python keyword arguments one to one
pub(crate) fn forecast_run_py(
    avail: &Bound<'_, PyAny>,
    checkpoint_size: &Bound<'_, PyAny>,
    save_interval: &Bound<'_, PyAny>,
    remaining_saves: Option<&Bound<'_, PyAny>>,
    remaining_seconds: Option<&Bound<'_, PyAny>>,
    keep_last: Option<&Bound<'_, PyAny>>,
    existing: Option<&Bound<'_, PyAny>>,
    background_rate: Option<&Bound<'_, PyAny>>,
    keep_free: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyRunForecast> {
    let spec = run_spec(
        checkpoint_size,
        save_interval,
        remaining_saves,
        remaining_seconds,
        keep_last,
        existing,
        keep_free,
    )?;
    let plan = spec.plan(
        required_size("avail", avail)?,
        opt_number("background_rate", background_rate)?.unwrap_or(0.0),
    )?;
    Ok(plan.forecast()?.into())
}

/// Growth rate and time to full from periodic samples, with tagged checkpoint writes and frees.
#[pyclass(name = "TrendMonitor", module = "diskguard")]
pub struct PyTrendMonitor {
    monitor: TrendMonitor,
}

#[pymethods]
impl PyTrendMonitor {
    #[new]
    #[pyo3(signature = (*, window=None, capacity=None, warmup=None, fill_significance=None))]
    #[pyo3(text_signature = "(*, window=43200.0, capacity=720, warmup=21600.0, fill_significance=6.0)")]
    fn new(
        window: Option<&Bound<'_, PyAny>>,
        capacity: Option<&Bound<'_, PyAny>>,
        warmup: Option<&Bound<'_, PyAny>>,
        fill_significance: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let defaults = TrendConfig::default();
        let config = TrendConfig {
            window: opt_number("window", window)?.unwrap_or(defaults.window),
            capacity: opt_whole("capacity", capacity)?.unwrap_or(defaults.capacity),
            warmup: opt_number("warmup", warmup)?.unwrap_or(defaults.warmup),
            fill_significance: opt_number("fill_significance", fill_significance)?
                .unwrap_or(defaults.fill_significance),
        };
        Ok(PyTrendMonitor {
            monitor: TrendMonitor::new(config)?,
        })
    }

    /// Adds a measurement; `t` defaults to `time.monotonic()`.
    #[pyo3(signature = (used, avail, t=None))]
    fn add_sample(
        &mut self,
        used: &Bound<'_, PyAny>,
        avail: &Bound<'_, PyAny>,
        t: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let (used, avail) = (whole("used", used)?, whole("avail", avail)?);
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
    fn record_write(&mut self, nbytes: &Bound<'_, PyAny>, t: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let nbytes = whole("nbytes", nbytes)?;
        Ok(self.monitor.record_write(time_or_now(t)?, nbytes)?)
    }

    #[pyo3(signature = (nbytes, t=None))]
    fn record_free(&mut self, nbytes: &Bound<'_, PyAny>, t: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let nbytes = whole("nbytes", nbytes)?;
        Ok(self.monitor.record_free(time_or_now(t)?, nbytes)?)
    }

    fn estimate(&self) -> Option<PyTrendEstimate> {
        self.monitor.estimate().map(PyTrendEstimate::from)
    }

    /// What the history looks like: 'flat', 'burst', 'ramp', 'staircase' or 'sawtooth'.
    fn shape(&self) -> Option<&'static str> {
        self.monitor.shape().map(Shape::name)
    }

    fn time_to_full(&self) -> Option<f64> {
        self.monitor.time_to_full()
    }

    fn will_fill_within(&self, seconds: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.monitor.will_fill_within(number("seconds", seconds)?)?)
    }

    #[pyo3(signature = (growth_threshold, window=None))]
    #[pyo3(text_signature = "($self, growth_threshold, window=1800.0)")]
    fn is_rising_fast(
        &self,
        growth_threshold: &Bound<'_, PyAny>,
        window: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let growth_threshold = number("growth_threshold", growth_threshold)?;
        let window = opt_number("window", window)?.unwrap_or(1800.0);
        Ok(self.monitor.is_rising_fast(growth_threshold, window)?)
    }

    /// `forecast_run` with this monitor's latest `avail` and background rate.
    #[pyo3(signature = (
        checkpoint_size, save_interval, *, remaining_saves=None, remaining_seconds=None, keep_last=None,
        existing=None, keep_free=None,
    ))]
    #[pyo3(
        text_signature = "($self, checkpoint_size, save_interval, *, remaining_saves=None, remaining_seconds=None, keep_last=None, existing=0, keep_free=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn forecast_run(
        &self,
        checkpoint_size: &Bound<'_, PyAny>,
        save_interval: &Bound<'_, PyAny>,
        remaining_saves: Option<&Bound<'_, PyAny>>,
        remaining_seconds: Option<&Bound<'_, PyAny>>,
        keep_last: Option<&Bound<'_, PyAny>>,
        existing: Option<&Bound<'_, PyAny>>,
        keep_free: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyRunForecast> {
        let spec = run_spec(
            checkpoint_size,
            save_interval,
            remaining_saves,
            remaining_seconds,
            keep_last,
            existing,
            keep_free,
        )?;
        Ok(self.monitor.run_plan(&spec)?.forecast()?.into())
    }

    /// The monitor as a dict of plain types (ages, not clock readings), for a checkpoint.
    #[pyo3(signature = (t=None))]
    fn state_dict<'py>(
        &self,
        py: Python<'py>,
        t: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let state = match opt_number("t", t)? {
            Some(t) => self.monitor.state(t)?,
            None => self.monitor.state_now(monotonic_now()?)?,
        };
        state_to_dict(py, &state)
    }

    /// Continues from a `state_dict()`: ages are counted back from `t` (default now).
    #[pyo3(signature = (state, t=None))]
    fn load_state_dict(&mut self, state: &Bound<'_, PyAny>, t: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let state = state_from_dict(state)?;
        self.monitor = TrendMonitor::from_state(&state, time_or_now(t)?)?;
        Ok(())
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>, Bound<'py, PyDict>)> {
        let py = slf.py();
        let monitor = &slf.borrow().monitor;
        let state = monitor.state_now(monotonic_now()?)?;
        Ok((
            slf.get_type().into_any(),
            PyTuple::empty(py),
            state_to_dict(py, &state)?,
        ))
    }

    fn __setstate__(&mut self, state: &Bound<'_, PyAny>) -> PyResult<()> {
        self.load_state_dict(state, None)
    }

    fn __len__(&self) -> usize {
        self.monitor.len()
    }
}

/// Version of the `state_dict()` layout, checked on load.
const STATE_VERSION: u32 = 1;

/// A [`TrendState`] as a dict of str, int, float, bool, list and None (what `torch.load(...,
/// weights_only=True)` accepts).
pub(crate) fn state_to_dict<'py>(py: Python<'py>, state: &TrendState) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let config = state.config;
    dict.set_item("version", STATE_VERSION)?;
    dict.set_item("window", config.window)?;
    dict.set_item("capacity", config.capacity)?;
    dict.set_item("warmup", config.warmup)?;
    dict.set_item("fill_significance", config.fill_significance)?;
    dict.set_item(
        "samples",
        state.samples.iter().map(|row| row.to_vec()).collect::<Vec<_>>(),
    )?;
    dict.set_item(
        "saves",
        state.saves.iter().map(|row| row.to_vec()).collect::<Vec<_>>(),
    )?;
    dict.set_item("offset", state.offset)?;
    dict.set_item("latest", state.latest.map(|row| row.to_vec()))?;
    dict.set_item("last_event_age", state.last_event_age)?;
    dict.set_item("last_write_bytes", state.last_write_bytes)?;
    dict.set_item("freed_since_write", state.freed_since_write)?;
    dict.set_item("first_free_age", state.first_free_age)?;
    Ok(dict)
}

/// `state[key]`, or a `ValueError` naming the missing key.
fn state_item<'py>(state: &Bound<'py, PyDict>, key: &'static str) -> PyResult<Bound<'py, PyAny>> {
    state.get_item(key)?.ok_or_else(|| {
        Error::invalid(
            "state",
            format!("no {key:?}"),
            "expected a dict from TrendMonitor.state_dict()",
        )
        .into()
    })
}

/// A list of rows of `N` numbers under `key`; a row of another length or type is refused.
fn state_rows<const N: usize>(state: &Bound<'_, PyDict>, key: &'static str) -> PyResult<Vec<[f64; N]>> {
    let rows = state_item(state, key)?;
    let rows = rows
        .cast::<PyList>()
        .map_err(|_| wrong_type(key, &rows, "a list of rows"))?;
    rows.iter().map(|row| state_row::<N>(key, &row)).collect()
}

/// One row of `N` numbers (a list or a tuple).
fn state_row<const N: usize>(key: &'static str, row: &Bound<'_, PyAny>) -> PyResult<[f64; N]> {
    let items: Vec<Bound<'_, PyAny>> = match (row.cast::<PyList>(), row.cast::<PyTuple>()) {
        (Ok(list), _) if list.len() == N => list.iter().collect(),
        (_, Ok(tuple)) if tuple.len() == N => tuple.iter().collect(),
        _ => {
            return Err(PyTypeError::new_err(format!(
                "state[{key:?}] row {}: expected a list of {N} numbers",
                repr_of(row)
            )))
        }
    };
    let mut values = [0.0; N];
    for (value, item) in values.iter_mut().zip(&items) {
        *value = number(key, item)?;
    }
    Ok(values)
}

/// A `bool` under `key`.
fn state_flag(state: &Bound<'_, PyDict>, key: &'static str) -> PyResult<bool> {
    flag(key, &state_item(state, key)?)
}

/// Reads a `state_dict()` back into a [`TrendState`]: types here, meaning in the core.
pub(crate) fn state_from_dict(state: &Bound<'_, PyAny>) -> PyResult<TrendState> {
    let state = state
        .cast::<PyDict>()
        .map_err(|_| wrong_type("state", state, "a dict from TrendMonitor.state_dict()"))?;
    let version: u32 = whole("version", &state_item(state, "version")?)?;
    if version != STATE_VERSION {
        return Err(Error::invalid("state['version']", version, format!("expected {STATE_VERSION}")).into());
    }
    let optional_row = |key: &'static str| -> PyResult<Option<[f64; 3]>> {
        let row = state_item(state, key)?;
        if row.is_none() {
            Ok(None)
        } else {
            state_row::<3>(key, &row).map(Some)
        }
    };
    Ok(TrendState {
        config: TrendConfig {
            window: number("window", &state_item(state, "window")?)?,
            capacity: whole("capacity", &state_item(state, "capacity")?)?,
            warmup: number("warmup", &state_item(state, "warmup")?)?,
            fill_significance: number("fill_significance", &state_item(state, "fill_significance")?)?,
        },
        samples: state_rows::<3>(state, "samples")?,
        saves: state_rows::<2>(state, "saves")?,
        offset: number("offset", &state_item(state, "offset")?)?,
        latest: optional_row("latest")?,
        last_event_age: opt_number("last_event_age", Some(&state_item(state, "last_event_age")?))?,
        last_write_bytes: number("last_write_bytes", &state_item(state, "last_write_bytes")?)?,
        freed_since_write: state_flag(state, "freed_since_write")?,
        first_free_age: opt_number("first_free_age", Some(&state_item(state, "first_free_age")?))?,
    })
}
