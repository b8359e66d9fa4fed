//! Checkpoint retention: plans, deletion, free space, orphans.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyList;

use super::{fs_path, py_repr};
use crate::checkpoints;
use crate::deletion::{self, LockWait, Orphan, Outcome};
use crate::error::Error;
use crate::retention::{self, Action, Item, Mode, Plan, Policy, Rule};

/// Converts Python-side rule tuples (built by `diskguard.retention`) into core rules.
pub(crate) fn rules_from(py_rules: &Bound<'_, PyList>) -> PyResult<Vec<Rule>> {
    let mut rules = Vec::new();
    for item in py_rules.iter() {
        let kind: String = item.get_item(0)?.extract()?;
        let rule = match kind.as_str() {
            "last" => Rule::Last(item.get_item(1)?.extract()?),
            "best" => {
                let mode: String = item.get_item(3)?.extract()?;
                let mode = match mode.as_str() {
                    "min" => Mode::Min,
                    "max" => Mode::Max,
                    other => {
                        return Err(
                            Error::invalid("mode", format!("'{other}'"), "expected 'min' or 'max'").into(),
                        )
                    }
                };
                let values: Vec<(PathBuf, f64)> = item.get_item(4)?.extract()?;
                Rule::Best {
                    k: item.get_item(1)?.extract()?,
                    metric: item.get_item(2)?.extract()?,
                    mode,
                    values: values.into_iter().map(|(n, v)| (n.into_os_string(), v)).collect(),
                }
            }
            "every" => Rule::Every(item.get_item(1)?.extract()?),
            "within" => Rule::Within(item.get_item(1)?.extract()?),
            "protect" => {
                let names: Vec<PathBuf> = item.get_item(1)?.extract()?;
                Rule::Protect(names.into_iter().map(PathBuf::into_os_string).collect())
            }
            other => return Err(PyValueError::new_err(format!("unknown retention rule {other:?}"))),
        };
        rules.push(rule);
    }
    Ok(rules)
}

/// One checkpoint in a retention plan.
#[pyclass(frozen, get_all, name = "PlanItem", module = "diskguard")]
pub struct PyPlanItem {
    name: OsString,
    path: OsString,
    action: &'static str,
    reasons: Vec<String>,
    format: &'static str,
    step: Option<u64>,
    epoch: Option<u64>,
    metrics: Vec<(String, f64)>,
    mtime: f64,
    size: u64,
    apparent_size: u64,
    complete: bool,
    incomplete_reason: Option<String>,
    bytes_freed: u64,
}

impl PyPlanItem {
    fn new(dir: &Path, item: &Item) -> Self {
        let c = &item.checkpoint;
        PyPlanItem {
            name: c.name.clone(),
            path: dir.join(&c.name).into_os_string(),
            action: item.action.name(),
            reasons: item.reasons.clone(),
            format: c.format.name(),
            step: c.info.step,
            epoch: c.info.epoch,
            metrics: c.info.metrics.clone(),
            mtime: c.mtime,
            size: c.size,
            apparent_size: c.apparent_size,
            complete: c.is_complete(),
            incomplete_reason: c.incomplete.clone(),
            bytes_freed: item.bytes_freed,
        }
    }
}

#[pymethods]
impl PyPlanItem {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "PlanItem(name={}, action={}, reasons={})",
            py_repr(py, &self.name),
            py_repr(py, self.action),
            py_repr(py, &self.reasons)
        )
    }
}

/// A retention plan: each checkpoint with keep/delete/skip and why. Nothing has been touched.
#[pyclass(frozen, name = "RetentionPlan", module = "diskguard")]
pub struct PyRetentionPlan {
    plan: Plan,
}

#[pymethods]
impl PyRetentionPlan {
    #[getter]
    fn dir(&self) -> OsString {
        self.plan.dir.clone().into_os_string()
    }
    /// Every checkpoint, oldest to newest.
    #[getter]
    fn items(&self) -> Vec<PyPlanItem> {
        self.plan
            .items
            .iter()
            .map(|i| PyPlanItem::new(&self.plan.dir, i))
            .collect()
    }
    #[getter]
    fn bytes_freed(&self) -> u64 {
        self.plan.bytes_freed()
    }
    /// Symlinks in the directory as (name, target); they are never deleted.
    #[getter]
    fn links(&self) -> Vec<(OsString, OsString)> {
        self.plan
            .links
            .iter()
            .map(|l| (l.name.clone(), l.target.clone()))
            .collect()
    }
    fn __len__(&self) -> usize {
        self.plan.items.len()
    }
    fn __repr__(&self, py: Python<'_>) -> String {
        let count = |a: Action| self.plan.items.iter().filter(|i| i.action == a).count();
        format!(
            "RetentionPlan(dir={}, keep={}, delete={}, skip={}, bytes_freed={})",
            py_repr(py, self.plan.dir.as_os_str()),
            count(Action::Keep),
            count(Action::Delete),
            count(Action::Skip),
            self.plan.bytes_freed()
        )
    }
}

/// (path, 'deleted' | 'skipped' | 'failed', detail) for one attempted deletion.
type OutcomeRow = (OsString, &'static str, String);
/// (avail, target, met, stopped at the invariant, outcomes) of `free_space`.
type FreeSpaceRow = (u64, u64, bool, bool, Vec<OutcomeRow>);
/// (path, bytes, age, reason, identity) of an orphan.
type OrphanRow = (OsString, u64, f64, String, (u64, u64, i64, i64));

pub(crate) fn lock_wait(wait: bool) -> LockWait {
    if wait {
        LockWait::Wait
    } else {
        LockWait::Skip
    }
}

pub(crate) fn outcome_tuple(dir: &Path, name: &OsStr, outcome: &Outcome) -> OutcomeRow {
    let (what, detail) = match outcome {
        Outcome::Deleted => ("deleted", String::new()),
        Outcome::Skipped(why) => ("skipped", why.clone()),
        Outcome::Failed(why) => ("failed", why.clone()),
    };
    (dir.join(name).into_os_string(), what, detail)
}

/// Scans `dir` and decides every checkpoint under `rules` (GIL released).
#[pyfunction(name = "_plan")]
#[pyo3(signature = (dir, rules, min_partial_age, patterns, now))]
pub(crate) fn plan_py(
    py: Python<'_>,
    dir: &Bound<'_, PyAny>,
    rules: &Bound<'_, PyList>,
    min_partial_age: f64,
    patterns: Vec<String>,
    now: f64,
) -> PyResult<PyRetentionPlan> {
    let dir = fs_path(dir)?;
    let policy = Policy::new(rules_from(rules)?, min_partial_age)?;
    let plan = py.detach(move || -> crate::error::Result<Plan> {
        let fd = checkpoints::open_dir(&dir)?;
        let scanned = checkpoints::scan(&dir, &patterns)?;
        Ok(retention::plan(scanned, &policy, now, |c| {
            checkpoints::verify_file(&fd, c)
        }))
    })?;
    Ok(PyRetentionPlan { plan })
}

/// Deletes what `plan` says (identity re-checked, under the directory's lock; GIL released).
#[pyfunction(name = "apply")]
#[pyo3(signature = (plan, *, wait=true))]
pub(crate) fn apply_py(
    py: Python<'_>,
    plan: &Bound<'_, PyRetentionPlan>,
    wait: bool,
) -> PyResult<Vec<OutcomeRow>> {
    let plan = &plan.get().plan;
    let outcomes = py.detach(|| deletion::apply(plan, lock_wait(wait)))?;
    Ok(outcomes
        .iter()
        .map(|(i, o)| outcome_tuple(&plan.dir, &plan.items[*i].checkpoint.name, o))
        .collect())
}

/// Deletes the least valuable checkpoints until `avail >= target` bytes (GIL released).
#[pyfunction(name = "_free_space")]
#[pyo3(signature = (plan, target, wait))]
pub(crate) fn free_space_py(
    py: Python<'_>,
    plan: &Bound<'_, PyRetentionPlan>,
    target: u64,
    wait: bool,
) -> PyResult<FreeSpaceRow> {
    let plan = &plan.get().plan;
    let report = py.detach(|| deletion::free_space(plan, target, lock_wait(wait)))?;
    let outcomes = report
        .outcomes
        .iter()
        .map(|(i, o)| outcome_tuple(&plan.dir, &plan.items[*i].checkpoint.name, o))
        .collect();
    Ok((
        report.avail,
        report.target,
        report.met,
        report.stopped_at_invariant,
        outcomes,
    ))
}

/// Leftovers of crashed saves as (path, bytes, age seconds, reason, dev, ino) (GIL released).
#[pyfunction(name = "_find_orphans")]
#[pyo3(signature = (dir, temp_dir, min_age, uid, now))]
pub(crate) fn find_orphans_py(
    py: Python<'_>,
    dir: &Bound<'_, PyAny>,
    temp_dir: Option<&Bound<'_, PyAny>>,
    min_age: f64,
    uid: u32,
    now: f64,
) -> PyResult<Vec<OrphanRow>> {
    let dir = fs_path(dir)?;
    let temp_dir = temp_dir.map(fs_path).transpose()?;
    if !(min_age.is_finite() && min_age >= 0.0) {
        return Err(Error::invalid("min_age", min_age, "expected seconds >= 0").into());
    }
    let found = py.detach(move || deletion::find_orphans(&dir, temp_dir.as_deref(), min_age, uid, now))?;
    Ok(found
        .into_iter()
        .map(|o| {
            (
                o.dir.join(&o.name).into_os_string(),
                o.size,
                o.age,
                o.reason,
                (o.dev, o.ino, o.ctime.0, o.ctime.1),
            )
        })
        .collect())
}

/// Removes orphans found by `_find_orphans`, each re-checked by identity (GIL released).
#[pyfunction(name = "_remove_orphans")]
pub(crate) fn remove_orphans_py(
    py: Python<'_>,
    orphans: Vec<(PathBuf, (u64, u64, i64, i64))>,
) -> PyResult<Vec<OutcomeRow>> {
    let list: Vec<Orphan> = orphans
        .into_iter()
        .filter_map(|(path, (dev, ino, sec, nsec))| {
            let dir = path.parent()?.to_path_buf();
            let name = path.file_name()?.to_owned();
            Some(Orphan {
                dir,
                name,
                size: 0,
                age: 0.0,
                reason: String::new(),
                dev,
                ino,
                ctime: (sec, nsec),
            })
        })
        .collect();
    let outcomes = py.detach(|| deletion::remove_orphans(&list));
    Ok(list
        .iter()
        .zip(outcomes.iter())
        .map(|(o, out)| outcome_tuple(&o.dir, &o.name, out))
        .collect())
}
