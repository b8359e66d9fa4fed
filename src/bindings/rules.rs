//! The retention rule classes and the policy that combines them.
//!
//! Each rule class wraps the core rule its constructor builds, so the core's validation is the only
//! one and its messages are the ones users see. Records pickle through `__reduce__`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyMapping, PyString, PyTuple};

use super::convert::{
    fs_path, number, opt_number, path_arg, py_repr, rebuild, repr_of, text, whole, wrong_type, Reduced,
};
use crate::retention::{
    KeepBest, KeepEvery, KeepLast, KeepWithin, Mode, Policy, Protect, Rule, DEFAULT_MIN_PARTIAL_AGE,
};

/// A rule class around a core rule of one value: `Name(value)` builds it through the core's
/// constructor (the only validation), `.field` reads the value back, and it prints and pickles as
/// that constructor call.
macro_rules! one_value_rule {
    (
        $(#[doc = $doc:literal])*
        $py_ty:ident($rule:ident) as $name:literal {
            $field:ident: $field_ty:ty = $convert:ident($argument:literal)
        }
    ) => {
        $(#[doc = $doc])*
        #[pyclass(frozen, eq, hash, name = $name, module = "diskguard")]
        #[derive(PartialEq, Eq, Hash)]
        pub struct $py_ty($rule);

        #[pymethods]
        impl $py_ty {
            #[new]
            fn new($field: &Bound<'_, PyAny>) -> PyResult<Self> {
                Ok(Self($rule::new($convert($argument, $field)?)?))
            }
            #[getter]
            fn $field(&self) -> $field_ty {
                self.0.$field
            }
            fn __repr__(&self, py: Python<'_>) -> String {
                format!("{}({})", $name, py_repr(py, self.0.$field))
            }
            fn __reduce__<'py>(slf: &Bound<'py, Self>) -> Reduced<'py, ($field_ty,)> {
                rebuild(slf.as_any(), (slf.get().0.$field,))
            }
        }
    };
}

one_value_rule! {
    /// Keep the newest `n` complete checkpoints.
    PyKeepLast(KeepLast) as "KeepLast" { n: usize = whole("keep_last") }
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

one_value_rule! {
    /// Keep every checkpoint whose step is a multiple of `steps`.
    PyKeepEvery(KeepEvery) as "KeepEvery" { steps: u64 = whole("keep_every") }
}

one_value_rule! {
    /// Keep every checkpoint modified within the last `seconds`.
    PyKeepWithin(KeepWithin) as "KeepWithin" { seconds: f64 = number("keep_within") }
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
pub(crate) fn policy_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Policy> {
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
