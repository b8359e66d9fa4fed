//! Which checkpoints to keep: small rules combined as "keep if any rule keeps it", decided with
//! reasons before anything is touched.
//!
//! Invariant, whatever the rules: the newest complete checkpoint and every protected one (named by
//! the caller, or the target of a symlink such as `last.ckpt`) are kept. Incomplete checkpoints
//! (partial saves) never count toward a rule; a partial save is deleted only when it is older than
//! the newest complete checkpoint and than `min_partial_age`, so an in-flight save is never touched.
//!
//! Every rule and the policy validate themselves when built ([`KeepLast::new`], ...,
//! [`Policy::new`]): the one place arguments are checked, with messages naming the argument, the
//! value and what is allowed.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::checkpoints::{self, is_entry_name, Checkpoint, Link, Scan};
use crate::error::{show_path, Error, Result};
use crate::ordering::{self, OrderChoice, RunView};

/// Seconds within which a modified checkpoint may still be being written.
pub const IN_PROGRESS_WINDOW: f64 = 300.0;

/// Default seconds a partial save must have been left alone before it counts as abandoned.
pub const DEFAULT_MIN_PARTIAL_AGE: f64 = 3600.0;

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
    fn names_in(&self, dir: &Path, dev: u64, ino: u64) -> Result<Vec<OsString>> {
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

/// Seconds since the epoch, now: the default `now` of [`plan`].
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// How far ahead of this machine's clock a caller's `now` may be (clock skew between hosts).
pub const MAX_NOW_AHEAD: f64 = 3600.0;

/// Checks a `now` given by the caller: finite, not before the epoch, and not far in the future. A
/// future `now` makes every checkpoint look older than it is, so a save still being written could
/// pass for a crash leftover and be deleted: milliseconds (`time.time() * 1000`) must not get in.
pub fn validate_now(now: f64) -> Result<()> {
    if !(now.is_finite() && now >= 0.0) {
        return Err(Error::invalid(
            "now",
            now,
            "expected a finite time in seconds since the epoch (time.time())",
        ));
    }
    let clock = self::now();
    if now > clock + MAX_NOW_AHEAD {
        return Err(Error::invalid(
            "now",
            now,
            format!(
                "{:.0} s ahead of this machine's clock; expected seconds since the epoch (time.time()), \
                 at most {MAX_NOW_AHEAD:.0} s ahead",
                now - clock
            ),
        ));
    }
    Ok(())
}

/// What the plan does with a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Kept by a rule or the invariant.
    Keep,
    /// Deleted by `apply`.
    Delete,
    /// A partial save left alone (it may still be in progress).
    Skip,
}

impl Action {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Delete => "delete",
            Action::Skip => "skip",
        }
    }

    /// The action [`Action::name`] names, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        [Action::Keep, Action::Delete, Action::Skip]
            .into_iter()
            .find(|a| a.name() == name)
    }
}

/// Why something is kept; also its value when space must be freed (higher is kept longer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Keeper {
    /// Modified recently.
    Within = 1,
    /// Among the newest N.
    Last = 2,
    /// A milestone.
    Every = 3,
    /// Among the best K.
    Best = 4,
    /// The invariant: newest complete or protected. Never deleted.
    Invariant = 5,
}

impl Keeper {
    /// Its value when space must be freed (1 to 5, higher is kept longer).
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// The keeper of [`Keeper::rank`] `rank`, if any.
    pub fn from_rank(rank: u8) -> Option<Self> {
        [
            Keeper::Within,
            Keeper::Last,
            Keeper::Every,
            Keeper::Best,
            Keeper::Invariant,
        ]
        .into_iter()
        .find(|k| k.rank() == rank)
    }
}

/// One checkpoint's decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The checkpoint as scanned.
    pub checkpoint: Checkpoint,
    /// Keep, delete or skip.
    pub action: Action,
    /// Every reason, in words.
    pub reasons: Vec<String>,
    /// The strongest rule that keeps it, if kept.
    pub keeper: Option<Keeper>,
    /// Bytes deleting it frees (0 when it is kept, or hard-linked elsewhere).
    pub bytes_freed: u64,
}

/// A retention plan: nothing has been touched yet.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The directory.
    pub dir: PathBuf,
    /// Device and inode of the directory when scanned; `apply` refuses if they changed.
    pub dev: u64,
    /// See `dev`.
    pub ino: u64,
    /// Items from oldest to newest.
    pub items: Vec<Item>,
    /// Symlinks found (never deleted).
    pub links: Vec<Link>,
    /// The reading that ordered the items (`Step` or `Time`; `Auto` for a run's own view).
    pub order: OrderChoice,
    /// Steps and write times disagree and neither reading is clear: both orders, in words. Then
    /// only what both readings delete is deleted.
    pub ambiguity: Option<String>,
}

impl Plan {
    /// Bytes all deletions free.
    pub fn bytes_freed(&self) -> u64 {
        self.items.iter().map(|i| i.bytes_freed).sum()
    }
}

/// Oldest to newest by step (by epoch where no name carries a step), by mtime otherwise.
/// Checkpoints with a number keep the mtime order's slots among themselves but are arranged by
/// it in them, so a copied or touched file cannot jump ahead of a later step (the Hugging Face
/// mtime bugs). See [`crate::ordering`] for the readings that also know generations.
pub fn order(checkpoints: &mut Vec<Checkpoint>) {
    ordering::by_step(checkpoints);
}

/// How a plan orders the checkpoints: as a run knows them, or by reading the directory.
#[derive(Debug, Clone, Copy)]
pub enum Ordering<'a> {
    /// Without a run: the directory's reading, or the caller's choice.
    Directory(OrderChoice),
    /// As the guard's run knows its directory.
    Run(&'a RunView),
}

fn pretty_seconds(s: f64) -> String {
    if s >= 86400.0 && (s % 86400.0) == 0.0 {
        format!("{} d", s / 86400.0)
    } else if s >= 3600.0 && (s % 3600.0) == 0.0 {
        format!("{} h", s / 3600.0)
    } else {
        format!("{s} s")
    }
}

/// Scans the checkpoint directory `dir` and decides every checkpoint under `policy` at time `now`
/// (seconds since the epoch), reading the order from the directory. The directory is opened
/// once: the scan and the content checks read through the same descriptor.
pub fn plan_dir(dir: &Path, policy: &Policy, now: f64) -> Result<Plan> {
    plan_dir_ordered(dir, policy, now, Ordering::Directory(OrderChoice::Auto))
}

/// [`plan_dir`] ordered as `ordering` says.
pub fn plan_dir_ordered(dir: &Path, policy: &Policy, now: f64, ordering: Ordering<'_>) -> Result<Plan> {
    validate_now(now)?;
    let fd: OwnedFd = checkpoints::open_dir(dir)?;
    let scanned = checkpoints::scan(&fd, dir, &policy.patterns)?;
    plan_ordered(scanned, policy, now, ordering, |c| {
        checkpoints::verify_file(&fd, c);
    })
}

/// Decides every checkpoint of `scan` under `policy` at time `now` (seconds since the epoch),
/// reading the order from the directory. `verify` checks a checkpoint's contents; it is called
/// only for checkpoints whose completeness matters to a decision (candidates to keep), newest
/// first.
///
/// Fails when `now` is not a finite time, when a protected path lies outside the directory, and
/// when a [`KeepBest`] without `values` names a metric that no checkpoint's name carries.
pub fn plan(scan: Scan, policy: &Policy, now: f64, verify: impl FnMut(&mut Checkpoint)) -> Result<Plan> {
    plan_ordered(scan, policy, now, Ordering::Directory(OrderChoice::Auto), verify)
}

/// [`plan`] ordered as `ordering` says. Where the directory's reading is ambiguous, both readings
/// are planned and a checkpoint is deleted only when both delete it (the plan says why).
pub fn plan_ordered(
    scan: Scan,
    policy: &Policy,
    now: f64,
    ordering: Ordering<'_>,
    mut verify: impl FnMut(&mut Checkpoint),
) -> Result<Plan> {
    validate_now(now)?;
    match ordering {
        Ordering::Run(run) => {
            let mut scan = scan;
            ordering::for_run(&mut scan.checkpoints, run);
            decide_all(scan, policy, now, Some(run), OrderChoice::Auto, &mut verify)
        }
        Ordering::Directory(choice) => {
            let mut by_time = scan.clone();
            let mut scan = scan;
            let (taken, ambiguity) = ordering::arrange_as(&mut scan.checkpoints, choice);
            let Some(why) = ambiguity else {
                return decide_all(scan, policy, now, None, taken, &mut verify);
            };
            ordering::by_generations(&mut by_time.checkpoints);
            let by_step = decide_all(scan, policy, now, None, OrderChoice::Step, &mut verify)?;
            let by_time = decide_all(by_time, policy, now, None, OrderChoice::Time, &mut verify)?;
            Ok(merge_readings(by_step, &by_time, why))
        }
    }
}

/// One plan from the step reading and the time reading: kept when either keeps it, deleted only
/// when both delete it.
fn merge_readings(mut by_step: Plan, by_time: &Plan, why: String) -> Plan {
    let other: HashMap<&OsString, &Item> = by_time.items.iter().map(|i| (&i.checkpoint.name, i)).collect();
    for item in &mut by_step.items {
        let Some(alt) = other.get(&item.checkpoint.name) else {
            continue;
        };
        if item.action == alt.action || alt.action == Action::Delete {
            continue;
        }
        if alt.action == Action::Keep || item.action == Action::Delete {
            let kept_by_time = alt.action == Action::Keep;
            item.action = alt.action;
            item.keeper = item.keeper.max(alt.keeper);
            item.bytes_freed = 0;
            item.reasons = alt.reasons.clone();
            if kept_by_time {
                item.reasons.push(
                    "kept: by time (a restart in the same directory) it is among the newest, and \
                     steps and write times disagree (choose order='step' or order='time')"
                        .to_owned(),
                );
            }
        }
    }
    by_step.ambiguity = Some(why);
    by_step
}

/// Decides every checkpoint of `scan`, already ordered oldest to newest.
fn decide_all(
    scan: Scan,
    policy: &Policy,
    now: f64,
    run: Option<&RunView>,
    order: OrderChoice,
    verify: &mut impl FnMut(&mut Checkpoint),
) -> Result<Plan> {
    let Scan {
        dir,
        dev,
        ino,
        checkpoints,
        links,
    } = scan;
    check_metrics_present(&dir, policy, &checkpoints)?;
    let protected = protected_names(&dir, dev, ino, policy, &links)?;
    let mut decisions = Decisions::new(checkpoints, verify);
    decisions.keep_protected(&protected);
    if let Some(run) = run {
        decisions.keep_for_run(run);
    }
    let newest_complete = decisions.keep_newest_complete(run);
    for rule in &policy.rules {
        decisions.apply_rule(rule, now);
    }
    decisions.verify_recent_unkept(now - IN_PROGRESS_WINDOW.min(policy.min_partial_age));
    let items = decisions.into_items(newest_complete, now - policy.min_partial_age);
    Ok(Plan {
        dir,
        dev,
        ino,
        items,
        links,
        order,
        ambiguity: None,
    })
}

/// A [`KeepBest`] whose metric no name carries would silently keep nothing: refuse it, naming the
/// metrics that do appear (unless the caller gave the values, or there is nothing complete yet).
fn check_metrics_present(dir: &Path, policy: &Policy, checkpoints: &[Checkpoint]) -> Result<()> {
    if !checkpoints.iter().any(Checkpoint::is_complete) {
        return Ok(());
    }
    for rule in &policy.rules {
        let Rule::Best(best) = rule else { continue };
        let carried = |c: &Checkpoint| c.info.metrics.iter().any(|(m, _)| *m == best.metric);
        if best.values.is_empty() && !checkpoints.iter().any(carried) {
            let seen: BTreeSet<&str> = checkpoints
                .iter()
                .flat_map(|c| c.info.metrics.iter().map(|(m, _)| m.as_str()))
                .collect();
            let seen = if seen.is_empty() {
                "none".to_owned()
            } else {
                seen.into_iter().collect::<Vec<_>>().join(", ")
            };
            return Err(Error::invalid(
                "metric",
                format!("'{}'", best.metric.escape_debug()),
                format!(
                    "no checkpoint in {} has it in its name (metrics in the names: {seen}); \
                     expected one of those, or values= giving each checkpoint's value",
                    show_path(dir)
                ),
            ));
        }
    }
    Ok(())
}

/// Entry names the invariant protects, with why: the caller's [`Protect`] rules, then the targets
/// of symlinks in the directory.
fn protected_names(
    dir: &Path,
    dev: u64,
    ino: u64,
    policy: &Policy,
    links: &[Link],
) -> Result<HashMap<OsString, String>> {
    let mut protected = HashMap::new();
    for rule in &policy.rules {
        if let Rule::Protect(rule) = rule {
            for name in rule.names_in(dir, dev, ino)? {
                protected.insert(name, "protected".to_owned());
            }
        }
    }
    for link in links {
        if let Some(target) = &link.target_inside {
            protected
                .entry(target.clone())
                .or_insert_with(|| format!("target of symlink {}", link.name.to_string_lossy()));
        }
    }
    Ok(protected)
}

/// The decisions being made: checkpoints oldest to newest, the reasons each is kept, and which
/// have had their contents verified.
struct Decisions<V> {
    checkpoints: Vec<Checkpoint>,
    keeps: Vec<Vec<(Keeper, String)>>,
    verified: Vec<bool>,
    /// Whether a checkpoint counts toward the rules (all, except other runs' in a shared
    /// directory).
    counts: Vec<bool>,
    verify: V,
}

impl<V: FnMut(&mut Checkpoint)> Decisions<V> {
    fn new(checkpoints: Vec<Checkpoint>, verify: V) -> Self {
        let n = checkpoints.len();
        Decisions {
            checkpoints,
            keeps: vec![Vec::new(); n],
            verified: vec![false; n],
            counts: vec![true; n],
            verify,
        }
    }

    /// Whether checkpoint `i` is complete, its contents verified on first asking.
    fn complete(&mut self, i: usize) -> bool {
        if !self.verified[i] {
            (self.verify)(&mut self.checkpoints[i]);
            self.verified[i] = true;
        }
        self.checkpoints[i].is_complete()
    }

    fn keep(&mut self, i: usize, keeper: Keeper, why: String) {
        self.keeps[i].push((keeper, why));
    }

    fn keep_protected(&mut self, protected: &HashMap<OsString, String>) {
        for i in 0..self.checkpoints.len() {
            if let Some(why) = protected.get(&self.checkpoints[i].name) {
                self.keep(i, Keeper::Invariant, why.clone());
            }
        }
    }

    /// What a run never lets go: its newest save, and (with another live run in the directory)
    /// everything it did not write, which then counts toward no rule either.
    fn keep_for_run(&mut self, run: &RunView) {
        for i in 0..self.checkpoints.len() {
            if let Some(why) = run.keeps(&self.checkpoints[i]) {
                self.keep(i, Keeper::Invariant, why.to_owned());
            }
            self.counts[i] = run.counts(&self.checkpoints[i]);
        }
    }

    /// Keeps the newest complete checkpoint and returns its index (for a run sharing its
    /// directory, its own newest complete one, if any).
    fn keep_newest_complete(&mut self, run: Option<&RunView>) -> Option<usize> {
        let newest = (0..self.checkpoints.len())
            .rev()
            .find(|&i| (run.is_none() || self.counts[i]) && self.complete(i))
            .or_else(|| (0..self.checkpoints.len()).rev().find(|&i| self.complete(i)))?;
        self.keep(newest, Keeper::Invariant, "newest complete checkpoint".to_owned());
        Some(newest)
    }

    fn apply_rule(&mut self, rule: &Rule, now: f64) {
        match rule {
            Rule::Last(rule) => self.keep_last(rule.n),
            Rule::Best(rule) => self.keep_best(rule),
            Rule::Every(rule) => self.keep_every(rule.steps),
            Rule::Within(rule) => self.keep_within(rule.seconds, now),
            Rule::Protect(_) => {} // part of the invariant, applied first
        }
    }

    /// Keeps the first `count` complete checkpoints of `candidates`, saying `why`.
    fn keep_first_complete(
        &mut self,
        candidates: impl IntoIterator<Item = usize>,
        count: usize,
        keeper: Keeper,
        why: impl Fn(usize) -> String,
    ) {
        let mut taken = 0;
        for i in candidates {
            if taken == count {
                break;
            }
            if self.counts[i] && self.complete(i) {
                taken += 1;
                self.keep(i, keeper, why(i));
            }
        }
    }

    fn keep_last(&mut self, count: usize) {
        let newest_first = (0..self.checkpoints.len()).rev();
        self.keep_first_complete(newest_first, count, Keeper::Last, |_| {
            format!("among the last {count}")
        });
    }

    fn keep_best(&mut self, rule: &KeepBest) {
        let ranked = rank_by_metric(&self.checkpoints, rule);
        let values: HashMap<usize, f64> = ranked.iter().copied().collect();
        let (k, metric) = (rule.k, &rule.metric);
        self.keep_first_complete(ranked.iter().map(|(i, _)| *i), k, Keeper::Best, |i| {
            format!(
                "best {k} by {metric} ({})",
                values.get(&i).copied().unwrap_or(f64::NAN)
            )
        });
    }

    fn keep_every(&mut self, interval: u64) {
        for i in 0..self.checkpoints.len() {
            let milestone = self.checkpoints[i].info.step.is_some_and(|s| s % interval == 0);
            if milestone && self.complete(i) {
                self.keep(i, Keeper::Every, format!("milestone (every {interval} steps)"));
            }
        }
    }

    fn keep_within(&mut self, seconds: f64, now: f64) {
        for i in 0..self.checkpoints.len() {
            if self.checkpoints[i].mtime >= now - seconds && self.complete(i) {
                self.keep(
                    i,
                    Keeper::Within,
                    format!("saved within {}", pretty_seconds(seconds)),
                );
            }
        }
    }

    /// A checkpoint modified since `since` and about to be deleted may be a save still being
    /// written under its final name (Hugging Face, Accelerate): check its contents first, so a
    /// partial one is skipped.
    fn verify_recent_unkept(&mut self, since: f64) {
        for i in 0..self.checkpoints.len() {
            if self.keeps[i].is_empty() && self.checkpoints[i].mtime >= since {
                self.complete(i);
            }
        }
    }

    /// The items: kept, deleted, or (a partial save) deleted as a crash leftover only when older
    /// than the newest complete checkpoint and modified before `abandoned_before`, else skipped.
    fn into_items(self, newest_complete: Option<usize>, abandoned_before: f64) -> Vec<Item> {
        let newest_mtime = newest_complete.map(|i| self.checkpoints[i].mtime);
        self.checkpoints
            .into_iter()
            .zip(self.keeps)
            .enumerate()
            .map(|(i, (checkpoint, kept))| {
                let abandoned = newest_complete.is_some_and(|newest| i < newest)
                    && newest_mtime.is_some_and(|t| checkpoint.mtime < t)
                    && checkpoint.mtime < abandoned_before;
                decide(checkpoint, kept, abandoned)
            })
            .collect()
    }
}

/// Indices of the checkpoints carrying `rule.metric` (from `values` first, then the name), best
/// first; among equal values the newer one.
fn rank_by_metric(checkpoints: &[Checkpoint], rule: &KeepBest) -> Vec<(usize, f64)> {
    let overrides: HashMap<&OsString, f64> = rule.values.iter().map(|(name, v)| (name, *v)).collect();
    let mut ranked: Vec<(usize, f64)> = checkpoints
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let named = c
                .info
                .metrics
                .iter()
                .find(|(m, _)| *m == rule.metric)
                .map(|(_, v)| *v);
            overrides
                .get(&c.name)
                .copied()
                .or(named)
                .filter(|v| v.is_finite())
                .map(|v| (i, v))
        })
        .collect();
    ranked.sort_by(|a, b| {
        let by_value = match rule.mode {
            Mode::Min => a.1.total_cmp(&b.1),
            Mode::Max => b.1.total_cmp(&a.1),
        };
        by_value.then_with(|| b.0.cmp(&a.0))
    });
    ranked
}

/// One checkpoint's item from the reasons it is kept (if any) and whether, partial, it counts as
/// abandoned.
fn decide(checkpoint: Checkpoint, kept: Vec<(Keeper, String)>, abandoned: bool) -> Item {
    let keeper = kept.iter().map(|(k, _)| *k).max();
    let mut reasons: Vec<String> = kept.into_iter().map(|(_, why)| why).collect();
    let action = if keeper.is_some() {
        Action::Keep
    } else if let Some(why) = &checkpoint.incomplete {
        if abandoned {
            reasons.push(format!("partial save left by a crash: {why}"));
            Action::Delete
        } else {
            reasons.push(format!("partial save, left alone (may be in progress): {why}"));
            Action::Skip
        }
    } else {
        reasons.push("not kept by any rule".to_owned());
        Action::Delete
    };
    let hard_linked = checkpoint.nlink > 1;
    if action == Action::Delete && hard_linked {
        reasons.push(format!(
            "hard-linked {} times: deleting this name frees nothing",
            checkpoint.nlink
        ));
    }
    let bytes_freed = if action == Action::Delete && !hard_linked {
        checkpoint.size
    } else {
        0
    };
    Item {
        checkpoint,
        action,
        reasons,
        keeper,
        bytes_freed,
    }
}

/// Deletion order when space must be freed: what the plan deletes (oldest first), then what rules
/// keep, least valuable first (within < last < milestone < best), oldest first among equals.
/// Never the invariant (newest complete, protected) and never a skipped partial save.
pub fn free_space_order(plan: &Plan) -> Vec<usize> {
    let mut deletes: Vec<usize> = (0..plan.items.len())
        .filter(|&i| plan.items[i].action == Action::Delete)
        .collect();
    let mut kept: Vec<usize> = (0..plan.items.len())
        .filter(|&i| plan.items[i].action == Action::Keep && plan.items[i].keeper < Some(Keeper::Invariant))
        .collect();
    kept.sort_by_key(|&i| (plan.items[i].keeper, i));
    deletes.extend(kept);
    deletes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ckpt(name: &str, mtime: f64, complete: bool) -> Checkpoint {
        Checkpoint {
            incomplete: (!complete).then(|| "truncated".to_owned()),
            ..Checkpoint::for_test(name, mtime)
        }
    }

    fn last(n: usize) -> Rule {
        Rule::Last(KeepLast::new(n).expect("valid"))
    }

    fn policy(rules: Vec<Rule>, min_partial_age: f64) -> Policy {
        Policy::new(rules, min_partial_age, vec![]).expect("valid")
    }

    fn scan(cps: Vec<Checkpoint>) -> Scan {
        Scan {
            dir: "/d".into(),
            dev: 1,
            ino: 1,
            checkpoints: cps,
            links: vec![],
        }
    }

    fn decisions(plan: &Plan) -> Vec<(String, &'static str)> {
        plan.items
            .iter()
            .map(|i| (i.checkpoint.display_name(), i.action.name()))
            .collect()
    }

    #[test]
    fn last_n_with_newest_complete_invariant() {
        let cps = (1..=5)
            .map(|s| ckpt(&format!("epoch=0-step={s}.ckpt"), f64::from(s), true))
            .collect();
        let policy = policy(vec![last(2)], 0.0);
        let p = plan(scan(cps), &policy, 100.0, |_| {}).expect("plan");
        let d = decisions(&p);
        assert_eq!(d.iter().filter(|(_, a)| *a == "keep").count(), 2);
        assert_eq!(d[4], ("epoch=0-step=5.ckpt".to_owned(), "keep"));
        assert!(p.items[4]
            .reasons
            .contains(&"newest complete checkpoint".to_owned()));
        assert_eq!(p.bytes_freed(), 300);
    }

    #[test]
    fn partial_newest_is_skipped_and_never_counted() {
        let cps = vec![
            ckpt("step=1.ckpt", 1.0, true),
            ckpt("step=2.ckpt", 2.0, true),
            ckpt("step=3.ckpt", 3.0, false),
        ];
        let policy = policy(vec![last(1)], 0.0);
        let p = plan(scan(cps), &policy, 100.0, |_| {}).expect("plan");
        assert_eq!(
            decisions(&p),
            vec![
                ("step=1.ckpt".into(), "delete"),
                ("step=2.ckpt".into(), "keep"),
                ("step=3.ckpt".into(), "skip"),
            ]
        );
    }

    #[test]
    fn old_partial_is_deleted_as_crash_leftover_only_when_old_enough() {
        let cps = vec![ckpt("step=1.ckpt", 1.0, false), ckpt("step=2.ckpt", 2.0, true)];
        let policy = policy(vec![last(5)], 3600.0);
        let young = plan(scan(cps.clone()), &policy, 100.0, |_| {}).expect("plan");
        assert_eq!(young.items[0].action, Action::Skip);
        let old = plan(scan(cps), &policy, 10_000.0, |_| {}).expect("plan");
        assert_eq!(old.items[0].action, Action::Delete);
        assert!(old.items[0].reasons[0].starts_with("partial save left by a crash"));
    }

    #[test]
    fn best_k_by_metric_either_direction_and_overrides() {
        let cps = vec![
            ckpt("step=1-val_loss=0.5.ckpt", 1.0, true),
            ckpt("step=2-val_loss=0.2.ckpt", 2.0, true),
            ckpt("step=3-val_loss=0.9.ckpt", 3.0, true),
            ckpt("step=4-val_loss=0.4.ckpt", 4.0, true),
        ];
        let best = |mode, values: Vec<(PathBuf, f64)>| {
            let rule = KeepBest::new(1, "val_loss".into(), mode, values).expect("valid");
            let policy = policy(vec![Rule::Best(rule)], 0.0);
            decisions(&plan(scan(cps.clone()), &policy, 10.0, |_| {}).expect("plan"))
        };
        assert_eq!(best(Mode::Min, vec![])[1].1, "keep");
        assert_eq!(best(Mode::Min, vec![])[0].1, "delete");
        assert_eq!(best(Mode::Max, vec![])[2].1, "keep");
        assert_eq!(
            best(Mode::Min, vec![("step=1-val_loss=0.5.ckpt".into(), 0.01)])[0].1,
            "keep"
        );
    }

    #[test]
    fn milestones_within_and_protected() {
        let cps = (1..=6)
            .map(|s| ckpt(&format!("step={}.ckpt", s * 500), f64::from(s), true))
            .collect();
        let policy = policy(
            vec![
                Rule::Every(KeepEvery::new(1000).expect("valid")),
                Rule::Within(KeepWithin::new(1.5).expect("valid")),
                Rule::Protect(Protect::new(vec!["step=500.ckpt".into()]).expect("valid")),
            ],
            0.0,
        );
        let p = plan(scan(cps), &policy, 6.0, |_| {}).expect("plan");
        let kept: Vec<String> = p
            .items
            .iter()
            .filter(|i| i.action == Action::Keep)
            .map(|i| i.checkpoint.display_name())
            .collect();
        assert_eq!(
            kept,
            vec![
                "step=500.ckpt",
                "step=1000.ckpt",
                "step=2000.ckpt",
                "step=2500.ckpt",
                "step=3000.ckpt"
            ]
        );
    }

    #[test]
    fn symlink_target_is_protected() {
        let cps = vec![ckpt("step=1.ckpt", 1.0, true), ckpt("step=2.ckpt", 2.0, true)];
        let mut s = scan(cps);
        s.links.push(Link {
            name: "last.ckpt".into(),
            target: "step=1.ckpt".into(),
            target_inside: Some("step=1.ckpt".into()),
        });
        let p = plan(s, &policy(vec![last(1)], 0.0), 10.0, |_| {}).expect("plan");
        assert_eq!(p.items[0].action, Action::Keep);
        assert_eq!(p.items[0].reasons, vec!["target of symlink last.ckpt".to_owned()]);
    }

    #[test]
    fn step_order_beats_mtime_for_stepped_names() {
        // checkpoint-100 touched after checkpoint-200: still older by step.
        let mut cps = vec![
            ckpt("step=200.ckpt", 1.0, true),
            ckpt("step=100.ckpt", 2.0, true),
            ckpt("best.ckpt", 3.0, true),
        ];
        order(&mut cps);
        let names: Vec<String> = cps.iter().map(Checkpoint::display_name).collect();
        assert_eq!(names, vec!["step=100.ckpt", "step=200.ckpt", "best.ckpt"]);
    }

    #[test]
    fn free_space_order_never_includes_the_invariant() {
        let cps = (1..=4)
            .map(|s| ckpt(&format!("step={s}-acc=0.{s}.ckpt"), f64::from(s), true))
            .collect();
        let best = KeepBest::new(1, "acc".into(), Mode::Min, vec![]).expect("valid");
        let policy = policy(vec![last(2), Rule::Best(best)], 0.0);
        let p = plan(scan(cps), &policy, 10.0, |_| {}).expect("plan");
        let order: Vec<String> = free_space_order(&p)
            .iter()
            .map(|&i| p.items[i].checkpoint.display_name())
            .collect();
        assert_eq!(
            order,
            vec![
                "step=2-acc=0.2.ckpt",
                "step=3-acc=0.3.ckpt",
                "step=1-acc=0.1.ckpt"
            ]
        );
    }

    #[test]
    fn rejects_bad_rules() {
        assert!(KeepLast::new(0).is_err());
        assert!(KeepEvery::new(0).is_err());
        for bad in [f64::NAN, f64::INFINITY, -1.0, 0.0] {
            assert!(KeepWithin::new(bad).is_err(), "{bad}");
        }
        assert!(KeepBest::new(1, String::new(), Mode::Min, vec![]).is_err());
        assert!(KeepBest::new(1, "loss".into(), Mode::Min, vec![("a.ckpt".into(), f64::NAN)]).is_err());
        assert!(KeepBest::new(1, "loss".into(), Mode::Min, vec![("..".into(), 1.0)]).is_err());
        assert!(Mode::from_name("avg").is_err());
        assert!(Protect::new(vec!["".into()]).is_err());
        assert!(Protect::new(vec!["ckpts/..".into()]).is_err());
        assert!(Policy::new(vec![Rule::Last(KeepLast { n: 0 })], 0.0, vec![]).is_err());
        assert!(Policy::new(vec![], -1.0, vec![]).is_err());
        assert!(Policy::new(vec![], f64::NAN, vec![]).is_err());
        for pattern in ["", "*", "*.*", "?*", ".*", "a/*.npz"] {
            assert!(
                Policy::new(vec![], 0.0, vec![pattern.into()]).is_err(),
                "{pattern}"
            );
        }
        assert!(Policy::new(vec![], 0.0, vec!["*.npz".into(), "w-??.bin".into()]).is_ok());
    }

    #[test]
    fn rejects_a_time_that_is_not_one() {
        let cps = vec![ckpt("step=1.ckpt", 1.0, true)];
        for now in [f64::NAN, f64::INFINITY, -1.0] {
            let err = plan(scan(cps.clone()), &policy(vec![], 0.0), now, |_| {}).expect_err("rejected");
            assert!(err.to_string().starts_with("now="), "{err}");
        }
    }

    #[test]
    fn a_metric_no_name_carries_is_an_error_naming_those_that_do() {
        let cps = vec![
            ckpt("step=1-val_loss=0.5.ckpt", 1.0, true),
            ckpt("step=2-val_acc=0.2.ckpt", 2.0, true),
        ];
        let typo = KeepBest::new(1, "val_los".into(), Mode::Min, vec![]).expect("valid");
        let err = plan(
            scan(cps.clone()),
            &policy(vec![Rule::Best(typo)], 0.0),
            10.0,
            |_| {},
        )
        .expect_err("unknown metric");
        let text = err.to_string();
        assert!(
            text.starts_with("metric='val_los'") && text.contains("val_acc, val_loss"),
            "{text}"
        );
        let given = KeepBest::new(
            1,
            "val_los".into(),
            Mode::Min,
            vec![("step=1-val_loss=0.5.ckpt".into(), 1.0)],
        )
        .expect("valid");
        assert!(plan(scan(cps), &policy(vec![Rule::Best(given)], 0.0), 10.0, |_| {}).is_ok());
        let partial_only = vec![ckpt("step=1.ckpt", 1.0, false)];
        let typo = KeepBest::new(1, "val_los".into(), Mode::Min, vec![]).expect("valid");
        assert!(
            plan(
                scan(partial_only),
                &policy(vec![Rule::Best(typo)], 0.0),
                10.0,
                |_| {}
            )
            .is_ok(),
            "nothing complete yet: nothing to rank, no error"
        );
    }

    #[test]
    fn a_protected_path_outside_the_directory_is_rejected() {
        let cps = vec![ckpt("step=1.ckpt", 1.0, true), ckpt("step=2.ckpt", 2.0, true)];
        let outside = Protect::new(vec!["/etc/step=1.ckpt".into()]).expect("valid");
        let err = plan(
            scan(cps),
            &policy(vec![Rule::Protect(outside)], 0.0),
            10.0,
            |_| {},
        )
        .expect_err("outside");
        assert!(err.to_string().contains("its directory is another one"), "{err}");
    }
}
