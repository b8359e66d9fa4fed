//! The guard's directory and the paths it is given: made absolute by name, checked to be inside.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::ordering::Identity;

/// Device and inode of `path` itself (a symlink is not followed).
pub(super) fn identity_of(path: &Path) -> Option<Identity> {
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The checkpoint directory must be a directory (or not exist yet), and not `/` or a symlink: the
/// guard deletes in it, and deletion never follows a symlink.
pub(super) fn check_dir(dir: &Path) -> Result<()> {
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
pub(super) fn lexical_absolute(p: &Path) -> PathBuf {
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
pub(super) fn entry_under(dir: &Path, path: &Path) -> Option<OsString> {
    match path.strip_prefix(dir).ok()?.components().next()? {
        Component::Normal(name) => Some(name.to_owned()),
        _ => None,
    }
}

/// `path` lexically inside `dir` (both made absolute, `.` and `..` resolved by name): only there
/// does the guard account and make room.
pub(super) fn inside(dir: &Path, path: &Path) -> bool {
    let (dir, path) = (lexical_absolute(dir), lexical_absolute(path));
    path != dir && path.starts_with(&dir)
}
