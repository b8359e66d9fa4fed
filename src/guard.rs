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
//! floor is what `critical` and `min_free` keep free. What the run holds is measured by a scan,
//! kept current from the saves and deletions the guard knows of, and rescanned now and then.
//! `statfs` runs with a time limit off the calling thread ([`crate::probe`]): a hung mount is
//! reported, not waited on.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::check::{Level, Thresholds};
use crate::checkpoints::{Checkpoint, DirLink};
use crate::deletion::{reachable_bytes, LockWait, LockedDir, Outcome, Presence, MAX_RUN_ID};
use crate::error::{Error, Result};
use crate::ordering::{Identity, RunView};
use crate::probe::{Measured, Probe, Prober};
use crate::retention::{self, free_space_order, Action, Keeper, Plan, Policy, Protect, Rule};
use crate::size::{format_size, parse_size, SIZE_RULE};
use crate::trend::{RunForecast, RunPlan, TrendConfig, TrendMonitor, TrendState};
use crate::usage::DiskUsage;

/// `min_free` is left only once available space is back past it by a quarter of it.
const BYTE_SLACK_DIVISOR: u64 = 4;
/// Extra bytes on top of a checkpoint's size for filesystem metadata and block rounding.
const MARGIN_FLOOR: u64 = 64 * 1024;
/// Name prefix of the emergency reserve file (`.diskguard-reserve-<pid>-<serial>`): a dot file
/// with no checkpoint extension, so retention and orphan scans never take it for a checkpoint.
pub const RESERVE_PREFIX: &str = ".diskguard-reserve-";

/// What to do when retention alone cannot make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Delete checkpoints the rules keep, least valuable first (never the invariant or a best).
    Prune,
    /// Delete nothing the rules keep: stop instead.
    Stop,
}

impl OnFull {
    /// Parses `'prune'` or `'stop'`.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "prune" => Ok(OnFull::Prune),
            "stop" => Ok(OnFull::Stop),
            other => Err(Error::invalid(
                "on_full",
                format!("{other:?}"),
                "expected 'prune' or 'stop'",
            )),
        }
    }

    /// `'prune'` or `'stop'`.
    pub fn name(self) -> &'static str {
        match self {
            OnFull::Prune => "prune",
            OnFull::Stop => "stop",
        }
    }
}

/// Room one save needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// The largest checkpoint seen or estimated, plus a margin.
    Auto,
    /// A fixed number of bytes.
    Bytes(u64),
}

impl Reserve {
    /// Parses `'auto'` or a size such as `'2GiB'`.
    pub fn parse(text: &str) -> Result<Self> {
        if text == "auto" {
            return Ok(Reserve::Auto);
        }
        parse_size("reserve", text).map(Reserve::Bytes).map_err(|_| {
            Error::invalid(
                "reserve",
                format!("{text:?}"),
                format!("expected 'auto' or a size: {SIZE_RULE}"),
            )
        })
    }
}

/// Where this process sits in a distributed run (torchrun's `RANK`, `LOCAL_RANK`, `WORLD_SIZE`).
///
/// Each filesystem is measured by one process: a node-local one by local rank 0 of each node, a
/// shared one (NFS, Lustre, ...) by global rank 0 only. The process that measures the checkpoint
/// directory's filesystem is the only one that deletes there. The others still join the reduced
/// stop decision, with nothing of their own to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranks {
    /// Global rank.
    pub rank: u64,
    /// Rank on this node.
    pub local_rank: u64,
    /// Processes in the run.
    pub world_size: u64,
}

impl Default for Ranks {
    fn default() -> Self {
        Ranks {
            rank: 0,
            local_rank: 0,
            world_size: 1,
        }
    }
}

impl Ranks {
    /// Checks that the ranks fit the world size.
    pub fn validate(&self) -> Result<()> {
        if self.world_size == 0 {
            return Err(Error::invalid("world_size", 0, "expected at least 1"));
        }
        let below = format!("expected a rank below world_size={}", self.world_size);
        if self.rank >= self.world_size {
            return Err(Error::invalid("rank", self.rank, below));
        }
        if self.local_rank >= self.world_size {
            return Err(Error::invalid("local_rank", self.local_rank, below));
        }
        Ok(())
    }

    /// Whether this process measures a filesystem (`shared`: one all nodes see).
    pub fn measures(&self, shared: bool) -> bool {
        if shared {
            self.rank == 0
        } else {
            self.local_rank == 0
        }
    }
}

/// Settings of a [`Guard`], validated by [`GuardConfig::validate`].
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Fraction used at which to warn.
    pub warn: Option<f64>,
    /// Fraction used that is critical (the guard makes room, then stops).
    pub critical: Option<f64>,
    /// Bytes that must stay available on every watched filesystem.
    pub min_free: Option<u64>,
    /// Bytes the run may hold under its directory.
    pub budget: Option<u64>,
    /// Room one save needs.
    pub reserve: Reserve,
    /// What to do when retention alone cannot make room.
    pub on_full: OnFull,
    /// Fraction-of-filesystem margin by which a level must be left (hysteresis).
    pub hysteresis: f64,
    /// Seconds a `statfs` may take before its filesystem is reported unresponsive.
    pub statfs_timeout: f64,
    /// Seconds between rescans of what the run holds.
    pub rescan_interval: f64,
    /// Steps between checks (the Python surface counts them).
    pub check_every_steps: u64,
    /// Seconds between checks (the Python surface times them).
    pub check_every_seconds: f64,
    /// Retention rules applied after each save and when short; `None` keeps everything.
    pub policy: Option<Policy>,
    /// Bytes of the emergency reserve file, if one is wanted.
    pub emergency_reserve: Option<u64>,
    /// This process's place in a distributed run.
    pub ranks: Ranks,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            warn: Some(crate::check::DEFAULT_WARN),
            critical: Some(crate::check::DEFAULT_CRITICAL),
            min_free: None,
            budget: None,
            reserve: Reserve::Auto,
            on_full: OnFull::Prune,
            hysteresis: 0.02,
            statfs_timeout: 0.5,
            rescan_interval: 60.0,
            check_every_steps: 50,
            check_every_seconds: 10.0,
            policy: None,
            emergency_reserve: None,
            ranks: Ranks::default(),
        }
    }
}

fn positive_seconds(name: &'static str, value: f64, max: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 && value <= max {
        Ok(())
    } else {
        Err(Error::invalid(
            name,
            value,
            format!("expected seconds > 0 and at most {max}"),
        ))
    }
}

impl GuardConfig {
    /// Checks every setting; the error names the argument, its value and what is allowed.
    pub fn validate(&self) -> Result<()> {
        Thresholds::new(self.warn, self.critical, None, self.min_free, None, None)?;
        if self.budget == Some(0) {
            return Err(Error::invalid(
                "budget",
                0,
                "expected a size > 0, or None for no budget",
            ));
        }
        if !(self.hysteresis.is_finite() && (0.0..0.5).contains(&self.hysteresis)) {
            return Err(Error::invalid(
                "hysteresis",
                self.hysteresis,
                "expected a fraction in [0, 0.5)",
            ));
        }
        positive_seconds("statfs_timeout", self.statfs_timeout, 3600.0)?;
        positive_seconds("rescan_interval", self.rescan_interval, 1e9)?;
        positive_seconds("check_every_seconds", self.check_every_seconds, 1e9)?;
        if self.check_every_steps == 0 {
            return Err(Error::invalid("check_every_steps", 0, "expected at least 1"));
        }
        self.ranks.validate()?;
        if self.emergency_reserve == Some(0) {
            return Err(Error::invalid(
                "emergency_reserve",
                0,
                "expected a size > 0, or None for no reserve file",
            ));
        }
        Ok(())
    }
}

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
    fn new(kind: &'static str, warning: bool, message: String) -> Self {
        Event {
            kind,
            message,
            warning,
        }
    }
}

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

/// What survives a restart: plain values only.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardState {
    /// The level when saved (hysteresis carries over).
    pub level: Level,
    /// The largest checkpoint seen.
    pub largest: u64,
    /// Saves recorded.
    pub saves: u64,
    /// Why the earlier run stopped, if it did (for the record: a resumed run decides afresh).
    pub stop_reason: Option<String>,
    /// The trend monitor's history, its times as ages (a resumed run continues its forecast).
    pub trend: TrendState,
    /// The run's own checkpoints (device, inode), so a resumed run keeps knowing them.
    pub own: Vec<Identity>,
    /// The run's id (0: none): copies of one run (a pickled guard) are one run.
    pub run_id: u64,
}

/// The emergency reserve file: preallocated room only the final checkpoint may use.
#[derive(Debug)]
struct EmergencyReserve {
    path: PathBuf,
    bytes: u64,
    /// The process that created the file.
    owner: u32,
}

impl EmergencyReserve {
    fn create(dir: &Path, bytes: u64) -> Result<Self> {
        use nix::fcntl::{open, posix_fallocate, OFlag};
        use nix::sys::stat::Mode;
        // One per guard: a process may hold several (an unpickled copy, two directories).
        static COUNT: AtomicU64 = AtomicU64::new(0);
        // Checked before the file exists, so a refused size leaves nothing behind.
        let length = i64::try_from(bytes)
            .map_err(|_| Error::invalid("emergency_reserve", bytes, "expected a size below 2**63"))?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        // A name already taken (another user may plant one in a shared directory) is skipped: the
        // next serial is tried, a bounded number of times.
        let mut attempt = 0;
        let (path, fd): (PathBuf, OwnedFd) = loop {
            let serial = COUNT.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{RESERVE_PREFIX}{}-{serial}", std::process::id()));
            match open(&path, flags, Mode::from_bits_truncate(0o600)) {
                Ok(fd) => break (path, fd),
                Err(nix::errno::Errno::EEXIST) if attempt < 64 => attempt += 1,
                Err(e) => return Err(Error::os("create", &path, e)),
            }
        };
        if let Err(errno) = posix_fallocate(&fd, 0, length) {
            drop(fd);
            let _ = std::fs::remove_file(&path);
            return Err(Error::os("posix_fallocate", &path, errno));
        }
        Ok(EmergencyReserve {
            path,
            bytes,
            owner: std::process::id(),
        })
    }

    /// Removes the file, only in the process that created it: a forked child (a data-loader
    /// worker) that exits must not take its parent's reserve with it.
    fn release(self) -> Option<u64> {
        if std::process::id() != self.owner {
            return None;
        }
        std::fs::remove_file(&self.path).ok().map(|()| self.bytes)
    }
}

/// The decision engine. See the module documentation.
#[derive(Debug)]
pub struct Guard {
    dir: PathBuf,
    config: GuardConfig,
    spaces: Vec<Watched>,
    held: u64,
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

/// Device and inode of `path` itself (a symlink is not followed).
fn identity_of(path: &Path) -> Option<Identity> {
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The checkpoint directory must be a directory (or not exist yet), and not `/` or a symlink: the
/// guard deletes in it, and deletion never follows a symlink.
fn check_dir(dir: &Path) -> Result<()> {
    crate::usage::validate_path("path", dir)?;
    let shown = crate::error::show_path(dir);
    if dir == Path::new("/") {
        return Err(Error::invalid(
            "path",
            shown,
            "expected a checkpoint directory, not the root directory",
        ));
    }
    let kind = match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(Error::os("lstat", dir, err)),
        Ok(meta) if meta.is_symlink() => "a symlink (the guard never follows one: pass its target)",
        Ok(meta) if meta.is_file() => "a regular file",
        Ok(_) => "a device, FIFO or socket",
    };
    Err(Error::invalid(
        "path",
        shown,
        format!("expected a checkpoint directory (it may not exist yet), got {kind}"),
    ))
}

/// `p` made absolute against the working directory of this moment, with `.`, `..` and a trailing
/// slash resolved by name. The guard keeps its directory in this form, so a later `chdir` (or an
/// unpickled guard in another working directory) can never point it at another run's checkpoints,
/// and `link/` is refused like `link`.
fn lexical_absolute(p: &Path) -> PathBuf {
    let absolute = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The entry of `dir` that `path` is or is under (both absolute), if it is inside.
fn entry_under(dir: &Path, path: &Path) -> Option<OsString> {
    match path.strip_prefix(dir).ok()?.components().next()? {
        Component::Normal(name) => Some(name.to_owned()),
        _ => None,
    }
}

/// `path` lexically inside `dir` (both made absolute, `.` and `..` resolved by name): only there
/// does the guard account and make room.
fn inside(dir: &Path, path: &Path) -> bool {
    let (dir, path) = (lexical_absolute(dir), lexical_absolute(path));
    path != dir && path.starts_with(&dir)
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
        };
        guard.add_space(format!("checkpoint directory {}", dir.display()), dir, true);
        guard.add_space(format!("temp directory {}", temp_dir.display()), temp_dir, false);
        for path in watch {
            guard.add_space(format!("watched {}", path.display()), path, false);
        }
        if guard.dir.is_dir() && guard.deletes() {
            guard.see_dir();
            guard.held = held_bytes(&guard.dir);
            let plan = guard.plan(None)?;
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
    /// of the directory (as in [`Protect`]); other paths are matched by name, then through
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

    // ----- measuring -----

    /// Re-measures every watched filesystem (each within the time limit) and, when due, rescans
    /// what the run holds.
    fn measure(&mut self, t: f64) {
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

    fn dir_space(&self) -> Option<&Watched> {
        self.spaces.iter().find(|s| s.holds_dir && s.owned)
    }

    fn dir_usage(&self) -> Option<&DiskUsage> {
        self.dir_space()
            .filter(|s| s.responsive)
            .and_then(|s| s.usage.as_ref())
    }

    fn dir_responsive(&self) -> bool {
        self.dir_space().is_some_and(|s| s.responsive)
    }

    /// Re-measures only the checkpoint directory's filesystem (after a deletion).
    fn remeasure_dir(&mut self) {
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

    // ----- grading -----

    /// Bytes `critical` and `min_free` keep free on a filesystem of `size` (used + avail) bytes.
    fn floor(&self, size: u64) -> u64 {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let by_fraction = self
            .config
            .critical
            .map_or(0, |c| ((1.0 - c) * size as f64).ceil() as u64);
        by_fraction.max(self.config.min_free.unwrap_or(0))
    }

    /// Every space with its figures and level, graded against `target` bytes of room; `strict`
    /// grades with the hysteresis margin (the bar for leaving a level, or for enough room).
    fn grade(&self, target: u64, strict: bool) -> Vec<SpaceStatus> {
        self.grade_after(target, strict, 0)
    }

    /// [`Guard::grade`] as it would be once `freed` more bytes of the directory were deleted.
    fn grade_after(&self, target: u64, strict: bool, freed: u64) -> Vec<SpaceStatus> {
        let mut out = Vec::new();
        for space in self.spaces.iter().filter(|s| s.owned) {
            let Some(u) = &space.usage else { continue };
            let mut u = u.clone();
            if space.holds_dir {
                u.used = u.used.saturating_sub(freed);
                u.avail = u.avail.saturating_add(freed);
            }
            let size = u.used.saturating_add(u.avail);
            // The budget is graded as a space of its own (below); the directory's room is the
            // smaller of the two.
            let room = u.avail.saturating_sub(self.floor(size));
            // Only where checkpoints land must the next save fit; the temp directory and other
            // watched paths (a 16 MiB /dev/shm) are graded by the thresholds alone.
            let needed = if space.holds_dir { target } else { 0 };
            let (level, reason) = self.grade_space(u.used, u.avail, room, needed, strict, true);
            out.push(SpaceStatus {
                name: space.roles.join(", "),
                total: size,
                used: u.used,
                avail: u.avail,
                room,
                responsive: space.responsive,
                level,
                reason,
                holds_dir: space.holds_dir,
            });
        }
        if let Some(budget) = self.config.budget.filter(|_| self.deletes()) {
            let held = self.held.saturating_sub(freed);
            let avail = budget.saturating_sub(held);
            let (level, reason) = self.grade_space(held, avail, avail, target, strict, false);
            out.push(SpaceStatus {
                name: format!("budget of {}", self.dir.display()),
                total: budget,
                used: held,
                avail,
                room: avail,
                responsive: true,
                level,
                reason,
                holds_dir: true,
            });
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn grade_space(
        &self,
        used: u64,
        avail: u64,
        room: u64,
        target: u64,
        strict: bool,
        filesystem: bool,
    ) -> (Level, Option<String>) {
        let slack = if strict { self.config.hysteresis } else { 0.0 };
        let byte_slack = |b: u64| {
            if strict {
                b.saturating_add(b / BYTE_SLACK_DIVISOR)
            } else {
                b
            }
        };
        // Room swings by one checkpoint at every save-then-prune: a level set by room is left only
        // once one more save's worth is free, or the sawtooth would flap it at every save.
        let room_slack = |b: u64| {
            if strict {
                b.saturating_add(self.reserve().max(b / 4))
            } else {
                b
            }
        };
        let size = used.saturating_add(avail);
        let fraction = if size == 0 { 0.0 } else { used as f64 / size as f64 };
        let pct = |f: f64| format!("{:.1}%", f * 100.0);
        if filesystem {
            if let Some(c) = self.config.critical.filter(|c| fraction >= c - slack) {
                return (
                    Level::Critical,
                    Some(format!("{} used >= critical {}", pct(fraction), pct(c))),
                );
            }
            if let Some(m) = self.config.min_free.filter(|m| avail < byte_slack(*m)) {
                return (
                    Level::Critical,
                    Some(format!(
                        "{} available < min_free {}",
                        format_size(avail),
                        format_size(m)
                    )),
                );
            }
        }
        if target > 0 && room < room_slack(target) {
            return (
                Level::Critical,
                Some(format!(
                    "room {} < {} for the next save and a final one",
                    format_size(room),
                    format_size(target)
                )),
            );
        }
        if let Some(w) = self.config.warn.filter(|w| fraction >= w - slack) {
            return (
                Level::Warn,
                Some(format!("{} used >= warn {}", pct(fraction), pct(w))),
            );
        }
        let one_more = target.saturating_add(target / 2);
        if target > 0 && room < room_slack(one_more) {
            return (
                Level::Warn,
                Some(format!(
                    "room {} is less than one more save beyond the reserve",
                    format_size(room)
                )),
            );
        }
        (Level::Ok, None)
    }

    fn worst(spaces: &[SpaceStatus]) -> Level {
        spaces.iter().map(|s| s.level).max().unwrap_or(Level::Ok)
    }

    /// True when a space deletions can help is critical (`strict`: not yet past the margin).
    fn dir_short(&self, target: u64, strict: bool) -> bool {
        self.grade(target, strict)
            .iter()
            .any(|s| s.holds_dir && s.level == Level::Critical)
    }

    /// Whether a space deletions can help would still be critical once `freed` bytes were deleted.
    fn dir_short_after(&self, target: u64, freed: u64) -> bool {
        self.grade_after(target, false, freed)
            .iter()
            .any(|s| s.holds_dir && s.level == Level::Critical)
    }

    /// The smallest room where the checkpoint directory's writes land (None: nothing measured).
    fn dir_room(&self) -> Option<u64> {
        self.grade(0, false)
            .iter()
            .filter(|s| s.holds_dir)
            .map(|s| s.room)
            .min()
    }

    /// Updates the level with hysteresis; an event when it changes.
    fn update_level(&mut self, target: u64) {
        let raw = self.grade(target, false);
        let strict = self.grade(target, true);
        let up = Self::worst(&raw);
        let (next, graded) = if up > self.level {
            (up, &raw)
        } else {
            (self.level.min(Self::worst(&strict)), &strict)
        };
        if next != self.level {
            let reasons: Vec<String> = graded
                .iter()
                .filter(|s| s.level == next)
                .filter_map(|s| s.reason.as_ref().map(|r| format!("{}: {r}", s.name)))
                .collect();
            let why = if reasons.is_empty() {
                "back below every threshold".to_owned()
            } else {
                reasons.join("; ")
            };
            self.events.push(Event::new(
                "level",
                next > self.level,
                format!("disk level {} -> {}: {why}", self.level.name(), next.name()),
            ));
            self.level = next;
        }
    }

    // ----- acting -----

    /// Scans and plans the directory under `policy` (`None`: the invariant only).
    fn plan(&self, policy: Option<&Policy>) -> Result<Plan> {
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

    // ----- the run's identity -----

    /// The first time the directory is seen (at the start, or once a save created it): what is
    /// there now was not written by this run, and the run announces itself there.
    fn see_dir(&mut self) {
        if self.dir_seen || !self.deletes() || !self.dir.is_dir() {
            return;
        }
        self.dir_seen = true;
        if let Ok(fd) = crate::checkpoints::open_dir(&self.dir) {
            if let Ok(scan) = crate::checkpoints::scan(&fd, &self.dir, &[]) {
                let own = &self.run.own;
                let before = scan
                    .checkpoints
                    .iter()
                    .map(|c| (c.dev, c.ino))
                    .filter(|id| !own.contains(id));
                self.run.before.extend(before);
            }
        }
        match Presence::announce(&self.dir, self.run_id) {
            Ok(presence) => self.presence = Some(presence),
            Err(err) => self.events.push(Event::new(
                "error",
                false,
                format!("cannot announce this run in {}: {err}", self.dir.display()),
            )),
        }
    }

    /// Whether another live run guards the directory now; said once when it starts to.
    fn refresh_shared(&mut self) {
        let shared = self.presence.as_ref().is_some_and(Presence::others);
        if shared && !self.told.shared {
            self.told.shared = true;
            self.events.push(Event::new(
                "shared",
                true,
                format!(
                    "another live run guards {}: this run deletes only the checkpoints it wrote \
                     itself, never another run's (give each run its own directory to keep their \
                     retention apart)",
                    self.dir.display()
                ),
            ));
        }
        self.run.shared = shared;
    }

    /// The entry of the directory that `path` is or is under, and its identity.
    fn entry_identity(&self, path: &Path) -> Option<Identity> {
        let entry = entry_under(&self.dir, &lexical_absolute(path))?;
        identity_of(&self.dir.join(entry))
    }

    /// Names, once each, the checkpoints this run did not write whose step is above its newest
    /// save's: they rank below the run's saves (they were there before it, or are another
    /// user's), whatever their step.
    fn tell_foreign(&mut self, plan: &Plan) {
        let Some(newest) = self.run.newest_own else { return };
        let step_of = |c: &Checkpoint| c.info.step.or(c.info.epoch);
        let Some(own_step) = plan
            .items
            .iter()
            .find(|i| (i.checkpoint.dev, i.checkpoint.ino) == newest)
            .and_then(|i| step_of(&i.checkpoint))
        else {
            return;
        };
        let mut named = Vec::new();
        for item in &plan.items {
            let c = &item.checkpoint;
            let id = (c.dev, c.ino);
            if self.run.own.contains(&id) || step_of(c).is_none_or(|s| s <= own_step) {
                continue;
            }
            if self.told.foreign.insert(id) {
                named.push(c.display_name());
            }
        }
        if !named.is_empty() {
            self.events.push(Event::new(
                "foreign",
                true,
                format!(
                    "{} in {} {} a higher step than this run's newest save but {} not written by \
                     this run (left by an earlier run, or another user's): {} as older than every \
                     save of this run",
                    named.join(", "),
                    self.dir.display(),
                    if named.len() == 1 { "has" } else { "have" },
                    if named.len() == 1 { "was" } else { "were" },
                    if named.len() == 1 {
                        "it counts"
                    } else {
                        "they count"
                    },
                ),
            ));
        }
    }

    /// Deletes one checkpoint under the lock; accounts for it and reports it.
    /// Deletes one checkpoint (identity re-checked) and accounts for it; returns the bytes freed.
    fn delete_one(&mut self, locked: &LockedDir, c: &Checkpoint, t: f64, why: &str, forced: bool) -> u64 {
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

    fn lock(&mut self, plan: &Plan) -> Option<LockedDir> {
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
    fn apply_retention(&mut self, t: f64) {
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
    fn forced_order(plan: &Plan) -> Vec<usize> {
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
    fn force_room(&mut self, target: u64, t: f64) {
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
    fn tell_degraded(&mut self, plan: &Plan, deleted: &[usize]) {
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
    fn tell_recovered(&mut self, plan: &Plan) {
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

    /// Counts `freed` bytes as free even before `statfs` shows them: btrfs (and others that free
    /// asynchronously) report them only at the next transaction commit, and re-measuring alone
    /// would make room by deleting every deletable checkpoint.
    fn credit_dir(&mut self, before: Option<(u64, u64)>, freed: u64) {
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

    fn short_reason(&self, target: u64) -> String {
        self.grade(target, false)
            .into_iter()
            .filter(|s| s.level == Level::Critical)
            .filter_map(|s| s.reason.map(|r| format!("{}: {r}", s.name)))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The ladder for `target` bytes of room: retention, then (with `on_full='prune'`) kept
    /// checkpoints, least valuable first.
    fn make_room(&mut self, target: u64, t: f64) {
        if self.dir_short(target, false) {
            self.apply_retention(t);
        }
        if self.dir_short(target, false) {
            self.force_room(target, t);
        }
    }

    /// Sets the stop (once) and releases the emergency reserve for the final checkpoint.
    fn stop(&mut self, reason: String) {
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
    fn stop_if_short(&mut self, target: u64) {
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

    /// A due check: measure, grade, climb the ladder for room for the next save and a final one.
    pub fn check(&mut self, t: f64) {
        self.checks += 1;
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
    }

    /// Before writing `nbytes` to `path` (inside the directory): makes room for it, its staging
    /// (the file it replaces stays until the rename) and a margin, plus a final save unless the
    /// run is already stopping. Refuses with [`Error::InsufficientSpace`] when it cannot fit;
    /// when it fits but leaves no room for a final save, it is allowed and the run stops.
    pub fn before_save(&mut self, path: &Path, nbytes: u64, t: f64) -> Result<()> {
        self.check_inside(path)?;
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
    fn tried(&self) -> String {
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

    /// Measures again what the run holds under its directory, now: after a framework deleted
    /// checkpoints of its own (Lightning's top-k, the Trainer's `save_total_limit`), which the
    /// periodic rescan would see only `rescan_interval` later. Only the deleting process measures.
    pub fn rescan(&mut self, t: f64) {
        if self.deletes() && self.dir_responsive() && self.dir.is_dir() {
            self.held = held_bytes(&self.dir);
            self.last_rescan = t;
        }
    }

    fn check_inside(&self, path: &Path) -> Result<()> {
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

    /// What happened since the last call, oldest first (the Python surface warns and logs).
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Every space graded, then those never measured (a hung mount from the start, or an error),
    /// so a status report names every watched filesystem.
    fn graded_and_unknown(&self) -> Vec<SpaceStatus> {
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
    fn holdings(&self) -> String {
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

    /// The state worth keeping across a restart, trend times as ages before `t` (monotonic).
    pub fn state(&self, t: f64) -> Result<GuardState> {
        // The monitor's clock may have run ahead of `t` by a tagged event in the same instant.
        let now = self.trend.last_event_time().map_or(t, |last| t.max(last));
        Ok(GuardState {
            level: self.level,
            largest: self.largest,
            saves: self.saves,
            stop_reason: self.stop_reason.clone(),
            trend: self.trend.state(now)?,
            own: {
                let mut own: Vec<Identity> = self.run.own.iter().copied().collect();
                own.sort_unstable();
                own
            },
            run_id: self.run_id,
        })
    }

    /// Restores [`Guard::state`] at monotonic time `t`. The stop is not restored: a resumed run
    /// decides afresh (space may have been freed in between).
    pub fn load_state(&mut self, state: &GuardState, t: f64) -> Result<()> {
        self.trend = TrendMonitor::from_state(&state.trend, t)?;
        self.level = state.level;
        self.largest = self.largest.max(state.largest);
        self.saves = state.saves;
        if (1..=MAX_RUN_ID).contains(&state.run_id) && state.run_id != self.run_id {
            // The same run (a pickled copy, a resumed run): announced under its id.
            self.run_id = state.run_id;
            if self.presence.take().is_some() {
                self.presence = Presence::announce(&self.dir, self.run_id).ok();
            }
        }
        self.adopt_lineage(&state.own);
        Ok(())
    }

    /// A resumed run keeps knowing its checkpoints: those of `own` still here, and the one
    /// written next after the newest of them (the checkpoint that carried this state, written
    /// once the state was taken: the one the run resumed from).
    fn adopt_lineage(&mut self, own: &[Identity]) {
        self.run.own.extend(own.iter().copied());
        self.run.adopted.extend(own.iter().copied());
        if own.is_empty() || !self.dir.is_dir() {
            return;
        }
        let Ok(plan) = self.plan(None) else { return };
        let mut by_time: Vec<&Checkpoint> = plan.items.iter().map(|i| &i.checkpoint).collect();
        by_time.sort_by(|a, b| a.mtime.total_cmp(&b.mtime));
        let newest_own = by_time.iter().rposition(|c| own.contains(&(c.dev, c.ino)));
        let next = newest_own.and_then(|k| by_time.get(k + 1));
        if let Some(c) = next.filter(|c| c.uid == self.run.uid) {
            self.run.own.insert((c.dev, c.ino));
            self.run.adopted.insert((c.dev, c.ino));
        }
    }

    /// Deletes the emergency reserve file now and leaves the directory (the guard is done).
    pub fn close(&mut self) {
        self.presence = None;
        if let Some(reserve) = self.emergency.take() {
            if let Some(bytes) = reserve.release() {
                self.held = self.held.saturating_sub(bytes);
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.close();
    }
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

/// The warning for a filesystem whose `statfs` did not answer within `limit`.
fn unresponsive(name: &str, limit: Duration) -> Event {
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

fn usage_of(path: &Path, m: &Measured) -> DiskUsage {
    DiskUsage::from_stats(path.to_path_buf(), m.queried.clone(), &m.stats)
}

/// Parses a level name from saved state.
pub fn level_named(name: &str) -> Result<Level> {
    match name {
        "ok" => Ok(Level::Ok),
        "warn" => Ok(Level::Warn),
        "critical" => Ok(Level::Critical),
        other => Err(Error::invalid(
            "level",
            format!("{other:?}"),
            "expected 'ok', 'warn' or 'critical'",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::{KeepBest, KeepLast, Mode, Protect};
    use std::io::Write;

    const MIB: u64 = 1024 * 1024;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("diskguard-guard-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    /// A complete torch-style zip of about `bytes`, written for real (allocated blocks).
    fn write_checkpoint(dir: &Path, name: &str, bytes: u64) {
        let mut data = b"PK\x03\x04".to_vec();
        data.resize(usize::try_from(bytes).expect("small") - 22, 7);
        data.extend_from_slice(b"PK\x05\x06");
        data.extend_from_slice(&[0u8; 18]);
        std::fs::File::create(dir.join(name))
            .and_then(|mut f| f.write_all(&data))
            .expect("write checkpoint");
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn config(budget: u64, policy: Option<Policy>) -> GuardConfig {
        GuardConfig {
            budget: Some(budget),
            policy,
            warn: None,
            critical: None,
            ..GuardConfig::default()
        }
    }

    fn guard(dir: &Path, config: GuardConfig) -> Guard {
        Guard::new(dir, &std::env::temp_dir(), &[], config, 0.0).expect("guard")
    }

    fn deleted(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .filter(|e| e.kind == "deleted")
            .map(|e| {
                e.message
                    .split(' ')
                    .nth(1)
                    .unwrap_or("")
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn ranks_decide_who_measures_and_are_validated() {
        let ranks = |rank, local_rank, world_size| Ranks {
            rank,
            local_rank,
            world_size,
        };
        assert!(ranks(0, 0, 1).measures(true) && ranks(0, 0, 1).measures(false));
        assert!(ranks(4, 0, 8).measures(false) && !ranks(4, 0, 8).measures(true));
        assert!(!ranks(1, 1, 8).measures(false) && !ranks(1, 1, 8).measures(true));
        assert!(ranks(0, 0, 0).validate().is_err());
        assert!(ranks(2, 0, 2).validate().is_err());
        assert!(ranks(1, 2, 2).validate().is_err());
        assert!(ranks(1, 1, 2).validate().is_ok());
    }

    #[test]
    fn only_the_measuring_rank_deletes() {
        let dir = temp_dir("ranks");
        for step in 1..=3 {
            write_checkpoint(&dir, &format!("step={step}.pt"), MIB);
        }
        let short = |rank, local_rank| GuardConfig {
            ranks: Ranks {
                rank,
                local_rank,
                world_size: 2,
            },
            ..config(7 * MIB / 2, None)
        };
        let mut other = guard(&dir, short(1, 1));
        other.check(1.0);
        assert!(!other.deletes() && !other.should_stop() && other.metrics().is_none());
        assert_eq!(names(&dir).len(), 3);
        let mut owner = guard(&dir, short(0, 0));
        owner.check(1.0);
        assert!(owner.deletes() && owner.metrics().is_some());
        assert_eq!(names(&dir), ["step=3.pt"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn referenced_entries_are_never_deleted() {
        let dir = temp_dir("referenced");
        for step in 1..=3 {
            write_checkpoint(&dir, &format!("step={step}.pt"), MIB);
        }
        let mut g = guard(&dir, config(9 * MIB / 2, None));
        g.set_referenced(&[
            dir.join("step=1.pt"),
            dir.join("../elsewhere.pt"),
            PathBuf::from("/etc"),
        ])
        .expect("paths");
        g.check(1.0);
        assert_eq!(names(&dir), ["step=1.pt", "step=3.pt"]);
        assert!(g.set_referenced(&[PathBuf::new()]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn making_room_deletes_least_valuable_first_and_never_newest_best_or_protected() {
        let dir = temp_dir("ladder");
        for (step, loss) in [(1, 0.9), (2, 0.1), (3, 0.8), (4, 0.7), (5, 0.6), (6, 0.5)] {
            write_checkpoint(&dir, &format!("step={step}-val_loss={loss}.pt"), MIB);
        }
        let policy = Policy::new(
            vec![
                Rule::Last(KeepLast::new(6).expect("rule")),
                Rule::Best(KeepBest::new(1, "val_loss".into(), Mode::Min, vec![]).expect("rule")),
                Rule::Protect(Protect::new(vec!["step=3-val_loss=0.8.pt".into()]).expect("rule")),
            ],
            3600.0,
            vec![],
        )
        .expect("policy");
        // Six checkpoints held; the budget leaves room for one, the ladder needs two and a margin.
        let mut g = guard(&dir, config(7 * MIB, Some(policy)));
        g.check(1.0);
        let events = g.take_events();
        // Oldest kept-as-last first; step 2 (best) and 3 (protected) are skipped; 6 is newest.
        assert_eq!(
            deleted(&events),
            ["step=1-val_loss=0.9.pt", "step=4-val_loss=0.7.pt"]
        );
        assert!(names(&dir).contains(&"step=2-val_loss=0.1.pt".to_owned()));
        assert!(names(&dir).contains(&"step=3-val_loss=0.8.pt".to_owned()));
        assert!(names(&dir).contains(&"step=6-val_loss=0.5.pt".to_owned()));
        // Each deletion is a log record; one warning says retention degraded.
        assert!(events.iter().filter(|e| e.kind == "deleted").all(|e| !e.warning));
        assert_eq!(
            events
                .iter()
                .filter(|e| e.kind == "degraded" && e.warning)
                .count(),
            1,
            "{events:?}"
        );
        assert!(!g.should_stop(), "room was made: {events:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn on_full_stop_deletes_nothing_kept_and_stops_with_a_reason() {
        let dir = temp_dir("stop");
        for step in 1..=4 {
            write_checkpoint(&dir, &format!("step={step}.pt"), MIB);
        }
        let mut cfg = config(
            5 * MIB,
            Some(
                Policy::new(vec![Rule::Last(KeepLast::new(4).expect("rule"))], 3600.0, vec![])
                    .expect("policy"),
            ),
        );
        cfg.on_full = OnFull::Stop;
        let mut g = guard(&dir, cfg);
        g.check(1.0);
        assert_eq!(names(&dir).len(), 4);
        let reason = g.stop_reason().expect("stopped").to_owned();
        assert!(reason.contains("on_full='stop'"), "{reason}");
        assert!(reason.contains("budget"), "{reason}");
    }

    #[test]
    fn the_only_checkpoint_is_never_deleted_and_a_save_that_cannot_fit_is_refused() {
        let dir = temp_dir("refuse");
        write_checkpoint(&dir, "step=1.pt", MIB);
        let mut g = guard(&dir, config(2 * MIB, None));
        let err = g
            .before_save(&dir.join("step=2.pt"), 3 * MIB, 1.0)
            .expect_err("cannot fit");
        match err {
            Error::InsufficientSpace {
                needed,
                available,
                message,
            } => {
                assert!(needed > 3 * MIB && available < MIB, "{needed} {available}");
                assert!(message.contains("tried"), "{message}");
            }
            other => unreachable!("{other:?}"),
        }
        assert_eq!(names(&dir), ["step=1.pt"]);
        assert!(g.should_stop());
    }

    #[test]
    fn a_save_that_fits_but_leaves_no_room_for_a_final_one_stops_the_run() {
        let dir = temp_dir("last-slot");
        let mut g = guard(&dir, config(3 * MIB, None));
        g.before_save(&dir.join("step=1.pt"), MIB, 1.0).expect("fits");
        assert!(!g.should_stop());
        write_checkpoint(&dir, "step=1.pt", MIB);
        g.after_save(&dir.join("step=1.pt"), MIB, 2.0).expect("recorded");
        // The budget holds two checkpoints: the next save fits, a final one after it would not.
        g.before_save(&dir.join("step=2.pt"), MIB, 3.0)
            .expect("still fits");
        assert!(g.should_stop(), "{:?}", g.take_events());
        // The final save is allowed into the last slot.
        write_checkpoint(&dir, "step=2.pt", MIB);
        g.after_save(&dir.join("step=2.pt"), MIB, 4.0).expect("recorded");
        assert!(g.before_save(&dir.join("step=3.pt"), MIB, 5.0).is_ok() == (names(&dir).len() < 2));
    }

    #[test]
    fn overwriting_a_checkpoint_needs_room_for_both_until_the_rename() {
        let dir = temp_dir("overwrite");
        write_checkpoint(&dir, "last.pt", 2 * MIB);
        // Room for one more 2 MiB file (plus margin), not for the replacement and a final save.
        let mut g = guard(&dir, config(5 * MIB, None));
        let fresh = g.before_save(&dir.join("new.pt"), 2 * MIB, 1.0);
        assert!(
            fresh.is_ok() && g.should_stop(),
            "a new name fits, and is the last save"
        );
        let mut g = guard(&dir, config(5 * MIB, None));
        match g.before_save(&dir.join("last.pt"), 2 * MIB, 1.0) {
            Err(Error::InsufficientSpace { needed, message, .. }) => {
                assert!(needed >= 4 * MIB, "the old file stays until the rename: {needed}");
                assert!(message.contains("of the file it replaces"), "{message}");
            }
            other => unreachable!("{other:?}"),
        }
        assert_eq!(names(&dir), ["last.pt"], "the only checkpoint is never deleted");
    }

    #[test]
    fn levels_change_with_hysteresis_not_at_every_crossing() {
        use Level::{Ok as Fine, Warn};
        let dir = temp_dir("hysteresis");
        let mut cfg = config(100 * MIB, None);
        cfg.warn = Some(0.85);
        cfg.reserve = Reserve::Bytes(MIB);
        let mut g = guard(&dir, cfg);
        let mut levels = Vec::new();
        for (t, held) in [86, 84, 86, 84, 82, 84].into_iter().enumerate() {
            g.held = held * MIB;
            #[allow(clippy::cast_precision_loss)]
            g.check(t as f64);
            levels.push(g.level());
        }
        assert_eq!(levels, [Warn, Warn, Warn, Warn, Fine, Fine]);
        let changes = g.take_events().into_iter().filter(|e| e.kind == "level").count();
        assert_eq!(changes, 2, "one event per level change");
    }

    #[test]
    fn the_emergency_reserve_is_not_a_checkpoint_and_is_released_at_the_stop() {
        let dir = temp_dir("reserve");
        write_checkpoint(&dir, "step=1.pt", MIB);
        let mut cfg = config(4 * MIB, None);
        cfg.emergency_reserve = Some(MIB);
        cfg.on_full = OnFull::Stop;
        let mut g = guard(&dir, cfg);
        let (reserve, bytes) = g.status().emergency_reserve.expect("a reserve file");
        assert_eq!(bytes, MIB);
        assert_eq!(std::fs::metadata(&reserve).expect("reserve file").len(), MIB);
        let name = reserve.file_name().expect("name").to_string_lossy().into_owned();
        assert!(name.starts_with(RESERVE_PREFIX), "{name}");
        let plan = g.plan(None).expect("plan");
        assert_eq!(plan.items.len(), 1, "the reserve file is not a checkpoint");
        write_checkpoint(&dir, "step=2.pt", MIB);
        g.after_save(&dir.join("step=2.pt"), MIB, 1.0).expect("recorded");
        assert!(g.should_stop());
        assert!(!reserve.exists(), "released for the final checkpoint");
        assert!(g.take_events().iter().any(|e| e.kind == "reserve"));
        drop(g);
        let mut cfg = config(4 * MIB, None);
        cfg.emergency_reserve = Some(MIB);
        let g = guard(&dir, cfg);
        let (reserve, _) = g.status().emergency_reserve.expect("a reserve file");
        assert!(reserve.exists());
        drop(g);
        assert!(!reserve.exists(), "removed when the guard goes");
    }

    #[test]
    fn paths_outside_the_directory_and_bad_settings_are_refused() {
        let dir = temp_dir("outside");
        let mut g = guard(&dir, config(MIB, None));
        for path in [dir.join("../x.pt"), PathBuf::from("/etc/x.pt"), dir.clone()] {
            assert!(
                matches!(g.before_save(&path, 1, 1.0), Err(Error::InvalidArgument { .. })),
                "{path:?}"
            );
        }
        assert!(inside(&dir, &dir.join("sub/../x.pt")));
        let bad = [
            GuardConfig {
                warn: Some(f64::NAN),
                ..GuardConfig::default()
            },
            GuardConfig {
                critical: Some(1.5),
                ..GuardConfig::default()
            },
            GuardConfig {
                budget: Some(0),
                ..GuardConfig::default()
            },
            GuardConfig {
                hysteresis: f64::INFINITY,
                ..GuardConfig::default()
            },
            GuardConfig {
                statfs_timeout: 0.0,
                ..GuardConfig::default()
            },
            GuardConfig {
                check_every_steps: 0,
                ..GuardConfig::default()
            },
            GuardConfig {
                check_every_seconds: -1.0,
                ..GuardConfig::default()
            },
        ];
        for cfg in bad {
            let err = Guard::new(&dir, Path::new("/tmp"), &[], cfg.clone(), 0.0).expect_err("invalid");
            assert!(matches!(err, Error::InvalidArgument { .. }), "{cfg:?}: {err}");
        }
        assert!(Reserve::parse("nope").is_err() && OnFull::parse("maybe").is_err());
        assert_eq!(Reserve::parse("2MiB").expect("size"), Reserve::Bytes(2 * MIB));
    }
}
