//! Deleting what a plan says, and nothing else.
//!
//! The directory is reopened with `O_NOFOLLOW` and must still be the one scanned (device and
//! inode); an advisory `flock` on it keeps two processes (two ranks) from pruning it at once. Each
//! entry is re-checked with `fstatat(AT_SYMLINK_NOFOLLOW)` right before `unlinkat`: if it is no
//! longer the same inode it is left alone. Directories are removed depth-first through file
//! descriptors, never following a symlink and never crossing into another filesystem.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, Flock, FlockArg, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::checkpoints::{ctime_of, open_dir, scan, DIR_FLAGS, FILE_FLAGS};
use crate::error::{Error, Result};
use crate::names::is_temp_name;
use crate::retention::{free_space_order, Action, Plan};
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

/// What to do when another process holds the directory's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    /// Wait for it.
    Wait,
    /// Give up at once with [`Error::Busy`].
    Skip,
}

/// The directory, reopened, identity-checked and locked for the duration.
pub struct LockedDir {
    fd: Flock<OwnedFd>,
    path: PathBuf,
}

impl LockedDir {
    /// Opens `dir`, checks it is still `(dev, ino)` when given, and takes the lock.
    pub fn open(dir: &Path, expect: Option<(u64, u64)>, wait: LockWait) -> Result<Self> {
        let fd = open_dir(dir)?;
        let st = fstat(&fd).map_err(|e| Error::os("fstat", dir, e))?;
        if let Some((dev, ino)) = expect {
            if (st.st_dev, st.st_ino) != (dev, ino) {
                return Err(Error::Refused {
                    path: dir.to_path_buf(),
                    reason: "the directory was replaced since the plan was made; make a new plan".into(),
                });
            }
        }
        let arg = match wait {
            LockWait::Wait => FlockArg::LockExclusive,
            LockWait::Skip => FlockArg::LockExclusiveNonblock,
        };
        let fd = Flock::lock(fd, arg).map_err(|(_, errno)| {
            if errno == Errno::EWOULDBLOCK {
                Error::Busy {
                    path: dir.to_path_buf(),
                }
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
        let result = if is_dir(&st) {
            check_one_device(&*self.fd, name, dev, 0).and_then(|()| remove_tree(&*self.fd, name, dev, 0))
        } else {
            unlink(&*self.fd, name, false)
        };
        match result {
            Ok(()) => Outcome::Deleted,
            Err(e) => Outcome::Failed(format!("{} ({})", e.desc(), self.path.join(name).display())),
        }
    }
}

fn unlink(dir: &impl AsFd, name: &OsStr, is_dir: bool) -> nix::Result<()> {
    let flag = if is_dir {
        UnlinkatFlags::RemoveDir
    } else {
        UnlinkatFlags::NoRemoveDir
    };
    unlinkat(dir, name, flag)
}

/// Entry names of an open directory, without `.` and `..`.
fn children(fd: &OwnedFd) -> nix::Result<Vec<OsString>> {
    let clone = fd.try_clone().map_err(|_| Errno::EBADF)?;
    let mut listing = Dir::from_fd(clone)?;
    let names = listing
        .iter()
        .flatten()
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    Ok(names)
}

fn is_dir(st: &nix::sys::stat::FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR
}

/// Fails with `EXDEV` if anything under directory `name` is on another device (a mount point):
/// checked before deleting anything, so such a checkpoint is left whole rather than half-deleted.
fn check_one_device(parent: &impl AsFd, name: &OsStr, dev: u64, depth: usize) -> nix::Result<()> {
    if depth > 256 {
        return Err(Errno::ELOOP);
    }
    let fd = openat(parent, name, DIR_FLAGS, Mode::empty())?;
    if fstat(&fd)?.st_dev != dev {
        return Err(Errno::EXDEV);
    }
    for child in children(&fd)? {
        let st = fstatat(&fd, child.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if is_dir(&st) {
            check_one_device(&fd, &child, dev, depth + 1)?;
        }
    }
    Ok(())
}

/// Removes directory `name` under `parent` and everything in it, through file descriptors.
fn remove_tree(parent: &impl AsFd, name: &OsStr, dev: u64, depth: usize) -> nix::Result<()> {
    if depth > 256 {
        return Err(Errno::ELOOP);
    }
    let fd = openat(parent, name, DIR_FLAGS, Mode::empty())?;
    if fstat(&fd)?.st_dev != dev {
        return Err(Errno::EXDEV); // a mount inside: not ours to empty
    }
    for child in children(&fd)? {
        let st = fstatat(&fd, child.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if is_dir(&st) {
            remove_tree(&fd, &child, dev, depth + 1)?;
        } else {
            unlink(&fd, &child, false)?; // files and symlinks alike; a symlink is never followed
        }
    }
    drop(fd);
    unlink(parent, name, true)
}

/// Applies `plan`: deletes every `Delete` item still identical to what was scanned, under the
/// directory's lock. Returns one outcome per deleted-or-attempted item index.
pub fn apply(plan: &Plan, wait: LockWait) -> Result<Vec<(usize, Outcome)>> {
    let dir = LockedDir::open(&plan.dir, Some((plan.dev, plan.ino)), wait)?;
    Ok(plan
        .items
        .iter()
        .enumerate()
        .filter(|(_, item)| item.action == Action::Delete)
        .map(|(i, item)| {
            (
                i,
                dir.delete(
                    &item.checkpoint.name,
                    item.checkpoint.dev,
                    item.checkpoint.ino,
                    item.checkpoint.ctime,
                ),
            )
        })
        .collect())
}

/// What `free_space` achieved.
#[derive(Debug, Clone, PartialEq)]
pub struct FreeSpaceReport {
    /// Bytes available to non-root when it stopped.
    pub avail: u64,
    /// The target in bytes.
    pub target: u64,
    /// `avail >= target`.
    pub met: bool,
    /// Items (plan indices) it tried, with their outcomes, in order.
    pub outcomes: Vec<(usize, Outcome)>,
    /// True when it stopped because only the invariant (newest complete, protected) was left.
    pub stopped_at_invariant: bool,
}

/// Deletes the least valuable deletable checkpoints of `plan` until `avail` reaches `target`
/// bytes, re-measuring after each deletion; stops at the invariant.
pub fn free_space(plan: &Plan, target: u64, wait: LockWait) -> Result<FreeSpaceReport> {
    let dir = LockedDir::open(&plan.dir, Some((plan.dev, plan.ino)), wait)?;
    let avail = |path: &Path| -> Result<u64> {
        let stats = statfs(path)?;
        Ok(stats.blocks_available.saturating_mul(stats.fragment_size))
    };
    let mut now = avail(&plan.dir)?;
    let mut outcomes = Vec::new();
    for i in free_space_order(plan) {
        if now >= target {
            break;
        }
        let c = &plan.items[i].checkpoint;
        outcomes.push((i, dir.delete(&c.name, c.dev, c.ino, c.ctime)));
        now = avail(&plan.dir)?;
    }
    Ok(FreeSpaceReport {
        avail: now,
        target,
        met: now >= target,
        stopped_at_invariant: now < target,
        outcomes,
    })
}

/// A leftover of a crashed save.
#[derive(Debug, Clone, PartialEq)]
pub struct Orphan {
    /// Directory it is in.
    pub dir: PathBuf,
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
    let flags = FILE_FLAGS;
    let Ok(fd) = openat(dir, name, flags, Mode::empty()) else {
        return false;
    };
    let mut head = [0u8; 4];
    use std::os::unix::fs::FileExt;
    std::fs::File::from(fd).read_exact_at(&mut head, 0).is_ok() && head == *b"PK\x03\x04"
}

/// Finds orphans older than `min_age` seconds owned by `uid`: partial saves in the checkpoint
/// directory (temp names, and contents a crash cut short that are older than `min_age`), and
/// known staging names in `temp_dir` (`tmp-checkpoint-*`, `*.orbax-checkpoint-tmp*`, `*.tmp`
/// of a checkpoint, `.diskguard-*`, and fsspec `tmpXXXXXXXX` files holding a zip).
pub fn find_orphans(
    checkpoint_dir: &Path,
    temp_dir: Option<&Path>,
    min_age: f64,
    uid: u32,
    now: f64,
) -> Result<Vec<Orphan>> {
    let mut found = Vec::new();
    let fd = open_dir(checkpoint_dir)?;
    let scanned = scan(checkpoint_dir, &[])?;
    for mut c in scanned.checkpoints {
        crate::checkpoints::verify_file(&fd, &mut c);
        let Some(why) = c.incomplete.clone() else { continue };
        let Ok(st) = fstatat(&fd, c.name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        let age = now - c.mtime;
        if st.st_uid == uid && age >= min_age {
            found.push(Orphan {
                dir: checkpoint_dir.to_path_buf(),
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
    if let Some(temp) = temp_dir {
        let tfd = nix::fcntl::open(
            temp,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::os("open", temp, e))?;
        let mut listing = Dir::from_fd(tfd.try_clone().map_err(|e| Error::os("dup", temp, e))?)
            .map_err(|e| Error::os("opendir", temp, e))?;
        let names: Vec<OsString> = listing
            .iter()
            .flatten()
            .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_owned())
            .collect();
        for name in names {
            let text = name.to_string_lossy();
            let Ok(st) = fstatat(&tfd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
                continue;
            };
            #[allow(clippy::cast_precision_loss)]
            let age = now - (st.st_mtime as f64 + st.st_mtime_nsec as f64 * 1e-9);
            let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
            if st.st_uid != uid || age < min_age || !(kind == SFlag::S_IFREG || kind == SFlag::S_IFDIR) {
                continue;
            }
            let checkpoint_tmp = is_temp_name(&text)
                && (text.starts_with("tmp-checkpoint-")
                    || text.contains(".orbax-checkpoint-tmp")
                    || crate::names::checkpoint_stem(
                        text.trim_end_matches(".tmp").trim_end_matches(".partial"),
                    )
                    .is_some());
            let reason = if text.starts_with(".diskguard-") {
                "diskguard safe-save staging file"
            } else if checkpoint_tmp {
                "checkpoint staging name"
            } else if kind == SFlag::S_IFREG && fsspec_like(&text) && starts_with_zip(&tfd, &name) {
                "fsspec staging file holding a torch checkpoint (Lightning saves through $TMPDIR)"
            } else {
                continue;
            };
            found.push(Orphan {
                dir: temp.to_path_buf(),
                name,
                size: u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512),
                age,
                reason: reason.to_owned(),
                dev: st.st_dev,
                ino: st.st_ino,
                ctime: ctime_of(&st),
            });
        }
    }
    Ok(found)
}

/// Removes `orphans` (each re-checked by identity, never following symlinks).
pub fn remove_orphans(orphans: &[Orphan]) -> Vec<Outcome> {
    orphans
        .iter()
        .map(|o| {
            let flags = DIR_FLAGS;
            match nix::fcntl::open(&o.dir, flags, Mode::empty()) {
                Ok(fd) => {
                    let locked = LockedDir {
                        fd: match Flock::lock(fd, FlockArg::LockExclusive) {
                            Ok(f) => f,
                            Err((_, e)) => return Outcome::Failed(format!("flock: {}", e.desc())),
                        },
                        path: o.dir.clone(),
                    };
                    locked.delete(&o.name, o.dev, o.ino, o.ctime)
                }
                Err(e) => Outcome::Failed(format!("open {}: {}", o.dir.display(), e.desc())),
            }
        })
        .collect()
}
