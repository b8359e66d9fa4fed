//! The Python face of the core: frozen records, thin functions, one error conversion.
//!
//! Every function converts its arguments to owned Rust values, runs the core with the GIL released
//! (`py.detach`) when it touches the filesystem, and converts the result. Nothing else lives here.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString};
use pyo3::IntoPyObjectExt;

use crate::check::{Level, Thresholds};
use crate::checkpoints;
use crate::deletion::{self, LockWait, Orphan, Outcome};
use crate::error::Error;
use crate::logs::BudgetConfig;
use crate::mounts::{self, Mount};
use crate::retention::{self, Action, Item, Mode, Plan, Policy, Rule};
use crate::size::{self, SIZE_RULE};
use crate::trend::{RunForecast, RunPlan, TrendConfig, TrendEstimate, TrendMonitor};
use crate::usage::{self, DiskUsage};

create_exception!(
    diskguard,
    DiskGuardError,
    PyException,
    "Base class of diskguard's own errors."
);
create_exception!(
    diskguard,
    DirectoryBusyError,
    DiskGuardError,
    "Another process is pruning this checkpoint directory (its lock is held)."
);

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        match err {
            Error::Os { source, path, .. } => match source.raw_os_error() {
                // OSError(errno, strerror, filename) picks the matching subclass itself
                // (FileNotFoundError, PermissionError, ...), as the os module's errors do.
                Some(errno) => PyOSError::new_err((
                    errno,
                    nix::errno::Errno::from_raw(errno).desc(),
                    path.into_os_string(),
                )),
                None => PyOSError::new_err(format!("{source}: {}", path.display())),
            },
            Error::InvalidArgument { .. } => PyValueError::new_err(err.to_string()),
            Error::Busy { .. } => DirectoryBusyError::new_err(err.to_string()),
            Error::Refused { .. } => DiskGuardError::new_err(err.to_string()),
        }
    }
}

/// Accepts `str`, `bytes` or `os.PathLike`, the way the `os` module does.
fn fs_path(obj: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    if let Ok(bytes) = obj.cast::<PyBytes>() {
        return Ok(PathBuf::from(OsString::from_vec(bytes.as_bytes().to_vec())));
    }
    if obj.is_instance_of::<PyString>() {
        return obj.extract::<PathBuf>();
    }
    let fspath = obj.py().import("os")?.getattr("fspath")?;
    match fspath.call1((obj,)) {
        Ok(path) => fs_path(&path),
        Err(_) => Err(PyTypeError::new_err(format!(
            "path={}: expected str, bytes or os.PathLike, got {}",
            obj.repr().map_or_else(|_| "?".to_owned(), |r| r.to_string()),
            obj.get_type()
                .name()
                .map_or_else(|_| "?".to_owned(), |n| n.to_string()),
        ))),
    }
}

/// A size argument: an int of bytes, a finite non-negative float, or a string such as `"20GiB"`.
fn size_arg(name: &'static str, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    let bad = || {
        Error::invalid(
            name,
            obj.repr().map_or_else(|_| "?".into(), |r| r.to_string()),
            SIZE_RULE,
        )
    };
    if obj.is_instance_of::<PyBool>() {
        return Err(bad().into());
    }
    if obj.is_instance_of::<PyInt>() {
        return obj.extract::<u64>().map(Some).map_err(|_| bad().into());
    }
    if obj.is_instance_of::<PyFloat>() {
        let value: f64 = obj.extract()?;
        if (0.0..1.8e19).contains(&value) {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // range checked above
            return Ok(Some(value as u64));
        }
        return Err(bad().into());
    }
    if let Ok(text) = obj.cast::<PyString>() {
        return Ok(Some(size::parse_size(name, &text.to_cow()?)?));
    }
    Err(bad().into())
}

/// Severity of a check. Its integer value is the Nagios plugin exit code (0, 1, 2).
#[pyclass(eq, eq_int, ord, hash, frozen, name = "Level", module = "diskguard")]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PyLevel {
    /// Below every threshold.
    #[pyo3(name = "OK")]
    Ok = 0,
    /// A warning threshold is reached.
    #[pyo3(name = "WARN")]
    Warn = 1,
    /// A critical threshold is reached.
    #[pyo3(name = "CRITICAL")]
    Critical = 2,
}

impl From<Level> for PyLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Ok => PyLevel::Ok,
            Level::Warn => PyLevel::Warn,
            Level::Critical => PyLevel::Critical,
        }
    }
}

#[pymethods]
impl PyLevel {
    fn __str__(&self) -> &'static str {
        Level::from(*self).name()
    }
}

impl From<PyLevel> for Level {
    fn from(level: PyLevel) -> Self {
        match level {
            PyLevel::Ok => Level::Ok,
            PyLevel::Warn => Level::Warn,
            PyLevel::Critical => Level::Critical,
        }
    }
}

/// One entry of the mount table.
#[pyclass(frozen, get_all, name = "Mount", module = "diskguard")]
pub struct PyMount {
    mount_id: u64,
    parent_id: u64,
    major: u32,
    minor: u32,
    root: OsString,
    mount_point: OsString,
    fs_type: String,
    source: OsString,
    mount_options: String,
    super_options: String,
    read_only: bool,
    is_overlay: bool,
}

impl From<&Mount> for PyMount {
    fn from(m: &Mount) -> Self {
        PyMount {
            mount_id: m.mount_id,
            parent_id: m.parent_id,
            major: m.major,
            minor: m.minor,
            root: m.root.clone().into_os_string(),
            mount_point: m.mount_point.clone().into_os_string(),
            fs_type: m.fs_type.clone(),
            source: m.source.clone(),
            mount_options: m.mount_options.clone(),
            super_options: m.super_options.clone(),
            read_only: m.read_only(),
            is_overlay: m.is_overlay(),
        }
    }
}

#[pymethods]
impl PyMount {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Mount(mount_point={}, fs_type={}, source={}, read_only={})",
            py_repr(py, &self.mount_point),
            py_repr(py, &self.fs_type),
            py_repr(py, &self.source),
            py_repr(py, self.read_only)
        )
    }
}

/// Python's `repr()` of a value, for `__repr__`s that read like Python.
fn py_repr<'py>(py: Python<'py>, value: impl IntoPyObject<'py>) -> String {
    value
        .into_bound_py_any(py)
        .and_then(|obj| obj.repr().map(|r| r.to_string()))
        .unwrap_or_else(|_| "?".to_owned())
}

/// Usage of the filesystem under a path. The mount fields are resolved on first access.
#[pyclass(frozen, name = "DiskUsage", module = "diskguard")]
pub struct PyDiskUsage {
    usage: DiskUsage,
    mount: OnceLock<Option<Mount>>,
}

impl PyDiskUsage {
    fn new(usage: DiskUsage) -> Self {
        PyDiskUsage {
            usage,
            mount: OnceLock::new(),
        }
    }

    fn resolved_mount(&self, py: Python<'_>) -> Option<&Mount> {
        if self.mount.get().is_none() {
            // Resolved outside the OnceLock so a thread waiting for the GIL never waits on the
            // lock too; a race only resolves twice.
            let queried = self.usage.queried_path.clone();
            let found = py.detach(move || mounts::mount_of(&queried, Path::new("/proc")));
            if let Err(err) = &found {
                log::debug!(
                    "cannot resolve the mount of {}: {err}",
                    self.usage.queried_path.display()
                );
            }
            let _ = self.mount.set(found.ok());
        }
        self.mount.get().and_then(Option::as_ref)
    }
}

#[pymethods]
impl PyDiskUsage {
    #[getter]
    fn path(&self) -> &OsStr {
        self.usage.path.as_os_str()
    }
    #[getter]
    fn queried_path(&self) -> &OsStr {
        self.usage.queried_path.as_os_str()
    }
    #[getter]
    fn path_exists(&self) -> bool {
        self.usage.path_exists
    }
    #[getter]
    fn total(&self) -> u64 {
        self.usage.total
    }
    #[getter]
    fn used(&self) -> u64 {
        self.usage.used
    }
    #[getter]
    fn free(&self) -> u64 {
        self.usage.free
    }
    #[getter]
    fn avail(&self) -> u64 {
        self.usage.avail
    }
    #[getter]
    fn reserved(&self) -> u64 {
        self.usage.reserved
    }
    #[getter]
    fn percent_used(&self) -> f64 {
        self.usage.percent_used
    }
    #[getter]
    fn inodes_total(&self) -> Option<u64> {
        self.usage.inodes.map(|i| i.total)
    }
    #[getter]
    fn inodes_used(&self) -> Option<u64> {
        self.usage.inodes.map(|i| i.used)
    }
    #[getter]
    fn inodes_free(&self) -> Option<u64> {
        self.usage.inodes.map(|i| i.free)
    }
    #[getter]
    fn inodes_percent_used(&self) -> Option<f64> {
        self.usage.inodes.map(|i| i.percent_used)
    }
    #[getter]
    fn read_only(&self) -> bool {
        self.usage.read_only
    }
    #[getter]
    fn block_size(&self) -> u64 {
        self.usage.block_size
    }
    #[getter]
    fn mount(&self, py: Python<'_>) -> Option<PyMount> {
        self.resolved_mount(py).map(PyMount::from)
    }
    #[getter]
    fn mount_point(&self, py: Python<'_>) -> Option<OsString> {
        self.resolved_mount(py)
            .map(|m| m.mount_point.clone().into_os_string())
    }
    #[getter]
    fn fs_type(&self, py: Python<'_>) -> String {
        match self.resolved_mount(py) {
            Some(m) if !m.fs_type.is_empty() => m.fs_type.clone(),
            _ => usage::magic_name(self.usage.fs_magic)
                .map_or_else(|| format!("{:#x}", self.usage.fs_magic), str::to_owned),
        }
    }
    #[getter]
    fn device(&self, py: Python<'_>) -> Option<OsString> {
        self.resolved_mount(py)
            .filter(|m| !m.source.is_empty())
            .map(|m| m.source.clone())
    }
    #[getter]
    fn is_overlay(&self, py: Python<'_>) -> bool {
        self.usage.is_overlay_magic() || self.resolved_mount(py).is_some_and(Mount::is_overlay)
    }

    /// Every field as a plain dict (mount fields resolved), for JSON and logging.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("path", self.path())?;
        d.set_item("queried_path", self.queried_path())?;
        d.set_item("path_exists", self.path_exists())?;
        d.set_item("mount_point", self.mount_point(py))?;
        d.set_item("fs_type", self.fs_type(py))?;
        d.set_item("device", self.device(py))?;
        d.set_item("total", self.total())?;
        d.set_item("used", self.used())?;
        d.set_item("free", self.free())?;
        d.set_item("avail", self.avail())?;
        d.set_item("reserved", self.reserved())?;
        d.set_item("percent_used", self.percent_used())?;
        d.set_item("inodes_total", self.inodes_total())?;
        d.set_item("inodes_used", self.inodes_used())?;
        d.set_item("inodes_free", self.inodes_free())?;
        d.set_item("inodes_percent_used", self.inodes_percent_used())?;
        d.set_item("read_only", self.read_only())?;
        d.set_item("is_overlay", self.is_overlay(py))?;
        d.set_item("block_size", self.block_size())?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "DiskUsage(path={}, total={}, used={}, avail={}, reserved={}, percent_used={:.2})",
            py_repr(py, self.path()),
            self.usage.total,
            self.usage.used,
            self.usage.avail,
            self.usage.reserved,
            self.usage.percent_used
        )
    }
}

/// The outcome of a threshold check.
#[pyclass(frozen, get_all, name = "CheckResult", module = "diskguard")]
pub struct PyCheckResult {
    level: PyLevel,
    reasons: Vec<String>,
    usage: Py<PyDiskUsage>,
}

#[pymethods]
impl PyCheckResult {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "CheckResult(level=Level.{}, reasons={}, path={})",
            Level::from(self.level).name().to_uppercase(),
            py_repr(py, &self.reasons),
            py_repr(py, self.usage.get().usage.path.as_os_str())
        )
    }

    fn __str__(&self) -> String {
        let path = self.usage.get().usage.path.display().to_string();
        let level = Level::from(self.level).name().to_uppercase();
        if self.reasons.is_empty() {
            format!("{level} {path}: {:.1}% used", self.usage.get().usage.percent_used)
        } else {
            format!("{level} {path}: {}", self.reasons.join("; "))
        }
    }
}

/// Usage of the filesystem that holds `path`.
#[pyfunction(name = "usage")]
fn usage_py(py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<PyDiskUsage> {
    let path = fs_path(path)?;
    let usage = py.detach(move || usage::usage(&path))?;
    Ok(PyDiskUsage::new(usage))
}

/// Grades the filesystem under `path` against thresholds.
#[pyfunction(name = "check")]
#[pyo3(signature = (
    path, warn=Some(0.85), critical=Some(0.95), *, min_free=None, warn_free=None,
    inode_warn=Some(0.85), inode_critical=Some(0.95),
))]
#[pyo3(
    text_signature = "(path, warn=0.85, critical=0.95, *, min_free=None, warn_free=None, inode_warn=0.85, inode_critical=0.95)"
)]
#[allow(clippy::too_many_arguments)] // mirrors the Python keyword arguments one to one
fn check_py(
    py: Python<'_>,
    path: &Bound<'_, PyAny>,
    warn: Option<f64>,
    critical: Option<f64>,
    min_free: Option<&Bound<'_, PyAny>>,
    warn_free: Option<&Bound<'_, PyAny>>,
    inode_warn: Option<f64>,
    inode_critical: Option<f64>,
) -> PyResult<PyCheckResult> {
    let thresholds = Thresholds::new(
        warn,
        critical,
        size_arg("warn_free", warn_free)?,
        size_arg("min_free", min_free)?,
        inode_warn,
        inode_critical,
    )?;
    let path = fs_path(path)?;
    let usage = py.detach(move || usage::usage(&path))?;
    let (level, reasons) = thresholds.evaluate(&usage);
    Ok(PyCheckResult {
        level: level.into(),
        reasons,
        usage: Py::new(py, PyDiskUsage::new(usage))?,
    })
}

/// A log budget: total footprint, `maxBytes` and `backupCount`, and which limit bound it.
#[pyclass(frozen, get_all, name = "LogBudget", module = "diskguard")]
pub struct PyLogBudget {
    total_bytes: u64,
    max_bytes: u64,
    backup_count: u32,
    bound: &'static str,
    explanation: String,
    usage: Py<PyDiskUsage>,
}

#[pymethods]
impl PyLogBudget {
    fn __repr__(&self) -> String {
        format!(
            "LogBudget(total_bytes={}, max_bytes={}, backup_count={}, bound='{}')",
            self.total_bytes, self.max_bytes, self.backup_count, self.bound
        )
    }
}

/// Sizes a rotating log on the filesystem under `path` by journald's rule.
#[pyfunction(name = "log_budget")]
#[pyo3(signature = (
    path, *, max_use=None, max_use_fraction=0.10, keep_free=None, max_file_size=None,
    min_file_size=None, current_usage=None,
))]
#[pyo3(
    text_signature = "(path, *, max_use=None, max_use_fraction=0.1, keep_free=None, max_file_size=None, min_file_size=None, current_usage=None)"
)]
#[allow(clippy::too_many_arguments)] // mirrors the Python keyword arguments one to one
fn log_budget_py(
    py: Python<'_>,
    path: &Bound<'_, PyAny>,
    max_use: Option<&Bound<'_, PyAny>>,
    max_use_fraction: f64,
    keep_free: Option<&Bound<'_, PyAny>>,
    max_file_size: Option<&Bound<'_, PyAny>>,
    min_file_size: Option<&Bound<'_, PyAny>>,
    current_usage: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyLogBudget> {
    let defaults = BudgetConfig::default();
    let config = BudgetConfig {
        max_use: size_arg("max_use", max_use)?,
        max_use_fraction,
        keep_free: size_arg("keep_free", keep_free)?,
        max_file_size: size_arg("max_file_size", max_file_size)?,
        min_file_size: size_arg("min_file_size", min_file_size)?.unwrap_or(defaults.min_file_size),
        current_usage: size_arg("current_usage", current_usage)?.unwrap_or(0),
    };
    config.validate()?;
    let path = fs_path(path)?;
    let usage = py.detach(move || usage::usage(&path))?;
    let budget = config.budget(&usage)?;
    Ok(PyLogBudget {
        total_bytes: budget.total_bytes,
        max_bytes: budget.max_bytes,
        backup_count: budget.backup_count,
        bound: budget.bound.name(),
        explanation: budget.explanation,
        usage: Py::new(py, PyDiskUsage::new(usage))?,
    })
}

/// Monotonic seconds on the clock `time.monotonic()` reads (CLOCK_MONOTONIC).
fn monotonic_now() -> PyResult<f64> {
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
fn forecast_run_py(
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
    let remaining_saves = saves_left(remaining_saves, remaining_seconds, save_interval)?;
    let plan = RunPlan {
        checkpoint_size: size_arg("checkpoint_size", Some(checkpoint_size))?.unwrap_or(0),
        save_interval,
        remaining_saves,
        keep_last,
        existing,
        background_rate,
        avail: size_arg("avail", Some(avail))?.unwrap_or(0),
        keep_free: size_arg("keep_free", keep_free)?.unwrap_or(0),
    };
    Ok(plan.forecast()?.into())
}

/// The saves still to come, from a count or from the time left in the run.
fn saves_left(saves: Option<u32>, seconds: Option<f64>, interval: f64) -> PyResult<u32> {
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

fn time_or_now(t: Option<f64>) -> PyResult<f64> {
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
        let path = fs_path(path)?;
        let usage = py.detach(move || usage::usage(&path))?;
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
        let remaining_saves = saves_left(remaining_saves, remaining_seconds, save_interval)?;
        let estimate = self.monitor.estimate();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let avail = estimate.map_or(0, |e| e.avail.max(0.0) as u64);
        let plan = RunPlan {
            checkpoint_size: size_arg("checkpoint_size", Some(checkpoint_size))?.unwrap_or(0),
            save_interval,
            remaining_saves,
            keep_last,
            existing,
            background_rate: estimate.map_or(0.0, |e| e.background_rate.max(0.0)),
            avail,
            keep_free: size_arg("keep_free", keep_free)?.unwrap_or(0),
        };
        if estimate.is_none() {
            return Err(PyValueError::new_err(
                "the monitor is not warmed up yet: add samples over its warmup period first",
            ));
        }
        Ok(plan.forecast()?.into())
    }

    fn __len__(&self) -> usize {
        self.monitor.len()
    }
}

/// Converts Python-side rule tuples (built by `diskguard.retention`) into core rules.
fn rules_from(py_rules: &Bound<'_, PyList>) -> PyResult<Vec<Rule>> {
    let mut rules = Vec::new();
    for item in py_rules.iter() {
        let kind: String = item.get_item(0)?.extract()?;
        let rule = match kind.as_str() {
            "last" => Rule::Last(item.get_item(1)?.extract()?),
            "best" => {
                let mode: String = item.get_item(3)?.extract()?;
                let mode = match mode.as_str() {
                    "min" => Mode::Min,
                    "max" => Mode::Max,
                    other => {
                        return Err(
                            Error::invalid("mode", format!("'{other}'"), "expected 'min' or 'max'").into(),
                        )
                    }
                };
                let values: Vec<(PathBuf, f64)> = item.get_item(4)?.extract()?;
                Rule::Best {
                    k: item.get_item(1)?.extract()?,
                    metric: item.get_item(2)?.extract()?,
                    mode,
                    values: values.into_iter().map(|(n, v)| (n.into_os_string(), v)).collect(),
                }
            }
            "every" => Rule::Every(item.get_item(1)?.extract()?),
            "within" => Rule::Within(item.get_item(1)?.extract()?),
            "protect" => {
                let names: Vec<PathBuf> = item.get_item(1)?.extract()?;
                Rule::Protect(names.into_iter().map(PathBuf::into_os_string).collect())
            }
            other => return Err(PyValueError::new_err(format!("unknown retention rule {other:?}"))),
        };
        rules.push(rule);
    }
    Ok(rules)
}

/// One checkpoint in a retention plan.
#[pyclass(frozen, get_all, name = "PlanItem", module = "diskguard")]
pub struct PyPlanItem {
    name: OsString,
    path: OsString,
    action: &'static str,
    reasons: Vec<String>,
    format: &'static str,
    step: Option<u64>,
    epoch: Option<u64>,
    metrics: Vec<(String, f64)>,
    mtime: f64,
    size: u64,
    apparent_size: u64,
    complete: bool,
    incomplete_reason: Option<String>,
    bytes_freed: u64,
}

impl PyPlanItem {
    fn new(dir: &Path, item: &Item) -> Self {
        let c = &item.checkpoint;
        PyPlanItem {
            name: c.name.clone(),
            path: dir.join(&c.name).into_os_string(),
            action: item.action.name(),
            reasons: item.reasons.clone(),
            format: c.format.name(),
            step: c.info.step,
            epoch: c.info.epoch,
            metrics: c.info.metrics.clone(),
            mtime: c.mtime,
            size: c.size,
            apparent_size: c.apparent_size,
            complete: c.is_complete(),
            incomplete_reason: c.incomplete.clone(),
            bytes_freed: item.bytes_freed,
        }
    }
}

#[pymethods]
impl PyPlanItem {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "PlanItem(name={}, action={}, reasons={})",
            py_repr(py, &self.name),
            py_repr(py, self.action),
            py_repr(py, &self.reasons)
        )
    }
}

/// A retention plan: each checkpoint with keep/delete/skip and why. Nothing has been touched.
#[pyclass(frozen, name = "RetentionPlan", module = "diskguard")]
pub struct PyRetentionPlan {
    plan: Plan,
}

#[pymethods]
impl PyRetentionPlan {
    #[getter]
    fn dir(&self) -> OsString {
        self.plan.dir.clone().into_os_string()
    }
    /// Every checkpoint, oldest to newest.
    #[getter]
    fn items(&self) -> Vec<PyPlanItem> {
        self.plan
            .items
            .iter()
            .map(|i| PyPlanItem::new(&self.plan.dir, i))
            .collect()
    }
    #[getter]
    fn bytes_freed(&self) -> u64 {
        self.plan.bytes_freed()
    }
    /// Symlinks in the directory as (name, target); they are never deleted.
    #[getter]
    fn links(&self) -> Vec<(OsString, OsString)> {
        self.plan
            .links
            .iter()
            .map(|l| (l.name.clone(), l.target.clone()))
            .collect()
    }
    fn __len__(&self) -> usize {
        self.plan.items.len()
    }
    fn __repr__(&self, py: Python<'_>) -> String {
        let count = |a: Action| self.plan.items.iter().filter(|i| i.action == a).count();
        format!(
            "RetentionPlan(dir={}, keep={}, delete={}, skip={}, bytes_freed={})",
            py_repr(py, self.plan.dir.as_os_str()),
            count(Action::Keep),
            count(Action::Delete),
            count(Action::Skip),
            self.plan.bytes_freed()
        )
    }
}

/// (path, 'deleted' | 'skipped' | 'failed', detail) for one attempted deletion.
type OutcomeRow = (OsString, &'static str, String);
/// (avail, target, met, stopped at the invariant, outcomes) of `free_space`.
type FreeSpaceRow = (u64, u64, bool, bool, Vec<OutcomeRow>);
/// (path, bytes, age, reason, identity) of an orphan.
type OrphanRow = (OsString, u64, f64, String, (u64, u64, i64, i64));

fn lock_wait(wait: bool) -> LockWait {
    if wait {
        LockWait::Wait
    } else {
        LockWait::Skip
    }
}

fn outcome_tuple(dir: &Path, name: &OsStr, outcome: &Outcome) -> OutcomeRow {
    let (what, detail) = match outcome {
        Outcome::Deleted => ("deleted", String::new()),
        Outcome::Skipped(why) => ("skipped", why.clone()),
        Outcome::Failed(why) => ("failed", why.clone()),
    };
    (dir.join(name).into_os_string(), what, detail)
}

/// Scans `dir` and decides every checkpoint under `rules` (GIL released).
#[pyfunction(name = "_plan")]
#[pyo3(signature = (dir, rules, min_partial_age, patterns, now))]
fn plan_py(
    py: Python<'_>,
    dir: &Bound<'_, PyAny>,
    rules: &Bound<'_, PyList>,
    min_partial_age: f64,
    patterns: Vec<String>,
    now: f64,
) -> PyResult<PyRetentionPlan> {
    let dir = fs_path(dir)?;
    let policy = Policy::new(rules_from(rules)?, min_partial_age)?;
    let plan = py.detach(move || -> crate::error::Result<Plan> {
        let fd = checkpoints::open_dir(&dir)?;
        let scanned = checkpoints::scan(&dir, &patterns)?;
        Ok(retention::plan(scanned, &policy, now, |c| {
            checkpoints::verify_file(&fd, c)
        }))
    })?;
    Ok(PyRetentionPlan { plan })
}

/// Deletes what `plan` says (identity re-checked, under the directory's lock; GIL released).
#[pyfunction(name = "apply")]
#[pyo3(signature = (plan, *, wait=true))]
fn apply_py(py: Python<'_>, plan: &Bound<'_, PyRetentionPlan>, wait: bool) -> PyResult<Vec<OutcomeRow>> {
    let plan = &plan.get().plan;
    let outcomes = py.detach(|| deletion::apply(plan, lock_wait(wait)))?;
    Ok(outcomes
        .iter()
        .map(|(i, o)| outcome_tuple(&plan.dir, &plan.items[*i].checkpoint.name, o))
        .collect())
}

/// Deletes the least valuable checkpoints until `avail >= target` bytes (GIL released).
#[pyfunction(name = "_free_space")]
#[pyo3(signature = (plan, target, wait))]
fn free_space_py(
    py: Python<'_>,
    plan: &Bound<'_, PyRetentionPlan>,
    target: u64,
    wait: bool,
) -> PyResult<FreeSpaceRow> {
    let plan = &plan.get().plan;
    let report = py.detach(|| deletion::free_space(plan, target, lock_wait(wait)))?;
    let outcomes = report
        .outcomes
        .iter()
        .map(|(i, o)| outcome_tuple(&plan.dir, &plan.items[*i].checkpoint.name, o))
        .collect();
    Ok((
        report.avail,
        report.target,
        report.met,
        report.stopped_at_invariant,
        outcomes,
    ))
}

/// Leftovers of crashed saves as (path, bytes, age seconds, reason, dev, ino) (GIL released).
#[pyfunction(name = "_find_orphans")]
#[pyo3(signature = (dir, temp_dir, min_age, uid, now))]
fn find_orphans_py(
    py: Python<'_>,
    dir: &Bound<'_, PyAny>,
    temp_dir: Option<&Bound<'_, PyAny>>,
    min_age: f64,
    uid: u32,
    now: f64,
) -> PyResult<Vec<OrphanRow>> {
    let dir = fs_path(dir)?;
    let temp_dir = temp_dir.map(fs_path).transpose()?;
    if !(min_age.is_finite() && min_age >= 0.0) {
        return Err(Error::invalid("min_age", min_age, "expected seconds >= 0").into());
    }
    let found = py.detach(move || deletion::find_orphans(&dir, temp_dir.as_deref(), min_age, uid, now))?;
    Ok(found
        .into_iter()
        .map(|o| {
            (
                o.dir.join(&o.name).into_os_string(),
                o.size,
                o.age,
                o.reason,
                (o.dev, o.ino, o.ctime.0, o.ctime.1),
            )
        })
        .collect())
}

/// Removes orphans found by `_find_orphans`, each re-checked by identity (GIL released).
#[pyfunction(name = "_remove_orphans")]
fn remove_orphans_py(
    py: Python<'_>,
    orphans: Vec<(PathBuf, (u64, u64, i64, i64))>,
) -> PyResult<Vec<OutcomeRow>> {
    let list: Vec<Orphan> = orphans
        .into_iter()
        .filter_map(|(path, (dev, ino, sec, nsec))| {
            let dir = path.parent()?.to_path_buf();
            let name = path.file_name()?.to_owned();
            Some(Orphan {
                dir,
                name,
                size: 0,
                age: 0.0,
                reason: String::new(),
                dev,
                ino,
                ctime: (sec, nsec),
            })
        })
        .collect();
    let outcomes = py.detach(|| deletion::remove_orphans(&list));
    Ok(list
        .iter()
        .zip(outcomes.iter())
        .map(|(o, out)| outcome_tuple(&o.dir, &o.name, out))
        .collect())
}

/// The mount table, from `<proc_root>/self/mountinfo` (or pid 1's for a foreign proc root).
#[pyfunction(name = "mounts")]
#[pyo3(signature = (proc_root=None, pid=None))]
fn mounts_py(
    py: Python<'_>,
    proc_root: Option<&Bound<'_, PyAny>>,
    pid: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<PyMount>> {
    let proc_root = proc_root.map_or_else(|| Ok(PathBuf::from("/proc")), fs_path)?;
    usage::validate_path("proc_root", &proc_root)?;
    let pid = match pid {
        None => None,
        Some(p) if p.is_instance_of::<PyInt>() => Some(p.extract::<u32>()?.to_string()),
        Some(p) => Some(p.extract::<String>()?),
    };
    let table = py.detach(move || mounts::read_mounts(&proc_root, pid.as_deref()))?;
    Ok(table.iter().map(PyMount::from).collect())
}

/// Parses a human size (`"20GiB"`, `"500MB"`, `"1.5T"`, or an int) into bytes.
#[pyfunction]
fn parse_size(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    size_arg("value", Some(value))?.ok_or_else(|| PyErr::from(Error::invalid("value", "None", SIZE_RULE)))
}

/// Formats bytes with IEC units and one decimal: `1.5 GiB`.
#[pyfunction]
fn format_size(value: u64) -> String {
    size::format_size(value)
}

/// The compiled core of diskguard. Import `diskguard`, not this module.
#[pymodule]
pub mod _diskguard {
    #[pymodule_export]
    use super::{
        apply_py, check_py, find_orphans_py, forecast_run_py, format_size, free_space_py, log_budget_py,
        mounts_py, parse_size, plan_py, remove_orphans_py, usage_py, DirectoryBusyError, DiskGuardError,
        PyCheckResult, PyDiskUsage, PyLevel, PyLogBudget, PyMount, PyPlanItem, PyRetentionPlan,
        PyRunForecast, PyTrendEstimate, PyTrendMonitor,
    };

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        // Loggers are cached but levels are not, so `logging.getLogger("diskguard").setLevel(...)`
        // takes effect at any time; we log only off the hot path, where the lookup is affordable.
        // Another extension may have installed a Rust logger already; ours then stays quiet.
        let logger = pyo3_log::Logger::new(m.py(), pyo3_log::Caching::Loggers)?;
        if logger.install().is_err() {
            log::debug!("a Rust logger was already installed; diskguard logs through it");
        }
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        Ok(())
    }
}
