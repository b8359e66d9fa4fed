//! Grading: every space against the thresholds and the room the next saves need, with hysteresis.

use super::{Event, Guard, SpaceStatus};
use crate::check::Level;
use crate::grading::{self, Bar, Slack};
use crate::size::format_size;

/// `min_free` (and room for the next saves) is left only once available space is back past it
/// by a quarter of it.
const BYTE_SLACK_DIVISOR: u64 = 4;

/// Bytes a second no writer on one machine exceeds: above its memory bandwidth, so above what
/// writes can put in a page cache, and above what `fallocate` claims on ext4 (about 2 TB/s,
/// measured on an 8 GiB loop image). Space that appears used faster (a copy-on-write commit, a
/// larger preallocation) is seen at the next measurement, within [`LONGEST_FRESH`].
pub const FASTEST_FILL: f64 = 4.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0;

/// The longest a training step's check grades figures measured earlier (see [`Guard::fresh_for`]).
pub const LONGEST_FRESH: f64 = 0.05;

/// Bytes still free on a filesystem of `size` (used + avail) bytes once `fraction` of it is used
/// (0 without a fraction).
fn free_at(fraction: Option<f64>, size: u64) -> u64 {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    fraction.map_or(0, |f| ((1.0 - f) * size as f64).ceil() as u64)
}

impl Guard {
    /// Bytes `critical` and `min_free` keep free on a filesystem of `size` (used + avail) bytes.
    pub(super) fn floor(&self, size: u64) -> u64 {
        free_at(self.config.critical, size).max(self.config.min_free.unwrap_or(0))
    }

    /// Every space with its figures and level, graded against `target` bytes of room; `strict`
    /// grades with the hysteresis margin (the bar for leaving a level, or for enough room).
    pub(super) fn grade(&self, target: u64, strict: bool) -> Vec<SpaceStatus> {
        self.grade_after(target, strict, 0)
    }

    /// [`Guard::grade`] as it would be once `freed` more bytes of the directory were deleted.
    pub(super) fn grade_after(&self, target: u64, strict: bool, freed: u64) -> Vec<SpaceStatus> {
        let mut out = Vec::new();
        for space in self.spaces.iter().filter(|s| s.owned) {
            let Some(u) = &space.usage else { continue };
            let mut u = u.clone();
            if space.holds_dir {
                u.used = u.used.saturating_sub(freed);
                u.avail = u.avail.saturating_add(freed);
            }
            let size = u.used.saturating_add(u.avail);
            // The budget is graded as a space of its own (below); the directory's room is the
            // smaller of the two.
            let room = u.avail.saturating_sub(self.floor(size));
            // Only where checkpoints land must the next save fit; the temp directory and other
            // watched paths (a 16 MiB /dev/shm) are graded by the thresholds alone.
            let needed = if space.holds_dir { target } else { 0 };
            let (level, reason) = self.grade_space(u.used, u.avail, room, needed, strict, true);
            out.push(SpaceStatus {
                name: space.roles.join(", "),
                total: size,
                used: u.used,
                avail: u.avail,
                room,
                responsive: space.responsive,
                level,
                reason,
                holds_dir: space.holds_dir,
            });
        }
        if let Some(budget) = self.config.budget.filter(|_| self.deletes()) {
            let held = self.held.saturating_sub(freed);
            let avail = budget.saturating_sub(held);
            let (level, reason) = self.grade_space(held, avail, avail, target, strict, false);
            out.push(SpaceStatus {
                name: format!("budget of {}", self.dir.display()),
                total: budget,
                used: held,
                avail,
                room: avail,
                responsive: true,
                level,
                reason,
                holds_dir: true,
            });
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn grade_space(
        &self,
        used: u64,
        avail: u64,
        room: u64,
        target: u64,
        strict: bool,
        filesystem: bool,
    ) -> (Level, Option<String>) {
        // The core's rule (crate::grading) with the guard's parameters: fractions are left
        // `hysteresis` below their threshold, `min_free` a quarter of it above. Room swings by one
        // checkpoint at every save-then-prune: a level set by room is left only once one more
        // save's worth is free (at least the reserve), or the sawtooth would flap it at every save.
        let bar = Bar::strict(
            strict,
            Slack::of_floor(self.config.hysteresis, BYTE_SLACK_DIVISOR, 0),
        );
        let room_bar = Bar::strict(
            strict,
            Slack::of_floor(self.config.hysteresis, BYTE_SLACK_DIVISOR, self.reserve()),
        );
        let size = used.saturating_add(avail);
        let fraction = if size == 0 { 0.0 } else { used as f64 / size as f64 };
        let pct = |f: f64| format!("{:.1}%", f * 100.0);
        if filesystem {
            if let Some(c) = self.config.critical.filter(|c| bar.reaches(fraction, *c)) {
                return (
                    Level::Critical,
                    Some(format!("{} used >= critical {}", pct(fraction), pct(c))),
                );
            }
            if let Some(m) = self.config.min_free.filter(|m| bar.short_of(avail, *m, size)) {
                return (
                    Level::Critical,
                    Some(format!(
                        "{} available < min_free {}",
                        format_size(avail),
                        format_size(m)
                    )),
                );
            }
        }
        if target > 0 && room_bar.short_of(room, target, size) {
            return (
                Level::Critical,
                Some(format!(
                    "room {} < {} for the next save and a final one",
                    format_size(room),
                    format_size(target)
                )),
            );
        }
        if let Some(w) = self.config.warn.filter(|w| bar.reaches(fraction, *w)) {
            return (
                Level::Warn,
                Some(format!("{} used >= warn {}", pct(fraction), pct(w))),
            );
        }
        let one_more = target.saturating_add(target / 2);
        if target > 0 && room_bar.short_of(room, one_more, size) {
            return (
                Level::Warn,
                Some(format!(
                    "room {} is less than one more save beyond the reserve",
                    format_size(room)
                )),
            );
        }
        (Level::Ok, None)
    }

    /// Seconds during which the figures just measured still decide a training step's check:
    /// the time the fastest writer ([`FASTEST_FILL`]) would need to use the room left before the
    /// first threshold it could cross (warn, critical, `min_free`, the room for the next saves
    /// where checkpoints land), at most [`LONGEST_FRESH`]. None (0) unless every measured space
    /// is a local filesystem that answered and is below every threshold, nothing waits for a
    /// check and the run goes on. None under a budget either: what fills it is known from the
    /// walks of the directory, which land at a measurement, not from `statfs`.
    pub(super) fn fresh_for(&self, target: u64) -> f64 {
        if self.level != Level::Ok
            || self.should_stop()
            || self.pending.retention
            || (self.config.budget.is_some() && self.deletes())
        {
            return 0.0;
        }
        let mut headroom = u64::MAX;
        for space in self.spaces.iter().filter(|s| s.owned) {
            // A network filesystem: many hosts write to it, faster together than any one machine.
            let answered = space.responsive && space.error.is_none() && space.prober.is_inline();
            let Some(u) = space.usage.as_ref().filter(|_| answered) else {
                return 0.0;
            };
            let size = u.used.saturating_add(u.avail);
            let floor = self.floor(size);
            let warn = free_at(self.config.warn, size);
            let room = if space.holds_dir {
                floor.saturating_add(target).saturating_add(target / 2)
            } else {
                0
            };
            let first_crossed = floor.max(warn).max(room);
            headroom = headroom.min(u.avail.saturating_sub(first_crossed));
        }
        #[allow(clippy::cast_precision_loss)]
        let seconds = headroom as f64 / FASTEST_FILL;
        seconds.min(LONGEST_FRESH)
    }

    pub(super) fn worst(spaces: &[SpaceStatus]) -> Level {
        spaces.iter().map(|s| s.level).max().unwrap_or(Level::Ok)
    }

    /// True when a space deletions can help is critical (`strict`: not yet past the margin).
    pub(super) fn dir_short(&self, target: u64, strict: bool) -> bool {
        self.grade(target, strict)
            .iter()
            .any(|s| s.holds_dir && s.level == Level::Critical)
    }

    /// Whether a space deletions can help would still be critical once `freed` bytes were deleted.
    pub(super) fn dir_short_after(&self, target: u64, freed: u64) -> bool {
        self.grade_after(target, false, freed)
            .iter()
            .any(|s| s.holds_dir && s.level == Level::Critical)
    }

    /// The smallest room where the checkpoint directory's writes land (None: nothing measured).
    pub(super) fn dir_room(&self) -> Option<u64> {
        self.grade(0, false)
            .iter()
            .filter(|s| s.holds_dir)
            .map(|s| s.room)
            .min()
    }

    /// Updates the level with hysteresis; an event when it changes.
    pub(super) fn update_level(&mut self, target: u64) {
        let raw = self.grade(target, false);
        let strict = self.grade(target, true);
        let next = grading::settle(Some(self.level), Self::worst(&raw), Self::worst(&strict));
        // Rising is told by what reached the threshold, falling by what holds the level left.
        let graded = if next > self.level { &raw } else { &strict };
        if next != self.level {
            let reasons: Vec<String> = graded
                .iter()
                .filter(|s| s.level == next)
                .filter_map(|s| s.reason.as_ref().map(|r| format!("{}: {r}", s.name)))
                .collect();
            let why = if reasons.is_empty() {
                "back below every threshold".to_owned()
            } else {
                reasons.join("; ")
            };
            self.events.push(Event::new(
                "level",
                next > self.level,
                format!("disk level {} -> {}: {why}", self.level.name(), next.name()),
            ));
            self.level = next;
        }
    }
}
