//! The guard's entry points around saves: a due check, before and after a save, a rescan.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::paths::{inside, lexical_absolute};
use super::{held_bytes, Guard, OnFull};
use crate::check::Level;
use crate::error::{Error, Result};
use crate::size::format_size;

impl Guard {
    /// A due check: measure, grade, climb the ladder for room for the next save and a final one.
    pub fn check(&mut self, t: f64) {
        if self.config.budget.is_some() {
            self.settle_held(); // once: a budget is never graded on a figure not yet measured
        }
        self.checks += 1;
        let deletions = self.retention_deletions + self.forced_deletions;
        self.see_dir();
        self.measure(t);
        if self.pending.retention {
            self.apply_retention(t);
        }
        let target = self.reserve().saturating_mul(2);
        self.update_level(target);
        if self.level == Level::Critical {
            self.make_room(target, t);
            self.stop_if_short(target);
            self.update_level(target);
        }
        // Figures credited with what this check deleted are not measured ones: the next step
        // measures (a deleted file still open frees nothing).
        let deleted = self.retention_deletions + self.forced_deletions > deletions;
        self.fresh_until = if deleted { t } else { t + self.fresh_for(target) };
    }

    /// A check made at a training step (`DiskGuard.step()`): [`Guard::check`], unless the figures
    /// of the last check still answer for every threshold (see [`Guard::fresh_for`]). A check at
    /// every step of a fast loop then costs no `statfs` on most steps, and a fill that could reach
    /// a threshold is still measured at the step it could reach it.
    pub fn check_step(&mut self, t: f64) {
        if self.is_fresh(t) {
            self.checks += 1; // a check made, on figures that still decide
        } else {
            self.check(t);
        }
    }

    /// Whether [`Guard::check_step`] at monotonic time `t` grades the last figures again, without
    /// measuring (and so without a system call).
    pub fn is_fresh(&self, t: f64) -> bool {
        t < self.fresh_until
    }

    /// Before writing `nbytes` to `path` (inside the directory): makes room for it, its staging
    /// (the file it replaces stays until the rename) and a margin, plus a final save unless the
    /// run is already stopping. Refuses with [`Error::InsufficientSpace`] when it cannot fit;
    /// when it fits but leaves no room for a final save, it is allowed and the run stops.
    pub fn before_save(&mut self, path: &Path, nbytes: u64, t: f64) -> Result<()> {
        self.check_inside(path)?;
        self.fresh_until = 0.0; // this save's bytes: the next step measures after them
        if self.config.budget.is_some() {
            self.settle_held();
        }
        self.checks += 1;
        self.largest = self.largest.max(nbytes);
        let replaced = std::fs::symlink_metadata(path)
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map_or(0, |m| m.blocks().saturating_mul(512));
        let need = Self::with_margin(nbytes).saturating_add(replaced);
        self.replacing = Some((lexical_absolute(path), replaced));
        self.see_dir();
        let target = if self.should_stop() {
            need
        } else {
            need.saturating_add(self.reserve())
        };
        self.measure(t);
        self.update_level(target);
        self.make_room(target, t);
        let mut room = self.dir_room();
        if room.is_some_and(|r| r < need) && self.emergency.is_some() {
            // The reserve exists for exactly this save: release it (the run stops) before refusing.
            self.stop(format!(
                "no room for the next checkpoint ({}) without the emergency reserve",
                format_size(need)
            ));
            room = self.dir_room();
        }
        if let Some(room) = room.filter(|r| *r < need) {
            let tried = self.tried();
            let message = format!(
                "not saving {}: it needs {} ({} checkpoint{} + margin) but only {} can be written there; {tried}",
                path.display(),
                format_size(need),
                format_size(nbytes),
                if replaced > 0 { format!(" + {} of the file it replaces", format_size(replaced)) } else { String::new() },
                format_size(room),
            );
            self.stop(format!("no room for the next checkpoint ({})", format_size(need)));
            return Err(Error::InsufficientSpace {
                message,
                needed: need,
                available: room,
            });
        }
        if self.dir_short(target, false) {
            self.stop(format!(
                "this save fits, but leaves no room for another: {}",
                self.short_reason(target)
            ));
        }
        self.update_level(target);
        Ok(())
    }

    /// What the ladder did, for a refusal's message.
    pub(super) fn tried(&self) -> String {
        let deleted = self
            .events
            .iter()
            .filter(|e| e.kind == "deleted" || e.kind == "retention")
            .count();
        let how = match (self.config.policy.is_some(), self.config.on_full) {
            (true, OnFull::Prune) => "applied retention, then deleted kept checkpoints least valuable first",
            (false, OnFull::Prune) => "deleted older checkpoints, oldest first",
            (true, OnFull::Stop) => "applied retention (on_full='stop' keeps what the rules keep)",
            (false, OnFull::Stop) => "deleted nothing (no retention policy, on_full='stop')",
        };
        format!(
            "tried: {how} ({deleted} deleted); the newest complete, best and protected checkpoints are kept"
        )
    }

    /// After `nbytes` were written to `path`: tags the write, accounts for it, applies retention
    /// (save, then prune), and re-checks.
    pub fn after_save(&mut self, path: &Path, nbytes: u64, t: f64) -> Result<()> {
        self.check_inside(path)?;
        // What is on disk, when it can be measured, rather than what the caller says: a wrong
        // figure would inflate what the run holds and the reserve, and force needless deletions.
        let on_disk = held_bytes(path);
        let nbytes = if on_disk > 0 { on_disk } else { nbytes };
        self.saves += 1;
        self.largest = self.largest.max(nbytes);
        // A save over an existing file replaced it: the run holds the difference, not both.
        let replaced = match self.replacing.take() {
            Some((target, bytes)) if target == lexical_absolute(path) => bytes,
            _ => 0,
        };
        self.held = self.held.saturating_add(nbytes).saturating_sub(replaced);
        self.touch(path, Some(on_disk).filter(|b| *b > 0));
        let _ = self.trend.record_write(t, nbytes);
        self.see_dir();
        if let Some(id) = self.entry_identity(path) {
            self.run.own.insert(id);
            self.run.newest_own = Some(id);
        }
        let measurable = self.deletes() && self.dir_responsive();
        if measurable {
            // Named before retention may delete them: they rank below this save whatever their step.
            if let Ok(plan) = self.plan(None) {
                self.tell_foreign(&plan);
            }
        }
        self.apply_retention(t);
        if measurable {
            if let Ok(plan) = self.plan(None) {
                self.tell_recovered(&plan);
            }
        }
        self.check(t);
        Ok(())
    }

    pub(super) fn check_inside(&self, path: &Path) -> Result<()> {
        crate::usage::validate_path("path", path)?;
        if inside(&self.dir, path) {
            Ok(())
        } else {
            Err(Error::invalid(
                "path",
                crate::error::show_path(path),
                format!(
                    "expected a path inside the guard's directory {} (the guard makes room and accounts only there)",
                    self.dir.display()
                ),
            ))
        }
    }
}
