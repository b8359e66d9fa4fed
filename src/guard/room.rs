//! Making room: retention, then (with `on_full='prune'`) kept checkpoints least valuable first; the stop.

use std::path::PathBuf;

use super::{Event, Guard, OnFull};
use crate::check::Level;
use crate::checkpoints::{Checkpoint, DirLink};
use crate::deletion::{reachable_bytes, LockWait, LockedDir, Outcome};
use crate::error::{Error, Result};
use crate::retention::{self, free_space_order, Action, Keeper, Plan, Policy, Protect, Rule};
use crate::size::format_size;

impl Guard {
    /// Scans and plans the directory under `policy` (`None`: the invariant only).
    pub(super) fn plan(&self, policy: Option<&Policy>) -> Result<Plan> {
        let mut policy = policy.cloned().unwrap_or_default();
        if !self.referenced.is_empty() {
            let names = self.referenced.iter().map(PathBuf::from).collect();
            policy.rules.push(Rule::Protect(Protect::new(names)?));
        }
        retention::plan_dir_ordered(
            &self.dir,
            &policy,
            retention::now(),
            retention::Ordering::Run(&self.run),
        )
    }

    /// Deletes one checkpoint under the lock (its identity re-checked), accounts for it and reports it;
    /// returns the bytes freed.
    pub(super) fn delete_one(
        &mut self,
        locked: &LockedDir,
        c: &Checkpoint,
        t: f64,
        why: &str,
        forced: bool,
    ) -> u64 {
        match locked.delete(&c.name, c.dev, c.ino, c.ctime) {
            Outcome::Deleted => {
                // Its inode may be reused by the next file created (ext4 does at once): that file
                // is not this run's.
                self.run.own.remove(&(c.dev, c.ino));
                let freed = if c.nlink > 1 { 0 } else { c.size };
                self.held = self.held.saturating_sub(freed);
                let _ = self.trend.record_free(t, freed);
                let (kind, count) = if forced {
                    ("deleted", &mut self.forced_deletions)
                } else {
                    ("retention", &mut self.retention_deletions)
                };
                *count += 1;
                // One warning says the run degraded (tell_degraded); each deletion is a log record.
                self.events.push(Event::new(
                    kind,
                    false,
                    format!(
                        "deleted {} ({}): {why}",
                        self.dir.join(&c.name).display(),
                        format_size(c.size)
                    ),
                ));
                freed
            }
            Outcome::Skipped(reason) => {
                self.events.push(Event::new(
                    "retention",
                    false,
                    format!("left {} alone: {reason}", self.dir.join(&c.name).display()),
                ));
                0
            }
            Outcome::Failed(reason) => {
                self.events.push(Event::new(
                    "error",
                    true,
                    format!("could not delete {}: {reason}", self.dir.join(&c.name).display()),
                ));
                0
            }
        }
    }

    pub(super) fn lock(&mut self, plan: &Plan) -> Option<LockedDir> {
        match LockedDir::open(
            &plan.dir,
            Some((plan.dev, plan.ino)),
            LockWait::FailIfBusy,
            DirLink::Refuse,
        ) {
            Ok(locked) => {
                self.told.busy = false;
                Some(locked)
            }
            Err(err @ Error::Busy { .. }) => {
                // Another process prunes there now: retention waits for the next check.
                self.pending.retention = true;
                if !self.told.busy {
                    self.told.busy = true;
                    self.events.push(Event::new(
                        "busy",
                        true,
                        format!(
                            "retention in {} waits: {err}; retried at the next check",
                            self.dir.display()
                        ),
                    ));
                }
                None
            }
            Err(err) => {
                self.events.push(Event::new(
                    "error",
                    true,
                    format!("cannot delete in {}: {err}", self.dir.display()),
                ));
                None
            }
        }
    }

    /// Applies the retention policy (what the rules do not keep goes), if there is one.
    pub(super) fn apply_retention(&mut self, t: f64) {
        let Some(policy) = self.config.policy.clone() else {
            return;
        };
        if !self.deletes() || !self.dir_responsive() || !self.dir.is_dir() {
            return;
        }
        self.refresh_shared();
        let plan = match self.plan(Some(&policy)) {
            Ok(plan) => plan,
            Err(err) => {
                return self
                    .events
                    .push(Event::new("error", true, format!("retention: {err}")))
            }
        };
        // A save of this run deleted by someone else (a framework's own rotation, a user) frees
        // an inode the next file may take: it is forgotten as soon as it is seen gone.
        self.run.own.retain(|id| {
            plan.items
                .iter()
                .any(|i| (i.checkpoint.dev, i.checkpoint.ino) == *id)
        });
        let own = &self.run.own;
        self.run.adopted.retain(|id| own.contains(id));
        if !plan.items.iter().any(|i| i.action == Action::Delete) {
            self.pending.retention = false;
            return;
        }
        let Some(locked) = self.lock(&plan) else { return };
        self.pending.retention = false;
        for item in plan.items.iter().filter(|i| i.action == Action::Delete) {
            let why = format!("retention: {}", item.reasons.join("; "));
            self.delete_one(&locked, &item.checkpoint, t, &why, false);
        }
        drop(locked);
        self.remeasure_dir();
    }

    /// Checkpoints that may be deleted to make room, least valuable first: what the plan deletes,
    /// then what rules keep for recency, as the last N or as milestones. Never the newest complete
    /// or a protected one (the invariant), never one kept as a best, never a partial save that may
    /// be in progress, never a hard-linked one (deleting it frees nothing).
    pub(super) fn forced_order(plan: &Plan) -> Vec<usize> {
        free_space_order(plan)
            .into_iter()
            .filter(|&i| {
                let item = &plan.items[i];
                item.keeper.is_none_or(|k| k < Keeper::Best) && item.checkpoint.nlink <= 1
            })
            .collect()
    }

    /// Deletes kept checkpoints, least valuable first, until the directory's spaces have
    /// `target` bytes of room.
    pub(super) fn force_room(&mut self, target: u64, t: f64) {
        // A directory on a mount that does not answer is not touched: even its lstat could hang.
        if self.config.on_full != OnFull::Prune
            || !self.deletes()
            || !self.dir_responsive()
            || !self.dir.is_dir()
        {
            return;
        }
        self.refresh_shared();
        let policy = self.config.policy.clone();
        let plan = match self.plan(policy.as_ref()) {
            Ok(plan) => plan,
            Err(err) => {
                return self
                    .events
                    .push(Event::new("error", true, format!("making room: {err}")))
            }
        };
        let order = Self::forced_order(&plan);
        if order.is_empty() {
            return;
        }
        // Deletions to meet a budget rest on what the run holds now: the background rescan's
        // result is dropped whenever a save or deletion came after it started, so while every save
        // makes room it would never land, and files gone meanwhile (a rotated log) would still be
        // counted, deleting kept checkpoints for room that is already there.
        // (Measured only when something would be deleted: a walk of the directory.)
        if self.config.budget.is_some() {
            self.rescan(t);
            if !self.dir_short(target, false) {
                return;
            }
        }
        // Deleting for nothing is not done: when even every candidate gone would leave the space
        // short, nothing goes, and the run goes straight to its stop.
        let reachable = reachable_bytes(&plan, &order);
        if self.dir_short_after(target, reachable) {
            let short = self.short_reason(target);
            self.events.push(Event::new(
                "unreachable",
                false,
                format!(
                    "making room in {}: deleting every checkpoint that may go would free only {}, \
                     and the space would still be short ({short}): deleting nothing",
                    self.dir.display(),
                    format_size(reachable)
                ),
            ));
            return;
        }
        let Some(locked) = self.lock(&plan) else { return };
        let short = self.short_reason(target);
        let before = self.dir_usage().map(|u| (u.used, u.avail));
        let mut freed = 0u64;
        let mut deleted = Vec::new();
        for i in order {
            // Only back to the threshold, not past its hysteresis margin: the level stays where it
            // is while the run works at its limit, so neither warnings nor deletions flap.
            if !self.dir_short(target, false) {
                break;
            }
            let item = &plan.items[i];
            let why = match item.keeper {
                Some(_) => format!(
                    "to make room ({short}), although kept as {}",
                    item.reasons.join("; ")
                ),
                None => format!("to make room ({short}); {}", item.reasons.join("; ")),
            };
            let before_count = self.forced_deletions;
            freed = freed.saturating_add(self.delete_one(&locked, &item.checkpoint, t, &why, true));
            if self.forced_deletions > before_count {
                deleted.push(i);
            }
            self.remeasure_dir();
            self.credit_dir(before, freed);
        }
        if !deleted.is_empty() {
            self.pending.forced_since_save = true;
            self.tell_degraded(&plan, &deleted);
        }
    }

    /// Says once that retention no longer keeps what its rules ask: how many checkpoints the
    /// space still holds, and how to choose a stop instead. Each deletion is in the log.
    pub(super) fn tell_degraded(&mut self, plan: &Plan, deleted: &[usize]) {
        if self.degraded {
            return;
        }
        self.degraded = true;
        let kept = plan
            .items
            .iter()
            .enumerate()
            .filter(|(i, item)| {
                item.action == Action::Keep && item.checkpoint.is_complete() && !deleted.contains(i)
            })
            .count();
        let rules = if deleted.iter().any(|&d| plan.items[d].keeper.is_some()) {
            "retention can no longer keep what its rules ask"
        } else {
            "making room deletes older checkpoints"
        };
        self.events.push(Event::new(
            "degraded",
            true,
            format!(
                "{rules} in {}: the space holds only {kept} complete checkpoint{} beside the next \
                 save, so kept checkpoints are deleted to make room from now on, oldest and least \
                 valuable first (each one is logged); to stop the run instead, pass on_full='stop'",
                self.dir.display(),
                if kept == 1 { "" } else { "s" },
            ),
        ));
    }

    /// After a save: retention holds its rules again (no deletion was needed to make room for
    /// this save, and the rules keep as many as they ask): said once.
    pub(super) fn tell_recovered(&mut self, plan: &Plan) {
        let forced = std::mem::take(&mut self.pending.forced_since_save);
        if !self.degraded || forced || self.should_stop() {
            return;
        }
        let asked = self.config.policy.as_ref().map_or(0, |p| {
            p.rules
                .iter()
                .filter_map(|r| {
                    if let Rule::Last(last) = r {
                        Some(last.n)
                    } else {
                        None
                    }
                })
                .max()
                .unwrap_or(0)
        });
        let complete = plan.items.iter().filter(|i| i.checkpoint.is_complete()).count();
        if complete < asked {
            return;
        }
        self.degraded = false;
        self.events.push(Event::new(
            "recovered",
            true,
            format!(
                "retention in {} keeps what its rules ask again ({complete} complete checkpoint{})",
                self.dir.display(),
                if complete == 1 { "" } else { "s" }
            ),
        ));
    }

    pub(super) fn short_reason(&self, target: u64) -> String {
        self.grade(target, false)
            .into_iter()
            .filter(|s| s.level == Level::Critical)
            .filter_map(|s| s.reason.map(|r| format!("{}: {r}", s.name)))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The ladder for `target` bytes of room: retention, then (with `on_full='prune'`) kept
    /// checkpoints, least valuable first.
    pub(super) fn make_room(&mut self, target: u64, t: f64) {
        if self.dir_short(target, false) {
            self.apply_retention(t);
        }
        if self.dir_short(target, false) {
            self.force_room(target, t);
        }
    }

    /// Sets the stop (once) and releases the emergency reserve for the final checkpoint.
    pub(super) fn stop(&mut self, reason: String) {
        if self.stop_reason.is_some() {
            return;
        }
        self.events
            .push(Event::new("stop", true, format!("stopping the run: {reason}")));
        self.stop_reason = Some(reason);
        if let Some(reserve) = self.emergency.take() {
            if let Some(bytes) = reserve.release() {
                self.held = self.held.saturating_sub(bytes);
                self.events.push(Event::new(
                    "reserve",
                    true,
                    format!(
                        "released the emergency reserve ({}) for the final checkpoint",
                        format_size(bytes)
                    ),
                ));
                self.remeasure_dir();
            }
        }
    }

    /// Stops if any space is still critical after the ladder.
    pub(super) fn stop_if_short(&mut self, target: u64) {
        let critical = self.short_reason(target);
        if !critical.is_empty() {
            let tried = match (self.config.policy.is_some(), self.config.on_full) {
                (_, OnFull::Prune) => "retention applied and every deletable checkpoint deleted",
                (true, OnFull::Stop) => "retention applied; on_full='stop' keeps what the rules keep",
                (false, OnFull::Stop) => "no retention policy; on_full='stop' deletes nothing",
            };
            self.stop(format!("{critical} ({tried})"));
        }
    }
}
