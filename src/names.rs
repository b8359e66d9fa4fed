//! What a checkpoint's name says: step, epoch and metric values, and whether it is a temp name.
//!
//! Lightning writes `epoch=2-step=24.ckpt`, `epoch=2-step=24-v1.ckpt` and
//! `epoch=2-step=24-val_loss=0.1234.ckpt`; Hugging Face `checkpoint-500`; torchtitan `step-500`;
//! Orbax a bare `500`; hand-written loops `model_0005.pt`, `step_1000.pth`, `ckpt-1000.pt`.

/// Step, epoch and metrics parsed from a name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NameInfo {
    /// Training step (global step, iteration).
    pub step: Option<u64>,
    /// Epoch.
    pub epoch: Option<u64>,
    /// Every other `key=value` with a numeric value, in name order.
    pub metrics: Vec<(String, f64)>,
}

/// File extensions of single-file checkpoints.
pub const CHECKPOINT_EXTENSIONS: &[&str] = &["ckpt", "pt", "pth", "safetensors", "bin"];

const STEP_WORDS: &[&str] = &[
    "step",
    "steps",
    "global_step",
    "iter",
    "iteration",
    "checkpoint",
    "ckpt",
    "model",
];
const EPOCH_WORDS: &[&str] = &["epoch", "ep"];

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'/' || b == b'.'
}

/// The numeric value starting at `s`: digits with an optional sign, point and exponent.
fn number_prefix(s: &str) -> &str {
    let bytes = s.as_bytes();
    let mut end = 0;
    let mut seen_digit = false;
    let mut seen_point = false;
    let mut seen_exp = false;
    while end < bytes.len() {
        let b = bytes[end];
        let ok = match b {
            b'0'..=b'9' => {
                seen_digit = true;
                true
            }
            b'-' | b'+' => end == 0 || (seen_exp && matches!(bytes[end - 1], b'e' | b'E')),
            b'.' if !seen_point && !seen_exp => {
                // A point followed by a non-digit ends the number ("0.5.ckpt" is handled by the caller).
                seen_point = true;
                bytes.get(end + 1).is_some_and(u8::is_ascii_digit)
            }
            b'e' | b'E' if seen_digit && !seen_exp => {
                seen_exp = true;
                bytes
                    .get(end + 1)
                    .is_some_and(|n| n.is_ascii_digit() || *n == b'-' || *n == b'+')
            }
            _ => false,
        };
        if !ok {
            break;
        }
        end += 1;
    }
    if seen_digit {
        &s[..end]
    } else {
        ""
    }
}

/// Parses `stem` (the name without its extension).
pub fn parse_name(stem: &str) -> NameInfo {
    let mut info = NameInfo::default();
    // key=value pairs (Lightning's auto_insert_metric_name).
    let bytes = stem.as_bytes();
    for (eq, _) in stem.match_indices('=') {
        let mut start = eq;
        while start > 0 && is_key_byte(bytes[start - 1]) {
            start -= 1;
        }
        let key = &stem[start..eq];
        let value = number_prefix(&stem[eq + 1..]);
        if key.is_empty() || value.is_empty() {
            continue;
        }
        if is_one_of(key, STEP_WORDS) {
            info.step = info.step.or_else(|| value.parse().ok());
        } else if is_one_of(key, EPOCH_WORDS) {
            info.epoch = info.epoch.or_else(|| value.parse().ok());
        } else if let Ok(v) = value.parse::<f64>() {
            if v.is_finite() {
                info.metrics.push((key.to_owned(), v));
            }
        }
    }
    if info.step.is_some() || info.epoch.is_some() || !info.metrics.is_empty() {
        return info;
    }
    // A bare number (Orbax), or WORD<sep>NUMBER (checkpoint-500, model_0005, step_1000, epoch_3).
    if is_number(stem) {
        info.step = stem.parse().ok();
        return info;
    }
    if let Some(split) = stem.rfind(['-', '_']) {
        let (word, number) = (&stem[..split], &stem[split + 1..]);
        if is_number(number) {
            let word = word
                .rsplit(['-', '_', '.'])
                .next()
                .unwrap_or(word)
                .to_ascii_lowercase();
            if EPOCH_WORDS.contains(&word.as_str()) {
                info.epoch = number.parse().ok();
            } else if STEP_WORDS.contains(&word.as_str()) || word.is_empty() {
                info.step = number.parse().ok();
            }
        }
    }
    info
}

fn is_one_of(word: &str, words: &[&str]) -> bool {
    words.iter().any(|w| w.eq_ignore_ascii_case(word))
}

/// Whether `s` is a whole number written in ASCII digits (non-empty, nothing else).
pub(crate) fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn starts_with_ignore_case(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len() && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn ends_with_ignore_case(name: &str, suffix: &str) -> bool {
    name.len() >= suffix.len()
        && name.as_bytes()[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// Splits a file name into stem and checkpoint extension, if it has one of ours.
pub fn checkpoint_stem(name: &str) -> Option<&str> {
    let (stem, ext) = name.rsplit_once('.')?;
    is_one_of(ext, CHECKPOINT_EXTENSIONS).then_some(stem)
}

/// The training state Hugging Face's Trainer and Accelerate write beside the weights of a save:
/// one part of it, never a checkpoint on its own.
const SAVE_PARTS: &[&str] = &[
    "training_args.bin",
    "optimizer.pt",
    "optimizer.bin",
    "scheduler.pt",
    "scheduler.bin",
    "scaler.pt",
    "rng_state.pth",
];

/// The weights `save_pretrained` and `Trainer.save_model` write, a part of a saved model when a
/// [`SAVED_MODEL_MARKERS`] file is beside them.
const MODEL_WEIGHTS: &[&str] = &[
    "model.safetensors",
    "pytorch_model.bin",
    "adapter_model.safetensors",
    "adapter_model.bin",
];

/// The files whose presence makes a directory a saved model (see [`SaveContext`]): a model's
/// `config.json`, a PEFT adapter's `adapter_config.json`, or the `training_args.bin` that
/// `Trainer.save_model` writes beside the weights of any model, one without a config too.
pub const SAVED_MODEL_MARKERS: &[&str] = &["config.json", "adapter_config.json", "training_args.bin"];

/// What a directory holds besides a file that makes the file one part of a save.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaveContext {
    /// A [`SAVED_MODEL_MARKERS`] file is there: the weights beside it are a saved model's.
    pub saved_model: bool,
    /// A shard index (`*.index.json`, written with every sharded save) is there: names shaped
    /// like shards are shards, not a series of checkpoints named `ckpt-00001-of-00010.pt`.
    pub shard_index: bool,
}

impl SaveContext {
    /// The context the regular files (or entries of unknown type) named `files` make.
    pub fn of<S: AsRef<str>>(files: impl IntoIterator<Item = S>) -> Self {
        let mut context = Self::default();
        for name in files {
            let name = name.as_ref();
            context.saved_model |= is_one_of(name, SAVED_MODEL_MARKERS);
            context.shard_index |=
                name.len() > ".index.json".len() && ends_with_ignore_case(name, ".index.json");
        }
        context
    }
}

/// Whether the file `name` is one part of a save rather than a checkpoint of its own, so that
/// retention neither counts it nor deletes it alone (which would break the save it belongs to):
/// the training state written beside the weights (`training_args.bin`, `optimizer.pt`,
/// `scheduler.pt`, `scaler.pt`, `rng_state_N.pth`); beside a shard index, a shard
/// (`model-00001-of-00003.safetensors`); beside a [`SAVED_MODEL_MARKERS`] file, the weights of a
/// saved model (`model.safetensors`, `pytorch_model.bin`, ...), such as the final model
/// `trainer.save_model()` writes into the Trainer's `output_dir`. Names compare ignoring case, as
/// extensions do. A temp name is never a part: it is a partial save, cleaned up as one.
pub fn is_part_of_a_save(name: &str, context: SaveContext) -> bool {
    if is_temp_name(name) {
        return false;
    }
    let Some(stem) = checkpoint_stem(name) else {
        return false;
    };
    // `{prefix}-{index:05}-of-{total:05}`, as transformers and huggingface_hub name shards.
    let shard = || {
        stem.rsplit_once("-of-")
            .filter(|(_, total)| total.len() >= 5 && is_number(total))
            .and_then(|(left, total)| Some((left.rsplit_once('-')?.1, total)))
            .is_some_and(|(index, total)| index.len() == total.len() && is_number(index))
    };
    let prefix = "rng_state_";
    let rng_state = starts_with_ignore_case(stem, prefix) && is_number(&stem[prefix.len()..]);
    rng_state
        || is_one_of(name, SAVE_PARTS)
        || (context.shard_index && shard())
        || (context.saved_model && is_one_of(name, MODEL_WEIGHTS))
}

/// Prefix of every name diskguard itself writes beside checkpoints: safe-save staging files
/// (`.diskguard-<name>.<random>.tmp`, python/diskguard/saving.py's `TEMP_PREFIX`), DCP staging
/// directories and the guard's emergency reserve file.
pub const OWN_PREFIX: &str = ".diskguard-";

/// Names of saves still in progress or abandoned by a crash.
pub fn is_temp_name(name: &str) -> bool {
    ends_with_ignore_case(name, ".tmp")
        || ends_with_ignore_case(name, ".partial")
        || is_staging_dir_name(name)
}

/// A framework's own staging name whatever its suffix (Keras/TF `tmp-checkpoint-*`, Orbax
/// `*.orbax-checkpoint-tmp-*`): the name alone says the save is in progress.
pub fn is_staging_dir_name(name: &str) -> bool {
    starts_with_ignore_case(name, "tmp-checkpoint-")
        || name.to_ascii_lowercase().contains(".orbax-checkpoint-tmp")
}

/// Shell-style match of `name` against `pattern` (`*`, `?`; no character classes).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_a_save_are_not_checkpoints() {
        let alone = SaveContext::default();
        let saved_model = SaveContext::of(["config.json", "model.safetensors"]);
        let sharded = SaveContext::of(["model.safetensors.index.json"]);
        assert_eq!((saved_model.saved_model, saved_model.shard_index), (true, false));
        assert_eq!((sharded.saved_model, sharded.shard_index), (false, true));
        assert!(SaveContext::of(["Training_Args.BIN"]).saved_model);
        assert!(!SaveContext::of([".index.json"]).shard_index);
        for part in [
            "training_args.bin",
            "Training_Args.bin",
            "optimizer.pt",
            "OPTIMIZER.PT",
            "scheduler.pt",
            "scaler.pt",
            "rng_state.pth",
            "rng_state_3.pth",
            "RNG_STATE_3.pth",
        ] {
            assert!(is_part_of_a_save(part, alone), "{part}");
        }
        for shard in [
            "model-00001-of-00003.safetensors",
            "pytorch_model-00002-of-00002.bin",
        ] {
            assert!(is_part_of_a_save(shard, sharded), "{shard}");
            assert!(
                !is_part_of_a_save(shard, alone),
                "{shard} without an index is a checkpoint"
            );
        }
        assert!(is_part_of_a_save("model.safetensors", saved_model));
        assert!(is_part_of_a_save("MODEL.SAFETENSORS", saved_model));
        assert!(is_part_of_a_save("adapter_model.bin", saved_model));
        for checkpoint in [
            "model.safetensors",
            "model-00001.safetensors",
            "epoch-3-of-10.ckpt",
            "model-a-of-3.pt",
            "rng_state_x.pth",
            "optimizer.json",
            "last.ckpt",
            "optimizer.pt.tmp",
            "training_args.bin.partial",
        ] {
            assert!(!is_part_of_a_save(checkpoint, alone), "{checkpoint}");
        }
        assert!(!is_part_of_a_save("model-001-of-00003.safetensors", sharded));
        assert!(!is_part_of_a_save("epoch=3.ckpt", saved_model));
        assert!(!is_part_of_a_save("model.safetensors.tmp", saved_model));
    }

    fn step(name: &str) -> Option<u64> {
        parse_name(name).step
    }

    #[test]
    fn lightning_names() {
        let i = parse_name("epoch=2-step=24");
        assert_eq!((i.epoch, i.step), (Some(2), Some(24)));
        let i = parse_name("epoch=2-step=24-v1");
        assert_eq!((i.epoch, i.step), (Some(2), Some(24)));
        assert!(i.metrics.is_empty());
        let i = parse_name("epoch=2-step=24-val_loss=0.1234");
        assert_eq!(i.metrics, vec![("val_loss".to_owned(), 0.1234)]);
        let i = parse_name("step=7-val/acc=0.91-train_loss=-1.5e-3");
        assert_eq!(i.step, Some(7));
        assert_eq!(
            i.metrics,
            vec![("val/acc".to_owned(), 0.91), ("train_loss".to_owned(), -1.5e-3)]
        );
    }

    #[test]
    fn framework_and_hand_written_names() {
        assert_eq!(step("checkpoint-500"), Some(500));
        assert_eq!(step("step-1000"), Some(1000));
        assert_eq!(step("500"), Some(500));
        assert_eq!(step("model_0005"), Some(5));
        assert_eq!(step("step_1000"), Some(1000));
        assert_eq!(step("ckpt-1000"), Some(1000));
        assert_eq!(parse_name("epoch_3").epoch, Some(3));
        assert_eq!(step("resnet50"), None, "a number glued to a word is not a step");
        assert_eq!(step("best"), None);
        assert_eq!(step("last"), None);
        assert_eq!(step("my-model-v2"), None);
        assert_eq!(step("run3_step_42"), Some(42));
        assert_eq!(parse_name("").step, None);
    }

    #[test]
    fn extensions_and_temp_names() {
        assert_eq!(checkpoint_stem("epoch=1.ckpt"), Some("epoch=1"));
        assert_eq!(checkpoint_stem("model.SAFETENSORS"), Some("model"));
        assert_eq!(checkpoint_stem("notes.txt"), None);
        assert_eq!(checkpoint_stem("noext"), None);
        assert!(is_temp_name("epoch=1.ckpt.tmp"));
        assert!(is_temp_name("model.pt.partial"));
        assert!(is_temp_name("tmp-checkpoint-500"));
        assert!(is_temp_name("500.orbax-checkpoint-tmp-1700000000"));
        assert!(!is_temp_name("checkpoint-500"));
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.ckpt", "a.ckpt"));
        assert!(glob_match("weights-??.npz", "weights-07.npz"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("*.ckpt", "a.ckpt.tmp"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        for s in [
            "=",
            "==",
            "a=",
            "=1",
            "a=.",
            "a=-",
            "a=1e",
            "a=1e+",
            "é=1",
            "x=1.2.3",
            "step=99999999999999999999999",
        ] {
            let _ = parse_name(s);
        }
        assert_eq!(parse_name("x=1.2.3").metrics, vec![("x".to_owned(), 1.2)]);
    }
}
