//! `statfs` with a time limit, off the calling thread, so a hung mount never blocks training.
//!
//! `statfs` on a dead NFS server (or a stalled FUSE daemon) can block for minutes in the kernel,
//! where no signal or timeout reaches it. A [`Prober`] owns one worker thread per watched path:
//! a measurement sends it a request and waits at most the time limit. A call that does not answer
//! in time is reported as [`Probe::Unresponsive`] and is not waited on; while it is stuck, further
//! measurements return at once without queueing another call, and the first one after it returns
//! asks afresh. The worker ends when the prober is dropped (or, if stuck, when its call returns).
//!
//! Once the worker has answered that the filesystem is a local one ([`is_local`]: ext4, xfs,
//! btrfs, tmpfs, overlay...), whose `statfs` reads counters in memory and never waits on a
//! server, the prober measures on the calling thread instead: one `statfs` and one `stat`, without
//! the thread handoff that would cost several times more. Network and FUSE filesystems, and any
//! type not known to be local, always go through the worker.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::usage::{statfs_nearest_existing, FsStats};

/// What one `statfs` returned: the path actually measured (the nearest existing ancestor of one
/// that does not exist yet), its device id, and the filesystem figures.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The path measured.
    pub queried: PathBuf,
    /// `st_dev` of that path: one filesystem, one device id (used to watch each filesystem once).
    pub device: u64,
    /// The figures.
    pub stats: FsStats,
}

/// The result of a measurement with a time limit.
#[derive(Debug)]
pub enum Probe {
    /// The filesystem answered.
    Ready(Measured),
    /// The call failed (the path vanished, permission...).
    Failed(Error),
    /// No answer within the time limit; a call is still pending in the kernel.
    Unresponsive,
}

/// One worker thread measuring one path on request.
#[derive(Debug)]
pub struct Prober {
    path: PathBuf,
    channel: Option<(Sender<()>, Receiver<Result<Measured>>)>,
    pending: bool,
    /// The worker found a local filesystem: measure on the calling thread from now on.
    inline: bool,
    /// On the calling thread: the last path measured, what identified its filesystem (magic,
    /// size) and its device, so that a check at every training step costs one `statfs`, not a
    /// `stat` besides (each a few microseconds on a training thread whose caches the step filled).
    known: Option<(PathBuf, i64, u64, u64)>,
}

/// Filesystems whose `statfs` answers from memory and never waits on a server or a daemon.
pub fn is_local(magic: i64) -> bool {
    matches!(
        magic,
        0xEF53 // ext2/3/4
            | 0x0102_1994 // tmpfs
            | 0x5846_5342 // xfs
            | 0x9123_683E // btrfs
            | crate::usage::OVERLAYFS_MAGIC
            | 0x2FC1_2FC1 // zfs
            | 0x8584_58F6 // ramfs
            | 0xF2F5_2010 // f2fs
    )
}

/// `statfs` and `stat` of `path` (or its nearest existing ancestor), as the worker runs it.
pub fn measure_now(path: &Path) -> Result<Measured> {
    let (queried, stats) = statfs_nearest_existing(path)?;
    let st = nix::sys::stat::stat(&queried).map_err(|e| Error::os("stat", &queried, e))?;
    Ok(Measured {
        queried,
        device: st.st_dev,
        stats,
    })
}

impl Prober {
    /// A prober for `path`; its thread starts at the first measurement.
    pub fn new(path: &Path) -> Self {
        Prober {
            path: path.to_path_buf(),
            channel: None,
            pending: false,
            inline: false,
            known: None,
        }
    }

    /// The path this prober measures.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True once the filesystem is known to be local ([`is_local`]): measured on the calling
    /// thread, its figures moved only by this machine's writers.
    pub fn is_inline(&self) -> bool {
        self.inline
    }

    /// True while a call that timed out has not returned yet.
    pub fn is_stuck(&self) -> bool {
        self.pending
    }

    fn start(&mut self) -> Result<&(Sender<()>, Receiver<Result<Measured>>)> {
        if self.channel.is_none() {
            let (request_tx, request_rx) = mpsc::channel::<()>();
            let (result_tx, result_rx) = mpsc::channel();
            let path = self.path.clone();
            std::thread::Builder::new()
                .name("diskguard-statfs".to_owned())
                .spawn(move || {
                    // Ends when the prober is dropped (its sender closes) or stops listening.
                    while request_rx.recv().is_ok() {
                        if result_tx.send(measure_now(&path)).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| Error::os("spawn a statfs thread for", &self.path, e))?;
            self.channel = Some((request_tx, result_rx));
        }
        self.channel.as_ref().ok_or_else(|| {
            Error::os(
                "start a statfs thread for",
                &self.path,
                std::io::Error::other("gone"),
            )
        })
    }

    /// Measures the path, waiting at most `limit`.
    pub fn measure(&mut self, limit: Duration) -> Probe {
        if self.inline {
            return self.measure_inline();
        }
        let pending = self.pending;
        let (requests, results) = match self.start() {
            Ok(channel) => channel,
            Err(err) => return Probe::Failed(err),
        };
        if pending {
            match results.try_recv() {
                // The stuck call came back: its answer is stale, ask again below.
                Ok(_) => {}
                Err(TryRecvError::Empty) => return Probe::Unresponsive,
                Err(TryRecvError::Disconnected) => return self.worker_gone(),
            }
        }
        if requests.send(()).is_err() {
            return self.worker_gone();
        }
        match results.recv_timeout(limit) {
            Ok(answer) => {
                self.pending = false;
                if let Ok(measured) = &answer {
                    if is_local(measured.stats.magic) {
                        // The worker is no longer needed: dropping the channel ends it.
                        self.inline = true;
                        self.channel = None;
                    }
                }
                answer.map_or_else(Probe::Failed, Probe::Ready)
            }
            Err(RecvTimeoutError::Timeout) => {
                self.pending = true;
                Probe::Unresponsive
            }
            Err(RecvTimeoutError::Disconnected) => self.worker_gone(),
        }
    }

    /// A measurement on the calling thread (a local filesystem): `statfs`, and `stat` for the
    /// device only when the path answering, its filesystem type or its size changed since the
    /// last one (another filesystem mounted there, a directory created or removed).
    fn measure_inline(&mut self) -> Probe {
        let (queried, stats) = match statfs_nearest_existing(&self.path) {
            Ok(answer) => answer,
            Err(err) => return Probe::Failed(err),
        };
        let device = match &self.known {
            Some((path, magic, blocks, device))
                if *path == queried && *magic == stats.magic && *blocks == stats.blocks =>
            {
                *device
            }
            _ => match nix::sys::stat::stat(&queried) {
                Ok(st) => st.st_dev,
                Err(err) => return Probe::Failed(Error::os("stat", &queried, err)),
            },
        };
        self.known = Some((queried.clone(), stats.magic, stats.blocks, device));
        Probe::Ready(Measured {
            queried,
            device,
            stats,
        })
    }

    /// The worker ended (its thread cannot panic; this is defensive): report it, and let the next
    /// measurement start a new one.
    fn worker_gone(&mut self) -> Probe {
        self.channel = None;
        self.pending = false;
        Probe::Failed(Error::os(
            "statfs",
            &self.path,
            std::io::Error::other("the statfs thread ended"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_an_existing_and_a_missing_path() {
        let mut prober = Prober::new(Path::new("/tmp/does-not-exist-diskguard/x"));
        match prober.measure(Duration::from_secs(5)) {
            Probe::Ready(m) => {
                assert_eq!(m.queried, Path::new("/tmp"));
                assert!(m.stats.blocks > 0);
            }
            other => unreachable!("expected a measurement, got {other:?}"),
        }
        assert!(!prober.is_stuck());
        assert!(matches!(prober.measure(Duration::from_secs(5)), Probe::Ready(_)));
    }

    #[test]
    fn local_filesystems_are_measured_inline_after_the_first_answer() {
        let mut prober = Prober::new(Path::new("/tmp"));
        let Probe::Ready(first) = prober.measure(Duration::from_secs(5)) else {
            unreachable!("/tmp answers")
        };
        assert_eq!(prober.inline, is_local(first.stats.magic));
        assert_eq!(
            prober.channel.is_none(),
            prober.inline,
            "the worker goes once it is not needed"
        );
        assert!(is_local(0xEF53) && is_local(0x0102_1994));
        assert!(
            !is_local(0x6969) && !is_local(0x6573_5546),
            "NFS and FUSE always go off-thread"
        );
    }

    #[test]
    fn inline_measurements_read_the_device_again_only_when_the_answering_path_changes() {
        use std::os::unix::fs::MetadataExt;

        let dir = crate::testing::temp_dir("probe-known");
        let sub = dir.join("sub");
        let mut prober = Prober::new(&sub);
        prober.inline = true; // as after a first answer from a local filesystem
        let device = |p: &Path| std::fs::metadata(p).expect("stat").dev();
        for _ in 0..2 {
            let Probe::Ready(m) = prober.measure(Duration::from_secs(5)) else {
                unreachable!("the temp directory answers")
            };
            assert_eq!((m.queried.as_path(), m.device), (dir.as_path(), device(&dir)));
        }
        std::fs::create_dir(&sub).expect("mkdir");
        let Probe::Ready(m) = prober.measure(Duration::from_secs(5)) else {
            unreachable!("the new directory answers")
        };
        assert_eq!((m.queried.as_path(), m.device), (sub.as_path(), device(&sub)));
        assert_eq!(prober.known.as_ref().map(|k| k.0.clone()), Some(sub.clone()));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_failure_is_reported_not_hidden() {
        let mut prober = Prober::new(Path::new("/etc/passwd/x"));
        assert!(matches!(prober.measure(Duration::from_secs(5)), Probe::Failed(_)));
    }
}
