//! Checkpoint retention: the rule classes and the policy, plans, deletion, free space, orphans.
//!
//! Each rule class wraps the core rule its constructor builds, so the core's validation is the only
//! one and its messages are the ones users see. Records pickle through `__reduce__`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyMapping, PyString, PyTuple, PyType};

use super::{
    flag, fs_path, number, opt_number, path_arg, py_repr, repr_of, text, whole, wrong_type, Reduced,
};
use crate::checkpoints::{Checkpoint, Format, Link};
use crate::deletion::{self, LockWait, Orphan, Outcome, Target};
use crate::error::Error;
use crate::names::NameInfo;
use crate::ordering::OrderChoice;
use crate::retention::{
    self, Action, Item, KeepBest, KeepEvery, KeepLast, KeepWithin, Keeper, Mode, Ordering, Plan, Policy,
    Protect, Rule, DEFAULT_MIN_PARTIAL_AGE,
};
use crate::size;

/// `(type(obj), args)`: what `__reduce__` returns for a class rebuilt by calling it.
fn rebuild<'py, A>(obj: &Bound<'py, PyAny>, args: A) -> Reduced<'py, A> {
    (obj.get_type().into_any(), args)
}

/// Keep the newest `n` complete checkpoints.
#[pyclass(frozen, eq, hash, name = "KeepLast", module = "diskguard")]
#[derive(PartialEq, Eq, Hash)]
pub struct PyKeepLast(KeepLast);

#[pymethods]
impl PyKeepLast {
    #[new]
    fn new(n: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self(KeepLast::new(whole("keep_last", n)?)?))
    }
    #[getter]
    fn n(&self) -> usize {
        self.0.n
    }
    fn __repr__(&self) -> String {
        format!("KeepLast({})", self.0.n)
    }
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> Reduced<'py, (usize,)> {
        rebuild(slf.as_any(), (slf.get().0.n,))
    }
}

/// Keep the `k` best complete checkpoints by `metric`.
#[pyclass(frozen, eq, hash, name = "KeepBest", module = "diskguard")]
#[derive(PartialEq, Eq, Hash)]
pub struct PyKeepBest(KeepBest);

#[pymethods]
impl PyKeepBest {
    #[new]
    #[pyo3(signature = (k, metric, mode = None, values = None), text_signature = "(k, metric, mode='min', values=None)")]
    fn new(
        k: &Bound<'_, PyAny>,
        metric: &Bound<'_, PyAny>,
        mode: Option<&Bound<'_, PyAny>>,
        values: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mode = match mode.filter(|m| !m.is_none()) {
            Some(m) => Mode::from_name(&text("mode", m)?)?,
            None => Mode::Min,
        };
        let values = match values.filter(|v| !v.is_none()) {
            Some(v) => metric_values(v)?,
            None => Vec::new(),
        };
        Ok(Self(KeepBest::new(
            whole("keep_best", k)?,
            text("metric", metric)?,
            mode,
            values,
        )?))
    }
    #[getter]
    fn k(&self) -> usize {
        self.0.k
    }
    #[getter]
    fn metric(&self) -> &str {
        &self.0.metric
    }
    #[getter]
    fn mode(&self) -> &'static str {
        self.0.mode.name()
    }
    /// Values by checkpoint name, or `None`.
    #[getter]
    fn values(&self) -> Option<HashMap<OsString, f64>> {
        (!self.0.values.is_empty()).then(|| self.0.values.iter().cloned().collect())
    }
    fn __repr__(&self, py: Python<'_>) -> String {
        let values = self
            .values()
            .map_or_else(String::new, |v| format!(", values={}", py_repr(py, v)));
        format!(
            "KeepBest({}, {}, mode={}{values})",
            self.0.k,
            py_repr(py, &self.0.metric),
            py_repr(py, self.0.mode.name())
        )
    }
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> Reduced<'py, BestArgs> {
        let rule = &slf.get().0;
        let args = (rule.k, rule.metric.clone(), rule.mode.name(), slf.get().values());
        rebuild(slf.as_any(), args)
    }
}

/// `KeepBest`'s constructor arguments: (k, metric, mode, values).
type BestArgs = (usize, String, &'static str, Option<HashMap<OsString, f64>>);

/// `values=`: a mapping of checkpoint name (or path) to a number.
fn metric_values(obj: &Bound<'_, PyAny>) -> PyResult<Vec<(PathBuf, f64)>> {
    let mapping = obj
        .cast::<PyMapping>()
        .map_err(|_| wrong_type("values", obj, "a mapping of checkpoint name to number, or None"))?;
    let mut values = Vec::new();
    for pair in mapping.items()?.iter() {
        let (key, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair.extract()?;
        let key = fs_path(&key).map_err(|_| {
            wrong_type(
                "values",
                &key,
                "checkpoint names (str, bytes or os.PathLike) as keys",
            )
        })?;
        values.push((key, number("values", &value)?));
    }
    Ok(values)
}

/// Keep every checkpoint whose step is a multiple of `steps`.
#[pyclass(frozen, eq, hash, name = "KeepEvery", module = "diskguard")]
#[derive(PartialEq, Eq, Hash)]
pub struct PyKeepEvery(KeepEvery);

#[pymethods]
impl PyKeepEvery {
    #[new]
    fn new(steps: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self(KeepEvery::new(whole("keep_every", steps)?)?))
    }
    #[getter]
    fn steps(&self) -> u64 {
        self.0.steps
    }
    fn __repr__(&self) -> String {
        format!("KeepEvery({})", self.0.steps)
    }
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> Reduced<'py, (u64,)> {
        rebuild(slf.as_any(), (slf.get().0.steps,))
    }
}

/// Keep every checkpoint modified within the last `seconds`.
#[pyclass(frozen, eq, hash, name = "KeepWithin", module = "diskguard")]
#[derive(PartialEq, Eq, Hash)]
pub struct PyKeepWithin(KeepWithin);

#[pymethods]
impl PyKeepWithin {
    #[new]
    fn new(seconds: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self(KeepWithin::new(number("keep_within", seconds)?)?))
    }
    #[getter]
    fn seconds(&self) -> f64 {
        self.0.seconds
    }
    fn __repr__(&self, py: Python<'_>) -> String {
        format!("KeepWithin({})", py_repr(py, self.0.seconds))
    }
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> Reduced<'py, (f64,)> {
        rebuild(slf.as_any(), (slf.get().0.seconds,))
    }
}

/// Never delete these checkpoints.
#[pyclass(frozen, eq, hash, name = "Protect", module = "diskguard")]
#[derive(PartialEq, Eq, Hash)]
pub struct PyProtect(Protect);

#[pymethods]
impl PyProtect {
    #[new]
    #[pyo3(signature = (*paths))]
    fn new(paths: &Bound<'_, PyTuple>) -> PyResult<Self> {
        let paths = paths
            .iter()
            .map(|p| path_arg("protect", &p))
            .collect::<PyResult<Vec<PathBuf>>>()?;
        Ok(Self(Protect::new(paths)?))
    }
    /// The paths as given.
    #[getter]
    fn paths<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.0.paths)
    }
    fn __repr__(&self, py: Python<'_>) -> String {
        let inner: Vec<String> = self.0.paths.iter().map(|p| py_repr(py, p)).collect();
        format!("Protect({})", inner.join(", "))
    }
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py, Bound<'py, PyTuple>>> {
        Ok(rebuild(slf.as_any(), slf.get().paths(slf.py())?))
    }
}

/// The core rule of a rule object; the one place that lists the rule classes.
fn rule_from(obj: &Bound<'_, PyAny>) -> PyResult<Rule> {
    if let Ok(r) = obj.cast::<PyKeepLast>() {
        return Ok(Rule::Last(r.get().0.clone()));
    }
    if let Ok(r) = obj.cast::<PyKeepBest>() {
        return Ok(Rule::Best(r.get().0.clone()));
    }
    if let Ok(r) = obj.cast::<PyKeepEvery>() {
        return Ok(Rule::Every(r.get().0.clone()));
    }
    if let Ok(r) = obj.cast::<PyKeepWithin>() {
        return Ok(Rule::Within(r.get().0.clone()));
    }
    if let Ok(r) = obj.cast::<PyProtect>() {
        return Ok(Rule::Protect(r.get().0.clone()));
    }
    Err(wrong_type(
        "rules",
        obj,
        "KeepLast, KeepBest, KeepEvery, KeepWithin or Protect",
    ))
}

/// The rule object of a core rule.
fn rule_to_py<'py>(py: Python<'py>, rule: &Rule) -> PyResult<Bound<'py, PyAny>> {
    Ok(match rule {
        Rule::Last(r) => Bound::new(py, PyKeepLast(r.clone()))?.into_any(),
        Rule::Best(r) => Bound::new(py, PyKeepBest(r.clone()))?.into_any(),
        Rule::Every(r) => Bound::new(py, PyKeepEvery(r.clone()))?.into_any(),
        Rule::Within(r) => Bound::new(py, PyKeepWithin(r.clone()))?.into_any(),
        Rule::Protect(r) => Bound::new(py, PyProtect(r.clone()))?.into_any(),
    })
}

/// `patterns=`: one glob as a `str`, or an iterable of them (never a string split into characters).
fn patterns_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Vec::new());
    };
    if obj.is_instance_of::<PyString>() {
        return Ok(vec![text("patterns", obj)?]);
    }
    let expected = "a glob such as '*.npz', or a list of them";
    let items = obj
        .try_iter()
        .map_err(|_| wrong_type("patterns", obj, expected))?;
    items
        .map(|item| text("patterns", &item?).map_err(|_| wrong_type("patterns", obj, expected)))
        .collect()
}

/// Rules combined as "keep if any rule keeps it".
#[pyclass(frozen, eq, hash, name = "RetentionPolicy", module = "diskguard")]
#[derive(PartialEq, Eq, Hash)]
pub struct PyRetentionPolicy(Policy);

#[pymethods]
impl PyRetentionPolicy {
    #[new]
    #[pyo3(
        signature = (*rules, min_partial_age = None, patterns = None),
        text_signature = "(*rules, min_partial_age=3600.0, patterns=())"
    )]
    fn new(
        rules: &Bound<'_, PyTuple>,
        min_partial_age: Option<&Bound<'_, PyAny>>,
        patterns: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let rules = rules
            .iter()
            .map(|r| rule_from(&r))
            .collect::<PyResult<Vec<Rule>>>()?;
        let min_partial_age =
            opt_number("min_partial_age", min_partial_age)?.unwrap_or(DEFAULT_MIN_PARTIAL_AGE);
        Ok(Self(Policy::new(
            rules,
            min_partial_age,
            patterns_arg(patterns)?,
        )?))
    }
    #[getter]
    fn rules<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let rules = self
            .0
            .rules
            .iter()
            .map(|r| rule_to_py(py, r))
            .collect::<PyResult<Vec<_>>>()?;
        PyTuple::new(py, rules)
    }
    #[getter]
    fn min_partial_age(&self) -> f64 {
        self.0.min_partial_age
    }
    #[getter]
    fn patterns<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.0.patterns)
    }
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut parts: Vec<String> = Vec::new();
        for rule in self.rules(py)?.iter() {
            parts.push(repr_of(&rule));
        }
        parts.push(format!("min_partial_age={}", py_repr(py, self.0.min_partial_age)));
        parts.push(format!("patterns={}", repr_of(self.patterns(py)?.as_any())));
        Ok(format!("RetentionPolicy({})", parts.join(", ")))
    }
    /// Rebuilt with keywords through `copyreg.__newobj_ex__` (what pickle protocol 4 does).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py, Bound<'py, PyTuple>>> {
        let py = slf.py();
        let kwargs = PyDict::new(py);
        kwargs.set_item("min_partial_age", slf.get().0.min_partial_age)?;
        kwargs.set_item("patterns", slf.get().patterns(py)?)?;
        let newobj = py.import("copyreg")?.getattr("__newobj_ex__")?;
        let args = PyTuple::new(
            py,
            [
                slf.get_type().into_any(),
                slf.get().rules(py)?.into_any(),
                kwargs.into_any(),
            ],
        )?;
        Ok((newobj, args))
    }
}

/// `policy=`: a `RetentionPolicy`, or `None` for the default (no rules: only the invariant).
fn policy_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Policy> {
    Ok(opt_policy("policy", obj)?.unwrap_or_default())
}

/// A `RetentionPolicy` argument named `name`, or `None`.
pub(crate) fn opt_policy(name: &str, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Policy>> {
    obj.filter(|o| !o.is_none())
        .map(|o| {
            o.cast::<PyRetentionPolicy>()
                .map(|p| p.get().0.clone())
                .map_err(|_| wrong_type(name, o, "a RetentionPolicy, or None"))
        })
        .transpose()
}

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
        let plan = &slf.get().plan;
        let links = plan
            .links
            .iter()
            .map(|l| (l.name.clone(), l.target.clone(), l.target_inside.clone()))
            .collect();
        let state = (
            plan.dir.clone(),
            plan.dev,
            plan.ino,
            plan.items.iter().map(item_state).collect(),
            links,
            (plan.order.name().to_owned(), plan.ambiguity.clone()),
        );
        Ok((slf.get_type().getattr("_restore")?, (state,)))
    }
    /// Rebuilds a pickled plan. Applying it re-checks the directory and every entry as usual.
    #[classmethod]
    fn _restore(_cls: &Bound<'_, PyType>, state: PlanState) -> PyResult<Self> {
        let (dir, dev, ino, items, links, (order, ambiguity)) = state;
        let order = OrderChoice::from_name(&order)
            .ok_or_else(|| Error::invalid("order", order.clone(), "not from a pickled plan"))?;
        let items = items
            .into_iter()
            .map(item_from_state)
            .collect::<PyResult<Vec<Item>>>()?;
        let links = links
            .into_iter()
            .map(|(name, target, target_inside)| Link {
                name,
                target,
                target_inside,
            })
            .collect();
        Ok(PyRetentionPlan {
            plan: Plan {
                dir,
                dev,
                ino,
                items,
                links,
                order,
                ambiguity,
            },
        })
    }
}

/// (path, 'deleted' | 'skipped' | 'failed', detail) for one attempted deletion.
type OutcomeRow = (PathBuf, &'static str, String);
/// (avail, target, met, outcomes, shortfall) of `free_space`.
type FreeSpaceRow = (u64, u64, bool, Vec<OutcomeRow>, Option<u64>);
/// (dev, ino, ctime s, ctime ns, dir dev, dir ino): what removing an orphan re-checks.
type OrphanIdentity = (u64, u64, i64, i64, u64, u64);
/// (path, bytes, age, reason, identity) of an orphan.
type OrphanRow = (PathBuf, u64, f64, String, OrphanIdentity);

fn outcome_row(dir: &Path, name: &OsString, outcome: &Outcome) -> OutcomeRow {
    (dir.join(name), outcome.name(), outcome.detail().to_owned())
}

fn plan_outcomes(plan: &Plan, outcomes: &[(usize, Outcome)]) -> Vec<OutcomeRow> {
    outcomes
        .iter()
        .map(|(i, o)| outcome_row(&plan.dir, &plan.items[*i].checkpoint.name, o))
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
) -> PyResult<Vec<OutcomeRow>> {
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
) -> PyResult<FreeSpaceRow> {
    let dir = path_arg("directory", directory)?;
    let policy = policy_arg(policy)?;
    let target = Target::from_options(
        byte_count("target_bytes", target_bytes)?,
        opt_number("target_fraction", target_fraction)?,
    )?;
    let wait = lock_wait(wait, timeout)?;
    let now = retention::now();
    let (plan, report) = py.detach(move || deletion::free_space_in(&dir, &policy, target, wait, now))?;
    Ok((
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
) -> PyResult<Vec<OrphanRow>> {
    let dir = path_arg("directory", dir)?;
    let temp_dir = temp_dir
        .filter(|t| !t.is_none())
        .map(|t| path_arg("temp_dir", t))
        .transpose()?;
    let min_age = number("min_age", min_age)?;
    let found = py.detach(move || deletion::find_orphans(&dir, temp_dir.as_deref(), min_age, uid, now))?;
    Ok(found
        .into_iter()
        .map(|o| {
            let identity = (o.dev, o.ino, o.ctime.0, o.ctime.1, o.dir_id.0, o.dir_id.1);
            (o.dir.join(&o.name), o.size, o.age, o.reason, identity)
        })
        .collect())
}

/// Removes orphans found by `_find_orphans`, each re-checked by identity (GIL released).
#[pyfunction(name = "_remove_orphans")]
pub(crate) fn remove_orphans_py(py: Python<'_>, orphans: Vec<(PathBuf, OrphanIdentity)>) -> Vec<OutcomeRow> {
    let list: Vec<Orphan> = orphans
        .into_iter()
        .map(|(path, (dev, ino, sec, nsec, dir_dev, dir_ino))| Orphan {
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            name: path.file_name().map(OsString::from).unwrap_or_default(),
            dir_id: (dir_dev, dir_ino),
            size: 0,
            age: 0.0,
            reason: String::new(),
            dev,
            ino,
            ctime: (sec, nsec),
        })
        .collect();
    let outcomes = py.detach(|| deletion::remove_orphans(&list));
    list.iter()
        .zip(outcomes.iter())
        .map(|(o, out)| outcome_row(&o.dir, &o.name, out))
        .collect()
}
