//! The emergency reserve file: preallocated room only the final checkpoint may use.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::names::OWN_PREFIX;

/// What follows [`OWN_PREFIX`] in the emergency reserve file's name
/// (`.diskguard-reserve-<pid>-<serial>`): a dot file with no checkpoint extension, so retention and
/// orphan scans never take it for a checkpoint.
pub const RESERVE_TAG: &str = "reserve-";

/// The emergency reserve file: preallocated room only the final checkpoint may use.
#[derive(Debug)]
pub(super) struct EmergencyReserve {
    pub(super) path: PathBuf,
    pub(super) bytes: u64,
    /// The process that created the file.
    owner: u32,
}

impl EmergencyReserve {
    pub(super) fn create(dir: &Path, bytes: u64) -> Result<Self> {
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
            let path = dir.join(format!(
                "{OWN_PREFIX}{RESERVE_TAG}{}-{serial}",
                std::process::id()
            ));
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
    pub(super) fn release(self) -> Option<u64> {
        if std::process::id() != self.owner {
            return None;
        }
        std::fs::remove_file(&self.path).ok().map(|()| self.bytes)
    }
}
