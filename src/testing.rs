//! Helpers shared by the core's unit tests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh, empty directory under the system temp directory, unique in this process (tags may
/// repeat across modules) and emptied first if an earlier run of the same process id left it.
pub(crate) fn temp_dir(tag: &str) -> PathBuf {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let serial = COUNT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("diskguard-test-{tag}-{}-{serial}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}
