//! The Python face of the core: frozen records, thin functions, one error conversion.
//!
//! Every function converts its arguments to owned Rust values, runs the core with the GIL released
//! (`py.detach`) when it touches the filesystem, and converts the result. Nothing else lives here. One
//! submodule per area of the core; this file holds the shared conversions and the module itself.

mod dcp;
mod du;
mod grading;
mod guard;
mod logs;
mod resume;
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
            Error::InvalidArgument { .. } | Error::NotReady(_) => PyValueError::new_err(err.to_string()),
            Error::Busy { .. } => DirectoryBusyError::new_err(err.to_string()),
            Error::Refused { .. } => DiskGuardError::new_err(err.to_string()),
            Error::InsufficientSpace {
                message,
                needed,
                available,
            } => insufficient_space(&message, needed, available),
        }
    }
}

/// `diskguard.InsufficientSpaceError(message, needed=, available=)`, defined in Python (it carries
/// attributes and pickles); a plain `DiskGuardError` if that module cannot be imported.
fn insufficient_space(message: &str, needed: u64, available: u64) -> PyErr {
    Python::attach(|py| {
        let build = || -> PyResult<PyErr> {
            let class = py.import("diskguard.errors")?.getattr("InsufficientSpaceError")?;
            let kwargs = pyo3::types::PyDict::new(py);
            kwargs.set_item("needed", needed)?;
            kwargs.set_item("available", available)?;
            Ok(PyErr::from_value(class.call((message,), Some(&kwargs))?))
        };
        build().unwrap_or_else(|_| DiskGuardError::new_err(message.to_owned()))
    })
}

/// A path argument named `name`: `str`, `bytes` or `os.PathLike`, the way the `os` module takes
/// them; anything else is a `TypeError` naming the argument.
pub(crate) fn path_arg(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    if let Ok(bytes) = obj.cast::<PyBytes>() {
        return Ok(PathBuf::from(OsString::from_vec(bytes.as_bytes().to_vec())));
    }
    if obj.is_instance_of::<PyString>() {
        return obj.extract::<PathBuf>();
    }
    let fspath = obj.py().import("os")?.getattr("fspath")?;
    match fspath.call1((obj,)) {
        Ok(path) => path_arg(name, &path),
        Err(_) => Err(wrong_type(name, obj, "a path (str, bytes or os.PathLike)")),
    }
}

/// [`path_arg`] for the many arguments called `path`.
pub(crate) fn fs_path(obj: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    path_arg("path", obj)
}

/// A size argument: an int of bytes, a finite non-negative float, or a string such as `"20GiB"`.
pub(crate) fn size_arg(name: &'static str, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    let bad = || Error::invalid(name, repr_of(obj), SIZE_RULE);
    if obj.is_instance_of::<PyBool>() {
        return Err(bad().into());
    }
    if obj.is_instance_of::<PyInt>() {
        return obj.extract::<u64>().map(Some).map_err(|_| bad().into());
    }
    if obj.is_instance_of::<PyFloat>() {
        return Ok(Some(size::bytes_from_float(name, obj.extract()?)?));
    }
    if let Ok(text) = obj.cast::<PyString>() {
        return Ok(Some(size::parse_size(name, &text.to_cow()?)?));
    }
    Err(bad().into())
}

/// `repr(obj)` for an error message.
pub(crate) fn repr_of(obj: &Bound<'_, PyAny>) -> String {
    obj.repr().map_or_else(|_| "?".to_owned(), |r| r.to_string())
}

/// The `TypeError` for an argument of the wrong type: names the argument, the value, what is
/// allowed and the type that came.
pub(crate) fn wrong_type(name: &str, obj: &Bound<'_, PyAny>, expected: &str) -> PyErr {
    let type_name = obj
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string());
    PyTypeError::new_err(format!(
        "{name}={}: expected {expected}, got {type_name}",
        repr_of(obj)
    ))
}

/// A numeric argument: an `int` or a `float`, never a `bool` (Python's `True` is an `int`, but
/// `warn=True` is a mistake, not 1.0). Ranges (finite, positive, a fraction) are the core's to
/// check, so NaN and infinities pass through to it.
pub(crate) fn number(name: &'static str, obj: &Bound<'_, PyAny>) -> PyResult<f64> {
    if obj.is_instance_of::<PyBool>() || !(obj.is_instance_of::<PyFloat>() || obj.is_instance_of::<PyInt>()) {
        return Err(wrong_type(name, obj, "a number (int or float)"));
    }
    obj.extract::<f64>().map_err(|_| {
        Error::invalid(
            name,
            repr_of(obj),
            "expected a number within the range of a float",
        )
        .into()
    })
}

/// [`number`] for an argument that may be `None`.
pub(crate) fn opt_number(name: &'static str, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<f64>> {
    obj.filter(|o| !o.is_none()).map(|o| number(name, o)).transpose()
}

/// A whole-number argument: an `int` (not a `bool`, not a `float`) that fits `T`. A value outside
/// `T` (a negative count, `2**64`) is a `ValueError` naming the argument and the range; narrower
/// rules are the core's.
pub(crate) fn whole<'py, T>(name: &'static str, obj: &Bound<'py, PyAny>) -> PyResult<T>
where
    T: for<'a> FromPyObject<'a, 'py> + Bounded,
{
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
        return Err(wrong_type(name, obj, "a whole number (int)"));
    }
    obj.extract::<T>().map_err(|_| {
        Error::invalid(
            name,
            repr_of(obj),
            format!("expected a whole number from {} to {}", T::MIN_TEXT, T::MAX_TEXT),
        )
        .into()
    })
}

/// [`whole`] for an argument that may be `None`.
pub(crate) fn opt_whole<'py, T>(name: &'static str, obj: Option<&Bound<'py, PyAny>>) -> PyResult<Option<T>>
where
    T: for<'a> FromPyObject<'a, 'py> + Bounded,
{
    obj.filter(|o| !o.is_none()).map(|o| whole(name, o)).transpose()
}

/// The range of an integer type, for [`whole`]'s messages.
pub(crate) trait Bounded {
    /// The smallest value, as text.
    const MIN_TEXT: &'static str;
    /// The largest value, as text.
    const MAX_TEXT: &'static str;
}

impl Bounded for u32 {
    const MIN_TEXT: &'static str = "0";
    const MAX_TEXT: &'static str = "4294967295 (2**32 - 1)";
}

impl Bounded for u64 {
    const MIN_TEXT: &'static str = "0";
    const MAX_TEXT: &'static str = "18446744073709551615 (2**64 - 1)";
}

impl Bounded for usize {
    const MIN_TEXT: &'static str = "0";
    const MAX_TEXT: &'static str = "18446744073709551615 (2**64 - 1)";
}

/// A `str` argument, or a `TypeError` naming it.
pub(crate) fn text(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<String> {
    match obj.cast::<PyString>() {
        Ok(s) => Ok(s.to_cow()?.into_owned()),
        Err(_) => Err(wrong_type(name, obj, "a str")),
    }
}

/// A `True`/`False` argument; an int or anything else is a `TypeError` naming it.
pub(crate) fn flag(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    obj.cast::<PyBool>()
        .map(pyo3::types::PyBoolMethods::is_true)
        .map_err(|_| wrong_type(name, obj, "True or False"))
}

/// What a `__reduce__` returns: the callable that rebuilds the object, and its arguments.
pub(crate) type Reduced<'py, A> = (Bound<'py, PyAny>, A);

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
    use super::dcp::shared_filesystem_py;
    #[pymodule_export]
    use super::du::{du_py, PyDuEntry, PyDuOwner, PyDuReport};
    #[pymodule_export]
    use super::grading::{check_py, PyGrading};
    #[pymodule_export]
    use super::guard::{PyGuard, PyGuardSpace, PyGuardStatus};
    #[pymodule_export]
    use super::logs::{log_budget_py, PyLogBudget};
    #[pymodule_export]
    use super::resume::latest_complete_py;
    #[pymodule_export]
    use super::retention::{
        apply_py, find_orphans_py, free_space_py, plan_py, remove_orphans_py, PyKeepBest, PyKeepEvery,
        PyKeepLast, PyKeepWithin, PyPlanItem, PyProtect, PyRetentionPlan, PyRetentionPolicy,
    };
    #[pymodule_export]
    use super::trend::{forecast_run_py, PyRunForecast, PyTrendEstimate, PyTrendMonitor};
    #[pymodule_export]
    use super::usage::{
        format_size, mounts_py, parse_size, usage_py, PyCheckResult, PyDiskUsage, PyLevel, PyMount,
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
        m.add("DEFAULT_WARN", crate::check::DEFAULT_WARN)?;
        m.add("DEFAULT_CRITICAL", crate::check::DEFAULT_CRITICAL)?;
        Ok(())
    }
}
