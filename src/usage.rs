//! Disk usage under a path, computed the way `df` computes it.
//!
//! One `statfs(2)` call gives every number: blocks are counted in `f_frsize` units (not `f_bsize`),
//! `used = blocks - bfree`, `avail = bavail` (what a non-root user can still write), `reserved =
//! bfree - bavail` (root's reserve), and percent used is `used / (used + avail)`, the `df` convention
//! in which a disk is 100% used when a non-root user can no longer write.
//!
//! The mount a path lives on (mount point, filesystem type, device) costs a read of the mount table
//! and a `realpath`, several times the `statfs` itself, so [`DiskUsage`] carries only the numbers and
//! callers resolve the mount with [`crate::mounts::mount_of`] when they need it.

use std::ffi::OsString;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::libc;
use nix::NixPath;

use crate::error::{show_path, Error, Result};
use crate::mounts::Mount;

/// `statfs` magic of overlayfs, the union filesystem of Docker and containerd roots.
pub const OVERLAYFS_MAGIC: i64 = 0x794c_7630;

/// The raw numbers of one `statfs` call, in the units the kernel reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    /// Fragment size `f_frsize`: the unit of the block counts.
    pub fragment_size: u64,
    /// `f_blocks`.
    pub blocks: u64,
    /// `f_bfree`: free blocks, root's reserve included.
    pub blocks_free: u64,
    /// `f_bavail`: free blocks a non-root user may use.
    pub blocks_available: u64,
    /// `f_files`: inode count, 0 when the filesystem has no fixed count.
    pub files: u64,
    /// `f_ffree`.
    pub files_free: u64,
    /// `f_type`: the filesystem's magic number.
    pub magic: i64,
    /// `ST_RDONLY` in `f_flags`: this mount is read-only.
    pub read_only: bool,
}

/// `struct statfs` as the kernel and glibc/musl lay it out on 64-bit Linux. The `libc` crate hides
/// `f_flags` inside its padding, and `ST_RDONLY` from there saves a second system call.
#[repr(C)]
#[allow(clippy::struct_field_names)] // the C struct's own field names, so it reads against statfs(2)
struct RawStatfs {
    f_type: libc::c_long,
    f_bsize: libc::c_long,
    f_blocks: u64,
    f_bfree: u64,
    f_bavail: u64,
    f_files: u64,
    f_ffree: u64,
    f_fsid: libc::fsid_t,
    f_namelen: libc::c_long,
    f_frsize: libc::c_long,
    f_flags: libc::c_long,
    f_spare: [libc::c_long; 4],
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
compile_error!("diskguard's statfs layout is written for 64-bit Linux");

// The layout above must be exactly the C library's, or the kernel would write past it.
const _: () = assert!(std::mem::size_of::<RawStatfs>() == std::mem::size_of::<libc::statfs>());

/// Calls `statfs(2)` on `path`. Blocks for as long as the filesystem takes (a hung NFS server hangs
/// it), so callers from Python release the GIL around it.
pub fn statfs(path: &Path) -> Result<FsStats> {
    let mut raw = MaybeUninit::<RawStatfs>::uninit();
    let rc = path
        .with_nix_path(|cstr| {
            // SAFETY: `cstr` is NUL-terminated and `raw` is writable memory of exactly the size
            // and layout of `struct statfs` (asserted above); the kernel fills it on success.
            unsafe { libc::statfs(cstr.as_ptr(), raw.as_mut_ptr().cast::<libc::statfs>()) }
        })
        .map_err(|e| Error::os("statfs", path, e))?;
    if rc != 0 {
        return Err(Error::os("statfs", path, io::Error::last_os_error()));
    }
    // SAFETY: statfs returned 0, so the struct is initialised.
    let raw = unsafe { raw.assume_init() };
    let unsigned = |v: libc::c_long| u64::try_from(v).unwrap_or(0);
    let fragment_size = if raw.f_frsize > 0 {
        unsigned(raw.f_frsize)
    } else {
        unsigned(raw.f_bsize)
    };
    Ok(FsStats {
        fragment_size,
        blocks: raw.f_blocks,
        blocks_free: raw.f_bfree,
        blocks_available: raw.f_bavail,
        files: raw.f_files,
        files_free: raw.f_ffree,
        magic: raw.f_type,
        read_only: unsigned(raw.f_flags) & libc::ST_RDONLY != 0,
    })
}

/// Inode counts of a filesystem that has a fixed number of inodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inodes {
    /// `f_files`.
    pub total: u64,
    /// `f_files - f_ffree`.
    pub used: u64,
    /// `f_ffree`.
    pub free: u64,
    /// `used / (used + free) * 100`, as `df -i` computes `IUse%`.
    pub percent_used: f64,
}

/// Usage of the filesystem under a path, in bytes, as `df -B1` and `df -i` report it.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskUsage {
    /// The path that was asked about.
    pub path: PathBuf,
    /// The path actually passed to `statfs`: `path` itself, or its nearest existing ancestor.
    pub queried_path: PathBuf,
    /// False when `path` does not exist (yet) and `queried_path` is an ancestor.
    pub path_exists: bool,
    /// Size of the filesystem (`df` Size).
    pub total: u64,
    /// Used space (`df` Used): `blocks - bfree`.
    pub used: u64,
    /// Free space including root's reserve: `bfree`.
    pub free: u64,
    /// Space a non-root user can still write (`df` Avail): `bavail`.
    pub avail: u64,
    /// Root's reserve: `bfree - bavail` (5% by default on ext4).
    pub reserved: u64,
    /// `used / (used + avail) * 100`, unrounded (`df` rounds it up to Use%).
    pub percent_used: f64,
    /// Inode counts; `None` when the filesystem reports no fixed count (btrfs, many FUSE).
    pub inodes: Option<Inodes>,
    /// The mount is read-only.
    pub read_only: bool,
    /// The unit of the block counts (`f_frsize`).
    pub block_size: u64,
    /// `statfs` magic number of the filesystem type.
    pub fs_magic: i64,
}

impl DiskUsage {
    /// The usage figures of `stats`, for `path` answered by `queried_path`.
    pub fn from_stats(path: PathBuf, queried_path: PathBuf, stats: &FsStats) -> Self {
        let unit = u128::from(stats.fragment_size);
        let bytes = |blocks: u64| u64::try_from(u128::from(blocks) * unit).unwrap_or(u64::MAX);
        let used_blocks = stats.blocks.saturating_sub(stats.blocks_free);
        let used = bytes(used_blocks);
        let avail = bytes(stats.blocks_available);
        let inodes = (stats.files > 0).then(|| {
            let used = stats.files.saturating_sub(stats.files_free);
            Inodes {
                total: stats.files,
                used,
                free: stats.files_free,
                percent_used: percent(used, stats.files_free),
            }
        });
        DiskUsage {
            path_exists: path == queried_path,
            path,
            queried_path,
            total: bytes(stats.blocks),
            used,
            free: bytes(stats.blocks_free),
            avail,
            reserved: bytes(stats.blocks_free.saturating_sub(stats.blocks_available)),
            percent_used: percent(used, avail),
            inodes,
            read_only: stats.read_only,
            block_size: stats.fragment_size,
            fs_magic: stats.magic,
        }
    }

    /// `statfs` says this is overlayfs (a container root reporting the host's partition).
    pub fn is_overlay_magic(&self) -> bool {
        self.fs_magic == OVERLAYFS_MAGIC
    }

    /// The filesystem type: the mount table's name when the mount is known, else a name for the
    /// `statfs` magic number, else the number in hex.
    pub fn fs_type(&self, mount: Option<&Mount>) -> String {
        match mount {
            Some(m) if !m.fs_type.is_empty() => m.fs_type.clone(),
            _ => magic_name(self.fs_magic).map_or_else(|| format!("{:#x}", self.fs_magic), str::to_owned),
        }
    }

    /// The mounted device (the mount table's source), when the mount is known and names one.
    pub fn device(mount: Option<&Mount>) -> Option<OsString> {
        mount.filter(|m| !m.source.is_empty()).map(|m| m.source.clone())
    }

    /// An overlay root, by `statfs` magic or by the mount table.
    pub fn is_overlay(&self, mount: Option<&Mount>) -> bool {
        self.is_overlay_magic() || mount.is_some_and(Mount::is_overlay)
    }
}

/// `used / (used + avail) * 100`; 0 for an empty filesystem.
pub fn percent(used: u64, avail: u64) -> f64 {
    let denominator = u128::from(used) + u128::from(avail);
    if denominator == 0 {
        return 0.0;
    }
    (u128::from(used) * 100) as f64 / denominator as f64
}

/// Rejects paths no system call could take, with a message naming the argument.
pub fn validate_path(name: &'static str, path: &Path) -> Result<()> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(Error::invalid(name, "''", "expected a non-empty path"));
    }
    if bytes.contains(&0) {
        return Err(Error::invalid(
            name,
            show_path(path),
            "a path cannot contain a NUL byte",
        ));
    }
    Ok(())
}

/// Usage of the filesystem that holds `path`. A path that does not exist yet (a checkpoint
/// directory about to be created) is answered by its nearest existing ancestor, and the result
/// says so; any other failure (permission, not a directory, name too long) is returned as is.
pub fn usage(path: &Path) -> Result<DiskUsage> {
    validate_path("path", path)?;
    let (queried, stats) = statfs_nearest_existing(path)?;
    Ok(DiskUsage::from_stats(path.to_path_buf(), queried, &stats))
}

/// `statfs` of `path`, or of its nearest existing ancestor when it does not exist.
pub fn statfs_nearest_existing(path: &Path) -> Result<(PathBuf, FsStats)> {
    let first_error = match statfs(path) {
        Ok(stats) => return Ok((path.to_path_buf(), stats)),
        Err(err) if err.errno() == Some(libc::ENOENT) => err,
        Err(err) => return Err(err),
    };
    let mut candidate = path;
    while let Some(parent) = candidate.parent() {
        // The parent of a one-component relative path is "", which means the working directory.
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        match statfs(parent) {
            Ok(stats) => {
                log::debug!(
                    "{} does not exist; measured its ancestor {}",
                    path.display(),
                    parent.display()
                );
                return Ok((parent.to_path_buf(), stats));
            }
            Err(err) if err.errno() == Some(libc::ENOENT) && parent != Path::new(".") => candidate = parent,
            Err(err) => return Err(err),
        }
    }
    Err(first_error)
}

/// Whether a `statfs` magic number is a filesystem shared between hosts (`nfs`, `cifs`, `ceph`,
/// `lustre`, `gpfs`, `beegfs`, `9p`, `gfs2`, `ocfs2`, `afs`, and FUSE, mostly remote storage), for when the
/// mount table has no type for it: in a distributed run one process measures it for every node.
pub fn is_network_magic(magic: i64) -> bool {
    matches!(
        magic,
        0x6969
            | 0xFF53_4D42
            | 0xFE53_4D42
            | 0x00C3_6400
            | 0x0BD0_0BD0
            | 0x4750_4653
            | 0x1983_0326
            | 0x6573_5546
            | 0x0102_1997
            | 0x0116_1970
            | 0x7461_636F
            | 0x5346_414F
            | 0x6B41_4653
    )
}

/// A readable name for a `statfs` magic number, for when the mount table is unavailable.
pub fn magic_name(magic: i64) -> Option<&'static str> {
    Some(match magic {
        0xEF53 => "ext2/ext3/ext4",
        0x0102_1994 => "tmpfs",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        OVERLAYFS_MAGIC => "overlay",
        0x6969 => "nfs",
        0x6573_5546 => "fuse",
        0x2FC1_2FC1 => "zfs",
        0x7371_7368 => "squashfs",
        0x8584_58F6 => "ramfs",
        0xFF53_4D42 => "cifs",
        0xFE53_4D42 => "smb2",
        0xF2F5_2010 => "f2fs",
        0x00C3_6400 => "ceph",
        0x0BD0_0BD0 => "lustre",
        0x9fa0 => "proc",
        0x6265_6572 => "sysfs",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(blocks: u64, bfree: u64, bavail: u64, files: u64, ffree: u64) -> FsStats {
        FsStats {
            fragment_size: 4096,
            blocks,
            blocks_free: bfree,
            blocks_available: bavail,
            files,
            files_free: ffree,
            magic: 0xEF53,
            read_only: false,
        }
    }

    #[test]
    fn arithmetic_follows_df() {
        // ext4 with a 5% reserve: 1000 blocks, 600 free of which 550 available to non-root.
        let u = DiskUsage::from_stats("/a".into(), "/a".into(), &stats(1000, 600, 550, 100, 40));
        assert_eq!(u.total, 1000 * 4096);
        assert_eq!(u.used, 400 * 4096);
        assert_eq!(u.free, 600 * 4096);
        assert_eq!(u.avail, 550 * 4096);
        assert_eq!(u.reserved, 50 * 4096);
        assert!((u.percent_used - 400.0 / 950.0 * 100.0).abs() < 1e-12);
        let inodes = u.inodes.expect("fixed inode count");
        assert_eq!((inodes.total, inodes.used, inodes.free), (100, 60, 40));
        assert!((inodes.percent_used - 60.0).abs() < 1e-12);
        assert!(u.path_exists);
    }

    #[test]
    fn full_for_non_root_is_one_hundred_percent() {
        let u = DiskUsage::from_stats("/a".into(), "/".into(), &stats(1000, 50, 0, 0, 0));
        assert!((u.percent_used - 100.0).abs() < f64::EPSILON);
        assert_eq!(u.reserved, 50 * 4096);
        assert!(u.inodes.is_none(), "no inode count reported");
        assert!(!u.path_exists);
    }

    #[test]
    fn empty_and_inconsistent_filesystems_do_not_panic() {
        let u = DiskUsage::from_stats("/a".into(), "/a".into(), &stats(0, 0, 0, 0, 0));
        assert!(u.percent_used.abs() < f64::EPSILON);
        // Some network filesystems report bfree > blocks or bavail > bfree.
        let u = DiskUsage::from_stats("/a".into(), "/a".into(), &stats(10, 20, 30, 5, 9));
        assert_eq!((u.used, u.reserved), (0, 0));
        let huge = FsStats {
            fragment_size: u64::MAX,
            ..stats(u64::MAX, 1, 1, 1, 1)
        };
        assert_eq!(
            DiskUsage::from_stats("/a".into(), "/a".into(), &huge).total,
            u64::MAX
        );
    }

    #[test]
    fn missing_path_is_answered_by_its_ancestor() {
        let u = usage(Path::new("/proc/definitely/not/here")).expect("ancestor");
        assert_eq!(u.queried_path, Path::new("/proc"));
        assert!(!u.path_exists);
        let u = usage(Path::new("not-here-either")).expect("relative ancestor");
        assert_eq!(u.queried_path, Path::new("."));
    }

    #[test]
    fn bad_paths_are_errors_not_panics() {
        assert!(matches!(
            usage(Path::new("")),
            Err(Error::InvalidArgument { name: "path", .. })
        ));
        let nul = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/a\0b"));
        assert!(matches!(usage(nul), Err(Error::InvalidArgument { .. })));
        let through_file = usage(Path::new("/proc/self/status/x"));
        assert_eq!(through_file.err().and_then(|e| e.errno()), Some(libc::ENOTDIR));
        let long = PathBuf::from(format!("/{}", "a".repeat(5000)));
        assert_eq!(
            usage(&long).err().and_then(|e| e.errno()),
            Some(libc::ENAMETOOLONG)
        );
    }
}
