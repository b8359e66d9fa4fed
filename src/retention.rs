//! Which checkpoints to keep: small rules combined as "keep if any rule keeps it", decided with
//! reasons before anything is touched.
//!
//! Invariant, whatever the rules: the newest complete checkpoint and every protected one (named by
//! the caller, or the target of a symlink such as `last.ckpt`) are kept. Incomplete checkpoints
//! (partial saves) never count toward a rule; a partial save is deleted only when it is older than
//! the newest complete checkpoint and than `min_partial_age`, so an in-flight save is never touched.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;

use crate::checkpoints::{Checkpoint, Link, Scan};
use crate::error::{Error, Result};

/// Seconds within which a modified checkpoint may still be being written.
pub const IN_PROGRESS_WINDOW: f64 = 300.0;

/// Direction of a metric: lower is better (`Min`, losses) or higher is better (`Max`, accuracy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

/// One retention rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// The newest `n` complete checkpoints.
    Last(usize),
    /// The `k` best complete checkpoints by `metric`; values come from the names or from `values`.
    Best {
        /// How many.
        k: usize,
        /// Metric name as it appears in file names (`val_loss`).
        metric: String,
        /// Which direction is better.
        mode: Mode,
        /// Values by entry name, overriding the names.
        values: Vec<(OsString, f64)>,
    },
    /// Every checkpoint whose step is a multiple of `n` (milestones).
    Every(u64),
    /// Every checkpoint modified within this many seconds.
    Within(f64),
    /// These entries, by name.
    Protect(Vec<OsString>),
}

impl Rule {
    fn validate(&self) -> Result<()> {
        match self {
            Rule::Last(0) => Err(Error::invalid(
                "keep_last",
                0,
                "expected at least 1 (the newest complete checkpoint is kept anyway)",
            )),
            Rule::Best { k: 0, .. } => Err(Error::invalid("keep_best", 0, "expected at least 1")),
            Rule::Best { metric, .. } if metric.is_empty() => Err(Error::invalid(
                "metric",
                "''",
                "expected the metric's name as it appears in file names, e.g. 'val_loss'",
            )),
            Rule::Every(0) => Err(Error::invalid(
                "keep_every",
                0,
                "expected a step interval of at least 1",
            )),
            Rule::Within(s) if !(s.is_finite() && *s > 0.0) => Err(Error::invalid(
                "keep_within",
                s,
                "expected a positive number of seconds",
            )),
            _ => Ok(()),
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
}

impl Policy {
    /// A validated policy.
    pub fn new(rules: Vec<Rule>, min_partial_age: f64) -> Result<Self> {
        for rule in &rules {
            rule.validate()?;
        }
        if !(min_partial_age.is_finite() && min_partial_age >= 0.0) {
            return Err(Error::invalid(
                "min_partial_age",
                min_partial_age,
                "expected seconds >= 0",
            ));
        }
        Ok(Policy {
            rules,
            min_partial_age,
        })
    }
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
}

impl Plan {
    /// Bytes all deletions free.
    pub fn bytes_freed(&self) -> u64 {
        self.items.iter().map(|i| i.bytes_freed).sum()
    }
}

/// Oldest to newest: by step where names carry one, by mtime otherwise. Checkpoints with a step
/// keep the mtime order's slots among themselves but are arranged by step in them, so a copied
/// or touched file cannot jump ahead of a later step (the Hugging Face mtime bugs).
pub fn order(checkpoints: &mut Vec<Checkpoint>) {
    let mut by_time: Vec<usize> = (0..checkpoints.len()).collect();
    by_time.sort_by(|&a, &b| {
        let (a, b) = (&checkpoints[a], &checkpoints[b]);
        a.mtime.total_cmp(&b.mtime).then_with(|| a.name.cmp(&b.name))
    });
    let slots: Vec<usize> = (0..by_time.len())
        .filter(|&k| checkpoints[by_time[k]].info.step.is_some())
        .collect();
    let mut stepped: Vec<usize> = slots.iter().map(|&k| by_time[k]).collect();
    stepped.sort_by(|&a, &b| {
        let (a, b) = (&checkpoints[a], &checkpoints[b]);
        a.info
            .step
            .cmp(&b.info.step)
            .then_with(|| a.mtime.total_cmp(&b.mtime))
            .then_with(|| a.name.cmp(&b.name))
    });
    for (slot, index) in slots.into_iter().zip(stepped) {
        by_time[slot] = index;
    }
    let mut taken: Vec<Option<Checkpoint>> = std::mem::take(checkpoints).into_iter().map(Some).collect();
    checkpoints.extend(by_time.into_iter().filter_map(|i| taken[i].take()));
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

/// Decides every checkpoint of `scan` under `policy` at time `now` (seconds since the epoch).
/// `verify` checks a checkpoint's contents; it is called only for checkpoints whose completeness
/// matters to a decision (candidates to keep), newest first.
pub fn plan(scan: Scan, policy: &Policy, now: f64, mut verify: impl FnMut(&mut Checkpoint)) -> Plan {
    let Scan {
        dir,
        dev,
        ino,
        mut checkpoints,
        links,
    } = scan;
    order(&mut checkpoints);
    let n = checkpoints.len();
    let mut keeps: Vec<Vec<(Keeper, String)>> = vec![Vec::new(); n];

    // Complete candidates, newest first, verified on demand.
    let mut verified = vec![false; n];
    let mut complete = |i: usize, cps: &mut Vec<Checkpoint>| {
        if !verified[i] {
            verify(&mut cps[i]);
            verified[i] = true;
        }
        cps[i].is_complete()
    };

    // Protected by name or by a symlink pointing at it.
    let mut protected: HashMap<OsString, String> = HashMap::new();
    for rule in &policy.rules {
        if let Rule::Protect(names) = rule {
            for name in names {
                protected.insert(name.clone(), "protected".to_owned());
            }
        }
    }
    for link in &links {
        if let Some(target) = &link.target_inside {
            protected
                .entry(target.clone())
                .or_insert_with(|| format!("target of symlink {}", link.name.to_string_lossy()));
        }
    }
    for (i, c) in checkpoints.iter().enumerate() {
        if let Some(why) = protected.get(&c.name) {
            keeps[i].push((Keeper::Invariant, why.clone()));
        }
    }

    let newest_complete = (0..n).rev().find(|&i| complete(i, &mut checkpoints));
    if let Some(i) = newest_complete {
        keeps[i].push((Keeper::Invariant, "newest complete checkpoint".to_owned()));
    }

    for rule in &policy.rules {
        match rule {
            Rule::Last(count) => {
                let mut taken = 0;
                for i in (0..n).rev() {
                    if taken == *count {
                        break;
                    }
                    if complete(i, &mut checkpoints) {
                        taken += 1;
                        keeps[i].push((Keeper::Last, format!("among the last {count}")));
                    }
                }
            }
            Rule::Best {
                k,
                metric,
                mode,
                values,
            } => {
                let overrides: HashMap<&OsString, f64> = values.iter().map(|(name, v)| (name, *v)).collect();
                let mut ranked: Vec<(usize, f64)> = (0..n)
                    .filter_map(|i| {
                        let c = &checkpoints[i];
                        let named = c.info.metrics.iter().find(|(m, _)| m == metric).map(|(_, v)| *v);
                        overrides
                            .get(&c.name)
                            .copied()
                            .or(named)
                            .filter(|v| v.is_finite())
                            .map(|v| (i, v))
                    })
                    .collect();
                // Best first; among equal values the newer one.
                ranked.sort_by(|a, b| {
                    let by_value = match mode {
                        Mode::Min => a.1.total_cmp(&b.1),
                        Mode::Max => b.1.total_cmp(&a.1),
                    };
                    by_value.then_with(|| b.0.cmp(&a.0))
                });
                let mut taken = 0;
                for (i, value) in ranked {
                    if taken == *k {
                        break;
                    }
                    if complete(i, &mut checkpoints) {
                        taken += 1;
                        keeps[i].push((Keeper::Best, format!("best {k} by {metric} ({value})")));
                    }
                }
            }
            Rule::Every(interval) => {
                for i in 0..n {
                    let milestone = checkpoints[i].info.step.is_some_and(|s| s % interval == 0);
                    if milestone && complete(i, &mut checkpoints) {
                        keeps[i].push((Keeper::Every, format!("milestone (every {interval} steps)")));
                    }
                }
            }
            Rule::Within(seconds) => {
                for i in 0..n {
                    if checkpoints[i].mtime >= now - seconds && complete(i, &mut checkpoints) {
                        keeps[i].push((
                            Keeper::Within,
                            format!("saved within {}", pretty_seconds(*seconds)),
                        ));
                    }
                }
            }
            Rule::Protect(_) => {}
        }
    }

    // A checkpoint modified in the last minutes and about to be deleted may be a save still being
    // written under its final name (Hugging Face, Accelerate): check its contents first, so a
    // partial one is skipped.
    for i in 0..n {
        if keeps[i].is_empty() && checkpoints[i].mtime >= now - IN_PROGRESS_WINDOW.min(policy.min_partial_age)
        {
            complete(i, &mut checkpoints);
        }
    }
    let newest_complete_mtime = newest_complete.map(|i| checkpoints[i].mtime);
    let items = checkpoints
        .into_iter()
        .zip(keeps)
        .enumerate()
        .map(|(i, (checkpoint, kept))| {
            let keeper = kept.iter().map(|(k, _)| *k).max();
            let mut reasons: Vec<String> = kept.into_iter().map(|(_, why)| why).collect();
            let action = if keeper.is_some() {
                Action::Keep
            } else if let Some(why) = &checkpoint.incomplete {
                let abandoned = newest_complete.is_some_and(|newest| i < newest)
                    && newest_complete_mtime.is_some_and(|t| checkpoint.mtime < t)
                    && checkpoint.mtime < now - policy.min_partial_age;
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
        })
        .collect();
    Plan {
        dir,
        dev,
        ino,
        items,
        links,
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
    use crate::checkpoints::Format;
    use crate::names::parse_name;

    fn ckpt(name: &str, mtime: f64, complete: bool) -> Checkpoint {
        let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
        Checkpoint {
            name: name.into(),
            format: Format::File,
            info: parse_name(stem),
            mtime,
            size: 100,
            apparent_size: 100,
            dev: 1,
            ino: mtime as u64,
            ctime: (0, 0),
            nlink: 1,
            incomplete: (!complete).then(|| "truncated".to_owned()),
            verified: false,
        }
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
        let policy = Policy::new(vec![Rule::Last(2)], 0.0).expect("valid");
        let p = plan(scan(cps), &policy, 100.0, |_| {});
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
        let policy = Policy::new(vec![Rule::Last(1)], 0.0).expect("valid");
        let p = plan(scan(cps), &policy, 100.0, |_| {});
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
        let policy = Policy::new(vec![Rule::Last(5)], 3600.0).expect("valid");
        let young = plan(scan(cps.clone()), &policy, 100.0, |_| {});
        assert_eq!(young.items[0].action, Action::Skip);
        let old = plan(scan(cps), &policy, 10_000.0, |_| {});
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
        let best = |mode, values: Vec<(OsString, f64)>| {
            let policy = Policy::new(
                vec![Rule::Best {
                    k: 1,
                    metric: "val_loss".into(),
                    mode,
                    values,
                }],
                0.0,
            )
            .expect("valid");
            decisions(&plan(scan(cps.clone()), &policy, 10.0, |_| {}))
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
        let policy = Policy::new(
            vec![
                Rule::Every(1000),
                Rule::Within(1.5),
                Rule::Protect(vec!["step=500.ckpt".into()]),
            ],
            0.0,
        )
        .expect("valid");
        let p = plan(scan(cps), &policy, 6.0, |_| {});
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
        let p = plan(
            s,
            &Policy::new(vec![Rule::Last(1)], 0.0).expect("valid"),
            10.0,
            |_| {},
        );
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
        let policy = Policy::new(
            vec![
                Rule::Last(2),
                Rule::Best {
                    k: 1,
                    metric: "acc".into(),
                    mode: Mode::Min,
                    values: vec![],
                },
            ],
            0.0,
        )
        .expect("valid");
        let p = plan(scan(cps), &policy, 10.0, |_| {});
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
        assert!(Policy::new(vec![Rule::Last(0)], 0.0).is_err());
        assert!(Policy::new(vec![Rule::Every(0)], 0.0).is_err());
        assert!(Policy::new(vec![Rule::Within(f64::NAN)], 0.0).is_err());
        assert!(Policy::new(
            vec![Rule::Best {
                k: 1,
                metric: String::new(),
                mode: Mode::Min,
                values: vec![]
            }],
            0.0
        )
        .is_err());
        assert!(Policy::new(vec![], -1.0).is_err());
    }
}
