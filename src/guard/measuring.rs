//! Measuring: `statfs` of every watched filesystem (through its prober) and what the run holds.

use std::path::Path;

use super::held::{held_bytes, Landed};
use super::paths::{entry_under, lexical_absolute};
use super::report::unresponsive;
use super::{Event, Guard, Watched};
use crate::probe::{Measured, Probe};
use crate::usage::DiskUsage;

/// Whether the filesystem of `path` is shared between hosts: by its mount-table type (the mount
/// with its device id when `statfs` answered, else the one its name falls under), else by the
/// `statfs` magic number. With nothing known it counts as shared: then only global rank 0
/// measures and deletes there, never one process per node in one directory.
pub fn shared_filesystem(path: &Path, device: Option<u64>, usage: Option<&DiskUsage>) -> bool {
    let mounts = crate::mounts::read_mounts(Path::new("/proc"), None).unwrap_or_default();
    let absolute = lexical_absolute(path);
    let mount = match device {
        Some(device) => crate::mounts::find_mount(&mounts, &absolute, device),
        None => crate::mounts::mount_by_name(&mounts, &absolute),
    };
    match (mount.filter(|m| !m.fs_type.is_empty()), usage) {
        (Some(m), _) => crate::mounts::is_network_type(&m.fs_type),
        (None, Some(u)) => crate::usage::is_network_magic(u.fs_magic),
        (None, None) => true,
    }
}

pub(super) fn usage_of(path: &Path, m: &Measured) -> DiskUsage {
    DiskUsage::from_stats(path.to_path_buf(), m.queried.clone(), &m.stats)
}

impl Guard {
    /// Re-measures every watched filesystem (each within the time limit) and, when due, rescans
    /// what the run holds.
    pub(super) fn measure(&mut self, t: f64) {
        let limit = self.limit();
        let mut noticed = Vec::new();
        for space in self.spaces.iter_mut().filter(|s| s.owned) {
            let was_responsive = space.responsive;
            match space.prober.measure(limit) {
                Probe::Ready(m) => {
                    space.device.get_or_insert(m.device);
                    space.usage = Some(usage_of(space.prober.path(), &m));
                    space.responsive = true;
                    space.error = None;
                }
                Probe::Failed(err) => {
                    space.responsive = true;
                    if space.error.is_none() {
                        let what = format!("{}: cannot be measured: {err}", space.roles.join(", "));
                        noticed.push(Event::new("error", true, what));
                    }
                    space.error = Some(err.to_string());
                }
                Probe::Unresponsive => space.responsive = false,
            }
            let name = space.roles.join(", ");
            if was_responsive && !space.responsive {
                noticed.push(unresponsive(&name, limit));
            } else if !was_responsive && space.responsive {
                noticed.push(Event::new(
                    "responsive",
                    false,
                    format!("{name}: statfs answers again"),
                ));
            }
        }
        self.events.extend(noticed);
        if let Some(u) = self.dir_usage() {
            let (used, avail) = (u.used, u.avail);
            let _ = self.trend.add_sample(t, used, avail);
        }
        // The periodic rescan runs on its own thread (see `held`): its result lands at a later check.
        if let Some(landed) = self.scan.try_take() {
            self.land(&landed);
        }
        if t - self.last_rescan >= self.config.rescan_interval
            && self.dir_responsive()
            && self.deletes()
            && self.dir.is_dir()
            && self.scan.start(&self.dir)
        {
            self.last_rescan = t;
        }
    }

    /// Takes a landed scan's figure of what the run holds (see [`Landed::held`]).
    fn land(&mut self, landed: &Landed) {
        if let Some(held) = landed.held(&self.dir, self.scan.keys()) {
            self.held = held;
            self.held_measured = true;
        }
    }

    /// Before a decision that rests on what the run holds (a budget): the first figure, if the
    /// walk started when the guard was built has not landed yet, waited for (or measured now).
    pub(super) fn settle_held(&mut self) {
        if self.held_measured || !self.deletes() || !self.dir_responsive() || !self.dir.is_dir() {
            return;
        }
        if let Some(landed) = self.scan.wait() {
            self.land(&landed);
        }
        if !self.held_measured {
            self.held = held_bytes(&self.dir);
            self.held_measured = true;
        }
    }

    /// The guard changed entry `path` of its directory (saved, deleted, created): a scan running
    /// now counts it from what the guard knows (`bytes`) or a walk of it when it lands.
    pub(super) fn touch(&mut self, path: &Path, bytes: Option<u64>) {
        if let Some(name) = entry_under(&self.dir, &lexical_absolute(path)) {
            let whole = bytes.filter(|_| self.dir.join(&name) == lexical_absolute(path));
            self.scan.touch(name, whole);
        }
    }

    pub(super) fn dir_space(&self) -> Option<&Watched> {
        self.spaces.iter().find(|s| s.holds_dir && s.owned)
    }

    pub(super) fn dir_usage(&self) -> Option<&DiskUsage> {
        self.dir_space()
            .filter(|s| s.responsive)
            .and_then(|s| s.usage.as_ref())
    }

    pub(super) fn dir_responsive(&self) -> bool {
        self.dir_space().is_some_and(|s| s.responsive)
    }

    /// Re-measures only the checkpoint directory's filesystem (after a deletion).
    pub(super) fn remeasure_dir(&mut self) {
        let limit = self.limit();
        if let Some(space) = self
            .spaces
            .iter_mut()
            .find(|s| s.holds_dir && s.responsive && s.owned)
        {
            match space.prober.measure(limit) {
                Probe::Ready(m) => space.usage = Some(usage_of(space.prober.path(), &m)),
                Probe::Failed(err) => space.error = Some(err.to_string()),
                Probe::Unresponsive => space.responsive = false,
            }
        }
    }

    /// Counts `freed` bytes as free even before `statfs` shows them: btrfs (and others that free
    /// asynchronously) report them only at the next transaction commit, and re-measuring alone
    /// would make room by deleting every deletable checkpoint.
    pub(super) fn credit_dir(&mut self, before: Option<(u64, u64)>, freed: u64) {
        let Some((used, avail)) = before else { return };
        if let Some(u) = self
            .spaces
            .iter_mut()
            .find(|s| s.holds_dir && s.owned)
            .and_then(|s| s.usage.as_mut())
        {
            u.avail = u.avail.max(avail.saturating_add(freed));
            u.used = u.used.min(used.saturating_sub(freed));
        }
    }

    /// Measures again what the run holds under its directory, now: after a framework deleted
    /// checkpoints of its own (Lightning's top-k, the Trainer's `save_total_limit`), which the
    /// periodic rescan would see only `rescan_interval` later. Only the deleting process measures.
    pub fn rescan(&mut self, t: f64) {
        self.fresh_until = 0.0; // what the run holds changed: graded again at the next step
        if self.deletes() && self.dir_responsive() && self.dir.is_dir() {
            self.scan.abandon(); // older than this walk
            self.held = held_bytes(&self.dir);
            self.held_measured = true;
            self.last_rescan = t;
        }
    }
}
