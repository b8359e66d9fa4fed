//! Measuring: `statfs` of every watched filesystem (through its prober) and what the run holds.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::paths::lexical_absolute;
use super::report::unresponsive;
use super::{Event, Guard, Watched};
use crate::ordering::Identity;
use crate::probe::{Measured, Probe};
use crate::usage::DiskUsage;

/// Bytes allocated under `path` (`st_blocks * 512`), not following symlinks and not crossing into
/// other filesystems; unreadable parts are skipped (the guard rescans later).
/// A file with several hard links counts once, by (device, inode).
pub fn held_bytes(path: &Path) -> u64 {
    fn walk(path: &Path, device: u64, depth: usize, seen: &mut std::collections::HashSet<Identity>) -> u64 {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return 0;
        };
        if meta.dev() != device {
            return 0;
        }
        if !meta.is_dir() && meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino())) {
            return 0; // another name of a file already counted
        }
        let own = meta.blocks().saturating_mul(512);
        if !meta.is_dir() || depth > 64 {
            return own;
        }
        let Ok(entries) = std::fs::read_dir(path) else {
            return own;
        };
        entries
            .flatten()
            .map(|e| walk(&e.path(), device, depth + 1, seen))
            .fold(own, u64::saturating_add)
    }
    let mut seen = std::collections::HashSet::new();
    std::fs::symlink_metadata(path).map_or(0, |meta| walk(path, meta.dev(), 0, &mut seen))
}

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
        if t - self.last_rescan >= self.config.rescan_interval
            && self.dir_responsive()
            && self.deletes()
            && self.dir.is_dir()
        {
            self.held = held_bytes(&self.dir);
            self.last_rescan = t;
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
        if self.deletes() && self.dir_responsive() && self.dir.is_dir() {
            self.held = held_bytes(&self.dir);
            self.last_rescan = t;
        }
    }
}
