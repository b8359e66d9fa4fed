//! diskguard's exceptions and the one conversion of the core's [`Error`] into Python exceptions.
//!
//! OS failures become the matching built-in `OSError` subclass (errno and path kept); the core's
//! own refusals derive from `DiskGuardError`.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::convert::Reduced;
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

create_exception!(
    diskguard,
    InsufficientSpaceError,
    DiskGuardError,
    "A write was refused before any byte was written: it would not fit.\n\n`needed` is what the \
     write needs (bytes, its staging copy and margin included), `available` what could be written, \
     both in bytes; the message says what was tried to make room."
);

/// `InsufficientSpaceError(message, needed=, available=)`, raised by the core's refusal: the class
/// is this module's own, so raising it imports nothing.
fn insufficient_space(message: &str, needed: u64, available: u64) -> PyErr {
    Python::attach(|py| {
        let build = || -> PyResult<PyErr> {
            let kwargs = PyDict::new(py);
            kwargs.set_item("needed", needed)?;
            kwargs.set_item("available", available)?;
            let class = py.get_type::<InsufficientSpaceError>();
            Ok(PyErr::from_value(class.call((message,), Some(&kwargs))?))
        };
        build().unwrap_or_else(|err| err)
    })
}

/// `InsufficientSpaceError.__init__`: the message as the exception's one argument, and the two
/// byte counts as attributes.
#[pyfunction(name = "__init__")]
#[pyo3(
    signature = (this, message, *, needed, available),
    text_signature = "(self, message, *, needed, available)"
)]
fn insufficient_space_init(
    this: &Bound<'_, PyAny>,
    message: &Bound<'_, PyAny>,
    needed: &Bound<'_, PyAny>,
    available: &Bound<'_, PyAny>,
) -> PyResult<()> {
    this.setattr(intern!(this.py(), "args"), (message,))?;
    this.setattr(intern!(this.py(), "needed"), needed)?;
    this.setattr(intern!(this.py(), "available"), available)
}

/// `InsufficientSpaceError.__reduce__`: rebuilt with its keywords (a plain exception's reduce would
/// call the class with the message alone).
#[pyfunction(name = "__reduce__")]
#[pyo3(text_signature = "(self)")]
fn insufficient_space_reduce<'py>(this: &Bound<'py, PyAny>) -> PyResult<Reduced<'py, Bound<'py, PyTuple>>> {
    let py = this.py();
    let message = this.getattr(intern!(py, "args"))?.get_item(0)?;
    let args = (
        message,
        this.getattr(intern!(py, "needed"))?,
        this.getattr(intern!(py, "available"))?,
    )
        .into_pyobject(py)?;
    let rebuild = py
        .import(intern!(py, "diskguard._diskguard"))?
        .getattr(intern!(py, "_rebuild_insufficient_space"))?;
    Ok((rebuild, args))
}

/// Unpickles an `InsufficientSpaceError`.
#[pyfunction(name = "_rebuild_insufficient_space")]
pub(crate) fn rebuild_insufficient_space<'py>(
    message: &Bound<'py, PyAny>,
    needed: &Bound<'py, PyAny>,
    available: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = message.py();
    let kwargs = PyDict::new(py);
    kwargs.set_item("needed", needed)?;
    kwargs.set_item("available", available)?;
    py.get_type::<InsufficientSpaceError>()
        .call((message,), Some(&kwargs))
}

/// Gives `InsufficientSpaceError` its constructor and its pickling. A `create_exception!` class
/// takes no keywords and has no methods of its own, and a Rust function set on a class is not
/// bound to the instance: `functools.partialmethod` binds it, as a method defined in Python is.
pub(crate) fn init_insufficient_space(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let class = py.get_type::<InsufficientSpaceError>();
    let method = py.import("functools")?.getattr("partialmethod")?;
    let init = wrap_pyfunction!(insufficient_space_init, m)?;
    class.setattr("__init__", method.call1((init,))?)?;
    let reduce = wrap_pyfunction!(insufficient_space_reduce, m)?;
    class.setattr("__reduce__", method.call1((reduce,))?)?;
    Ok(())
}
