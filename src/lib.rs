//! diskguard's Rust core: making disk exhaustion a non-event for long training runs.
//!
//! - usage queries: [`usage`] (one `statfs`, `df`'s arithmetic), [`mounts`] (mountinfo, `df`'s mount
//!   lookup), [`check`] (thresholds), [`grading`] (levels with hysteresis), [`size`] (human sizes);
//! - trends: [`trend`] (time to full that separates tagged checkpoint steps from background drift,
//!   and "will the rest of the run fit?"), [`trend_shape`] (a run's early history read as a burst,
//!   a ramp, a staircase or a sawtooth);
//! - retention: [`names`] (step/epoch/metrics from names), [`checkpoints`] (discovery and
//!   completeness), [`retention`] (rules and plans), [`deletion`] (safe, identity-checked deletion,
//!   free space, orphans), [`resume`] (the newest complete checkpoint to resume from);
//! - log budgets: [`logs`] (systemd-journald's rule);
//! - operations: [`du`] (a parallel directory scanner for "who is eating the disk");
//! - the guard: [`guard`] (levels with hysteresis, budget, the action ladder, stop), [`probe`]
//!   (`statfs` with a time limit, so a hung mount never blocks training).
//!
//! All of these are plain Rust; `bindings` is the only place that knows Python, and [`error`] the
//! one error type.
//!
//! ```
//! let usage = diskguard::usage::usage(std::path::Path::new("/")).expect("statfs of /");
//! assert!(usage.used <= usage.total);
//! let (level, _reasons) = diskguard::check::Thresholds::default().evaluate(&usage);
//! assert!(level >= diskguard::check::Level::Ok);
//! ```

pub mod check;
pub mod checkpoints;
pub mod dcp;
pub mod deletion;
pub mod du;
pub mod error;
pub mod grading;
pub mod guard;
pub mod layouts;
pub mod logs;
pub mod mounts;
pub mod names;
pub mod ordering;
pub mod probe;
pub mod resume;
pub mod retention;
pub mod size;
#[cfg(test)]
mod testing;
pub mod trend;
pub mod trend_shape;
pub mod usage;

#[cfg(feature = "python")]
mod bindings;
