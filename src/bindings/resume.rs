//! Resuming: the newest complete checkpoint of a directory.

use std::ffi::OsString;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use super::convert::{path_arg, wrong_type};
use crate::resume;

const PATTERNS_ALLOWED: &str = "a list of glob strings such as ['*.npz'], or None";

/// `patterns`: `None` or an iterable of `str`; a lone string is refused rather than split into
/// one-character globs.
fn pattern_list(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Vec::new());
    };
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(wrong_type("patterns", obj, PATTERNS_ALLOWED));
    }
    let items = obj
        .try_iter()
        .map_err(|_| wrong_type("patterns", obj, PATTERNS_ALLOWED))?;
    items
        .map(|item| {
            let item = item?;
            item.extract::<String>()
                .map_err(|_| wrong_type("patterns", &item, "glob strings such as '*.npz'"))
        })
        .collect()
}

/// The newest complete checkpoint in `directory` (file or folder) as a path, or `None`.
#[pyfunction(name = "latest_complete")]
#[pyo3(signature = (directory, *, patterns=None))]
pub(crate) fn latest_complete_py(
    py: Python<'_>,
    directory: &Bound<'_, PyAny>,
    patterns: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<OsString>> {
    let directory = path_arg("directory", directory)?;
    let patterns = pattern_list(patterns)?;
    let found = py.detach(move || resume::latest_complete(&directory, &patterns))?;
    Ok(found.map(std::path::PathBuf::into_os_string))
}
