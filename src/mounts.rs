//! Mount discovery from `/proc/<pid>/mountinfo`, and finding the mount a path lives on the way `df` does.
//!
//! `df` (coreutils `get_point`) takes the longest mount-point prefix of the canonical path and confirms
//! it by device id, falls back to any mount with the path's device id, and last climbs the parents
//! until the device changes. [`find_mount`] does the same over a parsed table.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Filesystem types that carry no storage of their own; `df` calls them dummies and prefers real ones.
const DUMMY_TYPES: &[&str] = &[
    "autofs",
    "proc",
    "subfs",
    "debugfs",
    "devpts",
    "fusectl",
    "fuse.portal",
    "mqueue",
    "rpc_pipefs",
    "sysfs",
    "devfs",
    "kernfs",
    "cgroup",
    "cgroup2",
    "securityfs",
    "pstore",
    "bpf",
    "tracefs",
    "configfs",
    "binfmt_misc",
    "nsfs",
    "none",
];

/// Union filesystems whose `statfs` reports the writable upper layer, i.e. the host's partition.
const OVERLAY_TYPES: &[&str] = &[
    "overlay",
    "fuse-overlayfs",
    "aufs",
    "unionfs",
    "fuse.unionfs-fuse",
];

/// One line of `mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Unique id of the mount.
    pub mount_id: u64,
    /// Id of the parent mount.
    pub parent_id: u64,
    /// Major device number (`st_dev` of files on this filesystem).
    pub major: u32,
    /// Minor device number.
    pub minor: u32,
    /// The directory of the filesystem that forms this mount's root (not `/` for bind mounts).
    pub root: PathBuf,
    /// Where it is mounted, escapes decoded.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,relatime`).
    pub mount_options: String,
    /// Filesystem type (`ext4`, `overlay`, `fuse.sshfs`).
    pub fs_type: String,
    /// The mount source, usually a device (`/dev/sda1`), escapes decoded.
    pub source: OsString,
    /// Superblock options.
    pub super_options: String,
}

impl Mount {
    /// Read-only when the mount or its superblock says `ro` (`node_exporter`'s rule).
    pub fn read_only(&self) -> bool {
        has_option(&self.mount_options, "ro") || has_option(&self.super_options, "ro")
    }

    /// A union filesystem: inside a container its numbers are the host partition's.
    pub fn is_overlay(&self) -> bool {
        OVERLAY_TYPES.contains(&self.fs_type.as_str())
    }

    /// A pseudo filesystem with no storage (proc, sysfs, cgroup, ...).
    pub fn is_dummy(&self) -> bool {
        DUMMY_TYPES.contains(&self.fs_type.as_str())
    }

    /// The `st_dev` value files on this mount report.
    pub fn device_id(&self) -> u64 {
        nix::sys::stat::makedev(u64::from(self.major), u64::from(self.minor))
    }
}

fn has_option(options: &str, wanted: &str) -> bool {
    options.split(',').any(|o| o == wanted)
}

/// Decodes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash).
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 3 < field.len() && is_octal_escape(&field[i + 1..i + 4]) {
            let value = field[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            // Three octal digits can exceed a byte (\777); such a sequence is not an escape.
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

fn is_octal_escape(digits: &[u8]) -> bool {
    digits.len() == 3 && digits.iter().all(|d| (b'0'..=b'7').contains(d))
}

/// Parses one mountinfo line; `None` when it is malformed.
pub fn parse_line(line: &[u8]) -> Option<Mount> {
    let fields: Vec<&[u8]> = line.split(|b| *b == b' ').filter(|f| !f.is_empty()).collect();
    let separator = fields.iter().position(|f| *f == b"-")?;
    if separator < 6 || fields.len() < separator + 3 {
        return None;
    }
    let text = |f: &[u8]| std::str::from_utf8(f).ok().map(str::to_owned);
    let (major, minor) = std::str::from_utf8(fields[2]).ok()?.split_once(':')?;
    Some(Mount {
        mount_id: std::str::from_utf8(fields[0]).ok()?.parse().ok()?,
        parent_id: std::str::from_utf8(fields[1]).ok()?.parse().ok()?,
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        root: PathBuf::from(OsString::from_vec(unescape(fields[3]))),
        mount_point: PathBuf::from(OsString::from_vec(unescape(fields[4]))),
        mount_options: text(fields[5])?,
        fs_type: String::from_utf8(unescape(fields[separator + 1])).ok()?,
        source: OsString::from_vec(unescape(fields[separator + 2])),
        super_options: fields
            .get(separator + 3)
            .and_then(|f| text(f))
            .unwrap_or_default(),
    })
}

/// Parses a whole mountinfo file, skipping malformed lines (logged at debug level).
pub fn parse_mountinfo(content: &[u8]) -> Vec<Mount> {
    content
        .split(|b| *b == b'\n')
        .filter_map(parse_kept_line)
        .collect()
}

/// Where to read the mount table: `<proc_root>/<pid>/mountinfo`.
///
/// With `pid` unset, `/proc` means `self`; another proc root (a host's `/proc` mounted into a
/// container) means pid 1, the host's init, falling back to `self` when hidepid hides pid 1: a
/// `self` link inside a foreign proc would show this process's own namespace, not the host's.
pub fn mountinfo_path(proc_root: &Path, pid: Option<&str>) -> Vec<PathBuf> {
    match pid {
        Some(pid) => vec![proc_root.join(pid).join("mountinfo")],
        None if proc_root == Path::new("/proc") => vec![proc_root.join("self/mountinfo")],
        None => vec![proc_root.join("1/mountinfo"), proc_root.join("self/mountinfo")],
    }
}

/// Reads and parses the mount table (see [`mountinfo_path`] for which file).
pub fn read_mounts(proc_root: &Path, pid: Option<&str>) -> Result<Vec<Mount>> {
    if let Some(pid) = pid {
        if pid != "self" && !crate::names::is_number(pid) {
            return Err(Error::invalid(
                "pid",
                format!("{pid:?}"),
                "expected a process id or 'self'",
            ));
        }
    }
    let candidates = mountinfo_path(proc_root, pid);
    let mut last_error = None;
    for file in &candidates {
        match read_table(file) {
            Ok(table) => return Ok(table),
            Err(err @ Error::InvalidArgument { .. }) => return Err(err),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.unwrap_or_else(|| Error::invalid("proc_root", proc_root.display(), "no mountinfo")))
}

/// The most a mount table may hold: a host with 10,000 mounts has about 1.5 MiB of mountinfo.
const MAX_MOUNTINFO_BYTES: u64 = 64 << 20;
/// The most mounts a table may list (ten times a very busy Kubernetes node): past this it is not a
/// mount table but a file made to exhaust memory with millions of tiny lines.
pub const MAX_MOUNTS: usize = 100_000;
/// The longest line kept (an overlay with hundreds of layers has lines of a few KiB); longer ones
/// are skipped as malformed without being held in memory.
const MAX_LINE_BYTES: usize = 1 << 20;

/// Reads and parses a mountinfo file line by line, so memory stays a small multiple of the
/// mounts kept (never the whole file plus its parse). Refuses anything that is not a regular file
/// (procfs files are: a FIFO would block forever, `/dev/zero` never ends), more than
/// [`MAX_MOUNTINFO_BYTES`] and more than [`MAX_MOUNTS`] mounts.
fn read_table(file: &Path) -> Result<Vec<Mount>> {
    use std::io::{BufRead, BufReader, Read};
    use std::os::unix::fs::OpenOptionsExt;

    let handle = std::fs::OpenOptions::new()
        .read(true)
        // Opening a FIFO for reading blocks until a writer appears; non-blocking returns at once.
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(file)
        .map_err(|source| Error::os("open", file, source))?;
    let meta = handle
        .metadata()
        .map_err(|source| Error::os("fstat", file, source))?;
    if !meta.file_type().is_file() {
        return Err(Error::invalid(
            "proc_root",
            crate::error::show_path(file),
            "expected a proc filesystem whose mountinfo is a regular file",
        ));
    }
    let too_large = |what: String| Error::invalid("proc_root", crate::error::show_path(file), what);
    let mut reader = BufReader::with_capacity(64 * 1024, handle.take(MAX_MOUNTINFO_BYTES + 1));
    let mut table = Vec::new();
    let mut line = Vec::new();
    let mut total = 0u64;
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|source| Error::os("read", file, source))?;
        if read == 0 {
            break;
        }
        total += read as u64;
        if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
            total += skip_line(&mut reader).map_err(|source| Error::os("read", file, source))?;
            log::debug!("skipping a mountinfo line longer than {MAX_LINE_BYTES} bytes");
        } else if let Some(mount) = parse_kept_line(&line) {
            if table.len() == MAX_MOUNTS {
                return Err(too_large(format!(
                    "a mount table with more than {MAX_MOUNTS} mounts is not a mountinfo file"
                )));
            }
            table.push(mount);
        }
        if total > MAX_MOUNTINFO_BYTES {
            return Err(too_large(format!(
                "a mount table larger than {MAX_MOUNTINFO_BYTES} bytes is not a mountinfo file"
            )));
        }
    }
    Ok(table)
}

/// Reads through the rest of an overlong line without keeping it; returns the bytes skipped.
fn skip_line(reader: &mut impl std::io::BufRead) -> std::io::Result<u64> {
    let mut skipped = 0u64;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(skipped);
        }
        let (used, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(at) => (at + 1, true),
            None => (buf.len(), false),
        };
        reader.consume(used);
        skipped += used as u64;
        if done {
            return Ok(skipped);
        }
    }
}

/// One line of a streamed table (its newline included), `None` when empty or malformed.
fn parse_kept_line(line: &[u8]) -> Option<Mount> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.is_empty() {
        return None;
    }
    let parsed = parse_line(line);
    if parsed.is_none() {
        log::debug!(
            "skipping malformed mountinfo line: {:?}",
            String::from_utf8_lossy(line)
        );
    }
    parsed
}

/// True when `prefix` is `path` or one of its ancestors, compared by whole components.
fn is_path_prefix(prefix: &Path, path: &Path) -> bool {
    path.starts_with(prefix)
}

/// The mount that holds `path` judged by its name alone (longest mount-point prefix, the one on
/// top among equals): for a path whose filesystem does not answer, so it cannot be examined.
pub fn mount_by_name<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    mounts
        .iter()
        .filter(|m| is_path_prefix(&m.mount_point, path))
        .max_by_key(|m| (m.mount_point.as_os_str().len(), !m.is_dummy()))
}

/// Filesystems shared between hosts, by mount-table type: `nfs`, `cifs`, `ceph`, `lustre`, `gpfs`,
/// `beegfs`, `9p`, `gfs2`, `ocfs2`, `afs`, `glusterfs`, `panfs`, `orangefs`, `davfs`, and FUSE
/// filesystems other than `fuse-overlayfs` (`gcsfuse`, `s3fs`, `juicefs`, `blobfuse`, `sshfs`...).
pub fn is_network_type(fs_type: &str) -> bool {
    const NETWORK: &[&str] = &[
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "lustre",
        "gpfs",
        "beegfs",
        "9p",
        "gfs2",
        "ocfs2",
        "afs",
        "glusterfs",
        "panfs",
        "pvfs2",
        "orangefs",
        "davfs",
        "fuse",
    ];
    if let Some(subtype) = fs_type.strip_prefix("fuse.") {
        return !subtype.contains("overlay");
    }
    NETWORK.contains(&fs_type)
}

/// The mount that holds `canonical` (an absolute path with symlinks resolved) whose `st_dev` is
/// `device`. Follows `df`: longest mount-point prefix confirmed by device id, else the longest
/// prefix among mounts with that device id, else `None` (the caller then climbs parents).
pub fn find_mount<'a>(mounts: &'a [Mount], canonical: &Path, device: u64) -> Option<&'a Mount> {
    // Longest prefix wins; among equal prefixes the later line is the one on top (stacked mounts,
    // and `max_by_key` keeps the last maximum),
    // and a real filesystem beats a dummy one.
    let best_prefix = |candidates: &mut dyn Iterator<Item = &'a Mount>| {
        candidates
            .filter(|m| is_path_prefix(&m.mount_point, canonical))
            .max_by_key(|m| (m.mount_point.as_os_str().len(), !m.is_dummy()))
    };
    let by_prefix = best_prefix(&mut mounts.iter());
    if let Some(m) = by_prefix {
        if m.device_id() == device {
            return Some(m);
        }
    }
    // A bind mount or a btrfs subvolume: the prefix match disagrees with the device id.
    if let Some(m) = best_prefix(&mut mounts.iter().filter(|m| m.device_id() == device)) {
        return Some(m);
    }
    mounts.iter().rev().find(|m| m.device_id() == device)
}

/// Resolves the mount holding `path` (which must exist): reads the table, canonicalises the path,
/// and applies [`find_mount`]. When no table entry matches (no `/proc`, or a device id the table
/// does not list) it falls back to climbing parents until the device changes, and returns a
/// synthetic entry carrying only the mount point.
pub fn mount_of(path: &Path, proc_root: &Path) -> Result<Mount> {
    let canonical = std::fs::canonicalize(path).map_err(|e| Error::os("realpath", path, e))?;
    let device = std::fs::metadata(&canonical)
        .map_err(|e| Error::os("stat", &canonical, e))?
        .dev();
    let table = match read_mounts(proc_root, None) {
        Ok(table) => table,
        Err(err) => {
            log::debug!(
                "mount table unavailable ({err}); climbing parents of {}",
                canonical.display()
            );
            Vec::new()
        }
    };
    if let Some(found) = find_mount(&table, &canonical, device) {
        return Ok(found.clone());
    }
    let mut mount_point = canonical.as_path();
    while let Some(parent) = mount_point.parent() {
        match std::fs::metadata(parent) {
            Ok(meta) if meta.dev() == device => mount_point = parent,
            _ => break,
        }
    }
    Ok(Mount {
        mount_id: 0,
        parent_id: 0,
        major: nix::sys::stat::major(device).try_into().unwrap_or(u32::MAX),
        minor: nix::sys::stat::minor(device).try_into().unwrap_or(u32::MAX),
        root: PathBuf::from("/"),
        mount_point: mount_point.to_path_buf(),
        mount_options: String::new(),
        fs_type: String::new(),
        source: OsString::new(),
        super_options: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_filesystems_by_type() {
        for shared in [
            "nfs4",
            "cifs",
            "lustre",
            "fuse.gcsfuse",
            "fuse.s3fs",
            "fuse",
            "9p",
            "gpfs",
        ] {
            assert!(is_network_type(shared), "{shared}");
        }
        for local in [
            "ext4",
            "xfs",
            "tmpfs",
            "overlay",
            "fuse.fuse-overlayfs",
            "btrfs",
            "zfs",
        ] {
            assert!(!is_network_type(local), "{local}");
        }
    }

    #[test]
    fn a_mount_by_name_is_the_longest_prefix() {
        let mounts = parse_mountinfo(SAMPLE);
        let found = mount_by_name(&mounts, Path::new("/tmp/m t/x")).expect("a mount");
        assert_eq!(found.mount_point, Path::new("/tmp/m t"));
        let root = mount_by_name(&mounts, Path::new("/tmp/m tx")).expect("a mount");
        assert_eq!(root.mount_point, Path::new("/"));
    }

    const SAMPLE: &[u8] = b"22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
42 27 7:0 / /tmp/m\\040t rw,relatime shared:5 master:1 - ext4 /dev/loop0 rw
43 27 0:50 / /mnt/tab\\011and\\012nl\\134 ro,nosuid - tmpfs my\\040src rw,size=16384k
44 27 0:51 /sub /data/bind rw - ext4 /dev/vdb ro
45 27 0:60 / /merged rw - overlay overlay rw,lowerdir=/l,upperdir=/u
garbage line
46 27 0:61 / /bad rw - 
";

    #[test]
    fn parses_fields_and_optional_tags() {
        let mounts = parse_mountinfo(SAMPLE);
        assert_eq!(mounts.len(), 6, "two malformed lines skipped");
        let loop_mount = &mounts[2];
        assert_eq!(loop_mount.mount_id, 42);
        assert_eq!(loop_mount.parent_id, 27);
        assert_eq!((loop_mount.major, loop_mount.minor), (7, 0));
        assert_eq!(loop_mount.mount_point, Path::new("/tmp/m t"));
        assert_eq!(loop_mount.fs_type, "ext4");
        assert_eq!(loop_mount.source, OsString::from("/dev/loop0"));
        assert_eq!(loop_mount.super_options, "rw");
        assert!(!loop_mount.read_only());
    }

    #[test]
    fn decodes_every_escape() {
        let mounts = parse_mountinfo(SAMPLE);
        assert_eq!(mounts[3].mount_point, Path::new("/mnt/tab\tand\nnl\\"));
        assert_eq!(mounts[3].source, OsString::from("my src"));
        assert_eq!(
            unescape(b"a\\777b\\04"),
            b"a\\777b\\04".to_vec(),
            "not escapes: left alone"
        );
        assert_eq!(unescape(b"\\"), b"\\".to_vec());
        assert_eq!(unescape(b"x\\101"), b"xA".to_vec());
    }

    #[test]
    fn read_only_from_mount_or_superblock() {
        let mounts = parse_mountinfo(SAMPLE);
        assert!(mounts[3].read_only(), "per-mount ro");
        assert!(mounts[4].read_only(), "superblock ro");
        assert!(mounts[5].is_overlay());
        assert!(mounts[0].is_dummy());
        assert_eq!(mounts[4].root, Path::new("/sub"));
    }

    #[test]
    fn longest_prefix_confirmed_by_device() {
        let mounts = parse_mountinfo(SAMPLE);
        let root_dev = nix::sys::stat::makedev(254, 0);
        let loop_dev = nix::sys::stat::makedev(7, 0);
        let found = find_mount(&mounts, Path::new("/tmp/m t/ckpt"), loop_dev);
        assert_eq!(found.map(|m| m.mount_id), Some(42));
        // A sibling whose name merely starts with the mount point is not inside it.
        let found = find_mount(&mounts, Path::new("/tmp/m tx"), root_dev);
        assert_eq!(found.map(|m| m.mount_id), Some(27));
        let found = find_mount(&mounts, Path::new("/"), root_dev);
        assert_eq!(found.map(|m| m.mount_id), Some(27));
    }

    #[test]
    fn device_mismatch_falls_back_to_device_scan() {
        let mounts = parse_mountinfo(SAMPLE);
        // Path under /proc by prefix but with the loop device's id (e.g. a stale table).
        let found = find_mount(&mounts, Path::new("/proc/x"), nix::sys::stat::makedev(7, 0));
        assert_eq!(found.map(|m| m.mount_id), Some(42));
        assert!(find_mount(&mounts, Path::new("/x"), nix::sys::stat::makedev(99, 9)).is_none());
    }

    #[test]
    fn stacked_mounts_take_the_top_one() {
        let table = b"1 0 8:1 / / rw - ext4 /dev/a rw
2 1 0:30 / /data rw - tmpfs first rw
3 1 0:30 / /data rw - tmpfs second rw
";
        let mounts = parse_mountinfo(table);
        let found = find_mount(&mounts, Path::new("/data/f"), nix::sys::stat::makedev(0, 30));
        assert_eq!(found.map(|m| m.mount_id), Some(3));
    }

    #[test]
    fn foreign_proc_root_reads_pid_one_first() {
        assert_eq!(
            mountinfo_path(Path::new("/proc"), None),
            vec![PathBuf::from("/proc/self/mountinfo")]
        );
        assert_eq!(
            mountinfo_path(Path::new("/host/proc"), None),
            vec![
                PathBuf::from("/host/proc/1/mountinfo"),
                PathBuf::from("/host/proc/self/mountinfo")
            ]
        );
        assert!(read_mounts(Path::new("/proc"), Some("1/../2")).is_err());
    }

    /// Streamed: an overlong line is skipped without being kept, its neighbours are read, and a
    /// table of more than `MAX_MOUNTS` mounts is refused.
    #[test]
    fn streams_skipping_overlong_lines_and_refusing_huge_tables() {
        let dir = std::env::temp_dir().join(format!("diskguard-mounts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("mountinfo");
        let mut table = b"22 1 8:1 / / rw - ext4 /dev/sda1 rw\n23 22 8:2 / /".to_vec();
        table.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        table.extend_from_slice(b" rw - ext4 /dev/x rw\n24 22 8:3 / /data rw - ext4 /dev/sdb rw");
        std::fs::write(&file, &table).expect("write");
        let read = read_table(&file).expect("read");
        let points: Vec<_> = read.iter().map(|m| m.mount_point.clone()).collect();
        assert_eq!(points, [PathBuf::from("/"), PathBuf::from("/data")]);

        let line = b"1 1 0:1 / /m rw - t s rw\n";
        std::fs::write(&file, line.repeat(MAX_MOUNTS + 1)).expect("write");
        let err = read_table(&file).expect_err("too many mounts");
        assert!(err.to_string().contains("mounts"), "{err}");
        std::fs::write(&file, line.repeat(MAX_MOUNTS)).expect("write");
        assert_eq!(read_table(&file).expect("read").len(), MAX_MOUNTS);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reads_this_machines_table() {
        let mounts = read_mounts(Path::new("/proc"), None).expect("mountinfo readable");
        assert!(mounts.iter().any(|m| m.mount_point == Path::new("/")));
        let root = mount_of(Path::new("/"), Path::new("/proc")).expect("root resolves");
        assert_eq!(root.mount_point, Path::new("/"));
    }

    #[test]
    fn climbs_parents_without_a_table() {
        let found = mount_of(Path::new("/"), Path::new("/nonexistent-proc")).expect("fallback");
        assert_eq!(found.mount_point, Path::new("/"));
        assert!(found.fs_type.is_empty());
    }
}
