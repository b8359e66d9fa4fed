//! The Python face of the core: frozen records, thin functions, one error conversion.
//!
//! Every function converts its arguments to owned Rust values, runs the core with the GIL released
//! (`py.detach`) when it touches the filesystem, and converts the result. Nothing else lives here. One
//! submodule per area of the core; this file holds the shared conversions and the module itself.

mod logs;
mod retention;
mod trend;
mod usage;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString};
use pyo3::IntoPyObjectExt;

use crate::error::Error;
use crate::size::{self, SIZE_RULE};

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
pub(crate) fn fs_path(obj: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
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
pub(crate) fn size_arg(name: &'static str, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
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

/// Python's `repr()` of a value, for `__repr__`s that read like Python.
pub(crate) fn py_repr<'py>(py: Python<'py>, value: impl IntoPyObject<'py>) -> String {
    value
        .into_bound_py_any(py)
        .and_then(|obj| obj.repr().map(|r| r.to_string()))
        .unwrap_or_else(|_| "?".to_owned())
}

/// The compiled core of diskguard. Import `diskguard`, not this module.
#[pymodule]
pub mod _diskguard {
    #[pymodule_export]
    use super::logs::{log_budget_py, PyLogBudget};
    #[pymodule_export]
    use super::retention::{
        apply_py, find_orphans_py, free_space_py, plan_py, remove_orphans_py, PyPlanItem, PyRetentionPlan,
    };
    #[pymodule_export]
    use super::trend::{forecast_run_py, PyRunForecast, PyTrendEstimate, PyTrendMonitor};
    #[pymodule_export]
    use super::usage::{
        check_py, format_size, mounts_py, parse_size, usage_py, PyCheckResult, PyDiskUsage, PyLevel, PyMount,
    };
    #[pymodule_export]
    use super::{DirectoryBusyError, DiskGuardError};

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
