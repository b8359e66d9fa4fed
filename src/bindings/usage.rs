//! Usage queries, mounts, thresholds and sizes.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyType};

use super::convert::{fs_path, path_arg, py_repr, size_arg, whole, wrong_type, Reduced};
use crate::check::Level;
use crate::error::Error;
use crate::mounts::{self, Mount};
use crate::size::{self, SIZE_RULE};
use crate::usage::{self, DiskUsage, Inodes};

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

    /// Pickled by name, as `enum` members are: `getattr(Level, 'WARN')`.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py, (Bound<'py, PyAny>, String)>> {
        let getattr = slf.py().import("builtins")?.getattr("getattr")?;
        let name = Level::from(*slf.get()).name().to_uppercase();
        Ok((getattr, (slf.as_any().get_type().into_any(), name)))
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
#[pyclass(frozen, name = "Mount", module = "diskguard")]
pub struct PyMount {
    mount: Mount,
}

impl From<&Mount> for PyMount {
    fn from(m: &Mount) -> Self {
        PyMount { mount: m.clone() }
    }
}

/// The fields of a core [`Mount`], in `Mount._restore`'s order: what pickling carries.
type MountState = (
    u64,
    u64,
    u32,
    u32,
    OsString,
    OsString,
    String,
    String,
    OsString,
    String,
);

fn mount_state(m: &Mount) -> MountState {
    (
        m.mount_id,
        m.parent_id,
        m.major,
        m.minor,
        m.root.clone().into_os_string(),
        m.mount_point.clone().into_os_string(),
        m.mount_options.clone(),
        m.fs_type.clone(),
        m.source.clone(),
        m.super_options.clone(),
    )
}

fn mount_from_state(state: MountState) -> Mount {
    let (mount_id, parent_id, major, minor, root, mount_point, mount_options, fs_type, source, super_options) =
        state;
    Mount {
        mount_id,
        parent_id,
        major,
        minor,
        root: root.into(),
        mount_point: mount_point.into(),
        mount_options,
        fs_type,
        source,
        super_options,
    }
}

#[pymethods]
impl PyMount {
    #[classmethod]
    fn _restore(_cls: &Bound<'_, PyType>, state: MountState) -> Self {
        PyMount::from(&mount_from_state(state))
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py, (MountState,)>> {
        Ok((slf.getattr("_restore")?, (mount_state(&slf.get().mount),)))
    }

    #[getter]
    fn mount_id(&self) -> u64 {
        self.mount.mount_id
    }
    #[getter]
    fn parent_id(&self) -> u64 {
        self.mount.parent_id
    }
    #[getter]
    fn major(&self) -> u32 {
        self.mount.major
    }
    #[getter]
    fn minor(&self) -> u32 {
        self.mount.minor
    }
    #[getter]
    fn root(&self) -> &OsStr {
        self.mount.root.as_os_str()
    }
    #[getter]
    fn mount_point(&self) -> &OsStr {
        self.mount.mount_point.as_os_str()
    }
    #[getter]
    fn fs_type(&self) -> &str {
        &self.mount.fs_type
    }
    #[getter]
    fn source(&self) -> &OsStr {
        &self.mount.source
    }
    #[getter]
    fn mount_options(&self) -> &str {
        &self.mount.mount_options
    }
    #[getter]
    fn super_options(&self) -> &str {
        &self.mount.super_options
    }
    #[getter]
    fn read_only(&self) -> bool {
        self.mount.read_only()
    }
    #[getter]
    fn is_overlay(&self) -> bool {
        self.mount.is_overlay()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Mount(mount_point={}, fs_type={}, source={}, read_only={})",
            py_repr(py, self.mount_point()),
            py_repr(py, self.fs_type()),
            py_repr(py, self.source()),
            py_repr(py, self.read_only())
        )
    }
}

/// What pickling a [`DiskUsage`] carries: the figures, the inode counts, and the mount if resolved.
type UsageState = (
    (
        (OsString, OsString, bool, u64, u64, u64, u64, u64, f64),
        (bool, u64, i64),
    ),
    Option<(u64, u64, u64, f64)>,
    Option<MountState>,
);

/// Usage of the filesystem under a path. The mount fields are resolved on first access.
#[pyclass(frozen, name = "DiskUsage", module = "diskguard")]
pub struct PyDiskUsage {
    usage: DiskUsage,
    mount: OnceLock<Option<Mount>>,
}

impl PyDiskUsage {
    pub(crate) fn new(usage: DiskUsage) -> Self {
        PyDiskUsage {
            usage,
            mount: OnceLock::new(),
        }
    }

    /// The core's figures.
    pub(crate) fn core(&self) -> &DiskUsage {
        &self.usage
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
        self.usage.fs_type(self.resolved_mount(py))
    }
    #[getter]
    fn device(&self, py: Python<'_>) -> Option<OsString> {
        DiskUsage::device(self.resolved_mount(py))
    }
    #[getter]
    fn is_overlay(&self, py: Python<'_>) -> bool {
        self.usage.is_overlay(self.resolved_mount(py))
    }

    #[classmethod]
    fn _restore(_cls: &Bound<'_, PyType>, state: UsageState) -> Self {
        let (figures, inodes, mount) = state;
        let (path, queried_path, path_exists, total, used, free, avail, reserved, percent_used) = figures.0;
        let (read_only, block_size, fs_magic) = figures.1;
        let usage = DiskUsage {
            path: path.into(),
            queried_path: queried_path.into(),
            path_exists,
            total,
            used,
            free,
            avail,
            reserved,
            percent_used,
            inodes: inodes.map(|(total, used, free, percent_used)| Inodes {
                total,
                used,
                free,
                percent_used,
            }),
            read_only,
            block_size,
            fs_magic,
        };
        let restored = PyDiskUsage::new(usage);
        // A resolved mount travels with the record; an unresolved one is resolved where it lands.
        if let Some(state) = mount {
            let _ = restored.mount.set(Some(mount_from_state(state)));
        }
        restored
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py, (UsageState,)>> {
        let this = slf.get();
        let u = &this.usage;
        let figures = (
            (
                u.path.clone().into_os_string(),
                u.queried_path.clone().into_os_string(),
                u.path_exists,
                u.total,
                u.used,
                u.free,
                u.avail,
                u.reserved,
                u.percent_used,
            ),
            (u.read_only, u.block_size, u.fs_magic),
        );
        let inodes = u.inodes.map(|i| (i.total, i.used, i.free, i.percent_used));
        let mount = this.mount.get().and_then(Option::as_ref).map(mount_state);
        Ok((slf.getattr("_restore")?, ((figures, inodes, mount),)))
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

/// What pickling a [`PyCheckResult`] carries.
type CheckState = (PyLevel, Vec<String>, Py<PyDiskUsage>);

/// The outcome of a threshold check.
#[pyclass(frozen, get_all, name = "CheckResult", module = "diskguard")]
pub struct PyCheckResult {
    level: PyLevel,
    reasons: Vec<String>,
    usage: Py<PyDiskUsage>,
}

impl PyCheckResult {
    pub(crate) fn new(level: PyLevel, reasons: Vec<String>, usage: Py<PyDiskUsage>) -> Self {
        PyCheckResult {
            level,
            reasons,
            usage,
        }
    }
}

#[pymethods]
impl PyCheckResult {
    #[classmethod]
    fn _restore(
        _cls: &Bound<'_, PyType>,
        level: &Bound<'_, PyLevel>,
        reasons: Vec<String>,
        usage: Py<PyDiskUsage>,
    ) -> Self {
        PyCheckResult {
            level: *level.get(),
            reasons,
            usage,
        }
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py, CheckState>> {
        let this = slf.get();
        let state = (this.level, this.reasons.clone(), this.usage.clone_ref(slf.py()));
        Ok((slf.getattr("_restore")?, state))
    }

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
pub(crate) fn usage_py(py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<PyDiskUsage> {
    Ok(PyDiskUsage::new(measure(py, path)?))
}

/// `usage::usage` of a Python path argument, with the GIL released around `statfs`.
pub(crate) fn measure(py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<DiskUsage> {
    let path = fs_path(path)?;
    Ok(py.detach(move || usage::usage(&path))?)
}

/// The mount table, from `<proc_root>/self/mountinfo` (or pid 1's for a foreign proc root).
#[pyfunction(name = "mounts")]
#[pyo3(signature = (proc_root=None, pid=None))]
#[pyo3(text_signature = "(proc_root='/proc', pid=None)")]
pub(crate) fn mounts_py(
    py: Python<'_>,
    proc_root: Option<&Bound<'_, PyAny>>,
    pid: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<PyMount>> {
    let proc_root = proc_root.map_or_else(|| Ok(PathBuf::from("/proc")), |p| path_arg("proc_root", p))?;
    usage::validate_path("proc_root", &proc_root)?;
    let pid = match pid {
        None => None,
        Some(p) if p.is_instance_of::<PyInt>() => Some(whole::<u32>("pid", p)?.to_string()),
        Some(p) => Some(
            p.extract::<String>()
                .map_err(|_| wrong_type("pid", p, "a process id (int) or 'self'"))?,
        ),
    };
    let table = py.detach(move || mounts::read_mounts(&proc_root, pid.as_deref()))?;
    Ok(table.iter().map(PyMount::from).collect())
}

/// Parses a human size (`"20GiB"`, `"500MB"`, `"1.5T"`, or an int) into bytes.
#[pyfunction]
pub(crate) fn parse_size(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    size_arg("value", Some(value))?.ok_or_else(|| PyErr::from(Error::invalid("value", "None", SIZE_RULE)))
}

/// Formats bytes with IEC units and one decimal: `1.5 GiB`.
#[pyfunction]
pub(crate) fn format_size(value: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(size::format_size(whole::<u64>("value", value)?))
}
