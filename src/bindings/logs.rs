//! Log budgets.

use pyo3::prelude::*;

use super::convert::{opt_number, size_arg, Reduced};
use super::usage::{measure, PyDiskUsage};
use pyo3::types::PyType;

use crate::error::Error;
use crate::logs::{BudgetBound, BudgetConfig};

/// A log budget: total footprint, `maxBytes` and `backupCount`, and which limit bound it.
#[pyclass(frozen, get_all, name = "LogBudget", module = "diskguard")]
pub struct PyLogBudget {
    total_bytes: u64,
    max_bytes: u64,
    backup_count: u32,
    bound: &'static str,
    explanation: String,
    usage: Py<PyDiskUsage>,
}

/// What pickling a [`PyLogBudget`] carries: its fields, the bound by name.
type BudgetState = (u64, u64, u32, String, String, Py<PyDiskUsage>);

#[pymethods]
impl PyLogBudget {
    #[classmethod]
    fn _restore(_cls: &Bound<'_, PyType>, state: BudgetState) -> PyResult<Self> {
        let (total_bytes, max_bytes, backup_count, bound, explanation, usage) = state;
        let bound = BudgetBound::from_name(&bound)
            .ok_or_else(|| {
                Error::invalid(
                    "bound",
                    format!("{bound:?}"),
                    "expected cap, fraction, keep_free or floor",
                )
            })?
            .name();
        Ok(PyLogBudget {
            total_bytes,
            max_bytes,
            backup_count,
            bound,
            explanation,
            usage,
        })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py, (BudgetState,)>> {
        let b = slf.get();
        let state = (
            b.total_bytes,
            b.max_bytes,
            b.backup_count,
            b.bound.to_owned(),
            b.explanation.clone(),
            b.usage.clone_ref(slf.py()),
        );
        Ok((slf.getattr("_restore")?, (state,)))
    }

    fn __repr__(&self) -> String {
        format!(
            "LogBudget(total_bytes={}, max_bytes={}, backup_count={}, bound='{}')",
            self.total_bytes, self.max_bytes, self.backup_count, self.bound
        )
    }
}

/// Sizes a rotating log on the filesystem under `path` by journald's rule.
#[pyfunction(name = "log_budget")]
#[pyo3(signature = (
    path, *, max_use=None, max_use_fraction=None, keep_free=None, max_file_size=None,
    min_file_size=None, current_usage=None,
))]
#[pyo3(
    text_signature = "(path, *, max_use=None, max_use_fraction=None, keep_free=None, max_file_size=None, min_file_size=None, current_usage=None)"
)]
#[allow(clippy::too_many_arguments)] // mirrors the Python keyword arguments one to one
pub(crate) fn log_budget_py(
    py: Python<'_>,
    path: &Bound<'_, PyAny>,
    max_use: Option<&Bound<'_, PyAny>>,
    max_use_fraction: Option<&Bound<'_, PyAny>>,
    keep_free: Option<&Bound<'_, PyAny>>,
    max_file_size: Option<&Bound<'_, PyAny>>,
    min_file_size: Option<&Bound<'_, PyAny>>,
    current_usage: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyLogBudget> {
    let defaults = BudgetConfig::default();
    let config = BudgetConfig {
        max_use: size_arg("max_use", max_use)?,
        max_use_fraction: opt_number("max_use_fraction", max_use_fraction)?
            .unwrap_or(defaults.max_use_fraction),
        keep_free: size_arg("keep_free", keep_free)?,
        max_file_size: size_arg("max_file_size", max_file_size)?,
        min_file_size: size_arg("min_file_size", min_file_size)?.unwrap_or(defaults.min_file_size),
        current_usage: size_arg("current_usage", current_usage)?.unwrap_or(0),
    };
    config.validate()?;
    let usage = measure(py, path)?;
    let budget = config.budget(&usage)?;
    Ok(PyLogBudget {
        total_bytes: budget.total_bytes,
        max_bytes: budget.max_bytes,
        backup_count: budget.backup_count,
        bound: budget.bound.name(),
        explanation: budget.explanation,
        usage: Py::new(py, PyDiskUsage::new(usage))?,
    })
}
