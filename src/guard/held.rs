//! What the run holds under its directory: a walk of it (`du`), and that walk on a thread of its own.
//!
//! A walk of 200,000 files takes about half a second, which must not land on a training step. The
//! periodic rescan therefore runs on its own thread ([`BackgroundScan`]), one at a time, and
//! reports each top-level entry's bytes. The guard keeps accounting while it runs: every entry it
//! saves, deletes or creates meanwhile is *touched*. When the result lands, what the run holds is
//! the scan's bytes for the untouched entries plus, for the touched ones, what the guard knows (a
//! save's measured size, nothing for a deletion) or a fresh walk of just that entry. So a result
//! always lands, however often the run saves, and never undoes the guard's own newer accounting.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::hash::BuildHasher;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;

use crate::names::{is_temp_name, OWN_PREFIX};
use crate::ordering::Identity;

/// How deep a walk goes below the directory (as `du` limits nothing, but a bound is a bound).
const MAX_DEPTH: usize = 64;

/// The most top-level entries whose bytes a background scan remembers one by one (16 bytes each,
/// keyed by a hash of the name): past it, a result lands only if nothing was touched meanwhile.
const MAX_ENTRIES: usize = 4_000_000;

/// The most entries named as saves in progress a walk remembers by name.
const MAX_TRANSIENT: usize = 4096;

/// Bytes allocated under `path` (`st_blocks * 512`), not following symlinks and not crossing into
/// other filesystems; unreadable parts are skipped (the guard rescans later).
/// A file with several hard links counts once, by (device, inode).
pub fn held_bytes(path: &Path) -> u64 {
    let never = AtomicBool::new(false);
    let mut seen = HashSet::new();
    std::fs::symlink_metadata(path).map_or(0, |meta| walk(path, meta.dev(), 0, &mut seen, &never))
}

fn walk(path: &Path, device: u64, depth: usize, seen: &mut HashSet<Identity>, cancel: &AtomicBool) -> u64 {
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
    if !meta.is_dir() || depth > MAX_DEPTH || cancel.load(Ordering::Relaxed) {
        return own;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return own;
    };
    entries
        .flatten()
        .take_while(|_| !cancel.load(Ordering::Relaxed))
        .map(|e| walk(&e.path(), device, depth + 1, seen, cancel))
        .fold(own, u64::saturating_add)
}

/// One walk of the directory, entry by entry.
#[derive(Debug)]
pub(super) struct HeldScan {
    /// Everything under the directory, itself included: what [`held_bytes`] returns.
    total: u64,
    /// Bytes of each top-level entry, by a keyed hash of its name (a collision only sums two
    /// entries' bytes under one key).
    entries: HashMap<u64, u64>,
    /// Every entry is in `entries` (false past [`MAX_ENTRIES`]).
    complete: bool,
    /// Entries named as saves in progress (a safe save's `.diskguard-*` staging file, `*.tmp`,
    /// `tmp-checkpoint-*`): a save renames them away while the walk runs, so they are looked at
    /// again when it lands (at most [`MAX_TRANSIENT`]; past it the result is incomplete).
    transient: Vec<OsString>,
}

impl HeldScan {
    /// Walks `dir` (not following symlinks, not leaving its filesystem); `None` when cancelled.
    fn walk(dir: &Path, keys: &RandomState, cancel: &AtomicBool) -> Option<Self> {
        let mut scan = HeldScan {
            total: 0,
            entries: HashMap::new(),
            complete: true,
            transient: Vec::new(),
        };
        let meta = std::fs::symlink_metadata(dir).ok()?;
        scan.total = meta.blocks().saturating_mul(512);
        let mut seen = HashSet::new();
        let entries = if meta.is_dir() {
            std::fs::read_dir(dir).ok()
        } else {
            None
        };
        if let Some(entries) = entries {
            for entry in entries.flatten() {
                if cancel.load(Ordering::Relaxed) {
                    return None;
                }
                let bytes = walk(&entry.path(), meta.dev(), 1, &mut seen, cancel);
                scan.total = scan.total.saturating_add(bytes);
                let name = entry.file_name();
                if in_progress(&name) {
                    if scan.transient.len() < MAX_TRANSIENT {
                        scan.transient.push(name.clone());
                    } else {
                        scan.complete = false;
                    }
                }
                if scan.entries.len() < MAX_ENTRIES {
                    let slot = scan.entries.entry(key(keys, &name)).or_insert(0);
                    *slot = slot.saturating_add(bytes);
                } else {
                    scan.complete = false;
                }
            }
        }
        (!cancel.load(Ordering::Relaxed)).then_some(scan)
    }
}

/// A name a save in progress carries (ours, or a framework's).
fn in_progress(name: &OsStr) -> bool {
    let text = name.to_string_lossy();
    text.starts_with(OWN_PREFIX) || is_temp_name(&text)
}

fn key(keys: &RandomState, name: &OsStr) -> u64 {
    keys.hash_one(name.as_bytes())
}

/// A scan on its way: its result, the flag that stops it, and what the guard touched since it began.
#[derive(Debug)]
struct Running {
    result: Receiver<Option<HeldScan>>,
    cancel: Arc<AtomicBool>,
    /// The process that started it: a forked child (a data-loader worker) has no such thread.
    pid: u32,
    /// Top-level entries the guard changed since the scan began, with their bytes when known.
    touched: HashMap<OsString, Option<u64>>,
}

/// The periodic rescan on a thread of its own, one at a time (a walk stuck on a hung mount never
/// piles up threads). Dropped or abandoned, its walk is told to stop at its next entry and its
/// thread ends alone; nothing ever waits for it but [`BackgroundScan::wait`].
#[derive(Debug, Default)]
pub(super) struct BackgroundScan {
    keys: RandomState,
    running: Option<Running>,
}

/// A landed scan: the run's bytes under `dir`, given what the guard touched while it ran.
#[derive(Debug)]
pub(super) struct Landed {
    scan: HeldScan,
    touched: HashMap<OsString, Option<u64>>,
}

impl Landed {
    /// What the run holds in `dir`: the scan for what the guard did not touch, what it knows (or a
    /// walk of that one entry now) for what it did. `None` when the scan could not tell touched
    /// entries apart (more than [`MAX_ENTRIES`]).
    pub(super) fn held(&self, dir: &Path, keys: &RandomState) -> Option<u64> {
        if self.touched.is_empty() && self.scan.transient.is_empty() {
            return Some(self.scan.total);
        }
        if !self.scan.complete {
            return None;
        }
        let scanned = |name: &OsStr| self.scan.entries.get(&key(keys, name)).copied().unwrap_or(0);
        let mut held = self.scan.total;
        for (name, known) in &self.touched {
            let now = known.unwrap_or_else(|| held_bytes(&dir.join(name)));
            held = held.saturating_sub(scanned(name)).saturating_add(now);
        }
        // A save's staging entry walked before its rename: gone now (one lstat), it holds nothing;
        // still there, the walk's figure stands.
        for name in self
            .scan
            .transient
            .iter()
            .filter(|n| !self.touched.contains_key(*n))
        {
            if std::fs::symlink_metadata(dir.join(name)).is_err() {
                held = held.saturating_sub(scanned(name));
            }
        }
        Some(held)
    }
}

impl BackgroundScan {
    /// Starts a walk of `dir` on a new thread unless one runs; true when it started.
    pub(super) fn start(&mut self, dir: &Path) -> bool {
        if self.is_running() {
            return false;
        }
        let (tx, rx) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let (dir, keys, stop): (PathBuf, RandomState, Arc<AtomicBool>) =
            (dir.to_path_buf(), self.keys.clone(), Arc::clone(&cancel));
        let spawned = std::thread::Builder::new()
            .name("diskguard-held".into())
            .spawn(move || {
                let _ = tx.send(HeldScan::walk(&dir, &keys, &stop));
            });
        if spawned.is_ok() {
            self.running = Some(Running {
                result: rx,
                cancel,
                pid: std::process::id(),
                touched: HashMap::new(),
            });
        }
        spawned.is_ok()
    }

    /// Whether a walk runs for this process.
    pub(super) fn is_running(&self) -> bool {
        self.running.as_ref().is_some_and(|r| r.pid == std::process::id())
    }

    /// The guard changed top-level entry `name` (saved, deleted, created): its bytes now, when it
    /// knows them, else `None` (walked when the scan lands). Nothing when no scan runs.
    pub(super) fn touch(&mut self, name: OsString, bytes: Option<u64>) {
        if let Some(running) = self.running.as_mut() {
            running.touched.insert(name, bytes);
        }
    }

    /// The finished walk, without waiting: `None` while it runs or when none runs.
    pub(super) fn try_take(&mut self) -> Option<Landed> {
        let running = self.running.as_ref()?;
        if running.pid != std::process::id() {
            self.running = None;
            return None;
        }
        match running.result.try_recv() {
            Ok(scan) => self.finish(scan),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => self.finish(None),
        }
    }

    /// The running walk's result, waiting for it (the save path, before a first figure exists).
    pub(super) fn wait(&mut self) -> Option<Landed> {
        if !self.is_running() {
            self.running = None;
            return None;
        }
        let scan = self.running.as_ref()?.result.recv().ok().flatten();
        self.finish(scan)
    }

    fn finish(&mut self, scan: Option<HeldScan>) -> Option<Landed> {
        let running = self.running.take()?;
        Some(Landed {
            scan: scan?,
            touched: running.touched,
        })
    }

    /// Stops the running walk (a newer figure was measured): its result never lands.
    pub(super) fn abandon(&mut self) {
        if let Some(running) = self.running.take() {
            running.cancel.store(true, Ordering::Relaxed);
        }
    }

    /// The keys the scan's entries are hashed with.
    pub(super) fn keys(&self) -> &RandomState {
        &self.keys
    }
}

impl Drop for BackgroundScan {
    fn drop(&mut self) {
        self.abandon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::temp_dir;

    fn landed(scan: &mut BackgroundScan) -> Landed {
        scan.wait().expect("a walk ran and finished")
    }

    #[test]
    fn a_landed_scan_counts_what_it_walked_and_what_the_guard_touched_since() {
        let dir = temp_dir("held-scan");
        std::fs::write(dir.join("a"), vec![1u8; 64 * 1024]).expect("write");
        std::fs::create_dir(dir.join("d")).expect("mkdir");
        std::fs::write(dir.join("d/x"), vec![2u8; 32 * 1024]).expect("write");
        let mut scan = BackgroundScan::default();
        assert!(scan.start(&dir));
        assert!(!scan.start(&dir), "one at a time");
        let whole = landed(&mut scan);
        assert_eq!(whole.held(&dir, scan.keys()), Some(held_bytes(&dir)));
        assert!(!scan.is_running() && scan.try_take().is_none());

        // Touched while a walk runs: the entry saved (known bytes), one deleted, one to walk.
        assert!(scan.start(&dir));
        scan.touch("a".into(), Some(0));
        scan.touch("new".into(), Some(5000));
        std::fs::write(dir.join("d/y"), vec![3u8; 32 * 1024]).expect("write");
        scan.touch("d".into(), None);
        let result = landed(&mut scan);
        std::fs::remove_file(dir.join("a")).expect("rm");
        let expected = held_bytes(&dir) + 5000;
        assert_eq!(result.held(&dir, scan.keys()), Some(expected));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_staging_entry_renamed_away_after_the_walk_counts_once() {
        let dir = temp_dir("held-staging");
        let staging = dir.join(".diskguard-step=1.pt.x1.tmp");
        std::fs::write(&staging, vec![1u8; 64 * 1024]).expect("write");
        let mut scan = BackgroundScan::default();
        assert!(scan.start(&dir));
        let walked = landed(&mut scan);
        // The save renames its staging file into place and the guard records the save.
        std::fs::rename(&staging, dir.join("step=1.pt")).expect("rename");
        let mut result = walked;
        result
            .touched
            .insert("step=1.pt".into(), Some(held_bytes(&dir.join("step=1.pt"))));
        assert_eq!(result.held(&dir, scan.keys()), Some(held_bytes(&dir)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_abandoned_or_cancelled_walk_never_lands() {
        let dir = temp_dir("held-abandon");
        let mut scan = BackgroundScan::default();
        assert!(scan.start(&dir));
        scan.abandon();
        assert!(!scan.is_running() && scan.try_take().is_none() && scan.wait().is_none());
        let stop = AtomicBool::new(true);
        std::fs::write(dir.join("f"), b"x").expect("write");
        assert!(HeldScan::walk(&dir, &RandomState::new(), &stop).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
