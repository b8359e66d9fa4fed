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

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::checkpoints::{self, Checkpoint, Link, Scan};
use crate::error::{Error, Result};
use crate::ordering::{self, OrderChoice, RunView};

mod decide;
mod rules;

use decide::decide_all;
pub use rules::{KeepBest, KeepEvery, KeepLast, KeepWithin, Mode, Policy, Protect, Rule, PATTERN_RULE};

/// Seconds within which a modified checkpoint may still be being written.
pub const IN_PROGRESS_WINDOW: f64 = 300.0;

/// Default seconds a partial save must have been left alone before it counts as abandoned.
pub const DEFAULT_MIN_PARTIAL_AGE: f64 = 3600.0;

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
mod tests;
