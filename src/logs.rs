//! Log budgets sized from the filesystem, by systemd-journald's rule.
//!
//! journald caps its footprint at the smaller of `SystemMaxUse` (10% of the filesystem, at most
//! 4 GiB) and what is available minus `SystemKeepFree` (15% of the filesystem, at most 4 GiB),
//! counting its own current usage as reusable, and sizes each file at 1/8 of the budget (at most
//! 128 MiB) so about seven rotated files are kept. [`log_budget`] applies the same rule and says
//! which limit bound the result, turning it into the `maxBytes` x `backupCount` of a rotating handler.

use crate::error::{Error, Result};
use crate::size::format_size;
use crate::usage::DiskUsage;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;

/// Which limit the budget ended at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetBound {
    /// The absolute cap (`max_use`).
    Cap,
    /// The fraction of the filesystem size (`max_use_fraction`).
    Fraction,
    /// Available space (plus the logs' own usage) minus the `keep_free` margin.
    KeepFree,
    /// The disk is so full that only the minimum of two smallest files is left.
    Floor,
}

impl BudgetBound {
    /// Lower-case name: `cap`, `fraction`, `keep_free`, `floor`.
    pub fn name(self) -> &'static str {
        match self {
            BudgetBound::Cap => "cap",
            BudgetBound::Fraction => "fraction",
            BudgetBound::KeepFree => "keep_free",
            BudgetBound::Floor => "floor",
        }
    }

    /// The bound named `name` (the inverse of [`BudgetBound::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Cap, Self::Fraction, Self::KeepFree, Self::Floor]
            .into_iter()
            .find(|b| b.name() == name)
    }
}

/// Knobs of the budget; `None` takes journald's default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Absolute cap on the total footprint (default 4 GiB).
    pub max_use: Option<u64>,
    /// Cap as a fraction of the filesystem size (default 0.10).
    pub max_use_fraction: f64,
    /// Space to leave free for everything else (default 15% of the filesystem, at most 4 GiB).
    pub keep_free: Option<u64>,
    /// Size of one file (default budget / 8, at most 128 MiB).
    pub max_file_size: Option<u64>,
    /// Smallest file worth rotating (default 64 KiB); the floor is two of them.
    pub min_file_size: u64,
    /// Bytes the logs already occupy on this filesystem: they count as available to themselves.
    pub current_usage: u64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            max_use: None,
            max_use_fraction: 0.10,
            keep_free: None,
            max_file_size: None,
            min_file_size: 64 * KIB,
            current_usage: 0,
        }
    }
}

/// A log budget: the total footprint and how it splits into rotating files.
#[derive(Debug, Clone, PartialEq)]
pub struct LogBudget {
    /// Bytes all the log files together may occupy.
    pub total_bytes: u64,
    /// Size at which the live file rotates (`maxBytes`).
    pub max_bytes: u64,
    /// Rotated files to keep (`backupCount`); at least 1, so rotation really happens.
    pub backup_count: u32,
    /// Which limit bound `total_bytes`.
    pub bound: BudgetBound,
    /// One sentence naming the binding limit and its figures.
    pub explanation: String,
}

fn fraction_of(total: u64, fraction: f64) -> u64 {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let value = (total as f64 * fraction).floor() as u64; // fraction is validated to (0, 1]
    value
}

impl BudgetConfig {
    /// Checks every knob; the error names the argument, its value and what is allowed.
    pub fn validate(&self) -> Result<()> {
        let f = self.max_use_fraction;
        if !(f > 0.0 && f <= 1.0) {
            return Err(Error::invalid(
                "max_use_fraction",
                f,
                "expected a fraction in (0, 1] such as 0.10",
            ));
        }
        if self.max_file_size == Some(0) {
            return Err(Error::invalid(
                "max_file_size",
                0,
                "expected a positive size, or None for budget / 8",
            ));
        }
        if self.min_file_size == 0 {
            return Err(Error::invalid(
                "min_file_size",
                0,
                "expected a positive size such as '64KiB'",
            ));
        }
        if let Some(max) = self.max_file_size.filter(|&max| max < self.min_file_size) {
            return Err(Error::invalid(
                "max_file_size",
                max,
                format!("must be at least min_file_size={}", self.min_file_size),
            ));
        }
        Ok(())
    }

    /// A file size no filesystem of `size` bytes could hold is a mistake, not a budget.
    fn check_fits(&self, size: u64) -> Result<()> {
        let sizes = [
            ("max_file_size", self.max_file_size),
            ("min_file_size", Some(self.min_file_size)),
        ];
        for (name, value) in sizes {
            if let Some(value) = value.filter(|&v| v > size) {
                return Err(Error::invalid(
                    name,
                    value,
                    format!(
                        "larger than the whole filesystem ({}): expected a file size that fits on it",
                        format_size(size)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The budget on the filesystem described by `usage`.
    pub fn budget(&self, usage: &DiskUsage) -> Result<LogBudget> {
        self.validate()?;
        let size = usage.total;
        self.check_fits(size)?;
        let cap = self.max_use.unwrap_or(4 * GIB);
        let by_fraction = fraction_of(size, self.max_use_fraction);
        let keep_free = self
            .keep_free
            .unwrap_or_else(|| fraction_of(size, 0.15).min(4 * GIB));
        let reachable = usage.avail.saturating_add(self.current_usage);
        let by_free = reachable.saturating_sub(keep_free);
        let floor = self.min_file_size.saturating_mul(2);

        let (mut total, mut bound) = (cap, BudgetBound::Cap);
        if by_fraction < total {
            (total, bound) = (by_fraction, BudgetBound::Fraction);
        }
        if by_free < total {
            (total, bound) = (by_free, BudgetBound::KeepFree);
        }
        if total < floor {
            (total, bound) = (floor, BudgetBound::Floor);
        }
        let explanation = match bound {
            BudgetBound::Cap => format!("bound by the cap max_use={}", format_size(cap)),
            BudgetBound::Fraction => format!(
                "bound by max_use_fraction={} of the {} filesystem",
                self.max_use_fraction,
                format_size(size)
            ),
            BudgetBound::KeepFree => format!(
                "bound by keep_free: {} available + {} of logs - {} kept free",
                format_size(usage.avail),
                format_size(self.current_usage),
                format_size(keep_free)
            ),
            BudgetBound::Floor => format!(
                "at the floor of two {} files: {} available + {} of logs leaves nothing above keep_free={}",
                format_size(self.min_file_size),
                format_size(usage.avail),
                format_size(self.current_usage),
                format_size(keep_free)
            ),
        };

        let default_file = (total / 8).min(128 * MIB);
        let wanted = self.max_file_size.unwrap_or(default_file).max(self.min_file_size);
        // Two files at least (the live one and one backup), each no larger than half the budget.
        let max_bytes = wanted.min(total / 2).max(1);
        let files = (total / max_bytes).max(2);
        let backup_count = u32::try_from(files - 1).unwrap_or(u32::MAX);
        Ok(LogBudget {
            total_bytes: total,
            max_bytes,
            backup_count,
            bound,
            explanation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::FsStats;

    fn disk(total: u64, avail: u64) -> DiskUsage {
        let stats = FsStats {
            fragment_size: 1,
            blocks: total,
            blocks_free: avail,
            blocks_available: avail,
            files: 0,
            files_free: 0,
            magic: 0,
            read_only: false,
        };
        DiskUsage::from_stats("/l".into(), "/l".into(), &stats)
    }

    fn within(b: &LogBudget) -> bool {
        b.max_bytes * (u64::from(b.backup_count) + 1) <= b.total_bytes && b.backup_count >= 1
    }

    #[test]
    fn big_empty_disk_is_bound_by_the_cap_with_journald_file_sizes() {
        let b = BudgetConfig::default()
            .budget(&disk(1 << 40, 1 << 39))
            .expect("budget");
        assert_eq!((b.total_bytes, b.bound), (4 * GIB, BudgetBound::Cap));
        assert_eq!(b.max_bytes, 128 * MIB, "budget / 8 capped at 128 MiB");
        assert_eq!(b.backup_count, 31);
        assert!(within(&b));
        assert_eq!(b.explanation, "bound by the cap max_use=4.0 GiB");
    }

    #[test]
    fn small_disk_is_bound_by_its_fraction() {
        let b = BudgetConfig::default()
            .budget(&disk(10 * GIB, 9 * GIB))
            .expect("budget");
        assert_eq!(b.bound, BudgetBound::Fraction);
        assert_eq!(b.total_bytes, GIB);
        assert_eq!(b.max_bytes, 128 * MIB);
        assert_eq!(b.backup_count, 7, "about seven rotated files, as journald keeps");
        assert!(within(&b));
    }

    #[test]
    fn filling_disk_is_bound_by_keep_free_and_counts_own_usage() {
        // 100 GiB disk, 16 GiB available: keep_free is min(15 GiB, 4 GiB) = 4 GiB, and the cap 4 GiB.
        let config = BudgetConfig {
            max_use: Some(100 * GIB),
            ..BudgetConfig::default()
        };
        let b = config.budget(&disk(100 * GIB, 6 * GIB)).expect("budget");
        assert_eq!((b.total_bytes, b.bound), (2 * GIB, BudgetBound::KeepFree));
        let with_logs = BudgetConfig {
            current_usage: GIB,
            ..config
        };
        assert_eq!(
            with_logs
                .budget(&disk(100 * GIB, 6 * GIB))
                .expect("budget")
                .total_bytes,
            3 * GIB
        );
        assert!(b.explanation.starts_with("bound by keep_free: 6.0 GiB available"));
    }

    #[test]
    fn full_disk_falls_to_the_floor_of_two_small_files() {
        let b = BudgetConfig::default().budget(&disk(GIB, MIB)).expect("budget");
        assert_eq!(b.bound, BudgetBound::Floor);
        assert_eq!(
            (b.total_bytes, b.max_bytes, b.backup_count),
            (128 * KIB, 64 * KIB, 1)
        );
        assert!(within(&b));
    }

    #[test]
    fn explicit_file_size_is_honoured_within_the_budget() {
        let config = BudgetConfig {
            max_file_size: Some(10 * MIB),
            ..BudgetConfig::default()
        };
        let b = config.budget(&disk(10 * GIB, 9 * GIB)).expect("budget");
        assert_eq!((b.max_bytes, b.backup_count), (10 * MIB, 101));
        assert!(within(&b));
        let huge = BudgetConfig {
            max_file_size: Some(8 * GIB),
            ..BudgetConfig::default()
        };
        let b = huge.budget(&disk(10 * GIB, 9 * GIB)).expect("budget");
        assert_eq!(
            (b.max_bytes, b.backup_count),
            (GIB / 2, 1),
            "never more than half the budget per file"
        );
    }

    #[test]
    fn invariant_holds_over_many_shapes() {
        for total in [0, 1, 4096, MIB, 777 * MIB, 3 * GIB, 1 << 45, u64::MAX / 2] {
            for avail_permille in [0, 1, 100, 500, 1000] {
                for file in [None, Some(1), Some(100 * KIB), Some(u64::MAX)] {
                    let avail = total / 1000 * avail_permille;
                    let config = BudgetConfig {
                        max_file_size: file,
                        ..BudgetConfig::default()
                    };
                    let file_fits = file.is_none_or(|f| f >= config.min_file_size && f <= total);
                    if !file_fits || config.min_file_size > total {
                        assert!(config.budget(&disk(total, avail)).is_err(), "{file:?} on {total}");
                        continue;
                    }
                    let b = config.budget(&disk(total, avail)).expect("budget");
                    assert!(within(&b), "{b:?} for total={total} avail={avail}");
                }
            }
        }
    }

    #[test]
    fn rejects_file_sizes_no_filesystem_of_that_size_holds() {
        let exabyte = BudgetConfig {
            max_file_size: Some(1 << 60),
            ..BudgetConfig::default()
        };
        let err = exabyte
            .budget(&disk(252 * GIB, 80 * GIB))
            .expect_err("1 EiB files on 252 GiB");
        assert!(
            err.to_string().contains("larger than the whole filesystem"),
            "{err}"
        );
        let below_min = BudgetConfig {
            max_file_size: Some(1024),
            ..BudgetConfig::default()
        };
        assert!(below_min.validate().is_err());
    }

    #[test]
    fn rejects_bad_knobs() {
        let bad = BudgetConfig {
            max_use_fraction: 0.0,
            ..BudgetConfig::default()
        };
        let message = bad.budget(&disk(GIB, GIB)).expect_err("invalid").to_string();
        assert!(
            message.starts_with("max_use_fraction=0: expected a fraction"),
            "{message}"
        );
        let bad = BudgetConfig {
            max_use_fraction: f64::NAN,
            ..BudgetConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = BudgetConfig {
            max_file_size: Some(0),
            ..BudgetConfig::default()
        };
        assert!(bad
            .validate()
            .expect_err("invalid")
            .to_string()
            .starts_with("max_file_size=0"));
    }
}
