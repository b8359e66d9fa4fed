//! The guard: one decision engine that turns usage, budget, trend and retention into actions.
//!
//! A [`Guard`] watches a checkpoint directory's filesystem, the temp directory's (frameworks stage
//! saves there) and any extra paths, each filesystem once, plus an optional byte `budget` for what
//! the run holds under its directory (a soft quota or a pod's ephemeral-storage limit, which
//! `statfs` cannot see). Each check grades every space and climbs an action ladder:
//!
//! 1. **warn**: a level change (ok / warn / critical) is an [`Event`]; levels are left only once
//!    every measure is back past its threshold by a margin (hysteresis), so a disk hovering at a
//!    threshold does not flap;
//! 2. **make room** when a space is *short*: less writable room than the next save and one final
//!    save need ([`Reserve`]), or past `critical` / `min_free`. First the retention policy is
//!    applied; then, with [`OnFull::Prune`], checkpoints the rules keep are deleted least valuable
//!    first (never the newest complete one, a best one or a protected one), each an event;
//! 3. **stop** while there is still room for one final checkpoint: [`Guard::should_stop`] with a
//!    reason, and the optional emergency reserve file is released for that final save.
//!
//! Room on the checkpoint directory's filesystem is `min(avail - floor, budget - held)`, where the
//! floor is what `critical` and `min_free` keep free. What the run holds is measured by a walk of
//! the directory on a thread of its own ([`held`]), kept current from the saves and deletions the
//! guard knows of, and walked again every `rescan_interval`: a due check never waits for a walk.
//! `statfs` runs with a time limit off the calling thread ([`crate::probe`]): a hung mount is
//! reported, not waited on.

mod config;
mod grading;
mod held;
mod identity;
mod measuring;
mod paths;
mod report;
mod reserve;
mod room;
mod saving;
mod state;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

pub use config::{level_named, GuardConfig, OnFull, Ranks, Reserve};
pub use held::held_bytes;
pub use measuring::shared_filesystem;
pub use report::{Event, Metrics, SpaceStatus, Status};
pub use reserve::RESERVE_TAG;
pub use state::GuardState;

use crate::check::Level;
use crate::deletion::{Presence, MAX_RUN_ID};
use crate::error::{Error, Result};
use crate::ordering::{Identity, RunView};
use crate::probe::{Probe, Prober};
use crate::retention;
use crate::trend::{TrendConfig, TrendMonitor};
use crate::usage::DiskUsage;
use held::BackgroundScan;
use measuring::usage_of;
use paths::{check_dir, entry_under, lexical_absolute};
use report::unresponsive;
use reserve::EmergencyReserve;

/// Extra bytes on top of a checkpoint's size for filesystem metadata and block rounding.
const MARGIN_FLOOR: u64 = 64 * 1024;

/// One watched filesystem.
#[derive(Debug)]
struct Watched {
    /// What the user knows it as: `checkpoint directory /x`, `temp directory /tmp`, ...
    roles: Vec<String>,
    prober: Prober,
    device: Option<u64>,
    usage: Option<DiskUsage>,
    responsive: bool,
    error: Option<String>,
    /// The checkpoint directory's filesystem: deleting checkpoints frees room here.
    holds_dir: bool,
    /// This process measures it (see [`Ranks`]); other processes' spaces are neither measured
    /// nor graded here.
    owned: bool,
}

/// The decision engine. See the module documentation.
#[derive(Debug)]
pub struct Guard {
    dir: PathBuf,
    config: GuardConfig,
    spaces: Vec<Watched>,
    /// What the run holds under its directory, as the guard knows it.
    held: u64,
    /// `held` rests on a walk of the directory (the one started when the guard was built landed).
    held_measured: bool,
    /// The periodic walk of the directory, off the training thread.
    scan: BackgroundScan,
    last_rescan: f64,
    largest: u64,
    level: Level,
    stop_reason: Option<String>,
    trend: TrendMonitor,
    saves: u64,
    retention_deletions: u64,
    forced_deletions: u64,
    checks: u64,
    emergency: Option<EmergencyReserve>,
    events: Vec<Event>,
    /// The file `before_save` saw at the path being saved (it is replaced by the rename).
    replacing: Option<(PathBuf, u64)>,
    /// Entries of the directory a framework references (its best and last checkpoints): never
    /// deleted, whatever the rules say.
    referenced: Vec<OsString>,
    /// What the run wrote, what was there before it, whether another live run shares the
    /// directory (see [`crate::ordering`]).
    run: RunView,
    /// Whether `run.before` was taken (the directory may not exist when the guard is made).
    dir_seen: bool,
    /// The run's presence lock on its directory, while it exists (deleting process only).
    presence: Option<Presence>,
    /// Things said once: another live run, a busy lock, foreign checkpoints named.
    told: Told,
    /// Retention can no longer keep what its rules ask (making room deleted a kept checkpoint).
    degraded: bool,
    /// What waits for a later check or save.
    pending: Pending,
    /// This run's id (see [`Presence`]).
    run_id: u64,
    /// Until this monotonic time a training step's check grades the last figures again instead
    /// of measuring (see [`Guard::check_step`]); 0 when the next one must measure.
    fresh_until: f64,
}

/// A fresh run id in 1..=[`MAX_RUN_ID`]: the standard library's per-process random hash keys,
/// mixed with the process id and the time.
fn new_run_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish() % MAX_RUN_ID + 1
}

/// What waits for a later check or save.
#[derive(Debug, Default)]
struct Pending {
    /// Retention could not run (another process held the directory's lock): retried at the next
    /// check.
    retention: bool,
    /// Making room deleted something since the last save.
    forced_since_save: bool,
}

/// What the guard has said once and does not repeat.
#[derive(Debug, Default)]
struct Told {
    shared: bool,
    busy: bool,
    foreign: std::collections::HashSet<Identity>,
}

impl Guard {
    /// A guard for checkpoint directory `dir` (which may not exist yet), also watching `temp_dir`
    /// and `watch`. Measures each, scans what the run holds, creates the emergency reserve file if
    /// configured. `t` is monotonic seconds.
    pub fn new(dir: &Path, temp_dir: &Path, watch: &[PathBuf], config: GuardConfig, t: f64) -> Result<Self> {
        crate::usage::validate_path("path", dir)?;
        let dir = &lexical_absolute(dir);
        check_dir(dir)?;
        for path in watch {
            crate::usage::validate_path("watch", path)?;
        }
        config.validate()?;
        let trend = TrendMonitor::new(TrendConfig::default())?;
        let mut guard = Guard {
            dir: dir.clone(),
            config,
            spaces: Vec::new(),
            held: 0,
            held_measured: false,
            scan: BackgroundScan::default(),
            last_rescan: t,
            largest: 0,
            level: Level::Ok,
            stop_reason: None,
            trend,
            saves: 0,
            retention_deletions: 0,
            forced_deletions: 0,
            checks: 0,
            emergency: None,
            events: Vec::new(),
            replacing: None,
            referenced: Vec::new(),
            run: RunView {
                uid: nix::unistd::geteuid().as_raw(),
                ..RunView::default()
            },
            dir_seen: false,
            presence: None,
            told: Told::default(),
            degraded: false,
            pending: Pending::default(),
            run_id: new_run_id(),
            fresh_until: 0.0,
        };
        guard.add_space(format!("checkpoint directory {}", dir.display()), dir, true);
        guard.add_space(format!("temp directory {}", temp_dir.display()), temp_dir, false);
        for path in watch {
            guard.add_space(format!("watched {}", path.display()), path, false);
        }
        if guard.dir.is_dir() && guard.deletes() {
            // What the run holds is walked on a thread of its own: a figure for a budget waits for
            // it (`settle_held`), a due check does not.
            guard.scan.start(&guard.dir);
            // One read of the directory for what was there before the run and for the largest
            // checkpoint (`plan(None)` without a second scan: nothing is referenced yet).
            let plan = match guard.see_dir_scanned() {
                Some((fd, scan)) => retention::plan_ordered(
                    scan,
                    &retention::Policy::default(),
                    retention::now(),
                    retention::Ordering::Run(&guard.run),
                    |c| crate::checkpoints::verify_file(&fd, c),
                )?,
                None => guard.plan(None)?,
            };
            guard.largest = plan
                .items
                .iter()
                .filter(|i| i.checkpoint.is_complete())
                .map(|i| i.checkpoint.size)
                .max()
                .unwrap_or(0);
            if let Some(bytes) = guard.config.emergency_reserve {
                let reserve = EmergencyReserve::create(&guard.dir, bytes)?;
                guard.held = guard.held.saturating_add(bytes);
                guard.touch(&reserve.path, None);
                guard.emergency = Some(reserve);
            }
        } else if guard.config.emergency_reserve.is_some() && guard.deletes() {
            return Err(Error::invalid(
                "emergency_reserve",
                crate::error::show_path(dir),
                "the checkpoint directory must exist to hold the reserve file",
            ));
        }
        Ok(guard)
    }

    /// Measures `path` once; joins the space already watching its filesystem, if any. Every
    /// process measures each path once, to learn whether it is shared (see [`Ranks`]); from then
    /// on only the process that owns it does.
    fn add_space(&mut self, role: String, path: &Path, holds_dir: bool) {
        let mut prober = Prober::new(path);
        let (device, usage, responsive, error) = match prober.measure(self.limit()) {
            Probe::Ready(m) => (Some(m.device), Some(usage_of(path, &m)), true, None),
            Probe::Failed(err) => (None, None, true, Some(err.to_string())),
            Probe::Unresponsive => (None, None, false, None),
        };
        let owned = self
            .config
            .ranks
            .measures(shared_filesystem(path, device, usage.as_ref()));
        if owned && !responsive {
            self.events.push(unresponsive(&role, self.limit()));
        }
        if let Some(existing) = self
            .spaces
            .iter_mut()
            .find(|s| device.is_some() && s.device == device)
        {
            existing.roles.push(role);
            existing.holds_dir |= holds_dir;
            return;
        }
        self.spaces.push(Watched {
            roles: vec![role],
            prober,
            device,
            usage,
            responsive,
            error,
            holds_dir,
            owned,
        });
    }

    fn limit(&self) -> Duration {
        Duration::from_secs_f64(self.config.statfs_timeout)
    }

    /// The validated configuration.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// Whether this process deletes in the directory: the one that measures its filesystem.
    pub fn deletes(&self) -> bool {
        self.spaces
            .iter()
            .find(|s| s.holds_dir)
            .map_or(self.config.ranks.local_rank == 0, |s| s.owned)
    }

    /// Replaces the paths a framework references (best, last, resumed-from checkpoints): the
    /// entries of the directory they are in or under are never deleted. A bare name is an entry
    /// of the directory (as in [`Protect`](crate::retention::Protect)); other paths are matched by name, then through
    /// symlinks (the directory may be reached by another path than the guard's). Paths outside
    /// the directory are ignored: nothing there is ever touched.
    pub fn set_referenced(&mut self, paths: &[PathBuf]) -> Result<()> {
        let dir = lexical_absolute(&self.dir);
        let real_dir = std::fs::canonicalize(&self.dir).ok();
        let mut names = Vec::new();
        for path in paths {
            crate::usage::validate_path("paths", path)?;
            let mut parts = path.components();
            if let (Some(Component::Normal(name)), None) = (parts.next(), parts.next()) {
                names.push(name.to_owned());
                continue;
            }
            let absolute = lexical_absolute(path);
            if let Some(name) = entry_under(&dir, &absolute) {
                names.push(name);
                continue;
            }
            let Some(real_dir) = &real_dir else { continue };
            // The entry itself may be a symlink (last.ckpt): its own name through its resolved
            // directory, and its target.
            if let (Some(parent), Some(name)) = (absolute.parent(), absolute.file_name()) {
                if let Ok(real_parent) = std::fs::canonicalize(parent) {
                    names.extend(entry_under(real_dir, &real_parent.join(name)));
                }
            }
            if let Ok(real) = std::fs::canonicalize(&absolute) {
                names.extend(entry_under(real_dir, &real));
            }
        }
        names.sort();
        names.dedup();
        self.referenced = names;
        Ok(())
    }

    /// Whether the run should stop (sticky once set).
    pub fn should_stop(&self) -> bool {
        self.stop_reason.is_some()
    }

    /// Why the run should stop.
    pub fn stop_reason(&self) -> Option<&str> {
        self.stop_reason.as_deref()
    }

    /// The current level.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Bytes for a checkpoint of `bytes` plus the margin for metadata and block rounding.
    pub fn with_margin(bytes: u64) -> u64 {
        bytes.saturating_add(bytes / 20).saturating_add(MARGIN_FLOOR)
    }

    /// Room one save needs now.
    pub fn reserve(&self) -> u64 {
        match self.config.reserve {
            Reserve::Auto if self.largest == 0 => 0,
            Reserve::Auto => Self::with_margin(self.largest),
            Reserve::Bytes(b) => b,
        }
    }

    /// Deletes the emergency reserve file now and leaves the directory (the guard is done).
    pub fn close(&mut self) {
        self.presence = None;
        self.scan.abandon();
        self.release_reserve();
    }

    /// Removes the emergency reserve file (only in the process that made it); its bytes.
    fn release_reserve(&mut self) -> Option<u64> {
        let reserve = self.emergency.take()?;
        let path = reserve.path.clone();
        let bytes = reserve.release()?;
        self.held = self.held.saturating_sub(bytes);
        self.touch(&path, Some(0));
        Some(bytes)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.close();
    }
}
