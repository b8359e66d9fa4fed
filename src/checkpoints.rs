//! Finding the checkpoints in a directory, measuring them, and telling complete ones from partial saves.
//!
//! Everything goes through a directory file descriptor opened with `O_NOFOLLOW`, and entries are
//! examined with `fstatat(AT_SYMLINK_NOFOLLOW)`: a symlink is recorded as a pointer (it protects its
//! target when that target is in the same directory) and never followed. Sizes are allocated bytes
//! (`st_blocks`), recursive for directories without crossing into other filesystems, hard links
//! counted once.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};

use crate::error::{Error, Result};
use crate::names::{
    checkpoint_stem, glob_match, is_number, is_part_of_a_save, is_temp_name, parse_name, NameInfo,
    SaveContext,
};

/// What kind of checkpoint an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A single file (`torch.save`, Lightning `.ckpt`, safetensors, `.bin`).
    File,
    /// Hugging Face `checkpoint-<step>/`; complete once `trainer_state.json` is written.
    HuggingFace,
    /// torch.distributed.checkpoint / torchtitan directory; complete once `.metadata` is written.
    Dcp,
    /// Orbax numeric step directory (committed by rename).
    Orbax,
    /// DeepSpeed `global_step<N>/` tag directory (see [`crate::layouts`]).
    DeepSpeed,
    /// Accelerate `save_state` directory, `checkpoint_<n>/` (see [`crate::layouts`]).
    Accelerate,
}

impl Format {
    /// Lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Format::File => "file",
            Format::HuggingFace => "huggingface",
            Format::Dcp => "dcp",
            Format::Orbax => "orbax",
            Format::DeepSpeed => "deepspeed",
            Format::Accelerate => "accelerate",
        }
    }

    /// The format [`Format::name`] names, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Format::File,
            Format::HuggingFace,
            Format::Dcp,
            Format::Orbax,
            Format::DeepSpeed,
            Format::Accelerate,
        ]
        .into_iter()
        .find(|f| f.name() == name)
    }
}

/// One checkpoint (complete or not) found in the directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Entry name inside the directory.
    pub name: OsString,
    /// Its format.
    pub format: Format,
    /// Step, epoch and metrics from the name.
    pub info: NameInfo,
    /// Modification time, seconds since the epoch.
    pub mtime: f64,
    /// Allocated bytes (`st_blocks * 512`), recursive, hard links counted once in the whole scan.
    pub size: u64,
    /// Apparent bytes (`st_size`), recursive.
    pub apparent_size: u64,
    /// Device and inode: re-checked right before deletion.
    pub dev: u64,
    /// See `dev`.
    pub ino: u64,
    /// Status-change time (seconds, nanoseconds): an inode number can be reused by a new file,
    /// its ctime cannot be set back, so together they say "still the same file".
    pub ctime: (i64, i64),
    /// Hard links to it (`st_nlink`); deleting one of several frees nothing.
    pub nlink: u64,
    /// Its owner (`st_uid`): another user's checkpoint never outranks a run's own saves.
    pub uid: u32,
    /// Why this is not a complete checkpoint; `None` when complete (or not yet verified).
    pub incomplete: Option<String>,
    /// False until the contents were checked (name and size checks are always done).
    pub verified: bool,
}

impl Checkpoint {
    /// The name as text (lossy for non-UTF-8 names).
    pub fn display_name(&self) -> String {
        self.name.to_string_lossy().into_owned()
    }

    /// Whether it is a complete checkpoint as far as checked.
    pub fn is_complete(&self) -> bool {
        self.incomplete.is_none()
    }
}

/// A symlink in the directory (`last.ckpt -> epoch=3-step=300.ckpt`).
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// The link's name.
    pub name: OsString,
    /// What it points to, as written.
    pub target: OsString,
    /// The entry it names in the same directory, if it stays inside it.
    pub target_inside: Option<OsString>,
}

/// Everything a scan found.
#[derive(Debug, Clone)]
pub struct Scan {
    /// The directory as given.
    pub dir: PathBuf,
    /// Device and inode of the directory, for re-checking identity before deleting.
    pub dev: u64,
    /// See `dev`.
    pub ino: u64,
    /// Checkpoints, in directory order (callers sort).
    pub checkpoints: Vec<Checkpoint>,
    /// Symlinks.
    pub links: Vec<Link>,
}

/// Opening a directory entry as a directory: never through a symlink.
pub(crate) const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);
/// Opening a file entry to read its header: never through a symlink, never blocking on a FIFO.
pub(crate) const FILE_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_NONBLOCK);

/// What to do when the directory path itself is a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirLink {
    /// Refuse it (`ELOOP`/`ENOTDIR`): a checkpoint directory is never managed through a symlink.
    Refuse,
    /// Follow it: a temp dir (`$TMPDIR`) is often a symlink, in containers especially. What is
    /// deleted there is still re-checked by identity through the descriptor opened here.
    Follow,
}

/// Opens `dir` as a directory, refusing `/`; a final symlink is refused or followed as `link` says.
/// The one directory opener of the core: scans, plans, deletion and orphans all go through it.
pub fn open_directory(dir: &Path, link: DirLink) -> Result<OwnedFd> {
    crate::usage::validate_path("dir", dir)?;
    if dir == Path::new("/") {
        return Err(Error::invalid(
            "dir",
            "'/'",
            "refusing to manage checkpoints in the root directory",
        ));
    }
    let flags = match link {
        DirLink::Refuse => DIR_FLAGS,
        DirLink::Follow => DIR_FLAGS.difference(OFlag::O_NOFOLLOW),
    };
    let fd = nix::fcntl::open(dir, flags, Mode::empty()).map_err(|e| Error::os("open", dir, e))?;
    let st = fstat(&fd).map_err(|e| Error::os("fstat", dir, e))?;
    if is_root_inode(&st) {
        return Err(Error::invalid(
            "dir",
            format!("{:?}", dir.as_os_str()),
            "refusing to manage checkpoints in the root directory",
        ));
    }
    Ok(fd)
}

/// Opens a checkpoint directory: [`open_directory`] refusing a symlink.
pub fn open_dir(dir: &Path) -> Result<OwnedFd> {
    open_directory(dir, DirLink::Refuse)
}

/// Whether `name` names one entry of a directory: not empty, not `.` or `..`, no `/`. Anything
/// else given to `*at()` calls could reach outside the directory.
pub fn is_entry_name(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty() && bytes != b"." && bytes != b".." && !bytes.contains(&b'/') && !bytes.contains(&0)
}

/// Entries of an open directory (without `.` and `..`) with the type `readdir` reports, if any.
/// The descriptor is duplicated, so `fd` stays usable for `*at()` calls.
pub(crate) fn entries(fd: &OwnedFd) -> nix::Result<Vec<(OsString, Option<Type>)>> {
    let copy = fd
        .try_clone()
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EBADF)))?;
    let mut listing = Dir::from_fd(copy)?;
    let mut found = Vec::new();
    for entry in listing.iter() {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name != "." && name != ".." {
            found.push((name.to_owned(), entry.file_type()));
        }
    }
    Ok(found)
}

/// [`entries`] without the types.
pub(crate) fn entry_names(fd: &OwnedFd) -> nix::Result<Vec<OsString>> {
    Ok(entries(fd)?.into_iter().map(|(name, _)| name).collect())
}

fn is_root_inode(st: &FileStat) -> bool {
    // "/" resolved through another spelling ("/..", "//"): same device and inode as "/".
    nix::sys::stat::stat("/").is_ok_and(|root| root.st_dev == st.st_dev && root.st_ino == st.st_ino)
}

/// Modification time, seconds since the epoch.
pub(crate) fn mtime_of(st: &FileStat) -> f64 {
    st.st_mtime as f64 + st.st_mtime_nsec as f64 * 1e-9
}

/// `(st_ctime, st_ctime_nsec)`.
pub fn ctime_of(st: &FileStat) -> (i64, i64) {
    #[allow(clippy::useless_conversion)] // time_t differs by target
    let t = (i64::from(st.st_ctime), i64::from(st.st_ctime_nsec));
    t
}

/// The file type bits of a stat.
pub(crate) fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Allocated bytes (`st_blocks * 512`).
pub(crate) fn allocated(st: &FileStat) -> u64 {
    u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512)
}

/// Counts an inode once per scan when it has several links.
#[derive(Default)]
struct Seen(HashSet<(u64, u64)>);

impl Seen {
    fn first_time(&mut self, st: &FileStat) -> bool {
        st.st_nlink <= 1 || self.0.insert((st.st_dev, st.st_ino))
    }
}

/// Recursive (allocated, apparent) bytes under an open directory, staying on its device.
fn tree_size(fd: &OwnedFd, dev: u64, seen: &mut Seen, depth: usize) -> (u64, u64) {
    let Ok(children) = entry_names(fd) else {
        return (0, 0);
    };
    let (mut alloc, mut apparent) = (0u64, 0u64);
    for name in children {
        let Ok(st) = fstatat(fd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        if st.st_dev != dev {
            continue; // a mount inside: not this checkpoint's bytes
        }
        if seen.first_time(&st) {
            alloc = alloc.saturating_add(allocated(&st));
            apparent = apparent.saturating_add(u64::try_from(st.st_size).unwrap_or(0));
        }
        if kind(&st) == SFlag::S_IFDIR && depth < 64 {
            if let Ok(child) = openat(fd, name.as_os_str(), DIR_FLAGS, Mode::empty()) {
                let (a, p) = tree_size(&child, dev, seen, depth + 1);
                alloc = alloc.saturating_add(a);
                apparent = apparent.saturating_add(p);
            }
        }
    }
    (alloc, apparent)
}

fn child_exists(dir: &impl AsFd, parent: &OsStr, child: &str) -> bool {
    let path = Path::new(parent).join(child);
    fstatat(dir, path.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
}

fn has_child_with_suffix(dir: &impl AsFd, name: &OsStr, suffix: &str) -> bool {
    let Ok(fd) = openat(dir, name, DIR_FLAGS, Mode::empty()) else {
        return false;
    };
    entry_names(&fd).is_ok_and(|names| names.iter().any(|n| n.as_bytes().ends_with(suffix.as_bytes())))
}

/// Classifies a directory entry that is a directory.
fn classify_dir(dir: &impl AsFd, name: &OsStr, text: &str) -> Option<(Format, NameInfo, Option<String>)> {
    if is_temp_name(text) {
        let format = if text.contains(".orbax-checkpoint-tmp") {
            Format::Orbax
        } else {
            Format::HuggingFace
        };
        let stem = text.split(".orbax-checkpoint-tmp").next().unwrap_or(text);
        let stem = stem.strip_prefix("tmp-").unwrap_or(stem);
        return Some((
            format,
            parse_name(stem),
            Some("temporary name of an unfinished save".into()),
        ));
    }
    if let Some(found) = crate::layouts::classify(dir, name, text) {
        return Some(found);
    }
    let info = parse_name(text);
    if let Some(step) = text.strip_prefix("checkpoint-") {
        if is_number(step) {
            let missing = (!child_exists(dir, name, "trainer_state.json"))
                .then(|| "no trainer_state.json (Hugging Face writes it last)".to_owned());
            return Some((Format::HuggingFace, info, missing));
        }
    }
    let has_metadata = child_exists(dir, name, ".metadata");
    let titan = text.strip_prefix("step-").is_some_and(is_number);
    if has_metadata || titan {
        let complete = has_metadata || child_exists(dir, name, "model.safetensors.index.json");
        return Some((
            Format::Dcp,
            info,
            (!complete).then(|| "no .metadata (DCP writes it last)".to_owned()),
        ));
    }
    if has_child_with_suffix(dir, name, ".distcp") {
        return Some((
            Format::Dcp,
            info,
            Some("no .metadata (DCP writes it last)".to_owned()),
        ));
    }
    if is_number(text) {
        return Some((Format::Orbax, info, None));
    }
    None
}

/// The entries a scan stats, each with whether it is wanted as a single-file checkpoint:
/// everything but plain files that are not checkpoints (`d_type` says). A part of a save is not one.
fn wanted_entries(names: Vec<(OsString, Option<Type>)>, patterns: &[String]) -> Vec<(OsString, bool)> {
    // A directory or a symlink named config.json marks nothing (d_type says; unknown counts).
    let context = SaveContext::of(
        names
            .iter()
            .filter(|(_, hint)| matches!(hint, Some(Type::File) | None))
            .map(|(name, _)| name.to_string_lossy()),
    );
    names
        .into_iter()
        .filter_map(|(name, hint)| {
            let text = name.to_string_lossy();
            let untemp = text.trim_end_matches(".tmp").trim_end_matches(".partial");
            // A caller's pattern names its checkpoints: it wins over the parts of a save.
            let pattern = patterns.iter().any(|p| glob_match(p, &text));
            let wanted_file = pattern
                || (!is_part_of_a_save(&text, context)
                    && (checkpoint_stem(untemp).is_some() || is_temp_name(&text)));
            (hint != Some(Type::File) || wanted_file).then_some((name, wanted_file))
        })
        .collect()
}

/// Scans the directory open as `fd` (one level; `dir` is its path, for the record and messages) for
/// checkpoints and symlinks. `patterns` adds caller-given globs for single-file checkpoints
/// beyond the built-in extensions.
pub fn scan(fd: &OwnedFd, dir: &Path, patterns: &[String]) -> Result<Scan> {
    let st = fstat(fd).map_err(|e| Error::os("fstat", dir, e))?;
    let names = entries(fd).map_err(|e| Error::os("readdir", dir, e))?;
    let wanted = wanted_entries(names, patterns);
    let stats = stat_all(fd, &wanted);
    let mut seen = Seen::default();
    let mut checkpoints = Vec::new();
    let mut links = Vec::new();
    for ((name, wanted_file), est) in wanted.into_iter().zip(stats) {
        let Some(est) = est else { continue }; // vanished meanwhile
        let text = name.to_string_lossy();
        let temp = is_temp_name(&text);
        let file_stem = checkpoint_stem(text.trim_end_matches(".tmp").trim_end_matches(".partial"));
        match kind(&est) {
            SFlag::S_IFLNK => {
                let target = nix::fcntl::readlinkat(fd, name.as_os_str()).unwrap_or_default();
                let target_inside = inside_target(&target);
                links.push(Link {
                    name,
                    target,
                    target_inside,
                });
            }
            SFlag::S_IFREG if wanted_file => {
                let stem = file_stem.unwrap_or(&text);
                let info = parse_name(stem);
                let incomplete = if temp {
                    Some("temporary name of an unfinished save".to_owned())
                } else if est.st_size == 0 {
                    Some("empty file".to_owned())
                } else {
                    None
                };
                let counted = seen.first_time(&est);
                checkpoints.push(Checkpoint {
                    name,
                    format: Format::File,
                    info,
                    mtime: mtime_of(&est),
                    size: if counted { allocated(&est) } else { 0 },
                    apparent_size: if counted {
                        u64::try_from(est.st_size).unwrap_or(0)
                    } else {
                        0
                    },
                    dev: est.st_dev,
                    ino: est.st_ino,
                    ctime: ctime_of(&est),
                    #[allow(clippy::useless_conversion)] // nlink_t differs by target
                    nlink: u64::from(est.st_nlink),
                    uid: est.st_uid,
                    incomplete,
                    verified: false,
                });
            }
            SFlag::S_IFDIR => {
                let Some((format, info, incomplete)) = classify_dir(fd, &name, &text) else {
                    continue;
                };
                let (alloc, apparent) = match openat(fd, name.as_os_str(), DIR_FLAGS, Mode::empty()) {
                    Ok(child) => tree_size(&child, est.st_dev, &mut seen, 0),
                    Err(_) => (0, 0),
                };
                checkpoints.push(Checkpoint {
                    name,
                    format,
                    info,
                    mtime: mtime_of(&est),
                    size: alloc.saturating_add(allocated(&est)),
                    apparent_size: apparent,
                    dev: est.st_dev,
                    ino: est.st_ino,
                    ctime: ctime_of(&est),
                    nlink: 1,
                    uid: est.st_uid,
                    verified: incomplete.is_some(),
                    incomplete,
                });
            }
            _ => {}
        }
    }
    // DeepSpeed's `latest` tag file points at a checkpoint as a symlink would.
    links.extend(crate::layouts::deepspeed_latest_link(fd));
    Ok(Scan {
        dir: dir.to_path_buf(),
        dev: st.st_dev,
        ino: st.st_ino,
        checkpoints,
        links,
    })
}

/// `fstatat` of every entry (no symlink following), on up to four threads for large directories:
/// with the inodes cached, the system calls are CPU work and 10,000 of them take milliseconds.
fn stat_all(dir: &OwnedFd, entries: &[(OsString, bool)]) -> Vec<Option<FileStat>> {
    let stat = |name: &OsString| fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).ok();
    let threads = std::thread::available_parallelism().map_or(1, usize::from).min(4);
    if entries.len() < 2048 || threads < 2 {
        return entries.iter().map(|(name, _)| stat(name)).collect();
    }
    let chunk = entries.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| {
                (
                    part.len(),
                    scope.spawn(move || part.iter().map(|(name, _)| stat(name)).collect::<Vec<_>>()),
                )
            })
            .collect();
        // fstatat returns errors rather than panicking; should a thread die anyway, its entries
        // count as vanished, and the others keep their own results (order is preserved).
        handles
            .into_iter()
            .flat_map(|(len, h)| h.join().unwrap_or_else(|_| vec![None; len]))
            .collect()
    })
}

/// The entry a symlink target names inside the same directory (`x.ckpt`, `./x.ckpt`), if any.
fn inside_target(target: &OsStr) -> Option<OsString> {
    let bytes = target.as_bytes();
    let trimmed = bytes.strip_prefix(b"./").unwrap_or(bytes);
    (!trimmed.is_empty() && !trimmed.contains(&b'/') && trimmed != b"." && trimmed != b"..")
        .then(|| OsStr::from_bytes(trimmed).to_owned())
}

/// Checks a single-file checkpoint's contents: a zip (torch.save) must end in an
/// end-of-central-directory record; a safetensors file's header and size must agree.
pub fn verify_file(dir: &impl AsFd, checkpoint: &mut Checkpoint) {
    if !checkpoint.verified && checkpoint.format != Format::File && checkpoint.incomplete.is_none() {
        // A directory: its layout says what to read (DCP's .metadata, DeepSpeed's zips).
        checkpoint.incomplete = crate::layouts::verify(dir, &checkpoint.name, checkpoint.format);
    }
    if checkpoint.verified || checkpoint.format != Format::File || checkpoint.incomplete.is_some() {
        checkpoint.verified = true;
        return;
    }
    checkpoint.verified = true;
    let Ok(fd) = openat(dir, checkpoint.name.as_os_str(), FILE_FLAGS, Mode::empty()) else {
        return;
    };
    let file = std::fs::File::from(fd);
    checkpoint.incomplete = file_problem(&file, checkpoint.apparent_size);
}

fn read_at(file: &std::fs::File, offset: u64, buf: &mut [u8]) -> bool {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset).is_ok()
}

/// Why the file is not a complete checkpoint, or `None`.
pub(crate) fn file_problem(file: &std::fs::File, size: u64) -> Option<String> {
    let mut head = [0u8; 8];
    if size < 8 || !read_at(file, 0, &mut head) {
        return (size > 0).then(|| "shorter than any checkpoint header".to_owned());
    }
    if head[..4] == *b"PK\x03\x04" {
        return (!has_zip_end(file, size))
            .then(|| "zip without an end-of-central-directory record (truncated torch.save)".to_owned());
    }
    let header_len = u64::from_le_bytes(head);
    let mut first = [0u8; 1];
    if header_len > 0
        && header_len < 100 * 1024 * 1024
        && 8 + header_len <= size
        && read_at(file, 8, &mut first)
        && first[0] == b'{'
    {
        return safetensors_problem(file, header_len, size);
    }
    None // a legacy pickle or another format: nothing to check
}

fn has_zip_end(file: &std::fs::File, size: u64) -> bool {
    // The record is 22 bytes plus a comment of up to 65535 bytes; torch writes no comment.
    let mut tail = [0u8; 22];
    if size >= 22 && read_at(file, size - 22, &mut tail) && tail[..4] == *b"PK\x05\x06" {
        return true;
    }
    let span = size.min(22 + 65535);
    let mut buf = vec![0u8; usize::try_from(span).unwrap_or(0)];
    if !read_at(file, size - span, &mut buf) {
        return false;
    }
    buf.windows(4).any(|w| w == b"PK\x05\x06")
}

/// Headers are read in pieces this large, so the memory one file costs is bounded whatever its
/// header claims.
const HEADER_CHUNK: u64 = 64 * 1024;

/// Reads the header piece by piece. A piece with a NUL byte ends the check at once: JSON has none,
/// and a file whose header lies in a hole (a sparse file claiming a 99 MiB header) reads as zeros,
/// so the work per file is bounded by the bytes really written to it, not by what it claims.
fn safetensors_problem(file: &std::fs::File, header_len: u64, size: u64) -> Option<String> {
    let mut buf = vec![0u8; usize::try_from(header_len.min(HEADER_CHUNK)).ok()?];
    let mut offsets = DataOffsets::default();
    let mut last_visible = 0u8;
    let mut read = 0u64;
    while read < header_len {
        let piece = usize::try_from((header_len - read).min(HEADER_CHUNK)).ok()?;
        let chunk = &mut buf[..piece];
        if !read_at(file, 8 + read, chunk) {
            return Some("safetensors header cut short".to_owned());
        }
        if chunk.contains(&0) {
            return Some("safetensors header holds NUL bytes (not JSON: a hole or a cut)".to_owned());
        }
        offsets.feed(chunk);
        if let Some(&byte) = chunk.iter().rev().find(|b| !b.is_ascii_whitespace()) {
            last_visible = byte;
        }
        read += piece as u64;
    }
    if last_visible != b'}' {
        return Some("safetensors header is not a complete JSON object".to_owned());
    }
    // The largest end offset among "data_offsets":[begin,end] must match the file size.
    let expected = (8 + header_len).saturating_add(offsets.largest_end);
    (expected != size)
        .then(|| format!("safetensors size {size} does not match its header ({expected} bytes)"))
}

/// The largest end of `"data_offsets":[begin,end]` in a header fed in pieces (a key or a number
/// may straddle two pieces): the last number before each list's `]`.
#[derive(Default)]
struct DataOffsets {
    /// How much of the key has matched so far.
    matched: usize,
    /// Inside a list that follows the key.
    in_list: bool,
    /// The number being read; `None` once something that cannot be part of it was seen.
    current: Option<u64>,
    /// The current number has digits.
    digits: bool,
    /// The current number has ended (whitespace after its digits).
    ended: bool,
    largest_end: u64,
}

impl DataOffsets {
    const KEY: &'static [u8] = b"\"data_offsets\"";

    fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.in_list {
                self.value_byte(byte);
            } else if byte == Self::KEY[self.matched] {
                self.matched += 1;
                if self.matched == Self::KEY.len() {
                    self.matched = 0;
                    self.in_list = true;
                    self.start_number();
                }
            } else {
                // The key's only repeated byte is its quote, first and last: a mismatch restarts
                // the match at that quote or at nothing.
                self.matched = usize::from(byte == b'"');
            }
        }
    }

    fn start_number(&mut self) {
        (self.current, self.digits, self.ended) = (Some(0), false, false);
    }

    fn value_byte(&mut self, byte: u8) {
        match byte {
            b']' => {
                if let (Some(end), true) = (self.current, self.digits) {
                    self.largest_end = self.largest_end.max(end);
                }
                self.in_list = false;
            }
            b',' => self.start_number(),
            b'0'..=b'9' if !self.ended => {
                let digit = u64::from(byte - b'0');
                self.current = self.current.and_then(|n| n.checked_mul(10)?.checked_add(digit));
                self.digits = true;
            }
            b' ' | b'\t' | b'\n' | b'\r' => self.ended = self.digits,
            // The ':' and '[' before the list's first number.
            b':' | b'[' if !self.digits => {}
            _ => self.current = None,
        }
    }
}

/// A complete 100-byte file checkpoint named `name`, written at `mtime`: the one the retention
/// and ordering tests build (its inode follows from `mtime`, so distinct times are distinct files).
#[cfg(test)]
impl Checkpoint {
    pub(crate) fn for_test(name: &str, mtime: f64) -> Self {
        let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
        Checkpoint {
            name: name.into(),
            format: Format::File,
            info: crate::names::parse_name(stem),
            mtime,
            size: 100,
            apparent_size: 100,
            dev: 1,
            ino: mtime.to_bits(),
            ctime: (0, 0),
            nlink: 1,
            uid: 0,
            incomplete: None,
            verified: false,
        }
    }
}

#[cfg(test)]
mod tests;
