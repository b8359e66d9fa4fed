//! Deleting what a plan says, and nothing else.
//!
//! The directory is reopened with `O_NOFOLLOW` and must still be the one scanned (device and
//! inode); an advisory `flock` on it keeps two processes (two ranks) from pruning it at once. Each
//! entry is re-checked with `fstatat(AT_SYMLINK_NOFOLLOW)` right before `unlinkat`: if it is no
//! longer the same inode it is left alone. Directories are removed depth-first through file
//! descriptors, never following a symlink and never crossing into another filesystem.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, Flock, FlockArg};
use nix::sys::stat::{fstat, fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::checkpoints::{
    self, allocated, ctime_of, entry_names, is_entry_name, kind, mtime_of, open_directory, DirLink,
    DIR_FLAGS, FILE_FLAGS,
};
use crate::error::{Error, Result};
use crate::names::{checkpoint_stem, is_staging_dir_name, is_temp_name, OWN_PREFIX};
use crate::retention::{free_space_order, plan_dir, validate_now, Action, Plan, Policy};
use crate::usage::statfs;

/// What happened to one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Deleted.
    Deleted,
    /// Left alone because it changed since the plan (the reason says how).
    Skipped(String),
    /// The deletion failed (errno text); the rest went on.
    Failed(String),
}

impl Outcome {
    /// `'deleted'`, `'skipped'` or `'failed'`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Deleted => "deleted",
            Outcome::Skipped(_) => "skipped",
            Outcome::Failed(_) => "failed",
        }
    }

    /// Why it was skipped or failed; empty when deleted.
    pub fn detail(&self) -> &str {
        match self {
            Outcome::Deleted => "",
            Outcome::Skipped(why) | Outcome::Failed(why) => why,
        }
    }
}

/// What to do when another process holds the directory's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    /// Wait for it, however long.
    Wait,
    /// Fail at once with [`Error::Busy`].
    FailIfBusy,
    /// Wait at most this long, then fail with [`Error::Busy`].
    Timeout(Duration),
}

impl LockWait {
    /// From the Python-style pair `wait` / `timeout` (seconds): `wait=false` fails at once, a
    /// timeout bounds the wait. A timeout with `wait=false` contradicts itself and is refused.
    pub fn from_options(wait: bool, timeout: Option<f64>) -> Result<Self> {
        match (wait, timeout) {
            (true, None) => Ok(LockWait::Wait),
            (false, None) => Ok(LockWait::FailIfBusy),
            // Longer than a Duration holds (centuries) is as good as no bound.
            (true, Some(seconds)) if seconds.is_finite() && seconds >= 0.0 => {
                Ok(Duration::try_from_secs_f64(seconds).map_or(LockWait::Wait, LockWait::Timeout))
            }
            (true, Some(seconds)) => Err(Error::invalid(
                "timeout",
                seconds,
                "expected a finite number of seconds >= 0, or None to wait as long as it takes",
            )),
            (false, Some(seconds)) => Err(Error::invalid(
                "timeout",
                seconds,
                "expected None with wait=False (which fails at once when the lock is held)",
            )),
        }
    }
}

/// How often a bounded wait retries the lock.
const LOCK_POLL: Duration = Duration::from_millis(20);

/// The directory, reopened, identity-checked and locked for the duration.
pub struct LockedDir {
    fd: Flock<OwnedFd>,
    path: PathBuf,
}

impl LockedDir {
    /// Opens `dir` (a symlink refused or followed as `link` says), checks it is still
    /// `(dev, ino)` when given, and takes the lock.
    pub fn open(dir: &Path, expect: Option<(u64, u64)>, wait: LockWait, link: DirLink) -> Result<Self> {
        let fd = open_directory(dir, link)?;
        let st = fstat(&fd).map_err(|e| Error::os("fstat", dir, e))?;
        if let Some((dev, ino)) = expect {
            if (st.st_dev, st.st_ino) != (dev, ino) {
                return Err(Error::Refused {
                    path: dir.to_path_buf(),
                    reason: "the directory was replaced since it was scanned (make a new plan)".into(),
                });
            }
        }
        let busy = || Error::Busy {
            path: dir.to_path_buf(),
            holders: lock_holders(st.st_dev, st.st_ino),
        };
        let fd = lock(fd, wait).map_err(|errno| {
            if errno == Errno::EWOULDBLOCK {
                busy()
            } else {
                Error::os("flock", dir, errno)
            }
        })?;
        Ok(LockedDir {
            fd,
            path: dir.to_path_buf(),
        })
    }

    /// Deletes entry `name` if it is still the file `(dev, ino, ctime)` that was examined.
    pub fn delete(&self, name: &OsStr, dev: u64, ino: u64, ctime: (i64, i64)) -> Outcome {
        if !is_entry_name(name) {
            return Outcome::Failed(format!("{name:?} is not a name of an entry in the directory"));
        }
        let st = match fstatat(&*self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Outcome::Skipped("already gone".into()),
            Err(e) => return Outcome::Failed(format!("fstatat: {}", e.desc())),
        };
        if (st.st_dev, st.st_ino) != (dev, ino) {
            return Outcome::Skipped("replaced since the plan (different inode)".into());
        }
        if ctime_of(&st) != ctime {
            return Outcome::Skipped("changed since the plan (different inode change time)".into());
        }
        let result = if kind(&st) == SFlag::S_IFDIR {
            // Checked whole before anything goes, so a tree with a mount inside is left whole.
            walk_tree(self.fd.as_fd(), name, dev, 0, &mut |_, _, _| Ok(()))
                .and_then(|()| walk_tree(self.fd.as_fd(), name, dev, 0, &mut unlink))
        } else {
            unlink(self.fd.as_fd(), name, false)
        };
        match result {
            Ok(()) => Outcome::Deleted,
            Err(e) => Outcome::Failed(format!("{} ({})", e.desc(), self.path.join(name).display())),
        }
    }
}

/// Takes the exclusive lock on `fd` as `wait` says; `EWOULDBLOCK` when it is held.
fn lock(fd: OwnedFd, wait: LockWait) -> std::result::Result<Flock<OwnedFd>, Errno> {
    let deadline = match wait {
        LockWait::Wait => return Flock::lock(fd, FlockArg::LockExclusive).map_err(|(_, e)| e),
        LockWait::FailIfBusy => Instant::now(),
        LockWait::Timeout(limit) => match Instant::now().checked_add(limit) {
            Some(deadline) => deadline,
            None => return lock(fd, LockWait::Wait), // beyond the clock's range: no bound
        },
    };
    let mut fd = fd;
    loop {
        match Flock::lock(fd, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((back, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                fd = back;
                std::thread::sleep(LOCK_POLL.min(deadline.saturating_duration_since(Instant::now())));
            }
            Err((_, errno)) => return Err(errno),
        }
    }
}

/// Process ids holding a lock on the inode `(dev, ino)`, from `/proc/locks` (empty when it cannot
/// be read, or the holders live in another pid namespace).
pub fn lock_holders(dev: u64, ino: u64) -> Vec<u32> {
    let Ok(table) = std::fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters are marked "->" and skipped.
    let wanted = format!(
        "{:02x}:{:02x}:{ino}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    let mut pids: Vec<u32> = table
        .lines()
        .filter(|line| !line.contains("->"))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let at = fields.iter().position(|f| *f == wanted)?;
            fields.get(at.checked_sub(1)?)?.parse().ok()
        })
        .filter(|&pid| pid != 0)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// A run's presence in its checkpoint directory: a shared open-file-description lock (`F_OFD_SETLK`,
/// a read lock on one byte of the directory, at the run's id) held for the guard's life. Nothing
/// is written to the directory, and it is released with the descriptor, even when the process
/// dies. It is a different lock from the `flock` deletions take, so a live run never blocks a
/// prune. Copies of one run (a guard pickled into another process) share the id, so they do not
/// take each other for another run; nor do guards of one process (a notebook's finished Trainer
/// and its next one), which cannot be training in that directory at once.
#[derive(Debug)]
pub struct Presence {
    fd: OwnedFd,
    at: i64,
    dir: (u64, u64),
}

/// The presences of this process: (directory, id), so its own guards are not another live run.
static PRESENCES: std::sync::Mutex<Vec<((u64, u64), i64)>> = std::sync::Mutex::new(Vec::new());

fn presences() -> std::sync::MutexGuard<'static, Vec<((u64, u64), i64)>> {
    PRESENCES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The highest run id: byte offsets past it stay free for the probes.
pub const MAX_RUN_ID: u64 = 1 << 62;

fn presence_lock(kind: i32, start: i64, len: i64) -> nix::libc::flock {
    #[allow(clippy::cast_possible_truncation)] // F_RDLCK, F_WRLCK and SEEK_SET are tiny
    nix::libc::flock {
        l_type: kind as nix::libc::c_short,
        l_whence: nix::libc::SEEK_SET as nix::libc::c_short,
        l_start: start,
        l_len: len,
        l_pid: 0,
    }
}

impl Presence {
    /// Announces run `id` (1 to [`MAX_RUN_ID`]) in `dir` (a symlink refused).
    pub fn announce(dir: &Path, id: u64) -> Result<Self> {
        let at = i64::try_from(id.clamp(1, MAX_RUN_ID)).unwrap_or(1);
        let fd = open_directory(dir, DirLink::Refuse)?;
        let st = fstat(&fd).map_err(|e| Error::os("fstat", dir, e))?;
        let lock = presence_lock(nix::libc::F_RDLCK, at, 1);
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_OFD_SETLK(&lock))
            .map_err(|e| Error::os("fcntl(F_OFD_SETLK)", dir, e))?;
        let dir = (st.st_dev, st.st_ino);
        presences().push((dir, at));
        Ok(Presence { fd, at, dir })
    }

    /// Whether another live run (another id, in another process) announced itself in the
    /// directory.
    pub fn others(&self) -> bool {
        let held = |start: i64, len: i64| {
            let mut probe = presence_lock(nix::libc::F_WRLCK, start, len);
            nix::fcntl::fcntl(&self.fd, nix::fcntl::FcntlArg::F_OFD_GETLK(&mut probe))
                .is_ok_and(|_| i32::from(probe.l_type) != nix::libc::F_UNLCK)
        };
        // The gaps between this process's own bytes (0 as a length: to the end of every offset).
        let mut ours: Vec<i64> = presences()
            .iter()
            .filter(|(dir, _)| *dir == self.dir)
            .map(|&(_, at)| at)
            .chain(std::iter::once(self.at))
            .collect();
        ours.sort_unstable();
        ours.dedup();
        let mut from = 0;
        for at in ours {
            if at > from && held(from, at - from) {
                return true;
            }
            from = at + 1;
        }
        held(from, 0)
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        let mut all = presences();
        if let Some(k) = all.iter().position(|&(dir, at)| dir == self.dir && at == self.at) {
            all.swap_remove(k);
        }
    }
}

/// `unlinkat` of `name` in `dir`, as a directory when `is_dir`.
fn unlink(dir: BorrowedFd<'_>, name: &OsStr, is_dir: bool) -> nix::Result<()> {
    let flag = if is_dir {
        UnlinkatFlags::RemoveDir
    } else {
        UnlinkatFlags::NoRemoveDir
    };
    unlinkat(dir, name, flag)
}

/// Visits directory `name` under `parent` depth-first through file descriptors, never following
/// a symlink: `visit(dir, entry, is_dir)` is called for every entry, a directory after its
/// contents, and last for `name` itself. Fails with `EXDEV` on meeting another device (a mount
/// inside: not ours to touch) and `ELOOP` past 256 levels.
fn walk_tree(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    dev: u64,
    depth: usize,
    visit: &mut impl FnMut(BorrowedFd<'_>, &OsStr, bool) -> nix::Result<()>,
) -> nix::Result<()> {
    if depth > 256 {
        return Err(Errno::ELOOP);
    }
    let fd = openat(parent, name, DIR_FLAGS, Mode::empty())?;
    if fstat(&fd)?.st_dev != dev {
        return Err(Errno::EXDEV);
    }
    for child in entry_names(&fd)? {
        let st = fstatat(&fd, child.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if kind(&st) == SFlag::S_IFDIR {
            walk_tree(fd.as_fd(), &child, dev, depth + 1, visit)?;
        } else {
            visit(fd.as_fd(), &child, false)?; // files and symlinks alike; a symlink is never followed
        }
    }
    drop(fd);
    visit(parent, name, true)
}

/// Applies `plan`: deletes every `Delete` item still identical to what was scanned, under the
/// directory's lock. Returns one outcome per deleted-or-attempted item index.
pub fn apply(plan: &Plan, wait: LockWait) -> Result<Vec<(usize, Outcome)>> {
    let dir = LockedDir::open(&plan.dir, Some((plan.dev, plan.ino)), wait, DirLink::Refuse)?;
    Ok(plan
        .items
        .iter()
        .enumerate()
        .filter(|(_, item)| item.action == Action::Delete)
        .map(|(i, _)| (i, delete_item(&dir, plan, i)))
        .collect())
}

fn delete_item(dir: &LockedDir, plan: &Plan, i: usize) -> Outcome {
    let c = &plan.items[i].checkpoint;
    dir.delete(&c.name, c.dev, c.ino, c.ctime)
}

/// How much space [`free_space`] must make available: a byte count, or a fraction of the
/// filesystem's size. Two variants, so `1` byte and `1.0` (the whole disk) cannot be confused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Bytes available to non-root.
    Bytes(u64),
    /// A fraction in (0, 1] of the filesystem's size (`df` Size).
    Fraction(f64),
}

impl Target {
    /// Exactly one of `bytes` / `fraction` (as the Python keywords `target_bytes=` and
    /// `target_fraction=`), validated.
    pub fn from_options(bytes: Option<u64>, fraction: Option<f64>) -> Result<Self> {
        match (bytes, fraction) {
            (Some(bytes), None) => Ok(Target::Bytes(bytes)),
            (None, Some(f)) if f.is_finite() && f > 0.0 && f <= 1.0 => Ok(Target::Fraction(f)),
            (None, Some(f)) => Err(Error::invalid(
                "target_fraction",
                f,
                "expected a fraction of the filesystem's size in (0, 1]",
            )),
            (bytes, _) => Err(Error::invalid(
                "target_bytes",
                bytes.map_or_else(|| "None".to_owned(), |b| b.to_string()),
                "expected exactly one of target_bytes (bytes, e.g. '20GiB') and target_fraction \
                 (a fraction of the filesystem's size in (0, 1])",
            )),
        }
    }

    /// The target in bytes for the filesystem under `dir`.
    pub fn bytes(self, dir: &Path) -> Result<u64> {
        match self {
            Target::Bytes(bytes) => Ok(bytes),
            Target::Fraction(f) => {
                let total = crate::usage::usage(dir)?.total;
                #[allow(
                    clippy::cast_precision_loss,
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss
                )] // f in (0, 1]: the product lies in [0, total]
                let bytes = (total as f64 * f) as u64;
                Ok(bytes)
            }
        }
    }
}

/// What `free_space` achieved.
#[derive(Debug, Clone, PartialEq)]
pub struct FreeSpaceReport {
    /// Bytes available to non-root when it stopped.
    pub avail: u64,
    /// The target in bytes.
    pub target: u64,
    /// `avail >= target`. When false, everything deletable was tried: what is left is the
    /// invariant (newest complete, protected), skipped partial saves, or failed deletions.
    pub met: bool,
    /// Items (plan indices) it tried, with their outcomes, in order.
    pub outcomes: Vec<(usize, Outcome)>,
    /// When deleting every candidate could not reach the target: by how many bytes it would
    /// still fall short. Then nothing was deleted.
    pub shortfall: Option<u64>,
}

/// Bytes deleting every one of `candidates` (plan indices) frees: a hard-linked checkpoint frees
/// nothing (its data stays under its other names).
pub fn reachable_bytes(plan: &Plan, candidates: &[usize]) -> u64 {
    candidates
        .iter()
        .map(|&i| &plan.items[i].checkpoint)
        .filter(|c| c.nlink <= 1)
        .map(|c| c.size)
        .fold(0, u64::saturating_add)
}

/// Deletes the least valuable deletable checkpoints of `plan` until `avail` reaches `target`,
/// re-measuring after each deletion; stops at the invariant. When even deleting every candidate
/// would not reach the target, deletes nothing and says by how much it falls short.
pub fn free_space(plan: &Plan, target: Target, wait: LockWait) -> Result<FreeSpaceReport> {
    let dir = LockedDir::open(&plan.dir, Some((plan.dev, plan.ino)), wait, DirLink::Refuse)?;
    let target = target.bytes(&plan.dir)?;
    let avail = || -> Result<u64> {
        let stats = statfs(&plan.dir)?;
        Ok(stats.blocks_available.saturating_mul(stats.fragment_size))
    };
    let mut now = avail()?;
    let order = free_space_order(plan);
    let reachable = now.saturating_add(reachable_bytes(plan, &order));
    if now < target && reachable < target {
        return Ok(FreeSpaceReport {
            avail: now,
            target,
            met: false,
            outcomes: Vec::new(),
            shortfall: Some(target - reachable),
        });
    }
    let mut outcomes = Vec::new();
    for i in order {
        if now >= target {
            break;
        }
        outcomes.push((i, delete_item(&dir, plan, i)));
        now = avail()?;
    }
    Ok(FreeSpaceReport {
        avail: now,
        target,
        met: now >= target,
        outcomes,
        shortfall: None,
    })
}

/// Plans the checkpoint directory `dir` under `policy` at `now`, then frees space as
/// [`free_space`] does: the plan and what was done to it.
pub fn free_space_in(
    dir: &Path,
    policy: &Policy,
    target: Target,
    wait: LockWait,
    now: f64,
) -> Result<(Plan, FreeSpaceReport)> {
    let plan = plan_dir(dir, policy, now)?;
    let report = free_space(&plan, target, wait)?;
    Ok((plan, report))
}

/// A leftover of a crashed save.
#[derive(Debug, Clone, PartialEq)]
pub struct Orphan {
    /// Directory it is in, as given to [`find_orphans`].
    pub dir: PathBuf,
    /// Device and inode of that directory when found: removal refuses another directory.
    pub dir_id: (u64, u64),
    /// Entry name.
    pub name: OsString,
    /// Allocated bytes it holds (recursive for directories).
    pub size: u64,
    /// Seconds since it was last modified.
    pub age: f64,
    /// Why it counts as an orphan.
    pub reason: String,
    /// Identity for the re-check before removal.
    pub dev: u64,
    /// See `dev`.
    pub ino: u64,
    /// See [`crate::checkpoints::Checkpoint::ctime`].
    pub ctime: (i64, i64),
}

/// fsspec's `mkstemp()` names (Lightning stages `.ckpt` files there): `tmp` + 8 characters.
fn fsspec_like(name: &str) -> bool {
    name.len() == 11
        && name.starts_with("tmp")
        && name[3..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn starts_with_zip(dir: &impl AsFd, name: &OsStr) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(fd) = openat(dir, name, FILE_FLAGS, Mode::empty()) else {
        return false;
    };
    let mut head = [0u8; 4];
    std::fs::File::from(fd).read_exact_at(&mut head, 0).is_ok() && head == *b"PK\x03\x04"
}

/// Finds orphans older than `min_age` seconds owned by `uid`: partial saves in the checkpoint
/// directory (temp names, and contents a crash cut short that are older than `min_age`), and
/// known staging names in `temp_dir` (`tmp-checkpoint-*`, `*.orbax-checkpoint-tmp*`, `*.tmp`
/// of a checkpoint, `.diskguard-*`, and fsspec `tmpXXXXXXXX` files holding a zip). The checkpoint
/// directory must not be a symlink; the temp dir may be (it is followed, and removal opens it the
/// same way).
pub fn find_orphans(
    checkpoint_dir: &Path,
    temp_dir: Option<&Path>,
    min_age: f64,
    uid: u32,
    now: f64,
) -> Result<Vec<Orphan>> {
    if !(min_age.is_finite() && min_age >= 0.0) {
        return Err(Error::invalid(
            "min_age",
            min_age,
            "expected a finite number of seconds >= 0",
        ));
    }
    validate_now(now)?;
    let mut found = partial_saves(checkpoint_dir, min_age, uid, now)?;
    if let Some(temp) = temp_dir {
        found.extend(staging_leftovers(temp, min_age, uid, now)?);
    }
    Ok(found)
}

/// Incomplete checkpoints in the checkpoint directory older than `min_age`, owned by `uid`.
fn partial_saves(dir: &Path, min_age: f64, uid: u32, now: f64) -> Result<Vec<Orphan>> {
    let fd = open_directory(dir, DirLink::Refuse)?;
    let dir_id = identity(&fd, dir)?;
    let scanned = checkpoints::scan(&fd, dir, &[])?;
    let mut found = Vec::new();
    for mut c in scanned.checkpoints {
        checkpoints::verify_file(&fd, &mut c);
        let Some(why) = c.incomplete.clone() else { continue };
        let Ok(st) = fstatat(&fd, c.name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        let age = now - c.mtime;
        if st.st_uid == uid && age >= min_age {
            found.push(Orphan {
                dir: dir.to_path_buf(),
                dir_id,
                name: c.name,
                size: c.size,
                age,
                reason: why,
                dev: c.dev,
                ino: c.ino,
                ctime: c.ctime,
            });
        }
    }
    Ok(found)
}

/// Known staging names in the temp dir older than `min_age`, owned by `uid`.
fn staging_leftovers(temp: &Path, min_age: f64, uid: u32, now: f64) -> Result<Vec<Orphan>> {
    let fd = open_directory(temp, DirLink::Follow)?;
    let dir_id = identity(&fd, temp)?;
    let mut found = Vec::new();
    for name in entry_names(&fd).map_err(|e| Error::os("readdir", temp, e))? {
        let Ok(st) = fstatat(&fd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        let age = now - mtime_of(&st);
        let kind = kind(&st);
        if st.st_uid != uid || age < min_age || !(kind == SFlag::S_IFREG || kind == SFlag::S_IFDIR) {
            continue;
        }
        let Some(reason) = staging_reason(&fd, &name, kind) else {
            continue;
        };
        found.push(Orphan {
            dir: temp.to_path_buf(),
            dir_id,
            name,
            size: allocated(&st),
            age,
            reason: reason.to_owned(),
            dev: st.st_dev,
            ino: st.st_ino,
            ctime: ctime_of(&st),
        });
    }
    Ok(found)
}

/// Why a temp-dir entry is a checkpoint's staging leftover, if it is one.
fn staging_reason(dir: &OwnedFd, name: &OsStr, kind: SFlag) -> Option<&'static str> {
    let text = name.to_string_lossy();
    let checkpoint_tmp = is_temp_name(&text)
        && (is_staging_dir_name(&text)
            || checkpoint_stem(text.trim_end_matches(".tmp").trim_end_matches(".partial")).is_some());
    if text.starts_with(OWN_PREFIX) {
        Some("diskguard safe-save staging file")
    } else if checkpoint_tmp {
        Some("checkpoint staging name")
    } else if kind == SFlag::S_IFREG && fsspec_like(&text) && starts_with_zip(dir, name) {
        Some("fsspec staging file holding a torch checkpoint (Lightning saves through $TMPDIR)")
    } else {
        None
    }
}

fn identity(fd: &OwnedFd, dir: &Path) -> Result<(u64, u64)> {
    let st = fstat(fd).map_err(|e| Error::os("fstat", dir, e))?;
    Ok((st.st_dev, st.st_ino))
}

/// Removes `orphans`, each re-checked by identity (its directory's too), never following a
/// symlink inside the directory. The directory is opened as [`find_orphans`] opened it for the
/// temp dir (a symlinked `$TMPDIR` is followed); its identity check keeps that safe.
pub fn remove_orphans(orphans: &[Orphan]) -> Vec<Outcome> {
    orphans
        .iter()
        .map(
            |o| match LockedDir::open(&o.dir, Some(o.dir_id), LockWait::Wait, DirLink::Follow) {
                Ok(dir) => dir.delete(&o.name, o.dev, o.ino, o.ctime),
                Err(Error::Refused { reason, .. }) => Outcome::Skipped(reason),
                Err(e) => Outcome::Failed(e.to_string()),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests;
