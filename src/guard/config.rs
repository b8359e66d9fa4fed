//! The guard's settings: what to do when full, the room one save needs, ranks, and their checks.

use crate::check::{Level, Thresholds};
use crate::error::{Error, Result};
use crate::retention::Policy;
use crate::size::{parse_size, SIZE_RULE};

/// What to do when retention alone cannot make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Delete checkpoints the rules keep, least valuable first (never the invariant or a best).
    Prune,
    /// Delete nothing the rules keep: stop instead.
    Stop,
}

impl OnFull {
    /// Parses `'prune'` or `'stop'`.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "prune" => Ok(OnFull::Prune),
            "stop" => Ok(OnFull::Stop),
            other => Err(Error::invalid(
                "on_full",
                format!("{other:?}"),
                "expected 'prune' or 'stop'",
            )),
        }
    }

    /// `'prune'` or `'stop'`.
    pub fn name(self) -> &'static str {
        match self {
            OnFull::Prune => "prune",
            OnFull::Stop => "stop",
        }
    }
}

/// Room one save needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// The largest checkpoint seen or estimated, plus a margin.
    Auto,
    /// A fixed number of bytes.
    Bytes(u64),
}

impl Reserve {
    /// Parses `'auto'` or a size such as `'2GiB'`.
    pub fn parse(text: &str) -> Result<Self> {
        if text == "auto" {
            return Ok(Reserve::Auto);
        }
        parse_size("reserve", text).map(Reserve::Bytes).map_err(|_| {
            Error::invalid(
                "reserve",
                format!("{text:?}"),
                format!("expected 'auto' or a size: {SIZE_RULE}"),
            )
        })
    }
}

/// Where this process sits in a distributed run (torchrun's `RANK`, `LOCAL_RANK`, `WORLD_SIZE`).
///
/// Each filesystem is measured by one process: a node-local one by local rank 0 of each node, a
/// shared one (NFS, Lustre, ...) by global rank 0 only. The process that measures the checkpoint
/// directory's filesystem is the only one that deletes there. The others still join the reduced
/// stop decision, with nothing of their own to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranks {
    /// Global rank.
    pub rank: u64,
    /// Rank on this node.
    pub local_rank: u64,
    /// Processes in the run.
    pub world_size: u64,
}

impl Default for Ranks {
    fn default() -> Self {
        Ranks {
            rank: 0,
            local_rank: 0,
            world_size: 1,
        }
    }
}

impl Ranks {
    /// Checks that the ranks fit the world size.
    pub fn validate(&self) -> Result<()> {
        if self.world_size == 0 {
            return Err(Error::invalid("world_size", 0, "expected at least 1"));
        }
        let below = format!("expected a rank below world_size={}", self.world_size);
        if self.rank >= self.world_size {
            return Err(Error::invalid("rank", self.rank, below));
        }
        if self.local_rank >= self.world_size {
            return Err(Error::invalid("local_rank", self.local_rank, below));
        }
        Ok(())
    }

    /// Whether this process measures a filesystem (`shared`: one all nodes see).
    pub fn measures(&self, shared: bool) -> bool {
        if shared {
            self.rank == 0
        } else {
            self.local_rank == 0
        }
    }
}

/// Settings of a [`Guard`](super::Guard), validated by [`GuardConfig::validate`].
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Fraction used at which to warn.
    pub warn: Option<f64>,
    /// Fraction used that is critical (the guard makes room, then stops).
    pub critical: Option<f64>,
    /// Bytes that must stay available on every watched filesystem.
    pub min_free: Option<u64>,
    /// Bytes the run may hold under its directory.
    pub budget: Option<u64>,
    /// Room one save needs.
    pub reserve: Reserve,
    /// What to do when retention alone cannot make room.
    pub on_full: OnFull,
    /// Fraction-of-filesystem margin by which a level must be left (hysteresis).
    pub hysteresis: f64,
    /// Seconds a `statfs` may take before its filesystem is reported unresponsive.
    pub statfs_timeout: f64,
    /// Seconds between rescans of what the run holds.
    pub rescan_interval: f64,
    /// Steps between checks (the Python surface counts them).
    pub check_every_steps: u64,
    /// Seconds between checks (the Python surface times them).
    pub check_every_seconds: f64,
    /// Retention rules applied after each save and when short; `None` keeps everything.
    pub policy: Option<Policy>,
    /// Bytes of the emergency reserve file, if one is wanted.
    pub emergency_reserve: Option<u64>,
    /// This process's place in a distributed run.
    pub ranks: Ranks,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            warn: Some(crate::check::DEFAULT_WARN),
            critical: Some(crate::check::DEFAULT_CRITICAL),
            min_free: None,
            budget: None,
            reserve: Reserve::Auto,
            on_full: OnFull::Prune,
            hysteresis: 0.02,
            statfs_timeout: 0.5,
            rescan_interval: 60.0,
            check_every_steps: 50,
            check_every_seconds: 10.0,
            policy: None,
            emergency_reserve: None,
            ranks: Ranks::default(),
        }
    }
}

pub(super) fn positive_seconds(name: &'static str, value: f64, max: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 && value <= max {
        Ok(())
    } else {
        Err(Error::invalid(
            name,
            value,
            format!("expected seconds > 0 and at most {max}"),
        ))
    }
}

impl GuardConfig {
    /// Checks every setting; the error names the argument, its value and what is allowed.
    pub fn validate(&self) -> Result<()> {
        Thresholds::new(self.warn, self.critical, None, self.min_free, None, None)?;
        if self.budget == Some(0) {
            return Err(Error::invalid(
                "budget",
                0,
                "expected a size > 0, or None for no budget",
            ));
        }
        if !(self.hysteresis.is_finite() && (0.0..0.5).contains(&self.hysteresis)) {
            return Err(Error::invalid(
                "hysteresis",
                self.hysteresis,
                "expected a fraction in [0, 0.5)",
            ));
        }
        positive_seconds("statfs_timeout", self.statfs_timeout, 3600.0)?;
        positive_seconds("rescan_interval", self.rescan_interval, 1e9)?;
        positive_seconds("check_every_seconds", self.check_every_seconds, 1e9)?;
        if self.check_every_steps == 0 {
            return Err(Error::invalid("check_every_steps", 0, "expected at least 1"));
        }
        self.ranks.validate()?;
        if self.emergency_reserve == Some(0) {
            return Err(Error::invalid(
                "emergency_reserve",
                0,
                "expected a size > 0, or None for no reserve file",
            ));
        }
        Ok(())
    }
}

/// Parses a level name from saved state.
pub fn level_named(name: &str) -> Result<Level> {
    match name {
        "ok" => Ok(Level::Ok),
        "warn" => Ok(Level::Warn),
        "critical" => Ok(Level::Critical),
        other => Err(Error::invalid(
            "level",
            format!("{other:?}"),
            "expected 'ok', 'warn' or 'critical'",
        )),
    }
}
