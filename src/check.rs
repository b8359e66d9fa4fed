//! Threshold checks graded ok / warn / critical, over fractions used, absolute free space and inodes.
//!
//! Fractions compare against `df`'s percent used (`used / (used + avail)`), so "95%" means what the
//! user sees in `df`, root's reserve already left out. Absolute floors compare against `avail`, the
//! space a non-root training process can actually write.

use crate::error::{Error, Result};
use crate::size::format_size;

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

/// How a validation error names the thresholds and writes their values: as the API's arguments
/// (`warn=0.96`, `warn_free=1073741824`) or as the command line's flags (`--warning=96%`,
/// `--warning=1.0 GiB free`), so that `diskguard check -w 96% -c 95%` is told in its own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    /// `warn`, `critical`, `warn_free`, `min_free`, `inode_warn`, `inode_critical`; plain numbers.
    Arguments,
    /// `--warning`, `--critical` (for fractions and floors alike), `--inodes-warn`,
    /// `--inodes-critical`; percentages and sizes.
    Flags,
}

/// One threshold of [`Thresholds`], for naming it.
#[derive(Clone, Copy)]
enum Which {
    Warn,
    Critical,
    WarnFree,
    MinFree,
    InodeWarn,
    InodeCritical,
}

impl Spelling {
    fn name(self, which: Which) -> &'static str {
        match (self, which) {
            (Spelling::Arguments, Which::Warn) => "warn",
            (Spelling::Arguments, Which::Critical) => "critical",
            (Spelling::Arguments, Which::WarnFree) => "warn_free",
            (Spelling::Arguments, Which::MinFree) => "min_free",
            (Spelling::Arguments, Which::InodeWarn) => "inode_warn",
            (Spelling::Arguments, Which::InodeCritical) => "inode_critical",
            (Spelling::Flags, Which::Warn | Which::WarnFree) => "--warning",
            (Spelling::Flags, Which::Critical | Which::MinFree) => "--critical",
            (Spelling::Flags, Which::InodeWarn) => "--inodes-warn",
            (Spelling::Flags, Which::InodeCritical) => "--inodes-critical",
        }
    }

    fn fraction(self, value: f64) -> String {
        match self {
            Spelling::Arguments => value.to_string(),
            Spelling::Flags => pct(value),
        }
    }

    fn size(self, value: u64) -> String {
        match self {
            Spelling::Arguments => value.to_string(),
            Spelling::Flags => format!("{} free", format_size(value)),
        }
    }

    fn check_fraction(self, which: Which, value: Option<f64>) -> Result<()> {
        match value {
            Some(v) if !(v > 0.0 && v <= 1.0) => {
                let rule = match self {
                    Spelling::Arguments => FRACTION_RULE,
                    Spelling::Flags => "expected a percentage in (0, 100] such as 85%",
                };
                Err(Error::invalid(self.name(which), self.fraction(v), rule))
            }
            _ => Ok(()),
        }
    }

    fn check_order(self, low: (Which, Option<f64>), high: (Which, Option<f64>)) -> Result<()> {
        match (low.1, high.1) {
            (Some(l), Some(h)) if l > h => Err(Error::invalid(
                self.name(low.0),
                self.fraction(l),
                format!("must not exceed {}={}", self.name(high.0), self.fraction(h)),
            )),
            _ => Ok(()),
        }
    }
}

/// A fraction as a percentage for a message: `85%`, `85.5%`.
pub(crate) fn pct(fraction: f64) -> String {
    let value = fraction * 100.0;
    if (value - value.round()).abs() < 1e-9 {
        format!("{value:.0}%")
    } else {
        format!("{value}%")
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
        Thresholds {
            warn,
            critical,
            warn_free,
            min_free,
            inode_warn,
            inode_critical,
        }
        .validated(Spelling::Arguments)
    }

    /// These thresholds if they are valid, else the error in `spelling`'s words.
    pub fn validated(self, spelling: Spelling) -> Result<Self> {
        spelling.check_fraction(Which::Warn, self.warn)?;
        spelling.check_fraction(Which::Critical, self.critical)?;
        spelling.check_fraction(Which::InodeWarn, self.inode_warn)?;
        spelling.check_fraction(Which::InodeCritical, self.inode_critical)?;
        spelling.check_order((Which::Warn, self.warn), (Which::Critical, self.critical))?;
        spelling.check_order(
            (Which::InodeWarn, self.inode_warn),
            (Which::InodeCritical, self.inode_critical),
        )?;
        if let (Some(w), Some(m)) = (self.warn_free, self.min_free) {
            if w < m {
                return Err(Error::invalid(
                    spelling.name(Which::WarnFree),
                    spelling.size(w),
                    format!(
                        "must be at least {}={}{}",
                        spelling.name(Which::MinFree),
                        spelling.size(m),
                        match spelling {
                            Spelling::Arguments => "",
                            Spelling::Flags => " (a warning comes before the critical floor)",
                        }
                    ),
                ));
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::usage::{DiskUsage, FsStats};

    /// A filesystem of 1 KiB blocks (with 10 reserved for root) and `files` inodes.
    pub(crate) fn usage(used_blocks: u64, avail_blocks: u64, files: u64, ffree: u64) -> DiskUsage {
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
    fn the_command_line_is_told_in_its_flags_words() {
        let err = |t: Thresholds| t.validated(Spelling::Flags).expect_err("invalid").to_string();
        let off = Thresholds::new(None, None, None, None, None, None).expect("valid");
        let t = |warn, critical| Thresholds {
            warn,
            critical,
            ..off
        };
        assert_eq!(
            err(t(Some(0.9), Some(0.8))),
            "--warning=90%: must not exceed --critical=80%"
        );
        assert_eq!(
            err(Thresholds {
                inode_warn: Some(0.96),
                inode_critical: Some(0.955),
                ..off
            }),
            "--inodes-warn=96%: must not exceed --inodes-critical=95.5%"
        );
        assert_eq!(
            err(Thresholds {
                warn_free: Some(1 << 30),
                min_free: Some(2 << 30),
                ..off
            }),
            "--warning=1.0 GiB free: must be at least --critical=2.0 GiB free (a warning comes \
             before the critical floor)"
        );
        assert_eq!(
            err(t(Some(1.5), None)),
            "--warning=150%: expected a percentage in (0, 100] such as 85%"
        );
        assert!(t(Some(0.8), Some(0.9)).validated(Spelling::Flags).is_ok());
    }

    #[test]
    fn level_names_and_order() {
        assert!(Level::Ok < Level::Warn && Level::Warn < Level::Critical);
        assert_eq!(Level::Critical as i32, 2);
        assert_eq!(Level::Warn.name(), "warn");
    }
}
