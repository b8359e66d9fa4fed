//! Thresholds graded with hysteresis ([`crate::grading`]), for `diskguard check`, `status` and `watch`.

use pyo3::prelude::*;

use super::usage::{PyCheckResult, PyDiskUsage, PyLevel};
use super::{number, opt_number, size_arg};
use crate::check::{Level, Thresholds};
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
    #[new]
    #[pyo3(signature = (warn, critical, *, min_free=None, warn_free=None, inode_warn=None, inode_critical=None, hysteresis=None))]
    fn new(
        warn: Option<&Bound<'_, PyAny>>,
        critical: Option<&Bound<'_, PyAny>>,
        min_free: Option<&Bound<'_, PyAny>>,
        warn_free: Option<&Bound<'_, PyAny>>,
        inode_warn: Option<&Bound<'_, PyAny>>,
        inode_critical: Option<&Bound<'_, PyAny>>,
        hysteresis: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let thresholds = Thresholds::new(
            opt_number("warn", warn)?,
            opt_number("critical", critical)?,
            size_arg("warn_free", warn_free)?,
            size_arg("min_free", min_free)?,
            opt_number("inode_warn", inode_warn)?,
            opt_number("inode_critical", inode_critical)?,
        )?;
        let share = hysteresis.map_or(Ok(0.0), |h| number("hysteresis", h))?;
        Ok(PyGrading {
            thresholds,
            slack: Slack::of_capacity(share)?,
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
