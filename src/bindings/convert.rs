//! Converting arguments from Python and results to it: paths, sizes, numbers, flags, `repr`s.
//!
//! Every bindings module takes its arguments through these, so an argument of the wrong type or
//! range gets the same message everywhere: the argument's name, its value and what is allowed.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString};
use pyo3::IntoPyObjectExt;

use crate::error::Error;
use crate::size::{self, SIZE_RULE};

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

/// `(type(obj), args)`: what `__reduce__` returns for an object rebuilt by calling its class.
pub(crate) fn rebuild<'py, A>(obj: &Bound<'py, PyAny>, args: A) -> Reduced<'py, A> {
    (obj.get_type().into_any(), args)
}

/// Python's `repr()` of a value, for `__repr__`s that read like Python.
pub(crate) fn py_repr<'py>(py: Python<'py>, value: impl IntoPyObject<'py>) -> String {
    value
        .into_bound_py_any(py)
        .and_then(|obj| obj.repr().map(|r| r.to_string()))
        .unwrap_or_else(|_| "?".to_owned())
}
