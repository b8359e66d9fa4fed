//! The Python face of the core: frozen records, thin functions, one error conversion.
//!
//! Every function converts its arguments to owned Rust values, runs the core with the GIL released
//! (`py.detach`) when it touches the filesystem, and converts the result. Nothing else lives here.
//! One submodule per area of the core, plus the shared argument conversions (`convert`), the
//! exceptions (`errors`) and the records results come back in (`records`); this file only
//! registers them.

mod convert;
mod dcp;
mod du;
mod errors;
mod grading;
mod guard;
mod logs;
mod records;
mod resume;
mod retention;
mod rules;
mod trend;
mod usage;

use pyo3::prelude::*;

/// The compiled core of diskguard. Import `diskguard`, not this module.
#[pymodule]
pub mod _diskguard {
    #[pymodule_export]
    use super::dcp::shared_filesystem_py;
    #[pymodule_export]
    use super::du::{du_py, PyDuEntry, PyDuOwner, PyDuReport};
    #[pymodule_export]
    use super::errors::{
        rebuild_insufficient_space, DirectoryBusyError, DiskGuardError, InsufficientSpaceError,
    };
    #[pymodule_export]
    use super::grading::{check_py, PyGrading};
    #[pymodule_export]
    use super::guard::{PyGuard, PyGuardSpace, PyGuardStatus};
    #[pymodule_export]
    use super::logs::{log_budget_py, PyLogBudget};
    #[pymodule_export]
    use super::records::{
        PyDeletionOutcome, PyFreeSpaceResult, PyGuardEvent, PyGuardMetrics, PyGuardState, PyOrphan,
    };
    #[pymodule_export]
    use super::resume::latest_complete_py;
    #[pymodule_export]
    use super::retention::{
        apply_py, find_orphans_py, free_space_py, plan_py, remove_orphans_py, PyPlanItem, PyRetentionPlan,
    };
    #[pymodule_export]
    use super::rules::{PyKeepBest, PyKeepEvery, PyKeepLast, PyKeepWithin, PyProtect, PyRetentionPolicy};
    #[pymodule_export]
    use super::trend::{forecast_run_py, PyRunForecast, PyTrendEstimate, PyTrendMonitor};
    #[pymodule_export]
    use super::usage::{
        format_size, mounts_py, parse_size, usage_py, PyCheckResult, PyDiskUsage, PyLevel, PyMount,
    };

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
        super::errors::init_insufficient_space(m)?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("DEFAULT_WARN", crate::check::DEFAULT_WARN)?;
        m.add("DEFAULT_CRITICAL", crate::check::DEFAULT_CRITICAL)?;
        m.add("OWN_PREFIX", crate::names::OWN_PREFIX)?;
        Ok(())
    }
}
