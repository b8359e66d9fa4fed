//! Which checkpoint to resume from: the newest complete one, never a partial save.
//!
//! A crash mid-save leaves a file or folder under a checkpoint's name (a truncated `torch.save`
//! zip, a `checkpoint-N/` without `trainer_state.json`, a step directory without `.metadata`);
//! resuming from it fails or, worse, loads garbage. [`latest_complete`] orders the checkpoints
//! as retention reads a directory (by step where names carry one, a run restarted in the same
//! directory newer than the one before, by mtime otherwise; see [`crate::ordering`]) and returns
//! the newest whose contents check out.

use std::path::{Path, PathBuf};

use crate::checkpoints::{open_dir, scan, verify_file};
use crate::error::Result;
use crate::ordering::{arrange_as, OrderChoice};
use crate::usage::validate_path;

/// The newest complete checkpoint in `dir` (a file or a folder, any layout the scan knows), or
/// `None` when there is none, or when the directory does not exist yet. `patterns` adds globs for
/// single-file checkpoints beyond the built-in extensions, as in retention. Where steps and write
/// times disagree and neither reading is clear, the step order is taken.
pub fn latest_complete(dir: &Path, patterns: &[String]) -> Result<Option<PathBuf>> {
    validate_path("directory", dir)?;
    let fd = match open_dir(dir) {
        Ok(fd) => fd,
        // A run that has not saved yet: nothing to resume from, as for an empty directory.
        Err(err) if err.errno() == Some(nix::libc::ENOENT) => return Ok(None),
        Err(err) => return Err(err),
    };
    // One descriptor for the listing and the content checks: both read the same directory.
    let mut found = scan(&fd, dir, patterns)?;
    arrange_as(&mut found.checkpoints, OrderChoice::Auto);
    // Newest first, and the contents read only until one checks out: a directory of many
    // checkpoints costs one verification when the newest is fine.
    Ok(found.checkpoints.into_iter().rev().find_map(|mut checkpoint| {
        verify_file(&fd, &mut checkpoint);
        checkpoint.is_complete().then(|| dir.join(&checkpoint.name))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::testing::temp_dir;

    /// The start of a zip, with or without the end-of-central-directory record a complete
    /// `torch.save` file ends with.
    fn zip(complete: bool) -> Vec<u8> {
        let mut bytes = b"PK\x03\x04".to_vec();
        bytes.extend_from_slice(&[7u8; 64]);
        if complete {
            bytes.extend_from_slice(b"PK\x05\x06");
            bytes.extend_from_slice(&[0u8; 18]);
        }
        bytes
    }

    fn name_of(found: Option<PathBuf>) -> Option<String> {
        found.map(|p| p.file_name().expect("a name").to_string_lossy().into_owned())
    }

    #[test]
    fn newest_complete_file_skips_truncated_and_temp_saves() {
        let dir = temp_dir("files");
        assert_eq!(latest_complete(&dir, &[]).expect("scan"), None, "empty directory");
        std::fs::write(dir.join("step=100.pt"), zip(true)).expect("write");
        std::fs::write(dir.join("step=200.pt"), zip(true)).expect("write");
        std::fs::write(dir.join("step=300.pt"), zip(false)).expect("write");
        std::fs::write(dir.join(".diskguard-step=400.pt.x1.tmp"), zip(true)).expect("write");
        std::fs::write(dir.join("step=500.pt"), b"").expect("write");
        assert_eq!(
            name_of(latest_complete(&dir, &[]).expect("scan")).as_deref(),
            Some("step=200.pt")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn folders_count_only_once_committed() {
        let dir = temp_dir("folders");
        std::fs::create_dir_all(dir.join("checkpoint-10")).expect("mkdir");
        std::fs::write(dir.join("checkpoint-10/trainer_state.json"), b"{}").expect("write");
        std::fs::create_dir_all(dir.join("checkpoint-20")).expect("mkdir");
        std::fs::write(dir.join("checkpoint-20/model.safetensors"), b"x").expect("write");
        assert_eq!(
            name_of(latest_complete(&dir, &[]).expect("scan")).as_deref(),
            Some("checkpoint-10"),
            "checkpoint-20 has no trainer_state.json yet"
        );
        std::fs::create_dir_all(dir.join("step-30")).expect("mkdir");
        std::fs::write(dir.join("step-30/.metadata"), b"x").expect("write");
        assert_eq!(
            name_of(latest_complete(&dir, &[]).expect("scan")).as_deref(),
            Some("step-30")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn caller_patterns_widen_the_file_names() {
        let dir = temp_dir("patterns");
        std::fs::write(dir.join("weights-7.npz"), zip(true)).expect("write");
        assert_eq!(latest_complete(&dir, &[]).expect("scan"), None);
        let found = latest_complete(&dir, &["*.npz".to_owned()]).expect("scan");
        assert_eq!(name_of(found).as_deref(), Some("weights-7.npz"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_directories_are_errors() {
        assert!(matches!(
            latest_complete(Path::new(""), &[]),
            Err(Error::InvalidArgument {
                name: "directory",
                ..
            })
        ));
        // A run that has not saved yet: nothing to resume from, not an error.
        let missing = latest_complete(Path::new("/nonexistent/diskguard"), &[]).expect("missing");
        assert_eq!(missing, None);
        let file = latest_complete(Path::new("/proc/self/status"), &[]).expect_err("a file");
        assert_eq!(file.errno(), Some(nix::libc::ENOTDIR));
    }
}
