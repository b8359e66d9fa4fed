//! What the guard tells: events, status, metrics, the diagnosis of a failed write, the forecast.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::measuring::usage_of;
use super::paths::lexical_absolute;
use super::{held_bytes, Guard};
use crate::check::Level;
use crate::checkpoints::Checkpoint;
use crate::error::{Error, Result};
use crate::probe::{Probe, Prober};
use crate::retention::Rule;
use crate::size::format_size;
use crate::trend::{RunForecast, RunPlan};

/// Something the guard did or noticed, for the Python surface to warn about and log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `level`, `retention`, `deleted`, `unresponsive`, `responsive`, `stop`, `reserve`, `error`.
    pub kind: &'static str,
    /// One sentence for a person.
    pub message: String,
    /// True when users must see it (a `DiskSpaceWarning`), false for a log record only.
    pub warning: bool,
}

impl Event {
    pub(super) fn new(kind: &'static str, warning: bool, message: String) -> Self {
        Event {
            kind,
            message,
            warning,
        }
    }
}

/// A space as graded: a filesystem or the budget.
#[derive(Debug, Clone, PartialEq)]
pub struct SpaceStatus {
    /// `checkpoint directory /x`, `temp directory /tmp`, `budget`...
    pub name: String,
    /// Bytes in the space (filesystem size for non-root users, or the budget).
    pub total: u64,
    /// Bytes used (by the run, for the budget).
    pub used: u64,
    /// Bytes available to non-root users (budget minus what the run holds, for the budget).
    pub avail: u64,
    /// Bytes that can be written before a threshold (`critical`, `min_free`, budget) is reached.
    pub room: u64,
    /// False when its `statfs` did not answer in time (then the figures are the last known).
    pub responsive: bool,
    /// The level this space alone is at.
    pub level: Level,
    /// Why, when not ok.
    pub reason: Option<String>,
    /// Deleting checkpoints frees room here.
    pub holds_dir: bool,
}

/// The checkpoint directory's filesystem for a training logger ([`Guard::metrics`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    /// Bytes available (`df` Avail).
    pub free: u64,
    /// Percent used (`df`'s convention, unrounded).
    pub used_percent: f64,
    /// Seconds until full at the measured rate, once the trend monitor has an answer.
    pub seconds_to_full: Option<f64>,
}

/// Everything [`Guard::status`] reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// The current level.
    pub level: Level,
    /// Why the run should stop, once it should.
    pub stop_reason: Option<String>,
    /// Every space, graded.
    pub spaces: Vec<SpaceStatus>,
    /// Bytes the run holds under its directory.
    pub held: u64,
    /// The budget, if any.
    pub budget: Option<u64>,
    /// Room one save needs now.
    pub reserve: u64,
    /// The largest checkpoint seen or estimated.
    pub largest: u64,
    /// Saves recorded.
    pub saves: u64,
    /// Checkpoints deleted by retention.
    pub retention_deletions: u64,
    /// Checkpoints retention keeps that were deleted to make room.
    pub forced_deletions: u64,
    /// Checks made.
    pub checks: u64,
    /// The emergency reserve file and its size, while it exists.
    pub emergency_reserve: Option<(PathBuf, u64)>,
}

impl Status {
    /// A readable report, one line per space.
    pub fn report(&self) -> String {
        let worst = self.spaces.iter().map(|s| s.level).max().unwrap_or(Level::Ok);
        let held = if worst < self.level {
            format!(
                " (spaces are back at {}: it drops once they clear the hysteresis margin)",
                worst.name()
            )
        } else {
            String::new()
        };
        let mut lines = vec![format!(
            "DiskGuard {}: {}{held}{}",
            self.dir.display(),
            self.level.name(),
            self.stop_reason
                .as_ref()
                .map_or_else(String::new, |why| format!(", stop: {why}"))
        )];
        for s in &self.spaces {
            lines.push(format!(
                "  {}: {} of {} used, {} available, room {}{}{}",
                s.name,
                format_size(s.used),
                format_size(s.total),
                format_size(s.avail),
                format_size(s.room),
                if s.responsive {
                    ""
                } else {
                    " [NOT RESPONDING: last known figures]"
                },
                s.reason
                    .as_ref()
                    .map_or_else(String::new, |r| format!(" ({}: {r})", s.level.name())),
            ));
        }
        lines.push(format!(
            "  run holds {}{}; next save needs {} (largest checkpoint {})",
            format_size(self.held),
            self.budget
                .map_or_else(String::new, |b| format!(" of a {} budget", format_size(b))),
            format_size(self.reserve),
            format_size(self.largest)
        ));
        lines.push(format!(
            "  {} saves, {} checks; deleted {} by retention, {} to make room",
            self.saves, self.checks, self.retention_deletions, self.forced_deletions
        ));
        if let Some((path, bytes)) = &self.emergency_reserve {
            lines.push(format!(
                "  emergency reserve {} ({})",
                path.display(),
                format_size(*bytes)
            ));
        }
        lines.join("\n")
    }
}

/// The warning for a filesystem whose `statfs` did not answer within `limit`.
pub(super) fn unresponsive(name: &str, limit: Duration) -> Event {
    Event::new(
        "unresponsive",
        true,
        format!(
            "{name}: statfs did not answer within {:.1} s (a hung mount?); not waiting for it, \
             last known figures are used until it answers",
            limit.as_secs_f64()
        ),
    )
}

impl Guard {
    /// What happened since the last call, oldest first (the Python surface warns and logs).
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Every space graded, then those never measured (a hung mount from the start, or an error),
    /// so a status report names every watched filesystem.
    pub(super) fn graded_and_unknown(&self) -> Vec<SpaceStatus> {
        let mut spaces = self.grade(self.reserve().saturating_mul(2), false);
        spaces.extend(
            self.spaces
                .iter()
                .filter(|s| s.owned && s.usage.is_none())
                .map(|s| SpaceStatus {
                    name: s.roles.join(", "),
                    total: 0,
                    used: 0,
                    avail: 0,
                    room: 0,
                    responsive: s.responsive,
                    level: Level::Ok,
                    reason: Some(
                        s.error
                            .clone()
                            .unwrap_or_else(|| "not measured yet: statfs has not answered".to_owned()),
                    ),
                    holds_dir: s.holds_dir,
                }),
        );
        spaces
    }

    /// Everything about the guard now (no new measurement).
    pub fn status(&self) -> Status {
        Status {
            dir: self.dir.clone(),
            level: self.level,
            stop_reason: self.stop_reason.clone(),
            spaces: self.graded_and_unknown(),
            held: self.held,
            budget: self.config.budget,
            reserve: self.reserve(),
            largest: self.largest,
            saves: self.saves,
            retention_deletions: self.retention_deletions,
            forced_deletions: self.forced_deletions,
            checks: self.checks,
            emergency_reserve: self.emergency.as_ref().map(|e| (e.path.clone(), e.bytes)),
        }
    }

    /// The checkpoint directory's filesystem as of the last check, for a training logger; `None`
    /// in a process that does not measure it.
    pub fn metrics(&self) -> Option<Metrics> {
        let u = self.dir_usage()?;
        Some(Metrics {
            free: u.avail,
            used_percent: crate::usage::percent(u.used, u.avail),
            seconds_to_full: self.trend.estimate().and_then(|e| e.time_to_full),
        })
    }

    /// What to tell a user whose run failed with `errno` (`ENOSPC` or `EDQUOT`) writing `path`:
    /// which filesystem, what the run holds there, what to change. Measures afresh; never fails.
    pub fn diagnose(&self, errno: i32, path: Option<&Path>) -> String {
        let (what, quota) = if errno == nix::errno::Errno::EDQUOT as i32 {
            ("disk quota exceeded (EDQUOT)", true)
        } else {
            ("no space left on device (ENOSPC)", false)
        };
        let mut lines = vec![match path {
            Some(p) => format!("{what} writing {}", p.display()),
            None => what.to_owned(),
        }];
        let target = path.unwrap_or(&self.dir);
        // Through a prober with the guard's time limit: a hung mount must not hang the report
        // (it is asked from an exception hook, on the way out of a failed run).
        let measured = match Prober::new(target).measure(self.limit()) {
            Probe::Ready(m) => Ok(m),
            Probe::Failed(err) => Err(format!("cannot be measured now ({err})")),
            Probe::Unresponsive => Err(format!(
                "statfs did not answer within {:.1} s (a hung mount?)",
                self.limit().as_secs_f64()
            )),
        };
        let device = measured.as_ref().ok().map(|m| m.device);
        let roles: Vec<&str> = self
            .spaces
            .iter()
            .filter(|s| device.is_some() && s.device == device)
            .flat_map(|s| s.roles.iter().map(String::as_str))
            .collect();
        match &measured {
            Ok(m) => {
                let u = usage_of(target, m);
                let mounts = crate::mounts::read_mounts(Path::new("/proc"), None).unwrap_or_default();
                let mount = crate::mounts::find_mount(&mounts, &lexical_absolute(&m.queried), m.device);
                let at = mount.map_or_else(String::new, |m| {
                    format!(" mounted at {}", m.mount_point.display())
                });
                lines.push(format!(
                    "filesystem: {}{at}, {} of {} used, {} available ({})",
                    u.fs_type(mount),
                    format_size(u.used),
                    format_size(u.total),
                    format_size(u.avail),
                    if roles.is_empty() {
                        "not watched by this guard".to_owned()
                    } else {
                        roles.join(", ")
                    },
                ));
                if let Some(inodes) = u.inodes.filter(|i| i.free == 0) {
                    lines.push(format!(
                        "no free inodes: all {} are used, so no file can be created whatever the free \
                         bytes (many small files: logs, dataset shards, sharded checkpoint folders)",
                        inodes.total
                    ));
                }
            }
            Err(why) => lines.push(format!("filesystem of {}: {why}", target.display())),
        }
        if self.deletes() && self.dir_responsive() {
            lines.push(self.holdings());
        }
        let on_dir = roles.iter().any(|r| r.starts_with("checkpoint directory"));
        let on_temp = roles.iter().any(|r| r.starts_with("temp directory"));
        if on_temp && !on_dir {
            lines.push(
                "change: this is the temp directory's filesystem, where frameworks stage whole \
                 checkpoints (Lightning's fsspec writes each one there, then copies it): point \
                 TMPDIR at a larger filesystem, or save through diskguard (its callbacks write \
                 next to the destination and rename)"
                    .to_owned(),
            );
        }
        if quota {
            lines.push(
                "change: a quota limits this user or project here, and statfs does not show it: \
                 set DiskGuard(budget=...) below the quota, or raise the quota"
                    .to_owned(),
            );
        }
        if on_dir || roles.is_empty() {
            lines.push(format!(
                "change: keep fewer checkpoints (RetentionPolicy(KeepLast(n))), stop earlier \
                 (critical=, min_free=, reserve= the checkpoint size, now {}), or write checkpoints \
                 to a larger filesystem{}",
                format_size(self.reserve()),
                if roles.is_empty() {
                    "; this filesystem is not watched: add it to watch=[...]"
                } else {
                    ""
                }
            ));
        }
        lines.join("\n")
    }

    /// What the run holds in its directory, for a diagnosis.
    pub(super) fn holdings(&self) -> String {
        let dir = self.dir.display();
        let Ok(plan) = self.plan(None) else {
            return format!("the run holds nothing readable in {dir}");
        };
        let (complete, partial): (Vec<_>, Vec<_>) = plan
            .items
            .iter()
            .map(|i| &i.checkpoint)
            .partition(|c| c.is_complete());
        let sum = |v: &[&Checkpoint]| v.iter().map(|c| c.size).fold(0u64, u64::saturating_add);
        let mut text = format!(
            "the run holds {} in {dir}: {} complete checkpoint{} ({}, the largest {})",
            format_size(held_bytes(&self.dir)),
            complete.len(),
            if complete.len() == 1 { "" } else { "s" },
            format_size(sum(&complete)),
            format_size(complete.iter().map(|c| c.size).max().unwrap_or(0)),
        );
        if !partial.is_empty() {
            let _ = write!(
                text,
                ", and {} partial save{} ({}): `diskguard prune` removes them",
                partial.len(),
                if partial.len() == 1 { "" } else { "s" },
                format_size(sum(&partial))
            );
        }
        text
    }

    /// Will the rest of the run fit: `remaining_saves` more saves every `save_interval` seconds,
    /// each the size of the largest checkpoint (or `checkpoint_size`), under the retention
    /// policy's keep-last rule, with the background drift the trend monitor measured.
    pub fn forecast(
        &self,
        remaining_saves: u32,
        save_interval: f64,
        checkpoint_size: Option<u64>,
    ) -> Result<RunForecast> {
        let keep_last = self.config.policy.as_ref().and_then(|p| {
            p.rules
                .iter()
                .filter_map(|r| {
                    if let Rule::Last(last) = r {
                        u32::try_from(last.n).ok()
                    } else {
                        None
                    }
                })
                .max()
        });
        let existing = if self.dir.is_dir() {
            let plan = self.plan(None)?;
            u32::try_from(plan.items.iter().filter(|i| i.checkpoint.is_complete()).count())
                .unwrap_or(u32::MAX)
        } else {
            0
        };
        let background_rate = self.trend.estimate().map_or(0.0, |e| e.background_rate.max(0.0));
        let plan = RunPlan {
            checkpoint_size: checkpoint_size.unwrap_or(self.largest),
            save_interval,
            remaining_saves,
            keep_last,
            existing,
            background_rate,
            avail: self.dir_room().unwrap_or(0),
            keep_free: 0,
        };
        plan.validate()?;
        if plan.checkpoint_size == 0 {
            return Err(Error::invalid(
                "checkpoint_size",
                "None",
                "no checkpoint seen yet: pass the expected checkpoint size in bytes",
            ));
        }
        plan.forecast()
    }
}
