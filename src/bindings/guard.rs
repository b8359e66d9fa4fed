//! The guard's engine for `diskguard.DiskGuard` (python/diskguard/guard.py), which adds the cheap
//! step counter, warnings and logging on top.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use super::convert::{fs_path, number, opt_whole, path_arg, py_repr, size_arg, whole, wrong_type};
use super::records::{PyGuardEvent, PyGuardMetrics, PyGuardState};
use super::rules::opt_policy;
use super::trend::{monotonic_now, state_from_dict, state_to_dict, PyRunForecast};
use crate::guard::{
    level_named, Guard, GuardConfig, GuardState, OnFull, Ranks, Reserve, SpaceStatus, Status,
};

/// One watched space in a [`PyGuardStatus`].
#[pyclass(frozen, get_all, name = "GuardSpace", module = "diskguard")]
pub struct PyGuardSpace {
    name: String,
    total: u64,
    used: u64,
    avail: u64,
    room: u64,
    responsive: bool,
    level: &'static str,
    reason: Option<String>,
}

impl From<SpaceStatus> for PyGuardSpace {
    fn from(s: SpaceStatus) -> Self {
        PyGuardSpace {
            name: s.name,
            total: s.total,
            used: s.used,
            avail: s.avail,
            room: s.room,
            responsive: s.responsive,
            level: s.level.name(),
            reason: s.reason,
        }
    }
}

#[pymethods]
impl PyGuardSpace {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "GuardSpace(name={}, room={}, level={}, responsive={})",
            py_repr(py, &self.name),
            self.room,
            py_repr(py, self.level),
            py_repr(py, self.responsive)
        )
    }
}

/// What `DiskGuard.status()` reports; `str()` of it is a readable report.
#[pyclass(frozen, get_all, name = "GuardStatus", module = "diskguard")]
pub struct PyGuardStatus {
    dir: OsString,
    level: &'static str,
    should_stop: bool,
    stop_reason: Option<String>,
    spaces: Vec<Py<PyGuardSpace>>,
    held: u64,
    budget: Option<u64>,
    reserve: u64,
    largest_checkpoint: u64,
    saves: u64,
    retention_deletions: u64,
    forced_deletions: u64,
    checks: u64,
    emergency_reserve: Option<(OsString, u64)>,
    report: String,
}

impl PyGuardStatus {
    fn new(py: Python<'_>, status: Status) -> PyResult<Self> {
        let report = status.report();
        let spaces = status
            .spaces
            .into_iter()
            .map(|s| Py::new(py, PyGuardSpace::from(s)))
            .collect::<PyResult<_>>()?;
        Ok(PyGuardStatus {
            dir: status.dir.into_os_string(),
            level: status.level.name(),
            should_stop: status.stop_reason.is_some(),
            stop_reason: status.stop_reason,
            spaces,
            held: status.held,
            budget: status.budget,
            reserve: status.reserve,
            largest_checkpoint: status.largest,
            saves: status.saves,
            retention_deletions: status.retention_deletions,
            forced_deletions: status.forced_deletions,
            checks: status.checks,
            emergency_reserve: status.emergency_reserve.map(|(p, b)| (p.into_os_string(), b)),
            report,
        })
    }
}

#[pymethods]
impl PyGuardStatus {
    fn __str__(&self) -> String {
        self.report.clone()
    }
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "GuardStatus(level={}, should_stop={}, held={}, reserve={})",
            py_repr(py, self.level),
            py_repr(py, self.should_stop),
            self.held,
            self.reserve
        )
    }
}

/// Argument `name`: an iterable of paths, never a single string.
fn path_list(name: &'static str, obj: &Bound<'_, PyAny>) -> PyResult<Vec<PathBuf>> {
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(wrong_type(name, obj, "a list of paths"));
    }
    let items = obj
        .try_iter()
        .map_err(|_| wrong_type(name, obj, "a list of paths"))?;
    items.map(|item| path_arg(name, &item?)).collect()
}

/// `reserve`: `'auto'` or a size.
fn reserve_arg(obj: &Bound<'_, PyAny>) -> PyResult<Reserve> {
    if let Ok(text) = obj.cast::<PyString>() {
        return Ok(Reserve::parse(&text.to_cow()?)?);
    }
    match size_arg("reserve", Some(obj))? {
        Some(bytes) => Ok(Reserve::Bytes(bytes)),
        None => Err(wrong_type("reserve", obj, "'auto' or a size")),
    }
}

/// `on_full`: `'prune'` or `'stop'`.
fn on_full_arg(obj: &Bound<'_, PyAny>) -> PyResult<OnFull> {
    let text = obj
        .cast::<PyString>()
        .map_err(|_| wrong_type("on_full", obj, "'prune' or 'stop'"))?;
    Ok(OnFull::parse(&text.to_cow()?)?)
}

/// `own`: the run's checkpoints as `[device, inode]` pairs (from `state_dict()`), or None.
fn own_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<(u64, u64)>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Vec::new());
    };
    let expected = "a list of [device, inode] pairs, as DiskGuard.state_dict() gives";
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(wrong_type("own", obj, expected));
    }
    let items = obj.try_iter().map_err(|_| wrong_type("own", obj, expected))?;
    let mut own = Vec::new();
    for item in items {
        let item = item?;
        let pair: Vec<Bound<'_, PyAny>> = match item.try_iter() {
            Ok(parts) if !item.is_instance_of::<PyString>() => parts.collect::<PyResult<_>>()?,
            _ => return Err(wrong_type("own", &item, expected)),
        };
        let [dev, ino] = &pair[..] else {
            return Err(wrong_type("own", &item, expected));
        };
        own.push((whole("own", dev)?, whole("own", ino)?));
        if own.len() > 1_000_000 {
            return Err(wrong_type("own", obj, "at most a million pairs"));
        }
    }
    Ok(own)
}

/// An optional fraction (`warn`, `critical`): a number or `None`.
fn opt_fraction(name: &'static str, obj: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
    if obj.is_none() {
        Ok(None)
    } else {
        number(name, obj).map(Some)
    }
}

/// The guard's decision engine (internal; use `diskguard.DiskGuard`).
#[pyclass(frozen, name = "_Guard", module = "diskguard._diskguard")]
pub struct PyGuard {
    inner: Mutex<Guard>,
}

impl PyGuard {
    fn guard(&self) -> MutexGuard<'_, Guard> {
        // A panic cannot happen while the lock is held (no unwrap in the core); stay usable anyway.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the engine with the GIL released: another thread's check may hold the lock
    /// while it waits on `statfs`, and every other Python thread must run meanwhile.
    fn with<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut Guard) -> R + Send) -> R {
        py.detach(|| f(&mut self.guard()))
    }
}

/// The events as Python gets them (`take_events`, `check_step`).
fn events_to_py(events: Vec<crate::guard::Event>) -> Vec<PyGuardEvent> {
    events.into_iter().map(PyGuardEvent::from).collect()
}

#[pymethods]
impl PyGuard {
    /// The engine for `path` with `options` (a `diskguard._options.GuardOptions`, read by name:
    /// each option is converted here and validated by the core, once).
    #[new]
    #[pyo3(signature = (path, options, *, temp_dir, rank, local_rank, world_size))]
    fn new(
        py: Python<'_>,
        path: &Bound<'_, PyAny>,
        options: &Bound<'_, PyAny>,
        temp_dir: &Bound<'_, PyAny>,
        rank: &Bound<'_, PyAny>,
        local_rank: &Bound<'_, PyAny>,
        world_size: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let dir = fs_path(path)?;
        let temp_dir = path_arg("temp_dir", temp_dir)?;
        let option = |name: &str| options.getattr(name);
        let watch = path_list("watch", &option("watch")?)?;
        let config = GuardConfig {
            warn: opt_fraction("warn", &option("warn")?)?,
            critical: opt_fraction("critical", &option("critical")?)?,
            min_free: size_arg("min_free", Some(&option("min_free")?))?,
            budget: size_arg("budget", Some(&option("budget")?))?,
            reserve: reserve_arg(&option("reserve")?)?,
            on_full: on_full_arg(&option("on_full")?)?,
            hysteresis: number("hysteresis", &option("hysteresis")?)?,
            statfs_timeout: number("statfs_timeout", &option("statfs_timeout")?)?,
            rescan_interval: number("rescan_interval", &option("rescan_interval")?)?,
            check_every_steps: whole("check_every_steps", &option("check_every_steps")?)?,
            check_every_seconds: number("check_every_seconds", &option("check_every_seconds")?)?,
            policy: opt_policy("retention", Some(&option("retention")?))?,
            emergency_reserve: size_arg("emergency_reserve", Some(&option("emergency_reserve")?))?,
            ranks: Ranks {
                rank: whole("rank", rank)?,
                local_rank: whole("local_rank", local_rank)?,
                world_size: whole("world_size", world_size)?,
            },
        };
        let t = monotonic_now()?;
        let guard = py.detach(move || Guard::new(&dir, &temp_dir, &watch, config, t))?;
        Ok(PyGuard {
            inner: Mutex::new(guard),
        })
    }

    /// A due check: measure every watched filesystem (with a time limit), grade, act.
    fn check(&self, py: Python<'_>) -> PyResult<bool> {
        let t = monotonic_now()?;
        Ok(py.detach(|| {
            let mut guard = self.guard();
            guard.check(t);
            guard.should_stop()
        }))
    }

    /// A check as `DiskGuard` makes it, in one call: `(should_stop, events)`, the events as
    /// `take_events` gives them (empty when nothing happened: nothing more for Python to do).
    /// A training step's check (`measure=False`) may grade the last figures again (see
    /// `Guard::check_step`): then, with the lock free, it is answered without releasing the GIL,
    /// as it makes no system call. `measure=True` always measures (`check()`, `sync_stop()`).
    #[pyo3(signature = (measure = false))]
    fn check_step(&self, py: Python<'_>, measure: bool) -> PyResult<(bool, Vec<PyGuardEvent>)> {
        let t = monotonic_now()?;
        if !measure {
            if let Ok(mut guard) = self.inner.try_lock() {
                if guard.is_fresh(t) {
                    guard.check_step(t);
                    let (stop, events) = (guard.should_stop(), guard.take_events());
                    drop(guard);
                    return Ok((stop, events_to_py(events)));
                }
            }
        }
        let (stop, events) = py.detach(|| {
            let mut guard = self.guard();
            if measure {
                guard.check(t);
            } else {
                guard.check_step(t);
            }
            (guard.should_stop(), guard.take_events())
        });
        Ok((stop, events_to_py(events)))
    }

    /// Makes room for a save of `nbytes` to `path`, or raises `InsufficientSpaceError`.
    fn before_save(
        &self,
        py: Python<'_>,
        path: &Bound<'_, PyAny>,
        nbytes: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let path = fs_path(path)?;
        let nbytes: u64 = whole("nbytes", nbytes)?;
        let t = monotonic_now()?;
        Ok(py.detach(|| self.guard().before_save(&path, nbytes, t))?)
    }

    /// Records a save of `nbytes` to `path` and applies retention.
    fn after_save(&self, py: Python<'_>, path: &Bound<'_, PyAny>, nbytes: &Bound<'_, PyAny>) -> PyResult<()> {
        let path = fs_path(path)?;
        let nbytes: u64 = whole("nbytes", nbytes)?;
        let t = monotonic_now()?;
        Ok(py.detach(|| self.guard().after_save(&path, nbytes, t))?)
    }

    /// Measures again what the run holds under its directory.
    fn rescan(&self, py: Python<'_>) -> PyResult<()> {
        let t = monotonic_now()?;
        py.detach(|| self.guard().rescan(t));
        Ok(())
    }

    /// Events since the last call.
    fn take_events(&self, py: Python<'_>) -> Vec<PyGuardEvent> {
        events_to_py(self.with(py, Guard::take_events))
    }

    #[getter]
    fn should_stop(&self, py: Python<'_>) -> bool {
        self.with(py, |g| g.should_stop())
    }

    #[getter]
    fn stop_reason(&self, py: Python<'_>) -> Option<String> {
        self.with(py, |g| g.stop_reason().map(str::to_owned))
    }

    #[getter]
    fn level(&self, py: Python<'_>) -> &'static str {
        self.with(py, |g| g.level().name())
    }

    #[getter]
    fn check_every_steps(&self, py: Python<'_>) -> u64 {
        self.with(py, |g| g.config().check_every_steps)
    }

    #[getter]
    fn check_every_seconds(&self, py: Python<'_>) -> f64 {
        self.with(py, |g| g.config().check_every_seconds)
    }

    fn status(&self, py: Python<'_>) -> PyResult<PyGuardStatus> {
        let status = self.with(py, Guard::status);
        PyGuardStatus::new(py, status)
    }

    #[pyo3(signature = (remaining_saves, save_interval, checkpoint_size=None))]
    fn forecast(
        &self,
        py: Python<'_>,
        remaining_saves: &Bound<'_, PyAny>,
        save_interval: &Bound<'_, PyAny>,
        checkpoint_size: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyRunForecast> {
        let remaining: u32 = whole("remaining_saves", remaining_saves)?;
        let interval = number("save_interval", save_interval)?;
        let size = size_arg("checkpoint_size", checkpoint_size)?;
        Ok(py
            .detach(|| self.guard().forecast(remaining, interval, size))?
            .into())
    }

    /// What `DiskGuard.state_dict()` is built from (the trend monitor's state as a dict).
    fn state(&self, py: Python<'_>) -> PyResult<PyGuardState> {
        let now = monotonic_now()?;
        let state = self.with(py, |g| g.state(now))?;
        let trend = state_to_dict(py, &state.trend)?;
        Ok(PyGuardState::new(state, trend))
    }

    #[pyo3(signature = (level, largest, saves, stop_reason, trend, own = None, run_id = None))]
    #[allow(clippy::too_many_arguments)]
    fn load_state(
        &self,
        py: Python<'_>,
        level: &Bound<'_, PyAny>,
        largest: &Bound<'_, PyAny>,
        saves: &Bound<'_, PyAny>,
        stop_reason: Option<String>,
        trend: &Bound<'_, PyAny>,
        own: Option<&Bound<'_, PyAny>>,
        run_id: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let level = level
            .cast::<PyString>()
            .map_err(|_| wrong_type("level", level, "'ok', 'warn' or 'critical'"))?;
        let state = GuardState {
            level: level_named(&level.to_cow()?)?,
            largest: opt_whole("largest_checkpoint", Some(largest))?.unwrap_or(0),
            saves: whole("saves", saves)?,
            stop_reason,
            trend: state_from_dict(trend)?,
            own: own_arg(own)?,
            run_id: opt_whole("run_id", run_id)?.unwrap_or(0),
        };
        let now = monotonic_now()?;
        Ok(self.with(py, |g| g.load_state(&state, now))?)
    }

    /// Processes in the run.
    #[getter]
    fn world_size(&self, py: Python<'_>) -> u64 {
        self.with(py, |g| g.config().ranks.world_size)
    }

    /// Whether this process deletes in the directory (it measures the directory's filesystem).
    #[getter]
    fn deletes(&self, py: Python<'_>) -> bool {
        self.with(py, |g| g.deletes())
    }

    /// Replaces the paths the framework references; they are never deleted.
    fn set_referenced(&self, py: Python<'_>, paths: &Bound<'_, PyAny>) -> PyResult<()> {
        let paths = path_list("paths", paths)?;
        Ok(self.with(py, |g| g.set_referenced(&paths))?)
    }

    /// The directory's filesystem as of the last check, or None in a process that does not
    /// measure it.
    fn metrics(&self, py: Python<'_>) -> Option<PyGuardMetrics> {
        self.with(py, |g| g.metrics()).map(PyGuardMetrics::from)
    }

    /// A diagnosis of a failed write (`errno` ENOSPC or EDQUOT) to `path`.
    #[pyo3(signature = (errno, path=None))]
    fn diagnose(
        &self,
        py: Python<'_>,
        errno: &Bound<'_, PyAny>,
        path: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        let errno = i32::try_from(whole::<u32>("errno", errno)?).unwrap_or(i32::MAX);
        let path = path.map(fs_path).transpose()?;
        Ok(self.with(py, |g| g.diagnose(errno, path.as_deref())))
    }

    /// Deletes the emergency reserve file (the run is over).
    fn close(&self, py: Python<'_>) {
        self.with(py, Guard::close);
    }
}
