//! Checkpoint directories of sharded and distributed saves, told complete from partial.
//!
//! Each layout is recognised from the files its framework writes and the order it writes them in:
//!
//! - DCP (`torch.distributed.checkpoint`, torchtitan): shards `__<rank>_<n>.distcp`, then the
//!   coordinator's `.metadata` by rename (`torch/distributed/checkpoint/filesystem.py`,
//!   `_FileSystemWriter.finish`). Complete only when `.metadata` names files that all exist with
//!   their recorded sizes ([`crate::dcp`]).
//! - Lightning's sharded checkpoints (`FSDPStrategy(state_dict_type='sharded')`,
//!   `ModelParallelStrategy`): a directory named like a file, `epoch=1-step=10.ckpt/`, holding a
//!   DCP save and then `meta.pt` from rank 0 (`lightning/pytorch/strategies/fsdp.py`
//!   `FSDPStrategy.save_checkpoint`; `lightning/fabric/utilities/load.py` `_METADATA_FILENAME`).
//! - Accelerate (`Accelerator.save_state`, `src/accelerate/accelerator.py`): `checkpoint_<n>/`
//!   with FSDP's `pytorch_model_fsdp_<i>/` and `optimizer_<i>/` DCP directories
//!   (`src/accelerate/utils/fsdp_utils.py`), `random_states_<process>.pkl` last
//!   (`src/accelerate/checkpointing.py` `save_accelerator_state`). The Hugging Face Trainer under
//!   FSDP writes the same subdirectories into `checkpoint-<step>/`.
//! - DeepSpeed (`deepspeed/runtime/engine.py` `save_checkpoint`, `_get_ckpt_name`,
//!   `_get_zero_ckpt_name`): `global_step<N>/` with `mp_rank_<mp>_model_states.pt` and
//!   `[bf16_]zero_pp_rank_<dp>_mp_rank_<mp>_optim_states.pt`; rank 0 rewrites the `latest` tag file
//!   beside them after the save commits.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{openat, AtFlags};
use nix::sys::stat::{fstat, fstatat, Mode, SFlag};

use crate::checkpoints::{entries, file_problem, is_entry_name, kind, Format, Link, DIR_FLAGS, FILE_FLAGS};
use crate::dcp::{storage_files, MetadataError, MAX_METADATA_BYTES};
use crate::names::{is_number, parse_name, NameInfo};

/// DeepSpeed's tag file, beside its `global_step<N>/` directories.
pub const DEEPSPEED_LATEST: &str = "latest";
/// Lightning's `meta.pt`, written by rank 0 after the shards of a sharded checkpoint.
const LIGHTNING_META: &str = "meta.pt";

fn exists(dir: &impl AsFd, name: &str) -> bool {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
}

fn child_names(dir: &OwnedFd) -> Vec<String> {
    entries(dir)
        .map(|found| {
            found
                .into_iter()
                .map(|(n, _)| n.to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn strip_prefix_number<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    name.strip_prefix(prefix).filter(|rest| is_number(rest))
}

/// `mp_rank_00_model_states.pt`: a DeepSpeed model-states file.
fn is_model_states(name: &str) -> bool {
    name.strip_prefix("mp_rank_")
        .and_then(|rest| rest.strip_suffix("_model_states.pt"))
        .is_some_and(is_number)
}

/// The data-parallel rank of `[bf16_]zero_pp_rank_<dp>_mp_rank_<mp>_optim_states.pt`.
fn zero_rank(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("bf16_").unwrap_or(name);
    let rest = rest
        .strip_prefix("zero_pp_rank_")?
        .strip_suffix("_optim_states.pt")?;
    let (dp, mp) = rest.split_once("_mp_rank_")?;
    (is_number(dp) && is_number(mp)).then(|| dp.parse().ok())?
}

/// The tag DeepSpeed's `latest` file names, when it is a plain file naming one entry.
pub fn deepspeed_latest(dir: &impl AsFd) -> Option<String> {
    let fd = openat(dir, DEEPSPEED_LATEST, FILE_FLAGS, Mode::empty()).ok()?;
    let st = fstat(&fd).ok()?;
    if kind(&st) != SFlag::S_IFREG || st.st_size > 4096 {
        return None;
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text).ok()?;
    let tag = text.trim().to_owned();
    is_entry_name(OsStr::new(&tag)).then_some(tag)
}

/// DeepSpeed's `latest` as a pointer: it protects the directory it names, like a symlink would.
pub fn deepspeed_latest_link(dir: &impl AsFd) -> Option<Link> {
    let tag = deepspeed_latest(dir)?;
    Some(Link {
        name: DEEPSPEED_LATEST.into(),
        target: tag.clone().into(),
        target_inside: Some(tag.into()),
    })
}

fn step_of_tag(tag: &str) -> Option<u64> {
    strip_prefix_number(tag, "global_step").and_then(|n| n.parse().ok())
}

/// Classifies a directory entry by the layouts above: its format, what its name says, and why it is
/// not complete (`None`: complete as far as the names show; [`verify`] reads the contents).
pub fn classify(parent: &impl AsFd, name: &OsStr, text: &str) -> Option<(Format, NameInfo, Option<String>)> {
    let dir = openat(parent, name, DIR_FLAGS, Mode::empty()).ok()?;
    let children = child_names(&dir);
    let has = |n: &str| children.iter().any(|c| c == n);
    // DeepSpeed: a global_step<N> tag directory, or any directory of model-states files.
    let ds_step = step_of_tag(text);
    if ds_step.is_some() || children.iter().any(|c| is_model_states(c)) {
        let mut info = parse_name(text);
        info.step = info.step.or(ds_step);
        return Some((
            Format::DeepSpeed,
            info,
            deepspeed_problem(parent, text, &children),
        ));
    }
    let info = parse_name(text);
    // Lightning's sharded checkpoint: a DCP directory named like a file.
    let dcp_inside = has(".metadata") || children.iter().any(|c| c.ends_with(".distcp"));
    if dcp_inside && text.to_ascii_lowercase().ends_with(".ckpt") {
        let problem = if !has(".metadata") {
            Some("no .metadata (DCP writes it last)".to_owned())
        } else if !has(LIGHTNING_META) {
            Some("no meta.pt (Lightning writes it from rank 0 after the shards)".to_owned())
        } else {
            None
        };
        return Some((Format::Dcp, info, problem));
    }
    // Accelerate: checkpoint_<n>, or a directory holding FSDP's model/optimizer DCP directories.
    let fsdp_parts = children
        .iter()
        .any(|c| strip_prefix_number(c, "pytorch_model_fsdp_").is_some());
    if strip_prefix_number(text, "checkpoint_").is_some() || (fsdp_parts && !text.starts_with("checkpoint-"))
    {
        let problem = (!has("random_states_0.pkl"))
            .then(|| "no random_states_0.pkl (Accelerate's save_state writes it last)".to_owned());
        return Some((Format::Accelerate, info, problem));
    }
    None
}

fn deepspeed_problem(parent: &impl AsFd, text: &str, children: &[String]) -> Option<String> {
    if !children.iter().any(|c| is_model_states(c)) {
        return Some("no mp_rank_*_model_states.pt (DeepSpeed writes one per model-parallel rank)".into());
    }
    let mut ranks: Vec<u64> = children.iter().filter_map(|c| zero_rank(c)).collect();
    ranks.sort_unstable();
    ranks.dedup();
    if let Some(gap) = ranks.iter().enumerate().find(|(i, r)| **r != *i as u64) {
        return Some(format!(
            "zero_pp_rank_{} optimizer states missing (one per data-parallel rank)",
            gap.0
        ));
    }
    let latest = deepspeed_latest(parent)?;
    if latest == text {
        return None;
    }
    match (step_of_tag(&latest), step_of_tag(text)) {
        (Some(tagged), Some(own)) if own > tagged && exists(parent, &latest) => Some(format!(
            "newer than '{latest}' in the latest file (DeepSpeed writes it after a save commits)"
        )),
        _ => None,
    }
}

/// Reads the contents of a directory checkpoint: every DCP `.metadata` in it (or in its FSDP
/// model/optimizer subdirectories) must name files that exist with their recorded sizes, and every
/// DeepSpeed `.pt` file must be a complete zip. Why not, or `None`.
pub fn verify(parent: &impl AsFd, name: &OsStr, format: Format) -> Option<String> {
    let dir = openat(parent, name, DIR_FLAGS, Mode::empty()).ok()?;
    match format {
        Format::Dcp => dcp_problem(&dir),
        Format::HuggingFace | Format::Accelerate => {
            for child in child_names(&dir) {
                let Ok(sub) = openat(&dir, child.as_str(), DIR_FLAGS, Mode::empty()) else {
                    continue;
                };
                if exists(&sub, ".metadata") || child_names(&sub).iter().any(|c| c.ends_with(".distcp")) {
                    if let Some(problem) = dcp_problem(&sub) {
                        return Some(format!("{child}/: {problem}"));
                    }
                }
            }
            None
        }
        Format::DeepSpeed => child_names(&dir)
            .into_iter()
            .filter(|c| {
                std::path::Path::new(c)
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("pt"))
            })
            .find_map(|c| {
                let fd = openat(&dir, c.as_str(), FILE_FLAGS, Mode::empty()).ok()?;
                let st = fstat(&fd).ok()?;
                if kind(&st) != SFlag::S_IFREG {
                    return None;
                }
                let size = u64::try_from(st.st_size).unwrap_or(0);
                file_problem(&std::fs::File::from(fd), size).map(|p| format!("{c}: {p}"))
            }),
        Format::File | Format::Orbax => None,
    }
}

/// Why the DCP directory open as `dir` is not a complete checkpoint, or `None`.
pub fn dcp_problem(dir: &OwnedFd) -> Option<String> {
    let Ok(fd) = openat(dir, ".metadata", FILE_FLAGS, Mode::empty()) else {
        return Some("no .metadata (DCP writes it last)".to_owned());
    };
    let st = fstat(&fd).ok()?;
    if kind(&st) != SFlag::S_IFREG {
        return Some(".metadata is not a regular file".to_owned());
    }
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size > MAX_METADATA_BYTES {
        return None; // too large to read here: unverified, not incomplete
    }
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    if std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut data).is_err() {
        return None;
    }
    let files = match storage_files(&data) {
        Ok(files) => files,
        Err(MetadataError::Truncated) => return Some(".metadata is cut short".to_owned()),
        Err(MetadataError::Malformed(why)) => return Some(format!(".metadata is not DCP metadata ({why})")),
        Err(MetadataError::Unsupported(_)) => return None,
    };
    for (file, least) in files {
        let Some(st) = stat_beneath(dir, &file) else {
            return Some(format!(".metadata names {file}, which is missing"));
        };
        let found = u64::try_from(st.st_size).unwrap_or(0);
        if kind(&st) != SFlag::S_IFREG {
            return Some(format!(".metadata names {file}, which is not a regular file"));
        }
        if found < least {
            return Some(format!("{file} holds {found} bytes; .metadata records {least}"));
        }
    }
    None
}

/// `fstatat` of a relative path below `dir`, component by component, never through a symlink and
/// never upwards (`..`): what `.metadata` names cannot reach outside the checkpoint.
fn stat_beneath(dir: &OwnedFd, relative: &str) -> Option<nix::sys::stat::FileStat> {
    let parts: Vec<&str> = relative
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let (last, dirs) = parts.split_last()?;
    if parts.iter().any(|p| *p == ".." || p.as_bytes().contains(&0)) {
        return None;
    }
    let mut current = dir.try_clone().ok()?;
    for part in dirs {
        current = openat(&current, *part, DIR_FLAGS, Mode::empty()).ok()?;
    }
    fstatat(&current, *last, AtFlags::AT_SYMLINK_NOFOLLOW).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deepspeed_names() {
        assert!(is_model_states("mp_rank_00_model_states.pt"));
        assert!(!is_model_states("mp_rank__model_states.pt"));
        assert_eq!(zero_rank("zero_pp_rank_3_mp_rank_00_optim_states.pt"), Some(3));
        assert_eq!(
            zero_rank("bf16_zero_pp_rank_12_mp_rank_01_optim_states.pt"),
            Some(12)
        );
        assert_eq!(zero_rank("zero_pp_rank_x_mp_rank_00_optim_states.pt"), None);
        assert_eq!(step_of_tag("global_step120"), Some(120));
        assert_eq!(step_of_tag("global_step"), None);
    }
}
