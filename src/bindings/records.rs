//! The records results come back to Python in, instead of tuples: each prints (`repr`), pickles
//! (`__reduce__` to its constructor) and compares (`==` field by field), and reads by name.
//!
//! `DeletionOutcome` also unpacks and indexes like the `(path, outcome, detail)` tuple it replaces
//! (`for path, outcome, detail in apply(p)` keeps working).

use std::ffi::OsString;
use std::path::Path;

use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyIterator, PyTuple};
use pyo3::IntoPyObjectExt;

use super::convert::{py_repr, rebuild, Reduced};
use crate::deletion::Outcome;
use crate::guard::{Event, GuardState, Metrics};

/// The methods every record class has, in its `#[pymethods]`: a constructor taking each field in
/// order (`signature` where some have defaults), a `repr` naming the class and each field, and
/// `__reduce__` back to that constructor; then the record's own `methods { ... }`.
macro_rules! record_methods {
    (
        $ty:ident { $($field:ident: $field_ty:ty),* $(,)? }
        $(signature = $signature:tt;)?
        methods { $($methods:tt)* }
    ) => {
        #[pymethods]
        impl $ty {
            #[new]
            $(#[pyo3(signature = $signature)])?
            fn py_new($($field: $field_ty),*) -> Self {
                $ty { $($field),* }
            }
            fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
                let (py, me) = (slf.py(), slf.get());
                let fields = [$(format!(concat!(stringify!($field), "={}"), py_repr(py, me.$field.clone()))),*];
                Ok(format!("{}({})", slf.get_type().name()?, fields.join(", ")))
            }
            #[allow(clippy::type_complexity)] // the fields' types, one to one
            fn __reduce__<'py>(slf: &Bound<'py, Self>) -> Reduced<'py, ($($field_ty,)*)> {
                let me = slf.get();
                rebuild(slf.as_any(), ($(me.$field.clone(),)*))
            }
            $($methods)*
        }
    };
}

/// One attempted deletion: what `apply`, `remove_orphans` and `free_space` report per path.
#[pyclass(
    frozen,
    eq,
    get_all,
    hash,
    from_py_object,
    name = "DeletionOutcome",
    module = "diskguard"
)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyDeletionOutcome {
    /// The path it was about.
    path: OsString,
    /// `'deleted'`, `'skipped'` (it changed since it was planned, or is gone) or `'failed'`.
    outcome: String,
    /// Why it was skipped or failed; empty when deleted.
    detail: String,
}

record_methods! {
    PyDeletionOutcome { path: OsString, outcome: String, detail: String }
    methods {
        #[allow(clippy::unused_self)]
        fn __len__(&self) -> usize {
            3
        }
        fn __getitem__<'py>(&self, py: Python<'py>, index: isize) -> PyResult<Bound<'py, PyAny>> {
            let fields = self.fields(py)?;
            let at = if index < 0 { index + 3 } else { index };
            match usize::try_from(at) {
                Ok(i) if i < 3 => fields.get_item(i),
                _ => Err(PyIndexError::new_err("DeletionOutcome index out of range")),
            }
        }
        fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyIterator>> {
            self.fields(py)?.try_iter()
        }
    }
}

impl PyDeletionOutcome {
    /// The outcome of deleting `name` in `dir`.
    pub(crate) fn new(dir: &Path, name: &OsString, outcome: &Outcome) -> Self {
        PyDeletionOutcome {
            path: dir.join(name).into_os_string(),
            outcome: outcome.name().to_owned(),
            detail: outcome.detail().to_owned(),
        }
    }

    /// Whether it was deleted.
    pub(crate) fn deleted(&self) -> bool {
        self.outcome == Outcome::Deleted.name()
    }

    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        (&self.path, &self.outcome, &self.detail).into_pyobject(py)
    }
}

/// What removing an orphan re-checks: (device, inode, ctime s, ctime ns, directory device,
/// directory inode).
pub(crate) type OrphanIdentity = (u64, u64, i64, i64, u64, u64);

/// A leftover of a crashed save, from `find_orphans`.
#[pyclass(frozen, eq, hash, name = "Orphan", module = "diskguard")]
#[derive(Clone)]
pub struct PyOrphan {
    #[pyo3(get)]
    path: OsString,
    /// Bytes.
    #[pyo3(get)]
    size: u64,
    /// Seconds since it was last changed.
    #[pyo3(get)]
    age: f64,
    #[pyo3(get)]
    reason: String,
    #[pyo3(get, name = "_identity")]
    identity: OrphanIdentity,
}

/// Orphans are equal by what they say (path, size, age, reason), as the dataclass they replace:
/// the identity only guards the removal.
impl PartialEq for PyOrphan {
    fn eq(&self, other: &Self) -> bool {
        (&self.path, self.size, self.age, &self.reason) == (&other.path, other.size, other.age, &other.reason)
    }
}

impl Eq for PyOrphan {}

/// Hashed by what it is compared by (an age is never NaN: it is measured).
impl std::hash::Hash for PyOrphan {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (&self.path, self.size, self.age.to_bits(), &self.reason).hash(state);
    }
}

impl PyOrphan {
    pub(crate) fn from_core(o: crate::deletion::Orphan) -> Self {
        PyOrphan {
            path: o.dir.join(&o.name).into_os_string(),
            size: o.size,
            age: o.age,
            reason: o.reason,
            identity: (o.dev, o.ino, o.ctime.0, o.ctime.1, o.dir_id.0, o.dir_id.1),
        }
    }

    /// The core's orphan to re-check and remove.
    pub(crate) fn to_core(&self) -> crate::deletion::Orphan {
        let path = Path::new(&self.path);
        let (dev, ino, sec, nsec, dir_dev, dir_ino) = self.identity;
        crate::deletion::Orphan {
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            name: path.file_name().map(OsString::from).unwrap_or_default(),
            dir_id: (dir_dev, dir_ino),
            // Not re-checked: the identity is.
            size: 0,
            age: 0.0,
            reason: String::new(),
            dev,
            ino,
            ctime: (sec, nsec),
        }
    }
}

#[pymethods]
impl PyOrphan {
    #[new]
    #[allow(clippy::used_underscore_binding)] // the dataclass this replaces named it so
    fn py_new(path: OsString, size: u64, age: f64, reason: String, _identity: OrphanIdentity) -> Self {
        PyOrphan {
            path,
            size,
            age,
            reason,
            identity: _identity,
        }
    }
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Orphan(path={}, size={}, age={}, reason={})",
            py_repr(py, &self.path),
            self.size,
            py_repr(py, self.age),
            py_repr(py, &self.reason)
        )
    }
    #[allow(clippy::type_complexity)]
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> Reduced<'py, (OsString, u64, f64, String, OrphanIdentity)> {
        let me = slf.get();
        let args = (me.path.clone(), me.size, me.age, me.reason.clone(), me.identity);
        rebuild(slf.as_any(), args)
    }
}

/// What `free_space` achieved. When `met` is false, either everything deletable was tried (what
/// is left is the newest complete checkpoint, protected ones, partial saves left alone, or
/// deletions that failed: see `outcomes`), or `shortfall` says by how many bytes deleting every
/// candidate would still miss the target, and nothing was deleted.
#[pyclass(frozen, eq, get_all, name = "FreeSpaceResult", module = "diskguard")]
#[derive(Clone, PartialEq)]
pub struct PyFreeSpaceResult {
    /// Bytes available afterwards.
    avail: u64,
    /// Bytes available that were asked for.
    target: u64,
    /// Whether the target was reached.
    met: bool,
    /// The paths deleted.
    deleted: Vec<OsString>,
    /// Every attempted deletion.
    outcomes: Vec<PyDeletionOutcome>,
    /// Bytes by which deleting every candidate would still miss the target (nothing deleted).
    shortfall: Option<u64>,
}

record_methods! {
    PyFreeSpaceResult { avail: u64, target: u64, met: bool, deleted: Vec<OsString>, outcomes: Vec<PyDeletionOutcome>, shortfall: Option<u64> }
    signature = (avail, target, met, deleted, outcomes, shortfall = None);
    methods {}
}

impl PyFreeSpaceResult {
    pub(crate) fn new(
        avail: u64,
        target: u64,
        met: bool,
        outcomes: Vec<PyDeletionOutcome>,
        shortfall: Option<u64>,
    ) -> Self {
        let deleted = outcomes
            .iter()
            .filter(|o| o.deleted())
            .map(|o| o.path.clone())
            .collect();
        PyFreeSpaceResult {
            avail,
            target,
            met,
            deleted,
            outcomes,
            shortfall,
        }
    }
}

/// Something the guard did or saw, for a log record and, when `warning`, a `DiskSpaceWarning`.
#[pyclass(
    frozen,
    eq,
    hash,
    get_all,
    name = "GuardEvent",
    module = "diskguard._diskguard"
)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyGuardEvent {
    /// What kind of event (`'level'`, `'deleted'`, `'stop'`...).
    kind: String,
    message: String,
    warning: bool,
}

record_methods! {
    PyGuardEvent { kind: String, message: String, warning: bool }
    methods {}
}

impl From<Event> for PyGuardEvent {
    fn from(e: Event) -> Self {
        PyGuardEvent {
            kind: e.kind.to_owned(),
            message: e.message,
            warning: e.warning,
        }
    }
}

/// The checkpoint directory's filesystem as of the last check.
#[pyclass(frozen, eq, get_all, name = "GuardMetrics", module = "diskguard._diskguard")]
#[derive(Clone, PartialEq)]
pub struct PyGuardMetrics {
    /// Bytes available.
    free: u64,
    /// Percent used, as `df` reports it.
    used_percent: f64,
    /// Seconds until full at the measured trend, once it has an answer.
    seconds_to_full: Option<f64>,
}

record_methods! {
    PyGuardMetrics { free: u64, used_percent: f64, seconds_to_full: Option<f64> }
    signature = (free, used_percent, seconds_to_full = None);
    methods {}
}

impl From<Metrics> for PyGuardMetrics {
    fn from(m: Metrics) -> Self {
        PyGuardMetrics {
            free: m.free,
            used_percent: m.used_percent,
            seconds_to_full: m.seconds_to_full,
        }
    }
}

/// What `DiskGuard.state_dict()` is built from.
#[pyclass(frozen, get_all, name = "GuardState", module = "diskguard._diskguard")]
pub struct PyGuardState {
    /// `'ok'`, `'warn'` or `'critical'`.
    level: String,
    /// Bytes of the largest checkpoint seen.
    largest_checkpoint: u64,
    saves: u64,
    stop_reason: Option<String>,
    /// The trend monitor's state.
    trend: Py<PyDict>,
    /// The run's own checkpoints as `(device, inode)`.
    own: Vec<(u64, u64)>,
    run_id: u64,
}

impl PyGuardState {
    /// The record of the core's state; `trend` is its trend state as a dict.
    pub(crate) fn new(state: GuardState, trend: Bound<'_, PyDict>) -> Self {
        PyGuardState {
            level: state.level.name().to_owned(),
            largest_checkpoint: state.largest,
            saves: state.saves,
            stop_reason: state.stop_reason,
            trend: trend.unbind(),
            own: state.own,
            run_id: state.run_id,
        }
    }

    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        (
            &self.level,
            self.largest_checkpoint,
            self.saves,
            &self.stop_reason,
            self.trend.bind(py),
            &self.own,
            self.run_id,
        )
            .into_pyobject(py)
    }
}

#[pymethods]
impl PyGuardState {
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        level: String,
        largest_checkpoint: u64,
        saves: u64,
        stop_reason: Option<String>,
        trend: Bound<'_, PyDict>,
        own: Vec<(u64, u64)>,
        run_id: u64,
    ) -> Self {
        PyGuardState {
            level,
            largest_checkpoint,
            saves,
            stop_reason,
            trend: trend.unbind(),
            own,
            run_id,
        }
    }
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let f = self.fields(py)?;
        Ok(format!(
            "GuardState(level={}, largest_checkpoint={}, saves={}, stop_reason={}, trend={}, own={}, run_id={})",
            f.get_item(0)?.repr()?,
            f.get_item(1)?.repr()?,
            f.get_item(2)?.repr()?,
            f.get_item(3)?.repr()?,
            f.get_item(4)?.repr()?,
            f.get_item(5)?.repr()?,
            f.get_item(6)?.repr()?
        ))
    }
    /// Equal when every field is (the trend dict compared as Python compares dicts).
    fn __eq__<'py>(&self, py: Python<'py>, other: &Bound<'py, PyAny>) -> PyResult<Py<PyAny>> {
        match other.cast::<PyGuardState>() {
            Ok(other) => self.fields(py)?.eq(other.get().fields(py)?)?.into_py_any(py),
            Err(_) => Ok(py.NotImplemented()),
        }
    }
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        Ok(rebuild(slf.as_any(), slf.get().fields(slf.py())?))
    }
}
