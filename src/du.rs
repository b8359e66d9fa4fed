//! A parallel directory scanner: how much a tree holds, per top-level entry and per owner.
//!
//! The design follows diskus and dua (monitoring.md §3): worker threads take directories from a
//! shared stack, list each through a descriptor opened with `O_NOFOLLOW` and `fstatat` every entry
//! without following symlinks. Hard links count once (a `(dev, ino)` set, consulted only when
//! `st_nlink > 1`); both allocated (`st_blocks * 512`, what `du` shows) and apparent (`st_size`)
//! sizes are summed; by default the scan stays on the root's filesystem. A directory swapped for
//! something else between listing and opening is detected (device and inode re-checked) and skipped.
//!
//! [`Scan::start`] runs in the background so a caller can poll, show progress and cancel; [`scan`]
//! is the blocking form. Memory is bounded by the directory stack (proportional to the tree's
//! breadth), the hard-link set (files with several links) and [`MAX_LISTED_FILES`].

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::dir::Dir;
use nix::fcntl::{openat, AtFlags, AT_FDCWD};
use nix::sys::stat::{fstat, fstatat, lstat, FileStat, Mode, SFlag};

use crate::checkpoints::DIR_FLAGS;
use crate::error::{show_path, Error, Result};

/// Files directly under the root listed one by one; past this many they share one
/// [`OTHER_FILES`] entry, so a directory of ten million files cannot exhaust memory.
pub const MAX_LISTED_FILES: usize = 10_000;
/// The name of the entry that gathers root-level files past [`MAX_LISTED_FILES`].
pub const OTHER_FILES: &str = "(other files)";
/// Error messages kept as examples; the rest are only counted.
const ERROR_SAMPLES: usize = 8;
/// Shards of the hard-link set, so threads rarely wait for each other.
const LINK_SHARDS: usize = 16;
/// The most worker threads a scan may use.
pub const MAX_THREADS: usize = 256;

/// Sizes summed over some files and directories.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sizes {
    /// Bytes allocated on disk (`st_blocks * 512`), what `du` reports.
    pub allocated: u64,
    /// Bytes by length (`st_size`), what `du --apparent-size` reports.
    pub apparent: u64,
    /// Non-directory entries (files, symlinks, devices...).
    pub files: u64,
    /// Directories, the scanned ones included.
    pub dirs: u64,
}

impl Sizes {
    fn add_stat(&mut self, st: &FileStat) {
        #[allow(clippy::cast_sign_loss)] // st_blocks and st_size are never negative for real files
        {
            self.allocated = self
                .allocated
                .saturating_add((st.st_blocks.max(0) as u64).saturating_mul(512));
            self.apparent = self.apparent.saturating_add(st.st_size.max(0) as u64);
        }
        if is_dir(st) {
            self.dirs += 1;
        } else {
            self.files += 1;
        }
    }

    fn merge(&mut self, other: &Sizes) {
        self.allocated = self.allocated.saturating_add(other.allocated);
        self.apparent = self.apparent.saturating_add(other.apparent);
        self.files += other.files;
        self.dirs += other.dirs;
    }
}

/// One entry directly under the root, with everything beneath it.
#[derive(Debug, Clone)]
pub struct Child {
    /// Its name (or [`OTHER_FILES`]).
    pub name: OsString,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Its owner's uid.
    pub uid: u32,
    /// It and everything beneath it.
    pub sizes: Sizes,
}

/// What a scan found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The root as given.
    pub root: PathBuf,
    /// Everything under the root, the root included.
    pub total: Sizes,
    /// The root's entries, in no particular order.
    pub children: Vec<Child>,
    /// Sizes per owner uid, in no particular order.
    pub users: Vec<(u32, Sizes)>,
    /// Entries that could not be read or examined (permission denied, vanished...).
    pub errors: u64,
    /// The first few of those errors as messages.
    pub error_samples: Vec<String>,
    /// Directories skipped because they are on another filesystem.
    pub other_filesystems: u64,
    /// The scan was cancelled; the figures are partial.
    pub cancelled: bool,
}

/// How to scan.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Worker threads, 1 to [`MAX_THREADS`].
    pub threads: usize,
    /// Stay on the root's filesystem (`du -x`).
    pub one_filesystem: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threads: default_threads(),
            one_filesystem: true,
        }
    }
}

/// Three threads per core, as diskus found best: a warm cache wants one per core, a cold one
/// many IOs in flight.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .saturating_mul(3)
        .min(MAX_THREADS)
}

impl Options {
    /// Validates the thread count; the error names it and the range.
    pub fn new(threads: Option<usize>, one_filesystem: bool) -> Result<Self> {
        let threads = threads.unwrap_or_else(default_threads);
        if !(1..=MAX_THREADS).contains(&threads) {
            return Err(Error::invalid(
                "threads",
                threads,
                format!("expected 1 to {MAX_THREADS} worker threads"),
            ));
        }
        Ok(Options {
            threads,
            one_filesystem,
        })
    }
}

/// Counters a caller may read while the scan runs.
#[derive(Debug, Default)]
pub struct Progress {
    entries: AtomicU64,
    allocated: AtomicU64,
}

impl Progress {
    /// (entries examined, allocated bytes seen) so far.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.entries.load(Ordering::Relaxed),
            self.allocated.load(Ordering::Relaxed),
        )
    }
}

/// A scan running on background threads.
pub struct Scan {
    // In a mutex so a `&Scan` can be waited on from another thread (the bindings wait without the GIL).
    result: Mutex<Receiver<Result<Report>>>,
    cancel: Arc<AtomicBool>,
    progress: Arc<Progress>,
}

impl Scan {
    /// Starts scanning `root` in the background.
    pub fn start(root: &Path, options: Options) -> Result<Scan> {
        crate::usage::validate_path("dir", root)?;
        let cancel = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Progress::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let (root, flag, counters) = (root.to_path_buf(), Arc::clone(&cancel), Arc::clone(&progress));
        std::thread::Builder::new()
            .name("diskguard-du".into())
            .spawn(move || {
                // The receiver may be gone (the caller gave up); nothing to do then.
                let _ = tx.send(run(&root, options, &flag, &counters));
            })
            .map_err(|e| Error::os("spawn a scan thread for", Path::new("."), e))?;
        Ok(Scan {
            result: Mutex::new(rx),
            cancel,
            progress,
        })
    }

    /// Waits up to `timeout` for the result; `None` while the scan is still running.
    pub fn wait(&self, timeout: Duration) -> Option<Result<Report>> {
        match lock(&self.result).recv_timeout(timeout) {
            Ok(result) => Some(result),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Err(Error::Refused {
                path: PathBuf::new(),
                reason: "the scan thread stopped without a result".into(),
            })),
        }
    }

    /// Asks the workers to stop; [`Scan::wait`] then returns a partial report marked cancelled.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// The counters so far.
    pub fn progress(&self) -> (u64, u64) {
        self.progress.snapshot()
    }
}

/// Scans `root` and waits for the result.
pub fn scan(root: &Path, options: Options) -> Result<Report> {
    crate::usage::validate_path("dir", root)?;
    run(root, options, &AtomicBool::new(false), &Progress::default())
}

/// A directory waiting to be listed, and which root entry it belongs to.
struct Job {
    path: PathBuf,
    child: usize,
    dev: u64,
    ino: u64,
}

/// The work stack and the number of jobs queued or being worked on, under one lock so a worker
/// never sleeps through the last job finishing.
struct Queue {
    jobs: Vec<Job>,
    pending: usize,
}

struct Shared<'a> {
    queue: Mutex<Queue>,
    wake: Condvar,
    links: Vec<Mutex<HashSet<(u64, u64)>>>,
    root_dev: u64,
    options: Options,
    cancel: &'a AtomicBool,
    progress: &'a Progress,
}

/// One worker's sums, merged at the end.
#[derive(Default)]
struct Tally {
    total: Sizes,
    per_child: Vec<Sizes>,
    users: HashMap<u32, Sizes>,
    errors: u64,
    error_samples: Vec<String>,
    other_filesystems: u64,
}

impl Tally {
    fn add(&mut self, child: Option<usize>, st: &FileStat) {
        self.total.add_stat(st);
        self.users.entry(st.st_uid).or_default().add_stat(st);
        if let Some(index) = child {
            if self.per_child.len() <= index {
                self.per_child.resize(index + 1, Sizes::default());
            }
            self.per_child[index].add_stat(st);
        }
    }

    fn error(&mut self, what: &str, path: &Path, err: impl std::fmt::Display) {
        self.errors += 1;
        if self.error_samples.len() < ERROR_SAMPLES {
            self.error_samples
                .push(format!("{what} {}: {err}", show_path(path)));
        }
    }

    fn merge(&mut self, other: Tally) {
        self.total.merge(&other.total);
        if self.per_child.len() < other.per_child.len() {
            self.per_child.resize(other.per_child.len(), Sizes::default());
        }
        for (mine, theirs) in self.per_child.iter_mut().zip(&other.per_child) {
            mine.merge(theirs);
        }
        for (uid, sizes) in other.users {
            self.users.entry(uid).or_default().merge(&sizes);
        }
        self.errors += other.errors;
        let room = ERROR_SAMPLES.saturating_sub(self.error_samples.len());
        self.error_samples
            .extend(other.error_samples.into_iter().take(room));
        self.other_filesystems += other.other_filesystems;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker cannot panic while holding a lock (no unwraps, no indexing past bounds), and the
    // data stay consistent even if one did: go on with them.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn is_dir(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

fn run(root: &Path, options: Options, cancel: &AtomicBool, progress: &Progress) -> Result<Report> {
    let st = lstat(root).map_err(|e| Error::os("lstat", root, e))?;
    let mut tally = Tally::default();
    let mut children = Vec::new();
    let shared = Shared {
        queue: Mutex::new(Queue {
            jobs: Vec::new(),
            pending: 0,
        }),
        wake: Condvar::new(),
        links: (0..LINK_SHARDS).map(|_| Mutex::new(HashSet::new())).collect(),
        root_dev: st.st_dev,
        options,
        cancel,
        progress,
    };
    tally.add(None, &st);
    if is_dir(&st) {
        // A root that cannot be listed is an error, not an empty report.
        let fd = open_checked(root, st.st_dev, st.st_ino)?;
        children = list_root(root, fd, &shared, &mut tally);
        let workers = options.threads.min(lock(&shared.queue).jobs.len()).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers).map(|_| scope.spawn(|| work(&shared))).collect();
            for handle in handles {
                match handle.join() {
                    Ok(part) => tally.merge(part),
                    Err(_) => tally.error("a worker thread failed while scanning", root, "partial figures"),
                }
            }
        });
    }
    // Cancelled means cut short: directories were left unlisted (a cancel that came after the last
    // one was listed changes nothing).
    let cut_short = lock(&shared.queue).pending > 0;
    Ok(report(root, tally, children, cut_short))
}

fn report(root: &Path, tally: Tally, mut children: Vec<Child>, cancelled: bool) -> Report {
    for (child, sizes) in children.iter_mut().zip(&tally.per_child) {
        child.sizes = *sizes;
    }
    Report {
        root: root.to_path_buf(),
        total: tally.total,
        children,
        users: tally.users.into_iter().collect(),
        errors: tally.errors,
        error_samples: tally.error_samples,
        other_filesystems: tally.other_filesystems,
        cancelled,
    }
}

/// The longest path handed to one `openat`, well under `PATH_MAX` (4096).
const PATH_PIECE: usize = 2048;

/// Opens a directory by path; a path too long for one system call is walked in pieces, each
/// opened relative to the directory before it, so a tree's depth is no limit (`ENAMETOOLONG`
/// would otherwise hide everything below the 4096th byte). The last component is never followed
/// when a symlink (`DIR_FLAGS`), exactly as for a short path.
fn open_dir_path(path: &Path) -> nix::Result<OwnedFd> {
    let mut rest = path.as_os_str().as_bytes();
    let mut parent: Option<OwnedFd> = None;
    while rest.len() > PATH_PIECE {
        // Cut at the last '/' within reach (names are at most 255 bytes, so there is one).
        let Some(cut) = rest[..=PATH_PIECE]
            .iter()
            .rposition(|b| *b == b'/')
            .filter(|c| *c > 0)
        else {
            break;
        };
        let piece = OsStr::from_bytes(&rest[..cut]);
        let next = match &parent {
            Some(fd) => openat(fd, piece, DIR_FLAGS, Mode::empty())?,
            None => openat(AT_FDCWD, piece, DIR_FLAGS, Mode::empty())?,
        };
        parent = Some(next);
        rest = &rest[cut + 1..];
        while let Some(stripped) = rest.strip_prefix(b"/") {
            rest = stripped;
        }
    }
    let last = OsStr::from_bytes(if rest.is_empty() { b"." } else { rest });
    match &parent {
        Some(fd) => openat(fd, last, DIR_FLAGS, Mode::empty()),
        None => openat(AT_FDCWD, last, DIR_FLAGS, Mode::empty()),
    }
}

/// Opens a directory without following a symlink and checks it is still the `(dev, ino)` listed.
fn open_checked(path: &Path, dev: u64, ino: u64) -> Result<OwnedFd> {
    let fd = open_dir_path(path).map_err(|e| Error::os("open", path, e))?;
    let now = fstat(&fd).map_err(|e| Error::os("fstat", path, e))?;
    if (now.st_dev, now.st_ino) != (dev, ino) {
        return Err(Error::Refused {
            path: path.to_path_buf(),
            reason: "it was replaced while being scanned".into(),
        });
    }
    Ok(fd)
}

/// Calls `visit` with each entry of `dir` and its `fstatat` (no symlink following), straight from
/// the listing so no name is copied; failures are tallied.
fn for_each_entry(
    dir: &Path,
    fd: OwnedFd,
    tally: &mut Tally,
    mut visit: impl FnMut(&OsStr, &FileStat, &mut Tally),
) {
    // `Dir` owns one descriptor while iterating; a duplicate serves the `fstatat`s.
    let stat_fd = match fd.try_clone() {
        Ok(dup) => dup,
        Err(err) => return tally.error("cannot list", dir, err),
    };
    let mut listing = match Dir::from_fd(fd) {
        Ok(listing) => listing,
        Err(err) => return tally.error("cannot list", dir, err),
    };
    for entry in listing.iter() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => return tally.error("cannot list", dir, err),
        };
        let name = entry.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        match fstatat(&stat_fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => visit(OsStr::from_bytes(bytes), &st, tally),
            Err(err) => tally.error("cannot stat", &dir.join(OsStr::from_bytes(bytes)), err),
        }
    }
}

/// Whether a non-directory with several links was seen already (it then counts no more).
fn seen_link(shared: &Shared<'_>, st: &FileStat) -> bool {
    if st.st_nlink <= 1 || is_dir(st) {
        return false;
    }
    let key = (st.st_dev, st.st_ino);
    #[allow(clippy::cast_possible_truncation)] // only a shard index
    let index = (st.st_ino as usize ^ st.st_dev as usize) % LINK_SHARDS;
    !lock(&shared.links[index]).insert(key)
}

/// Whether an entry counts: not a hard link seen already, not a directory on another filesystem
/// (when staying on one). `Some(is_dir)` when it counts.
fn admit(shared: &Shared<'_>, st: &FileStat, tally: &mut Tally) -> Option<bool> {
    if seen_link(shared, st) {
        return None;
    }
    let dir = is_dir(st);
    if dir && shared.options.one_filesystem && st.st_dev != shared.root_dev {
        tally.other_filesystems += 1;
        return None;
    }
    Some(dir)
}

/// Lists the root: each entry becomes a [`Child`]; directories become jobs.
fn list_root(root: &Path, fd: OwnedFd, shared: &Shared<'_>, tally: &mut Tally) -> Vec<Child> {
    let mut children: Vec<Child> = Vec::new();
    let mut other_files: Option<usize> = None;
    let mut listed_files = 0usize;
    let mut jobs = Vec::new();
    for_each_entry(root, fd, tally, |name, st, tally| {
        let Some(dir) = admit(shared, st, tally) else {
            return;
        };
        let index = if dir || listed_files < MAX_LISTED_FILES {
            listed_files += usize::from(!dir);
            children.push(Child {
                name: name.to_owned(),
                is_dir: dir,
                uid: st.st_uid,
                sizes: Sizes::default(),
            });
            children.len() - 1
        } else {
            *other_files.get_or_insert_with(|| {
                children.push(Child {
                    name: OTHER_FILES.into(),
                    is_dir: false,
                    uid: 0,
                    sizes: Sizes::default(),
                });
                children.len() - 1
            })
        };
        tally.add(Some(index), st);
        if dir {
            jobs.push(Job {
                path: root.join(name),
                child: index,
                dev: st.st_dev,
                ino: st.st_ino,
            });
        }
    });
    push_jobs(shared, jobs);
    children
}

fn push_jobs(shared: &Shared<'_>, jobs: Vec<Job>) {
    if jobs.is_empty() {
        return;
    }
    let mut queue = lock(&shared.queue);
    queue.pending += jobs.len();
    queue.jobs.extend(jobs);
    drop(queue);
    shared.wake.notify_all();
}

/// The next job, or `None` when every job is done or the scan is cancelled.
fn next_job(shared: &Shared<'_>) -> Option<Job> {
    let mut queue = lock(&shared.queue);
    loop {
        if shared.cancel.load(Ordering::Relaxed) {
            return None;
        }
        if let Some(job) = queue.jobs.pop() {
            return Some(job);
        }
        if queue.pending == 0 {
            return None;
        }
        // The timeout only bounds how late a cancel is noticed by an idle worker.
        queue = shared
            .wake
            .wait_timeout(queue, Duration::from_millis(50))
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

fn finish_job(shared: &Shared<'_>) {
    let mut queue = lock(&shared.queue);
    queue.pending = queue.pending.saturating_sub(1);
    let done = queue.pending == 0;
    drop(queue);
    if done {
        shared.wake.notify_all();
    }
}

fn work(shared: &Shared<'_>) -> Tally {
    let mut tally = Tally::default();
    while let Some(job) = next_job(shared) {
        let jobs = list_dir(shared, &job, &mut tally);
        push_jobs(shared, jobs);
        finish_job(shared);
    }
    // Wake the others: the last job is done or the scan was cancelled.
    shared.wake.notify_all();
    tally
}

/// Sums one directory's entries into `tally` and returns its subdirectories as jobs.
fn list_dir(shared: &Shared<'_>, job: &Job, tally: &mut Tally) -> Vec<Job> {
    let fd = match open_checked(&job.path, job.dev, job.ino) {
        Ok(fd) => fd,
        Err(err) => {
            tally.error("cannot open", &job.path, DisplayCore(&err));
            return Vec::new();
        }
    };
    let mut jobs = Vec::new();
    let (mut count, mut bytes) = (0u64, 0u64);
    for_each_entry(&job.path, fd, tally, |name, st, tally| {
        let Some(dir) = admit(shared, st, tally) else {
            return;
        };
        tally.add(Some(job.child), st);
        count += 1;
        #[allow(clippy::cast_sign_loss)] // st_blocks is never negative
        {
            bytes = bytes.saturating_add((st.st_blocks.max(0) as u64).saturating_mul(512));
        }
        if dir {
            jobs.push(Job {
                path: job.path.join(name),
                child: job.child,
                dev: st.st_dev,
                ino: st.st_ino,
            });
        }
    });
    shared.progress.entries.fetch_add(count, Ordering::Relaxed);
    shared.progress.allocated.fetch_add(bytes, Ordering::Relaxed);
    jobs
}

/// The core error's message without the enum's wrapping (for error samples).
struct DisplayCore<'a>(&'a Error);

impl std::fmt::Display for DisplayCore<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Error::Os { source, .. } => write!(f, "{source}"),
            Error::Refused { reason, .. } => f.write_str(reason),
            other => write!(f, "{other}"),
        }
    }
}

#[cfg(test)]
mod tests;
