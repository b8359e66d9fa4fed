//! diskguard's exceptions and the one conversion of the core's [`Error`] into Python exceptions.
//!
//! OS failures become the matching built-in `OSError` subclass (errno and path kept); the core's
//! own refusals derive from `DiskGuardError`.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::error::Error;

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
