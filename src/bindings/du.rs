//! The directory scanner: `du` with per-entry and per-owner sums.

use std::ffi::OsString;
use std::time::Duration;

use pyo3::prelude::*;

use pyo3::types::PyType;

use super::convert::{opt_whole, path_arg, py_repr, Reduced};
use crate::du::{self, Report, Scan, Sizes};

/// How often the waiting thread takes the GIL back to run signal handlers and report progress.
const POLL: Duration = Duration::from_millis(100);

/// One entry directly under the scanned directory, with everything beneath it.
#[pyclass(frozen, get_all, name = "DuEntry", module = "diskguard")]
pub struct PyDuEntry {
    name: OsString,
    is_dir: bool,
    uid: u32,
    allocated: u64,
    apparent: u64,
    files: u64,
    dirs: u64,
}

/// What pickling a [`PyDuEntry`] carries: its fields in order.
type EntryState = (OsString, bool, u32, u64, u64, u64, u64);
/// What pickling a [`PyDuOwner`] carries: its fields in order.
type OwnerState = (u32, u64, u64, u64, u64);

#[pymethods]
impl PyDuEntry {
    #[classmethod]
    fn _restore(_cls: &Bound<'_, PyType>, state: EntryState) -> Self {
        let (name, is_dir, uid, allocated, apparent, files, dirs) = state;
        PyDuEntry {
            name,
            is_dir,
            uid,
            allocated,
            apparent,
            files,
            dirs,
        }
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py, (EntryState,)>> {
        let e = slf.get();
        let state = (
            e.name.clone(),
            e.is_dir,
            e.uid,
            e.allocated,
            e.apparent,
            e.files,
            e.dirs,
        );
        Ok((slf.getattr("_restore")?, (state,)))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "DuEntry(name={}, allocated={}, apparent={}, uid={})",
            py_repr(py, &self.name),
            self.allocated,
            self.apparent,
            self.uid
        )
    }
}

/// What one owner holds under the scanned directory.
#[pyclass(frozen, get_all, name = "DuOwner", module = "diskguard")]
pub struct PyDuOwner {
    uid: u32,
    allocated: u64,
    apparent: u64,
    files: u64,
    dirs: u64,
}

#[pymethods]
impl PyDuOwner {
    #[classmethod]
    fn _restore(_cls: &Bound<'_, PyType>, state: OwnerState) -> Self {
        let (uid, allocated, apparent, files, dirs) = state;
        PyDuOwner {
            uid,
            allocated,
            apparent,
            files,
            dirs,
        }
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py, (OwnerState,)>> {
        let o = slf.get();
        Ok((
            slf.getattr("_restore")?,
            ((o.uid, o.allocated, o.apparent, o.files, o.dirs),),
        ))
    }
}

/// What pickling a [`PyDuReport`] carries: root, totals, children, owners, then the error and
/// cancellation fields.
type ReportState = (
    OsString,
    (u64, u64, u64, u64),
    Vec<Py<PyDuEntry>>,
    Vec<Py<PyDuOwner>>,
    (u64, Vec<String>, u64, bool),
);

/// The result of [`du_py`].
#[pyclass(frozen, get_all, name = "DuReport", module = "diskguard")]
pub struct PyDuReport {
    root: OsString,
    allocated: u64,
    apparent: u64,
    files: u64,
    dirs: u64,
    children: Vec<Py<PyDuEntry>>,
    owners: Vec<Py<PyDuOwner>>,
    errors: u64,
    error_samples: Vec<String>,
    other_filesystems: u64,
    cancelled: bool,
}

#[pymethods]
impl PyDuReport {
    #[classmethod]
    fn _restore(_cls: &Bound<'_, PyType>, state: ReportState) -> Self {
        let (root, (allocated, apparent, files, dirs), children, owners, rest) = state;
        let (errors, error_samples, other_filesystems, cancelled) = rest;
        PyDuReport {
            root,
            allocated,
            apparent,
            files,
            dirs,
            children,
            owners,
            errors,
            error_samples,
            other_filesystems,
            cancelled,
        }
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py, (ReportState,)>> {
        let py = slf.py();
        let r = slf.get();
        let state = (
            r.root.clone(),
            (r.allocated, r.apparent, r.files, r.dirs),
            r.children.iter().map(|c| c.clone_ref(py)).collect(),
            r.owners.iter().map(|o| o.clone_ref(py)).collect(),
            (
                r.errors,
                r.error_samples.clone(),
                r.other_filesystems,
                r.cancelled,
            ),
        );
        Ok((slf.getattr("_restore")?, (state,)))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "DuReport(root={}, allocated={}, apparent={}, files={}, dirs={}, errors={})",
            py_repr(py, &self.root),
            self.allocated,
            self.apparent,
            self.files,
            self.dirs,
            self.errors
        )
    }
}

fn owner(uid: u32, s: &Sizes) -> PyDuOwner {
    PyDuOwner {
        uid,
        allocated: s.allocated,
        apparent: s.apparent,
        files: s.files,
        dirs: s.dirs,
    }
}

fn to_python(py: Python<'_>, r: Report) -> PyResult<PyDuReport> {
    let children = r
        .children
        .into_iter()
        .map(|c| {
            Py::new(
                py,
                PyDuEntry {
                    name: c.name,
                    is_dir: c.is_dir,
                    uid: c.uid,
                    allocated: c.sizes.allocated,
                    apparent: c.sizes.apparent,
                    files: c.sizes.files,
                    dirs: c.sizes.dirs,
                },
            )
        })
        .collect::<PyResult<_>>()?;
    let owners = r
        .users
        .iter()
        .map(|(uid, s)| Py::new(py, owner(*uid, s)))
        .collect::<PyResult<_>>()?;
    Ok(PyDuReport {
        root: r.root.into_os_string(),
        allocated: r.total.allocated,
        apparent: r.total.apparent,
        files: r.total.files,
        dirs: r.total.dirs,
        children,
        owners,
        errors: r.errors,
        error_samples: r.error_samples,
        other_filesystems: r.other_filesystems,
        cancelled: r.cancelled,
    })
}

/// Scans `dir` on worker threads, waiting without the GIL; between waits it runs Python's signal
/// handlers (Ctrl-C cancels the scan and raises `KeyboardInterrupt`) and calls `progress`.
#[pyfunction(name = "du")]
#[pyo3(signature = (dir, *, threads = None, one_filesystem = true, progress = None))]
pub fn du_py(
    py: Python<'_>,
    dir: &Bound<'_, PyAny>,
    threads: Option<&Bound<'_, PyAny>>,
    one_filesystem: bool,
    progress: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyDuReport> {
    let root = path_arg("dir", dir)?;
    let options = du::Options::new(opt_whole("threads", threads)?, one_filesystem)?;
    let scan = py.detach(|| Scan::start(&root, options))?;
    loop {
        if let Some(result) = py.detach(|| scan.wait(POLL)) {
            return to_python(py, result?);
        }
        let interrupted = py.check_signals().and_then(|()| match progress {
            Some(callback) => callback.call1(scan.progress()).map(drop),
            None => Ok(()),
        });
        if let Err(err) = interrupted {
            scan.cancel();
            // Workers notice within one directory; wait so no thread outlives the call.
            let _ = py.detach(|| scan.wait(Duration::from_secs(3600)));
            return Err(err);
        }
    }
}
