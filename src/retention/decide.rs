//! Deciding each checkpoint: the invariant, then every rule, each keep with its reason.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::Path;

use super::{pretty_seconds, Action, Item, KeepBest, Keeper, Mode, Plan, Policy, Rule, IN_PROGRESS_WINDOW};
use crate::checkpoints::{Checkpoint, Link, Scan};
use crate::error::{show_path, Error, Result};
use crate::ordering::{OrderChoice, RunView};

/// Decides every checkpoint of `scan`, already ordered oldest to newest.
pub(super) fn decide_all(
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
pub(super) fn check_metrics_present(dir: &Path, policy: &Policy, checkpoints: &[Checkpoint]) -> Result<()> {
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
pub(super) fn protected_names(
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
pub(super) struct Decisions<V> {
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
pub(super) fn rank_by_metric(checkpoints: &[Checkpoint], rule: &KeepBest) -> Vec<(usize, f64)> {
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
pub(super) fn decide(checkpoint: Checkpoint, kept: Vec<(Keeper, String)>, abandoned: bool) -> Item {
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
