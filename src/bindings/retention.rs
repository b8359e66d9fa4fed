//! Checkpoint retention: plans, deletion, free space, orphans (the rules are in `rules`).
//!
//! Plans pickle through `__reduce__`; results come back as the records of `records`.

use std::ffi::OsString;
use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString, PyType};

use super::convert::{flag, number, opt_number, path_arg, py_repr, whole, wrong_type, Reduced};
use super::records::{PyDeletionOutcome, PyFreeSpaceResult, PyOrphan};
use super::rules::policy_arg;
use crate::checkpoints::{Checkpoint, Format, Link};
use crate::deletion::{self, LockWait, Outcome, Target};
use crate::error::Error;
use crate::names::NameInfo;
use crate::ordering::OrderChoice;
use crate::retention::{self, Action, Item, Keeper, Ordering, Plan};
use crate::size;

/// A checkpoint's state as plain values, for pickling: `(name, format, (step, epoch, metrics),
/// mtime, (size, apparent_size), (dev, ino, ctime, nlink, uid), incomplete, verified)`.
type CheckpointState = (
    OsString,
    String,
    (Option<u64>, Option<u64>, Vec<(String, f64)>),
    f64,
    (u64, u64),
    (u64, u64, (i64, i64), u64, u32),
    Option<String>,
    bool,
);
/// An item's state: the checkpoint's, then (action, reasons, keeper rank, bytes freed).
type ItemState = (CheckpointState, (String, Vec<String>, Option<u8>, u64));

fn item_state(item: &Item) -> ItemState {
    let c = &item.checkpoint;
    (
        (
            c.name.clone(),
            c.format.name().to_owned(),
            (c.info.step, c.info.epoch, c.info.metrics.clone()),
            c.mtime,
            (c.size, c.apparent_size),
            (c.dev, c.ino, c.ctime, c.nlink, c.uid),
            c.incomplete.clone(),
            c.verified,
        ),
        (
            item.action.name().to_owned(),
            item.reasons.clone(),
            item.keeper.map(Keeper::rank),
            item.bytes_freed,
        ),
    )
}

fn item_from_state(state: ItemState) -> PyResult<Item> {
    let (checkpoint, (action, reasons, keeper, bytes_freed)) = state;
    let (name, format, (step, epoch, metrics), mtime, (size, apparent_size), identity, incomplete, verified) =
        checkpoint;
    let (dev, ino, ctime, nlink, uid) = identity;
    let bad = |what: &'static str, value: String| Error::invalid(what, value, "not from a pickled plan");
    Ok(Item {
        checkpoint: Checkpoint {
            name,
            format: Format::from_name(&format).ok_or_else(|| bad("format", format.clone()))?,
            info: NameInfo { step, epoch, metrics },
            mtime,
            size,
            apparent_size,
            dev,
            ino,
            ctime,
            nlink,
            uid,
            incomplete,
            verified,
        },
        action: Action::from_name(&action).ok_or_else(|| bad("action", action.clone()))?,
        reasons,
        keeper: keeper
            .map(|rank| Keeper::from_rank(rank).ok_or_else(|| bad("keeper", rank.to_string())))
            .transpose()?,
        bytes_freed,
    })
}

/// One checkpoint in a retention plan.
#[pyclass(frozen, name = "PlanItem", module = "diskguard")]
pub struct PyPlanItem {
    dir: PathBuf,
    item: Item,
}

#[pymethods]
impl PyPlanItem {
    #[getter]
    fn name(&self) -> OsString {
        self.item.checkpoint.name.clone()
    }
    #[getter]
    fn path(&self) -> PathBuf {
        self.dir.join(&self.item.checkpoint.name)
    }
    #[getter]
    fn action(&self) -> &'static str {
        self.item.action.name()
    }
    #[getter]
    fn reasons(&self) -> Vec<String> {
        self.item.reasons.clone()
    }
    #[getter]
    fn format(&self) -> &'static str {
        self.item.checkpoint.format.name()
    }
    #[getter]
    fn step(&self) -> Option<u64> {
        self.item.checkpoint.info.step
    }
    #[getter]
    fn epoch(&self) -> Option<u64> {
        self.item.checkpoint.info.epoch
    }
    #[getter]
    fn metrics(&self) -> Vec<(String, f64)> {
        self.item.checkpoint.info.metrics.clone()
    }
    #[getter]
    fn mtime(&self) -> f64 {
        self.item.checkpoint.mtime
    }
    #[getter]
    fn size(&self) -> u64 {
        self.item.checkpoint.size
    }
    #[getter]
    fn apparent_size(&self) -> u64 {
        self.item.checkpoint.apparent_size
    }
    #[getter]
    fn complete(&self) -> bool {
        self.item.checkpoint.is_complete()
    }
    #[getter]
    fn incomplete_reason(&self) -> Option<String> {
        self.item.checkpoint.incomplete.clone()
    }
    #[getter]
    fn bytes_freed(&self) -> u64 {
        self.item.bytes_freed
    }
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "PlanItem(name={}, action={}, reasons={})",
            py_repr(py, &self.item.checkpoint.name),
            py_repr(py, self.item.action.name()),
            py_repr(py, &self.item.reasons)
        )
    }
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py, (PathBuf, ItemState)>> {
        let this = slf.get();
        Ok((
            slf.get_type().getattr("_restore")?,
            (this.dir.clone(), item_state(&this.item)),
        ))
    }
    /// Rebuilds a pickled item.
    #[classmethod]
    fn _restore(_cls: &Bound<'_, PyType>, dir: PathBuf, state: ItemState) -> PyResult<Self> {
        Ok(PyPlanItem {
            dir,
            item: item_from_state(state)?,
        })
    }
}

/// A symlink's state for pickling: (name, target, the entry it names inside the directory).
type LinkState = (OsString, OsString, Option<OsString>);
/// A plan's state for pickling: (dir, dev, ino, items, links, (order, ambiguity)).
type PlanState = (
    PathBuf,
    u64,
    u64,
    Vec<ItemState>,
    Vec<LinkState>,
    (String, Option<String>),
);

/// A retention plan: each checkpoint with keep/delete/skip and why. Nothing has been touched.
#[pyclass(frozen, name = "RetentionPlan", module = "diskguard")]
pub struct PyRetentionPlan {
    plan: Plan,
}

#[pymethods]
impl PyRetentionPlan {
    #[getter]
    fn dir(&self) -> PathBuf {
        self.plan.dir.clone()
    }
    /// Every checkpoint, oldest to newest.
    #[getter]
    fn items(&self) -> Vec<PyPlanItem> {
        self.plan
            .items
            .iter()
            .map(|item| PyPlanItem {
                dir: self.plan.dir.clone(),
                item: item.clone(),
            })
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
    /// The reading that ordered the items: `'step'`, or `'time'` (generations of writes: a run
    /// restarted in the same directory is newer than the one before).
    #[getter]
    fn order(&self) -> &'static str {
        self.plan.order.name()
    }
    /// When steps and write times disagree and neither reading is clear: both orders, in words
    /// (then only what both readings delete is deleted); else None.
    #[getter]
    fn ambiguity(&self) -> Option<String> {
        self.plan.ambiguity.clone()
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
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py, (PlanState,)>> {
        let state = plan_state(&slf.get().plan);
        Ok((slf.get_type().getattr("_restore")?, (state,)))
    }
    /// Rebuilds a pickled plan. Applying it re-checks the directory and every entry as usual.
    #[classmethod]
    fn _restore(_cls: &Bound<'_, PyType>, state: PlanState) -> PyResult<Self> {
        Ok(PyRetentionPlan {
            plan: plan_from_state(state)?,
        })
    }
}

fn plan_state(plan: &Plan) -> PlanState {
    let links = plan
        .links
        .iter()
        .map(|l| (l.name.clone(), l.target.clone(), l.target_inside.clone()))
        .collect();
    (
        plan.dir.clone(),
        plan.dev,
        plan.ino,
        plan.items.iter().map(item_state).collect(),
        links,
        (plan.order.name().to_owned(), plan.ambiguity.clone()),
    )
}

fn plan_from_state(state: PlanState) -> PyResult<Plan> {
    let (dir, dev, ino, items, links, (order, ambiguity)) = state;
    let link = |(name, target, target_inside)| Link {
        name,
        target,
        target_inside,
    };
    Ok(Plan {
        order: OrderChoice::from_name(&order)
            .ok_or_else(|| Error::invalid("order", order.clone(), "not from a pickled plan"))?,
        items: items
            .into_iter()
            .map(item_from_state)
            .collect::<PyResult<Vec<Item>>>()?,
        links: links.into_iter().map(link).collect(),
        dir,
        dev,
        ino,
        ambiguity,
    })
}

fn plan_outcomes(plan: &Plan, outcomes: &[(usize, Outcome)]) -> Vec<PyDeletionOutcome> {
    outcomes
        .iter()
        .map(|(i, o)| PyDeletionOutcome::new(&plan.dir, &plan.items[*i].checkpoint.name, o))
        .collect()
}

/// `wait=` and `timeout=` as the core's lock policy.
fn lock_wait(wait: &Bound<'_, PyAny>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<LockWait> {
    Ok(LockWait::from_options(
        flag("wait", wait)?,
        opt_number("timeout", timeout)?,
    )?)
}

/// Scans `directory` and decides every checkpoint under `policy` (GIL released).
#[pyfunction(name = "plan")]
#[pyo3(
    signature = (directory, policy = None, *, now = None, order = None),
    text_signature = "(directory, policy=None, *, now=None, order='auto')"
)]
pub(crate) fn plan_py(
    py: Python<'_>,
    directory: &Bound<'_, PyAny>,
    policy: Option<&Bound<'_, PyAny>>,
    now: Option<&Bound<'_, PyAny>>,
    order: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyRetentionPlan> {
    let dir = path_arg("directory", directory)?;
    let policy = policy_arg(policy)?;
    let now = opt_number("now", now)?.unwrap_or_else(retention::now);
    let order = Ordering::Directory(order_arg(order)?);
    let plan = py.detach(move || retention::plan_dir_ordered(&dir, &policy, now, order))?;
    Ok(PyRetentionPlan { plan })
}

/// `order=`: `'auto'` (None), `'step'` or `'time'`.
fn order_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<OrderChoice> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(OrderChoice::Auto);
    };
    let expected = "'auto' (read the directory), 'step' (a later write of a lower step is a copied \
                    or touched checkpoint) or 'time' (a later generation of lower steps is a restart)";
    let name = obj
        .cast::<PyString>()
        .map_err(|_| wrong_type("order", obj, expected))?
        .to_cow()?;
    OrderChoice::from_name(&name)
        .ok_or_else(|| Error::invalid("order", format!("'{}'", name.escape_debug()), expected).into())
}

/// Deletes what `plan` says (identity re-checked, under the directory's lock; GIL released).
#[pyfunction(name = "apply")]
#[pyo3(signature = (plan, *, wait = None, timeout = None), text_signature = "(plan, *, wait=True, timeout=None)")]
pub(crate) fn apply_py(
    py: Python<'_>,
    plan: &Bound<'_, PyAny>,
    wait: Option<&Bound<'_, PyAny>>,
    timeout: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<PyDeletionOutcome>> {
    let plan = plan
        .cast::<PyRetentionPlan>()
        .map_err(|_| wrong_type("plan", plan, "a RetentionPlan from diskguard.plan()"))?;
    let plan = &plan.get().plan;
    let wait = match wait {
        Some(w) => lock_wait(w, timeout)?,
        None => lock_wait(PyBool::new(py, true).as_any(), timeout)?,
    };
    let outcomes = py.detach(|| deletion::apply(plan, wait))?;
    Ok(plan_outcomes(plan, &outcomes))
}

/// `target_bytes=`: an int of bytes or a size string; never a float (a fraction is
/// `target_fraction=`).
fn byte_count(name: &'static str, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Some(size::parse_size(name, &s.to_cow()?)?));
    }
    whole::<u64>(name, obj).map(Some).map_err(|err| {
        if err.is_instance_of::<pyo3::exceptions::PyTypeError>(obj.py()) {
            wrong_type(
                name,
                obj,
                "a whole number of bytes (int) or a size string such as '20GiB' \
                 (a fraction of the filesystem is target_fraction=)",
            )
        } else {
            err
        }
    })
}

/// Plans `directory` and deletes the least valuable checkpoints until the target is available
/// (GIL released).
#[pyfunction(name = "_free_space")]
#[pyo3(signature = (directory, policy, target_bytes, target_fraction, wait, timeout))]
pub(crate) fn free_space_py(
    py: Python<'_>,
    directory: &Bound<'_, PyAny>,
    policy: Option<&Bound<'_, PyAny>>,
    target_bytes: Option<&Bound<'_, PyAny>>,
    target_fraction: Option<&Bound<'_, PyAny>>,
    wait: &Bound<'_, PyAny>,
    timeout: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyFreeSpaceResult> {
    let dir = path_arg("directory", directory)?;
    let policy = policy_arg(policy)?;
    let target = Target::from_options(
        byte_count("target_bytes", target_bytes)?,
        opt_number("target_fraction", target_fraction)?,
    )?;
    let wait = lock_wait(wait, timeout)?;
    let now = retention::now();
    let (plan, report) = py.detach(move || deletion::free_space_in(&dir, &policy, target, wait, now))?;
    Ok(PyFreeSpaceResult::new(
        report.avail,
        report.target,
        report.met,
        plan_outcomes(&plan, &report.outcomes),
        report.shortfall,
    ))
}

/// Leftovers of crashed saves (GIL released).
#[pyfunction(name = "_find_orphans")]
#[pyo3(signature = (dir, temp_dir, min_age, uid, now))]
pub(crate) fn find_orphans_py(
    py: Python<'_>,
    dir: &Bound<'_, PyAny>,
    temp_dir: Option<&Bound<'_, PyAny>>,
    min_age: &Bound<'_, PyAny>,
    uid: u32,
    now: f64,
) -> PyResult<Vec<PyOrphan>> {
    let dir = path_arg("directory", dir)?;
    let temp_dir = temp_dir
        .filter(|t| !t.is_none())
        .map(|t| path_arg("temp_dir", t))
        .transpose()?;
    let min_age = number("min_age", min_age)?;
    let found = py.detach(move || deletion::find_orphans(&dir, temp_dir.as_deref(), min_age, uid, now))?;
    Ok(found.into_iter().map(PyOrphan::from_core).collect())
}

/// Removes orphans found by `find_orphans`, each re-checked by identity (GIL released).
#[pyfunction(name = "_remove_orphans")]
pub(crate) fn remove_orphans_py(
    py: Python<'_>,
    orphans: &Bound<'_, PyAny>,
) -> PyResult<Vec<PyDeletionOutcome>> {
    let expected = "a list of Orphan from find_orphans()";
    if orphans.is_instance_of::<PyString>() || orphans.is_instance_of::<pyo3::types::PyBytes>() {
        return Err(wrong_type("orphans", orphans, expected));
    }
    let items = orphans
        .try_iter()
        .map_err(|_| wrong_type("orphans", orphans, expected))?;
    let mut list = Vec::new();
    for item in items {
        let item = item?;
        let orphan = item
            .cast::<PyOrphan>()
            .map_err(|_| wrong_type("orphans", orphans, expected))?;
        list.push(orphan.get().to_core());
    }
    let outcomes = py.detach(|| deletion::remove_orphans(&list));
    Ok(list
        .iter()
        .zip(outcomes.iter())
        .map(|(o, out)| PyDeletionOutcome::new(&o.dir, &o.name, out))
        .collect())
}
