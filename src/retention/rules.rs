//! The retention rules and the policy that combines them, each validated when built.

use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::DEFAULT_MIN_PARTIAL_AGE;
use crate::checkpoints::is_entry_name;
use crate::error::{show_path, Error, Result};

/// Direction of a metric: lower is better (`Min`, losses) or higher is better (`Max`, accuracy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

impl Mode {
    /// `'min'` or `'max'`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Min => "min",
            Mode::Max => "max",
        }
    }

    /// The mode named `name` (`"min"`, `"max"`).
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "min" => Ok(Mode::Min),
            "max" => Ok(Mode::Max),
            other => Err(Error::invalid(
                "mode",
                format!("'{}'", other.escape_debug()),
                "expected 'min' (lower is better, losses) or 'max' (higher is better, accuracy)",
            )),
        }
    }
}

/// A rule's own argument check; `checked` is how every constructor returns a rule.
trait Checked: Sized {
    fn validate(&self) -> Result<()>;

    fn checked(self) -> Result<Self> {
        self.validate()?;
        Ok(self)
    }
}

/// Keep the newest `n` complete checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeepLast {
    /// How many; at least 1.
    pub n: usize,
}

impl KeepLast {
    /// A validated rule.
    pub fn new(n: usize) -> Result<Self> {
        KeepLast { n }.checked()
    }
}

impl Checked for KeepLast {
    fn validate(&self) -> Result<()> {
        if self.n == 0 {
            return Err(Error::invalid(
                "keep_last",
                0,
                "expected at least 1 (the newest complete checkpoint is kept anyway)",
            ));
        }
        Ok(())
    }
}

/// Keep the `k` best complete checkpoints by `metric`; values come from the names or from `values`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeepBest {
    /// How many; at least 1.
    pub k: usize,
    /// Metric name as it appears in file names (`val_loss`).
    pub metric: String,
    /// Which direction is better.
    pub mode: Mode,
    /// Finite values by entry name, overriding the names.
    pub values: Vec<(OsString, f64)>,
}

impl KeepBest {
    /// A validated rule. `values` may be keyed by entry name or by path: only the final
    /// component counts.
    pub fn new(k: usize, metric: String, mode: Mode, values: Vec<(PathBuf, f64)>) -> Result<Self> {
        let mut by_name = Vec::with_capacity(values.len());
        for (key, value) in values {
            let name = key.file_name().filter(|n| is_entry_name(n)).ok_or_else(|| {
                Error::invalid(
                    "values",
                    show_path(&key),
                    "expected keys naming checkpoints (an entry name or a path ending in one)",
                )
            })?;
            by_name.push((name.to_owned(), value));
        }
        KeepBest {
            k,
            metric,
            mode,
            values: by_name,
        }
        .checked()
    }
}

impl Checked for KeepBest {
    fn validate(&self) -> Result<()> {
        if self.k == 0 {
            return Err(Error::invalid("keep_best", 0, "expected at least 1"));
        }
        if self.metric.is_empty() || self.metric.contains(['=', '/', '\0']) {
            return Err(Error::invalid(
                "metric",
                format!("'{}'", self.metric.escape_debug()),
                "expected the metric's name as it appears in file names, e.g. 'val_loss' (no '=' or '/')",
            ));
        }
        if let Some((name, value)) = self.values.iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::invalid(
                "values",
                format!("{{{name:?}: {value}}}"),
                "expected a finite number for each checkpoint",
            ));
        }
        Ok(())
    }
}

impl Eq for KeepBest {} // values are finite: validated

impl Hash for KeepBest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.k, &self.metric, self.mode).hash(state);
        for (name, value) in &self.values {
            (name, value.to_bits()).hash(state);
        }
    }
}

/// Keep every checkpoint whose step is a multiple of `steps` (milestones).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeepEvery {
    /// The step interval; at least 1.
    pub steps: u64,
}

impl KeepEvery {
    /// A validated rule.
    pub fn new(steps: u64) -> Result<Self> {
        KeepEvery { steps }.checked()
    }
}

impl Checked for KeepEvery {
    fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(Error::invalid(
                "keep_every",
                0,
                "expected a step interval of at least 1",
            ));
        }
        Ok(())
    }
}

/// Keep every checkpoint modified within the last `seconds`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeepWithin {
    /// Seconds; finite and positive.
    pub seconds: f64,
}

impl KeepWithin {
    /// A validated rule.
    pub fn new(seconds: f64) -> Result<Self> {
        KeepWithin { seconds }.checked()
    }
}

impl Checked for KeepWithin {
    fn validate(&self) -> Result<()> {
        if !(self.seconds.is_finite() && self.seconds > 0.0) {
            return Err(Error::invalid(
                "keep_within",
                self.seconds,
                "expected a finite, positive number of seconds",
            ));
        }
        Ok(())
    }
}

impl Eq for KeepWithin {} // finite: validated

impl Hash for KeepWithin {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.seconds.to_bits().hash(state);
    }
}

/// Never delete these checkpoints.
///
/// A bare name (no `/`) names an entry of the checkpoint directory. Any other path is resolved as
/// the system resolves it (relative to the working directory, through symlinks) and must lie
/// directly in the checkpoint directory: one that resolves elsewhere is rejected when planning,
/// never guessed at (it could not protect anything there, and a typo must not go unnoticed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Protect {
    /// The paths as given.
    pub paths: Vec<PathBuf>,
}

impl Protect {
    /// A validated rule.
    pub fn new(paths: Vec<PathBuf>) -> Result<Self> {
        Protect { paths }.checked()
    }

    /// The entry names protected in the directory `(dev, ino)`; a path whose directory is another
    /// one is an error naming it.
    pub(super) fn names_in(&self, dir: &Path, dev: u64, ino: u64) -> Result<Vec<OsString>> {
        self.paths
            .iter()
            .map(|path| {
                let name = path.file_name().unwrap_or_default().to_owned();
                let parent = path.parent().unwrap_or(Path::new(""));
                if parent.as_os_str().is_empty() {
                    return Ok(name); // a bare name: an entry of the directory
                }
                let outside = |why: String| {
                    Error::invalid(
                        "protect",
                        show_path(path),
                        format!(
                            "expected a checkpoint in {} (its name, or a path in that directory); {why}",
                            show_path(dir)
                        ),
                    )
                };
                let meta = std::fs::metadata(parent)
                    .map_err(|e| outside(format!("its directory cannot be examined ({e})")))?;
                if (meta.dev(), meta.ino()) == (dev, ino) {
                    Ok(name)
                } else {
                    Err(outside("its directory is another one".to_owned()))
                }
            })
            .collect()
    }
}

impl Checked for Protect {
    fn validate(&self) -> Result<()> {
        for path in &self.paths {
            crate::usage::validate_path("protect", path)?;
            if !path.file_name().is_some_and(is_entry_name) {
                return Err(Error::invalid(
                    "protect",
                    show_path(path),
                    "expected a checkpoint's name or path (ending in an entry name, not '.' or '..')",
                ));
            }
        }
        Ok(())
    }
}

/// One retention rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Rule {
    /// See [`KeepLast`].
    Last(KeepLast),
    /// See [`KeepBest`].
    Best(KeepBest),
    /// See [`KeepEvery`].
    Every(KeepEvery),
    /// See [`KeepWithin`].
    Within(KeepWithin),
    /// See [`Protect`].
    Protect(Protect),
}

impl Rule {
    /// Checks the rule's arguments (its constructor did; this catches a rule built field by field).
    pub fn validate(&self) -> Result<()> {
        match self {
            Rule::Last(r) => r.validate(),
            Rule::Best(r) => r.validate(),
            Rule::Every(r) => r.validate(),
            Rule::Within(r) => r.validate(),
            Rule::Protect(r) => r.validate(),
        }
    }
}

/// Rules combined as "keep if any keeps it".
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The rules.
    pub rules: Vec<Rule>,
    /// Seconds a partial save must have been left alone before it counts as abandoned.
    pub min_partial_age: f64,
    /// Extra file-name globs for single-file checkpoints (`*.npz`).
    pub patterns: Vec<String>,
}

impl Eq for Policy {} // min_partial_age is finite: validated

impl Hash for Policy {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (&self.rules, self.min_partial_age.to_bits(), &self.patterns).hash(state);
    }
}

impl Default for Policy {
    /// No rules: only the invariant (newest complete, protected, symlink targets) keeps anything.
    fn default() -> Self {
        Policy {
            rules: Vec::new(),
            min_partial_age: DEFAULT_MIN_PARTIAL_AGE,
            patterns: Vec::new(),
        }
    }
}

/// What a checkpoint pattern must be, for messages.
pub const PATTERN_RULE: &str = "expected a file-name glob ('*' and '?') with at least one character other \
     than '*', '?' and '.', and no '/', e.g. '*.npz' (a pattern matching every name would make every \
     file in the directory a checkpoint)";

impl Policy {
    /// A validated policy.
    pub fn new(rules: Vec<Rule>, min_partial_age: f64, patterns: Vec<String>) -> Result<Self> {
        for rule in &rules {
            rule.validate()?;
        }
        if !(min_partial_age.is_finite() && min_partial_age >= 0.0) {
            return Err(Error::invalid(
                "min_partial_age",
                min_partial_age,
                "expected a finite number of seconds >= 0",
            ));
        }
        for pattern in &patterns {
            validate_pattern(pattern)?;
        }
        Ok(Policy {
            rules,
            min_partial_age,
            patterns,
        })
    }
}

fn validate_pattern(pattern: &str) -> Result<()> {
    let names_something = pattern.chars().any(|c| !matches!(c, '*' | '?' | '.'));
    if !names_something || pattern.contains(['/', '\0']) {
        return Err(Error::invalid(
            "patterns",
            format!("'{}'", pattern.escape_debug()),
            PATTERN_RULE,
        ));
    }
    Ok(())
}
