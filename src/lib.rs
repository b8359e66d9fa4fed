//! diskguard's Rust core: how full the disk under a path is, the way `df` computes it, and
//! threshold checks over it. Later modules add trends, checkpoint retention and log budgets.
//!
//! The core modules ([`usage`], [`mounts`], [`check`], [`size`]) are plain Rust; `bindings` is the
//! only place that knows Python.
//!
//! ```
//! let usage = diskguard::usage::usage(std::path::Path::new("/")).expect("statfs of /");
//! assert!(usage.used <= usage.total);
//! let (level, _reasons) = diskguard::check::Thresholds::default().evaluate(&usage);
//! assert!(level >= diskguard::check::Level::Ok);
//! ```

pub mod check;
pub mod checkpoints;
pub mod deletion;
pub mod error;
pub mod logs;
pub mod mounts;
pub mod names;
pub mod retention;
pub mod size;
pub mod trend;
pub mod usage;

mod bindings;
