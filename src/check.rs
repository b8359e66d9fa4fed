//! Threshold checks graded ok / warn / critical, over fractions used, absolute free space and inodes.
//!
//! Fractions compare against `df`'s percent used (`used / (used + avail)`), so "95%" means what the
//! user sees in `df`, root's reserve already left out. Absolute floors compare against `avail`, the
//! space a non-root training process can actually write.

use crate::error::{Error, Result};
use crate::size::format_size;
use crate::usage::DiskUsage;

/// How bad it is. The numbers are the Nagios plugin exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Below every threshold.
    Ok = 0,
    /// At or past a warning threshold.
    Warn = 1,
    /// At or past a critical threshold.
    Critical = 2,
}

impl Level {
    /// Lower-case name: `ok`, `warn`, `critical`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Critical => "critical",
        }
    }
}

/// Validated thresholds; `None` switches a threshold off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Fraction used (0, 1] at which to warn.
    pub warn: Option<f64>,
    /// Fraction used (0, 1] that is critical.
    pub critical: Option<f64>,
    /// Warn when fewer bytes than this are available.
    pub warn_free: Option<u64>,
    /// Critical when fewer bytes than this are available.
    pub min_free: Option<u64>,
    /// Fraction of inodes used at which to warn.
    pub inode_warn: Option<f64>,
    /// Fraction of inodes used that is critical.
    pub inode_critical: Option<f64>,
}

/// The default fraction used at which to warn (bytes and inodes): 85%.
pub const DEFAULT_WARN: f64 = 0.85;
/// The default fraction used that is critical (bytes and inodes): 95%.
pub const DEFAULT_CRITICAL: f64 = 0.95;

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            warn: Some(DEFAULT_WARN),
            critical: Some(DEFAULT_CRITICAL),
            warn_free: None,
            min_free: None,
            inode_warn: Some(DEFAULT_WARN),
            inode_critical: Some(DEFAULT_CRITICAL),
        }
    }
}

const FRACTION_RULE: &str =
    "expected a fraction in (0, 1] such as 0.85 for 85% used, or None to switch it off";

fn check_fraction(name: &'static str, value: Option<f64>) -> Result<()> {
    match value {
        Some(v) if !(v > 0.0 && v <= 1.0) => Err(Error::invalid(name, v, FRACTION_RULE)),
        _ => Ok(()),
    }
}

fn check_order(
    low_name: &'static str,
    low: Option<f64>,
    high_name: &'static str,
    high: Option<f64>,
) -> Result<()> {
    match (low, high) {
        (Some(l), Some(h)) if l > h => Err(Error::invalid(
            low_name,
            l,
            format!("must not exceed {high_name}={h}"),
        )),
        _ => Ok(()),
    }
}

impl Thresholds {
    /// Validates every threshold; the error names the argument, its value and what is allowed.
    pub fn new(
        warn: Option<f64>,
        critical: Option<f64>,
        warn_free: Option<u64>,
        min_free: Option<u64>,
        inode_warn: Option<f64>,
        inode_critical: Option<f64>,
    ) -> Result<Self> {
        check_fraction("warn", warn)?;
        check_fraction("critical", critical)?;
        check_fraction("inode_warn", inode_warn)?;
        check_fraction("inode_critical", inode_critical)?;
        check_order("warn", warn, "critical", critical)?;
        check_order("inode_warn", inode_warn, "inode_critical", inode_critical)?;
        if let (Some(w), Some(m)) = (warn_free, min_free) {
            if w < m {
                return Err(Error::invalid(
                    "warn_free",
                    w,
                    format!("must be at least min_free={m}"),
                ));
            }
        }
        Ok(Thresholds {
            warn,
            critical,
            warn_free,
            min_free,
            inode_warn,
            inode_critical,
        })
    }

    /// Grades `usage`: the worst level any threshold reaches, and one reason per threshold reached.
    pub fn evaluate(&self, usage: &DiskUsage) -> (Level, Vec<String>) {
        let mut level = Level::Ok;
        let mut reasons = Vec::new();
        let mut reach = |reached: Level, reason: String| {
            level = level.max(reached);
            reasons.push(reason);
        };
        let used = usage.percent_used / 100.0;
        if let Some(c) = self.critical.filter(|c| used >= *c) {
            reach(
                Level::Critical,
                format!("{:.1}% used >= critical {}", usage.percent_used, pct(c)),
            );
        } else if let Some(w) = self.warn.filter(|w| used >= *w) {
            reach(
                Level::Warn,
                format!("{:.1}% used >= warn {}", usage.percent_used, pct(w)),
            );
        }
        let avail = format_size(usage.avail);
        if let Some(m) = self.min_free.filter(|m| usage.avail < *m) {
            reach(
                Level::Critical,
                format!("{avail} available < min_free {}", format_size(m)),
            );
        } else if let Some(w) = self.warn_free.filter(|w| usage.avail < *w) {
            reach(
                Level::Warn,
                format!("{avail} available < warn_free {}", format_size(w)),
            );
        }
        if let Some(inodes) = usage.inodes {
            let used = inodes.percent_used / 100.0;
            if let Some(c) = self.inode_critical.filter(|c| used >= *c) {
                reach(
                    Level::Critical,
                    format!(
                        "inodes {:.1}% used >= inode_critical {}",
                        inodes.percent_used,
                        pct(c)
                    ),
                );
            } else if let Some(w) = self.inode_warn.filter(|w| used >= *w) {
                reach(
                    Level::Warn,
                    format!("inodes {:.1}% used >= inode_warn {}", inodes.percent_used, pct(w)),
                );
            }
        }
        (level, reasons)
    }
}

fn pct(fraction: f64) -> String {
    let value = fraction * 100.0;
    if (value - value.round()).abs() < 1e-9 {
        format!("{value:.0}%")
    } else {
        format!("{value}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::FsStats;

    fn usage(used_blocks: u64, avail_blocks: u64, files: u64, ffree: u64) -> DiskUsage {
        let stats = FsStats {
            fragment_size: 1024,
            blocks: used_blocks + avail_blocks + 10,
            blocks_free: avail_blocks + 10,
            blocks_available: avail_blocks,
            files,
            files_free: ffree,
            magic: 0,
            read_only: false,
        };
        DiskUsage::from_stats("/x".into(), "/x".into(), &stats)
    }

    #[test]
    fn grades_by_fraction_in_df_terms() {
        let t = Thresholds::default();
        assert_eq!(t.evaluate(&usage(50, 50, 0, 0)), (Level::Ok, vec![]));
        let (level, reasons) = t.evaluate(&usage(85, 15, 0, 0));
        assert_eq!(level, Level::Warn, "exactly at the threshold counts");
        assert_eq!(reasons, vec!["85.0% used >= warn 85%".to_string()]);
        let (level, reasons) = t.evaluate(&usage(96, 4, 0, 0));
        assert_eq!(level, Level::Critical);
        assert_eq!(reasons.len(), 1, "critical replaces warn for the same measure");
    }

    #[test]
    fn absolute_floors_and_inodes_combine() {
        let t = Thresholds::new(
            Some(0.9),
            Some(0.99),
            Some(100 * 1024),
            Some(10 * 1024),
            Some(0.5),
            Some(0.8),
        )
        .expect("valid");
        let (level, reasons) = t.evaluate(&usage(10, 50, 100, 40));
        assert_eq!(level, Level::Warn);
        assert_eq!(
            reasons,
            vec![
                "50.0 KiB available < warn_free 100.0 KiB",
                "inodes 60.0% used >= inode_warn 50%"
            ]
        );
        let (level, reasons) = t.evaluate(&usage(10, 5, 100, 10));
        assert_eq!(level, Level::Critical);
        assert_eq!(reasons.len(), 2);
    }

    #[test]
    fn switched_off_thresholds_never_fire() {
        let t = Thresholds::new(None, None, None, None, None, None).expect("valid");
        assert_eq!(t.evaluate(&usage(100, 0, 10, 0)).0, Level::Ok);
    }

    #[test]
    fn rejects_bad_thresholds_with_the_argument_named() {
        let err = |r: Result<Thresholds>| r.expect_err("invalid").to_string();
        assert!(
            err(Thresholds::new(Some(1.5), None, None, None, None, None)).starts_with("warn=1.5: expected")
        );
        assert!(err(Thresholds::new(Some(0.0), None, None, None, None, None)).starts_with("warn=0:"));
        assert!(
            err(Thresholds::new(None, Some(f64::NAN), None, None, None, None)).starts_with("critical=NaN")
        );
        assert!(err(Thresholds::new(None, None, None, None, Some(-0.1), None)).starts_with("inode_warn=-0.1"));
        assert_eq!(
            err(Thresholds::new(Some(0.96), Some(0.95), None, None, None, None)),
            "warn=0.96: must not exceed critical=0.95"
        );
        assert_eq!(
            err(Thresholds::new(None, None, Some(1), Some(2), None, None)),
            "warn_free=1: must be at least min_free=2"
        );
        assert!(Thresholds::new(Some(1.0), Some(1.0), Some(2), Some(2), None, None).is_ok());
    }

    #[test]
    fn level_names_and_order() {
        assert!(Level::Ok < Level::Warn && Level::Warn < Level::Critical);
        assert_eq!(Level::Critical as i32, 2);
        assert_eq!(Level::Warn.name(), "warn");
    }
}
