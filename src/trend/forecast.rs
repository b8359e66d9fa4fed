//! "Will the rest of this run fit?": a run's plan and its forecast, in closed form.

use super::{non_negative, positive};
use crate::error::{Error, Result};

/// How much of a run is left: a number of saves, or seconds (turned into whole saves).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Remaining {
    /// Saves still to come.
    Saves(u32),
    /// Seconds left in the run.
    Seconds(f64),
}

impl Remaining {
    /// Exactly one of a count of saves and a number of seconds.
    pub fn from_options(saves: Option<u32>, seconds: Option<f64>) -> Result<Self> {
        match (saves, seconds) {
            (Some(n), None) => Ok(Remaining::Saves(n)),
            (None, Some(s)) => Ok(Remaining::Seconds(s)),
            (given, _) => Err(Error::invalid(
                "remaining_saves / remaining_seconds",
                if given.is_some() {
                    "both given"
                } else {
                    "neither given"
                },
                "give exactly one (saves still to come, or seconds left in the run)",
            )),
        }
    }

    /// The saves still to come at one save every `save_interval` seconds (> 0).
    pub fn saves(self, save_interval: f64) -> Result<u32> {
        match self {
            Remaining::Saves(n) => Ok(n),
            Remaining::Seconds(s) => {
                let s = non_negative("remaining_seconds", s, "expected a finite number of seconds >= 0")?;
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped to u32
                let n = (s / save_interval).floor().min(f64::from(u32::MAX)) as u32;
                Ok(n)
            }
        }
    }
}

/// The rest of a run as the job knows it: checkpoint size, schedule, retention. With the disk's
/// `avail` and background rate it becomes a [`RunPlan`] ([`RunSpec::plan`],
/// [`TrendMonitor::run_plan`](super::TrendMonitor::run_plan)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunSpec {
    /// Bytes one checkpoint takes.
    pub checkpoint_size: u64,
    /// Seconds between saves.
    pub save_interval: f64,
    /// How much of the run is left.
    pub remaining: Remaining,
    /// Checkpoints kept by retention (`None`: all are kept).
    pub keep_last: Option<u32>,
    /// Checkpoints on disk now.
    pub existing: u32,
    /// Bytes that must stay free.
    pub keep_free: u64,
}

impl RunSpec {
    /// The plan on a disk with `avail` bytes available, filling at `background_rate` bytes/second
    /// besides the checkpoints (validated).
    pub fn plan(&self, avail: u64, background_rate: f64) -> Result<RunPlan> {
        let mut plan = RunPlan {
            checkpoint_size: self.checkpoint_size,
            save_interval: self.save_interval,
            remaining_saves: 0,
            keep_last: self.keep_last,
            existing: self.existing,
            background_rate,
            avail,
            keep_free: self.keep_free,
        };
        plan.validate()?;
        plan.remaining_saves = self.remaining.saves(self.save_interval)?;
        Ok(plan)
    }
}

/// What the rest of a run will do to the disk: checkpoint size, schedule and retention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunPlan {
    /// Bytes one checkpoint takes.
    pub checkpoint_size: u64,
    /// Seconds between saves.
    pub save_interval: f64,
    /// Saves still to come.
    pub remaining_saves: u32,
    /// Checkpoints kept by retention (`None`: all are kept).
    pub keep_last: Option<u32>,
    /// Checkpoints on disk now.
    pub existing: u32,
    /// Background fill rate in bytes per second (logs, caches, other writers).
    pub background_rate: f64,
    /// Bytes available now.
    pub avail: u64,
    /// Bytes that must stay free.
    pub keep_free: u64,
}

/// The answer to "will the rest of this run fit?".
#[derive(Debug, Clone, PartialEq)]
pub struct RunForecast {
    /// The most the run will need on top of what is used now, at its worst moment.
    pub peak_bytes: f64,
    /// Which save (1-based) reaches that peak; 0 when the background alone peaks at the end.
    pub peak_at_save: u32,
    /// The peak fits in `avail - keep_free`.
    pub fits: bool,
    /// The first save that will not fit, if any ("full in ~3 checkpoints").
    pub saves_until_full: Option<u32>,
    /// Seconds from now until that save.
    pub seconds_until_full: Option<f64>,
    /// One sentence in training units.
    pub summary: String,
}

/// The first of the saves `from..=to` whose need exceeds `room`, where `need` is linear (so
/// monotone) over them: a binary search, so a run of 2**32 saves costs 32 evaluations.
pub(super) fn first_above(from: u32, to: u32, need: impl Fn(u32) -> f64, room: f64) -> Option<u32> {
    if need(from) > room {
        return Some(from);
    }
    if need(to) <= room {
        return None;
    }
    let (mut fits, mut over) = (from, to);
    while over - fits > 1 {
        let mid = fits + (over - fits) / 2;
        if need(mid) > room {
            over = mid;
        } else {
            fits = mid;
        }
    }
    Some(over)
}

impl RunPlan {
    /// Checks the plan; the error names the argument, its value and what is allowed.
    pub fn validate(&self) -> Result<()> {
        positive(
            "save_interval",
            self.save_interval,
            "expected a positive, finite number of seconds",
        )?;
        if !self.background_rate.is_finite() {
            return Err(Error::invalid(
                "background_rate",
                self.background_rate,
                "expected a finite number of bytes per second",
            ));
        }
        if self.keep_last == Some(0) {
            return Err(Error::invalid(
                "keep_last",
                0,
                "expected at least 1 (the newest checkpoint is always kept), or None",
            ));
        }
        Ok(())
    }

    /// Checkpoints on disk just before save `save` (1-based); after the last save for
    /// `remaining_saves + 1`. Retention trims to `keep_last` after each save, so the count before
    /// the first save is whatever exists now.
    fn kept_before(&self, save: u32) -> f64 {
        let existing = u64::from(self.existing);
        let grown = existing + u64::from(save.saturating_sub(1));
        let kept = match self.keep_last {
            Some(n) if save > 1 => grown.min(u64::from(n)),
            _ => grown,
        };
        kept as f64
    }

    /// Bytes needed on top of what is used now while save `save` is written: the checkpoints kept
    /// then, plus the one being written, plus the background since now.
    fn need_during(&self, save: u32) -> f64 {
        let size = self.checkpoint_size as f64;
        let t = f64::from(save) * self.save_interval;
        size * (self.kept_before(save) + 1.0 - f64::from(self.existing)) + self.background_rate * t
    }

    /// Bytes needed on top of what is used now once the last save is done and pruned.
    fn need_after(&self) -> f64 {
        let size = self.checkpoint_size as f64;
        let kept_after = if self.remaining_saves == 0 {
            f64::from(self.existing)
        } else {
            let last = self.remaining_saves;
            // The count before a save one past the last, had there been one.
            self.keep_last.map_or(self.kept_before(last) + 1.0, |n| {
                (self.kept_before(last) + 1.0).min(f64::from(n))
            })
        };
        let end = f64::from(self.remaining_saves) * self.save_interval;
        size * (kept_after - f64::from(self.existing)) + self.background_rate * end
    }

    /// The saves split into stretches over which [`Self::need_during`] is linear: the first save
    /// (whatever exists may exceed `keep_last`), the saves while the kept count grows, and those
    /// once it holds at `keep_last`.
    fn linear_stretches(&self) -> Vec<(u32, u32)> {
        let last = self.remaining_saves;
        let mut stretches = Vec::with_capacity(3);
        if last >= 1 {
            stretches.push((1, 1));
        }
        if last >= 2 {
            let growth_ends = self.keep_last.map(|n| {
                // The save at which `existing + save - 1` reaches `keep_last`.
                let reach = (i64::from(n) - i64::from(self.existing) + 1).clamp(2, i64::from(last));
                u32::try_from(reach).unwrap_or(last)
            });
            match growth_ends {
                Some(kink) if kink > 2 && kink < last => {
                    stretches.push((2, kink));
                    stretches.push((kink, last));
                }
                _ => stretches.push((2, last)),
            }
        }
        stretches
    }

    /// Works out the remaining saves in closed form. Frameworks write the new checkpoint before
    /// deleting the oldest, so each save momentarily holds one more than `keep_last`. The need is
    /// linear over each of at most three stretches of saves, so the peak is at a stretch's end and
    /// the first save that does not fit is found by bisection: bounded work for any count.
    pub fn forecast(&self) -> Result<RunForecast> {
        self.validate()?;
        let room = self.avail.saturating_sub(self.keep_free) as f64;
        let (mut peak, mut peak_at) = (0.0f64, 0u32);
        let mut first_full = None;
        for (from, to) in self.linear_stretches() {
            for save in [from, to] {
                let need = self.need_during(save);
                if need > peak {
                    (peak, peak_at) = (need, save);
                }
            }
            if first_full.is_none() {
                first_full = first_above(from, to, |s| self.need_during(s), room);
            }
        }
        let after = self.need_after();
        if after > peak {
            (peak, peak_at) = (after, 0);
        }
        let first_full = first_full.map(|save| (save, f64::from(save) * self.save_interval));
        Ok(RunForecast {
            peak_bytes: peak,
            peak_at_save: peak_at,
            fits: peak <= room,
            saves_until_full: first_full.map(|(s, _)| s),
            seconds_until_full: first_full.map(|(_, t)| t),
            summary: self.summary(peak, room, first_full),
        })
    }

    /// The forecast in one sentence of training units.
    fn summary(&self, peak: f64, room: f64, first_full: Option<(u32, f64)>) -> String {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // saturating, shown only
        let show = |b: f64| crate::size::format_size(b.max(0.0) as u64);
        match first_full {
            None if peak <= room => format!(
                "fits: the remaining {} saves need at most {} more of {} available",
                self.remaining_saves,
                show(peak),
                show(room)
            ),
            None => format!(
                "fits every save, but background growth needs {} of {} by the end",
                show(peak),
                show(room)
            ),
            Some((save, t)) => format!(
                "full in ~{save} checkpoint{} (save {save} of {}, in ~{}): the run needs {} of {} available",
                if save == 1 { "" } else { "s" },
                self.remaining_saves,
                human_duration(t),
                show(peak),
                show(room)
            ),
        }
    }
}

/// `"45 min"`, `"3.5 h"`, `"2.0 days"`.
pub fn human_duration(seconds: f64) -> String {
    if seconds < 90.0 * 60.0 {
        format!("{:.0} min", seconds / 60.0)
    } else if seconds < 48.0 * 3600.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else {
        format!("{:.1} days", seconds / 86400.0)
    }
}
