//! Thresholds and their grading ([`crate::check`], [`crate::grading`]): `diskguard.check`, and the
//! grading with hysteresis that `diskguard check`, `status` and `watch` use.

use pyo3::prelude::*;

use super::convert::{opt_number, size_arg};
use super::usage::{measure, PyCheckResult, PyDiskUsage, PyLevel};
use crate::check::{Level, Spelling, Thresholds};
use crate::grading::{self, Slack};

/// Validated thresholds and a hysteresis: `grade(usage, previous)` enters a level at its threshold
/// and leaves it only `hysteresis` (a share of the filesystem) past it.
#[pyclass(frozen, name = "_Grading", module = "diskguard")]
pub struct PyGrading {
    thresholds: Thresholds,
    slack: Slack,
}

fn level(level: &Bound<'_, PyLevel>) -> Level {
    (*level.get()).into()
}

#[pymethods]
impl PyGrading {
    /// Private to the package (`diskguard.ops.check.Limits` gives it parsed values), so plain
    /// numbers: a size is an int of bytes. `flags`: errors name the command line's flags (`--warning=90%`).
    #[new]
    #[pyo3(signature = (warn, critical, *, warn_free=None, min_free=None, inodes_warning=None, inodes_critical=None, hysteresis=0.0, flags=false))]
    #[allow(clippy::too_many_arguments)] // mirrors the Python keyword arguments one to one
    fn new(
        warn: Option<f64>,
        critical: Option<f64>,
        warn_free: Option<u64>,
        min_free: Option<u64>,
        inodes_warning: Option<f64>,
        inodes_critical: Option<f64>,
        hysteresis: f64,
        flags: bool,
    ) -> PyResult<Self> {
        let spelling = if flags {
            Spelling::Flags
        } else {
            Spelling::Arguments
        };
        // Named as diskguard.ops.check.Limits names them; the core's errors in `spelling`'s words.
        let given = Thresholds {
            warn,
            critical,
            warn_free,
            min_free,
            inode_warn: inodes_warning,
            inode_critical: inodes_critical,
        };
        Ok(PyGrading {
            thresholds: given.validated(spelling)?,
            slack: Slack::of_capacity(hysteresis)?,
        })
    }

    /// The level of `usage` for something that was at `previous` (`None`: nothing known).
    #[pyo3(signature = (usage, previous=None))]
    fn grade(&self, usage: Py<PyDiskUsage>, previous: Option<&Bound<'_, PyLevel>>) -> PyCheckResult {
        let (graded, reasons) = grading::regrade(
            &self.thresholds,
            usage.get().core(),
            previous.map(level),
            self.slack,
        );
        PyCheckResult::new(graded.into(), reasons, usage)
    }

    /// The hysteresis rule itself ([`grading::settle`]): rising at once, falling only as far as
    /// the eased thresholds (`staying`) allow.
    #[staticmethod]
    fn settle(
        previous: Option<&Bound<'_, PyLevel>>,
        entering: &Bound<'_, PyLevel>,
        staying: &Bound<'_, PyLevel>,
    ) -> PyLevel {
        grading::settle(previous.map(level), level(entering), level(staying)).into()
    }
}

/// Grades the filesystem under `path` against thresholds. `diskguard.check` wraps it and supplies
/// the defaults ([`crate::check::DEFAULT_WARN`], ...); `None` switches a threshold off.
#[pyfunction(name = "check")]
#[allow(clippy::too_many_arguments)] // mirrors the Python keyword arguments one to one
pub(crate) fn check_py(
    py: Python<'_>,
    path: &Bound<'_, PyAny>,
    warn: Option<&Bound<'_, PyAny>>,
    critical: Option<&Bound<'_, PyAny>>,
    min_free: Option<&Bound<'_, PyAny>>,
    warn_free: Option<&Bound<'_, PyAny>>,
    inode_warn: Option<&Bound<'_, PyAny>>,
    inode_critical: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyCheckResult> {
    let thresholds = Thresholds::new(
        opt_number("warn", warn)?,
        opt_number("critical", critical)?,
        size_arg("warn_free", warn_free)?,
        size_arg("min_free", min_free)?,
        opt_number("inode_warn", inode_warn)?,
        opt_number("inode_critical", inode_critical)?,
    )?;
    let usage = measure(py, path)?;
    let (level, reasons) = thresholds.evaluate(&usage);
    Ok(PyCheckResult::new(
        level.into(),
        reasons,
        Py::new(py, PyDiskUsage::new(usage))?,
    ))
}
