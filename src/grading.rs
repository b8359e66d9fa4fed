//! One grading rule with hysteresis, for the guard and for `diskguard watch`.
//!
//! A level is entered the moment a measure reaches its threshold and left only once the measure is
//! back past the threshold by a slack. A disk filling up is never reported late (escalation is
//! immediate), and a disk hovering at a threshold, or swinging by one checkpoint at every
//! save-then-prune, does not flap between two levels at every measurement.
//!
//! Grading is done twice over the same figures: at [`Bar::Enter`] (the thresholds themselves) and
//! at [`Bar::Stay`] (the thresholds eased by a [`Slack`]); [`settle`] combines the two with the
//! level held before. The slack's parameters are the only difference between its users: the guard
//! eases fractions by its `hysteresis` and a free-space floor by a quarter of the floor, `watch`
//! eases both by the same share of the filesystem ([`Slack::of_capacity`]).

use crate::check::{pct, Level, Thresholds};
use crate::error::{Error, Result};
use crate::size::format_size;
use crate::usage::DiskUsage;

/// How far free space must come back above a floor (a threshold of available bytes) before the
/// level the floor set is left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FloorSlack {
    /// `max(floor / divisor, at_least)` above the floor: the guard leaves `min_free` a quarter of
    /// it above (`divisor` 4), and a room target at least one more save above (`at_least`).
    OfFloor {
        /// The floor's share that is the slack is `1 / divisor`.
        divisor: u64,
        /// The smallest slack in bytes.
        at_least: u64,
    },
    /// `ceil(share * capacity)` above the floor, capacity being `used + avail`: `watch`, whose
    /// percentages and floors are both eased by the same share of the filesystem.
    OfCapacity(f64),
}

/// How far past its threshold a measure must come back before a level is left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slack {
    /// Fractions used (of space or inodes) leave a level only this far below their threshold.
    pub fraction: f64,
    /// Available bytes leave a level set by a floor only this far above it.
    pub floor: FloorSlack,
}

impl Slack {
    /// The same share of the filesystem for every threshold: fractions `share` lower, floors
    /// `share` of the capacity higher. `share` must be a fraction in [0, 1].
    pub fn of_capacity(share: f64) -> Result<Self> {
        if !(share.is_finite() && (0.0..=1.0).contains(&share)) {
            return Err(Error::invalid(
                "hysteresis",
                share,
                "expected a fraction in [0, 1] such as 0.05 for 5% of the filesystem",
            ));
        }
        Ok(Slack {
            fraction: share,
            floor: FloorSlack::OfCapacity(share),
        })
    }

    /// Fractions `fraction` lower, floors `max(floor / divisor, at_least)` higher (the guard's
    /// parameters; its configuration validates `fraction`).
    pub fn of_floor(fraction: f64, divisor: u64, at_least: u64) -> Self {
        Slack {
            fraction,
            floor: FloorSlack::OfFloor { divisor, at_least },
        }
    }

    /// The bytes by which available space must clear `floor` on a filesystem of `capacity` bytes.
    fn floor_margin(&self, floor: u64, capacity: u64) -> u64 {
        match self.floor {
            FloorSlack::OfFloor { divisor, at_least } => (floor / divisor.max(1)).max(at_least),
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            FloorSlack::OfCapacity(share) => (share * capacity as f64).ceil() as u64,
        }
    }
}

/// Which bar a measure is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bar {
    /// The threshold itself: the bar for entering a level (and for a one-off check).
    Enter,
    /// The threshold eased by the slack: the bar a measure must clear to leave a level.
    Stay(Slack),
}

impl Bar {
    /// [`Bar::Stay`] with `slack` when `strict`, else [`Bar::Enter`].
    pub fn strict(strict: bool, slack: Slack) -> Bar {
        if strict {
            Bar::Stay(slack)
        } else {
            Bar::Enter
        }
    }

    /// Whether a fraction `used` reaches `threshold` at this bar.
    pub fn reaches(self, used: f64, threshold: f64) -> bool {
        let slack = match self {
            Bar::Enter => 0.0,
            Bar::Stay(s) => s.fraction,
        };
        used >= threshold - slack
    }

    /// Whether `avail` bytes fall short of `floor` at this bar, on a filesystem (or budget) of
    /// `capacity` bytes.
    pub fn short_of(self, avail: u64, floor: u64, capacity: u64) -> bool {
        let bar = match self {
            Bar::Enter => floor,
            Bar::Stay(s) => floor.saturating_add(s.floor_margin(floor, capacity)),
        };
        avail < bar
    }
}

/// The level after a measurement that grades `entering` at [`Bar::Enter`] and `staying` at
/// [`Bar::Stay`], for something that was at `previous` (`None`: nothing known, as at the start or
/// after a failure to measure). Rising takes effect at once; falling goes only as far as the
/// eased thresholds allow, never below `entering`.
pub fn settle(previous: Option<Level>, entering: Level, staying: Level) -> Level {
    match previous {
        Some(before) if entering < before => before.min(staying).max(entering),
        _ => entering,
    }
}

impl Thresholds {
    /// Grades `usage`: the worst level any threshold reaches, and one reason per threshold reached
    /// (a one-off check, [`grade`] at [`Bar::Enter`]).
    pub fn evaluate(&self, usage: &DiskUsage) -> (Level, Vec<String>) {
        grade(self, usage, Bar::Enter)
    }
}

/// Grades `usage` against `thresholds` at `bar`: the worst level any threshold reaches, and one
/// reason per threshold reached.
pub fn grade(thresholds: &Thresholds, usage: &DiskUsage, bar: Bar) -> (Level, Vec<String>) {
    let mut level = Level::Ok;
    let mut reasons = Vec::new();
    let mut reach = |reached: Level, reason: String| {
        level = level.max(reached);
        reasons.push(reason);
    };
    let used = usage.percent_used / 100.0;
    if let Some(c) = thresholds.critical.filter(|c| bar.reaches(used, *c)) {
        reach(
            Level::Critical,
            format!("{:.1}% used >= critical {}", usage.percent_used, pct(c)),
        );
    } else if let Some(w) = thresholds.warn.filter(|w| bar.reaches(used, *w)) {
        reach(
            Level::Warn,
            format!("{:.1}% used >= warn {}", usage.percent_used, pct(w)),
        );
    }
    let avail = format_size(usage.avail);
    let capacity = usage.used.saturating_add(usage.avail);
    if let Some(m) = thresholds
        .min_free
        .filter(|m| bar.short_of(usage.avail, *m, capacity))
    {
        reach(
            Level::Critical,
            format!("{avail} available < min_free {}", format_size(m)),
        );
    } else if let Some(w) = thresholds
        .warn_free
        .filter(|w| bar.short_of(usage.avail, *w, capacity))
    {
        reach(
            Level::Warn,
            format!("{avail} available < warn_free {}", format_size(w)),
        );
    }
    if let Some(inodes) = usage.inodes {
        let used = inodes.percent_used / 100.0;
        if let Some(c) = thresholds.inode_critical.filter(|c| bar.reaches(used, *c)) {
            reach(
                Level::Critical,
                format!(
                    "inodes {:.1}% used >= inode_critical {}",
                    inodes.percent_used,
                    pct(c)
                ),
            );
        } else if let Some(w) = thresholds.inode_warn.filter(|w| bar.reaches(used, *w)) {
            reach(
                Level::Warn,
                format!("inodes {:.1}% used >= inode_warn {}", inodes.percent_used, pct(w)),
            );
        }
    }
    (level, reasons)
}

/// Grades `usage` for something that was at `previous`, with hysteresis: the level [`settle`]
/// picks, and the reasons of the thresholds reached (none while a level is held in the slack).
pub fn regrade(
    thresholds: &Thresholds,
    usage: &DiskUsage,
    previous: Option<Level>,
    slack: Slack,
) -> (Level, Vec<String>) {
    let (entering, reasons) = grade(thresholds, usage, Bar::Enter);
    let staying = if previous.is_some_and(|p| entering < p) {
        grade(thresholds, usage, Bar::Stay(slack)).0
    } else {
        entering
    };
    (settle(previous, entering, staying), reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Level; 3] = [Level::Ok, Level::Warn, Level::Critical];

    /// A filesystem of 1 KiB blocks, `used` of them used and `avail` available.
    fn usage(used: u64, avail: u64) -> DiskUsage {
        crate::check::tests::usage(used, avail, 0, 0)
    }

    /// A small deterministic generator (xorshift64*): property tests without a new dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn settle_rises_at_once_and_falls_only_as_far_as_the_slack_allows() {
        assert_eq!(settle(Some(Level::Ok), Level::Warn, Level::Warn), Level::Warn);
        assert_eq!(settle(Some(Level::Warn), Level::Ok, Level::Warn), Level::Warn);
        assert_eq!(settle(Some(Level::Warn), Level::Ok, Level::Ok), Level::Ok);
        assert_eq!(settle(Some(Level::Critical), Level::Ok, Level::Warn), Level::Warn);
        assert_eq!(
            settle(None, Level::Ok, Level::Critical),
            Level::Ok,
            "nothing held: no band"
        );
    }

    #[test]
    fn settle_never_goes_above_the_level_held_nor_below_entering() {
        for before in ALL {
            for entering in ALL {
                for staying in ALL.into_iter().filter(|s| *s >= entering) {
                    let after = settle(Some(before), entering, staying);
                    assert!(after >= entering, "{before:?} {entering:?} {staying:?}");
                    assert!(
                        after <= before.max(entering),
                        "{before:?} {entering:?} {staying:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_bars_ease_fractions_and_floors_by_the_slack() {
        let watch = Slack::of_capacity(0.1).expect("valid");
        assert!(Bar::Enter.reaches(0.5, 0.5) && !Bar::Enter.reaches(0.45, 0.5));
        assert!(Bar::Stay(watch).reaches(0.45, 0.5) && !Bar::Stay(watch).reaches(0.39, 0.5));
        // watch: a floor of 100 bytes on 1000 is left at 100 + 10% of 1000.
        assert!(Bar::Stay(watch).short_of(199, 100, 1000) && !Bar::Stay(watch).short_of(200, 100, 1000));
        assert!(!Bar::Enter.short_of(100, 100, 1000) && Bar::Enter.short_of(99, 100, 1000));
        // the guard: a quarter of the floor, at least `at_least`.
        let guard = Slack::of_floor(0.02, 4, 0);
        assert!(Bar::Stay(guard).short_of(124, 100, 1000) && !Bar::Stay(guard).short_of(125, 100, 1000));
        let room = Slack::of_floor(0.02, 4, 50);
        assert!(Bar::Stay(room).short_of(149, 100, 1000) && !Bar::Stay(room).short_of(150, 100, 1000));
        assert!(Bar::Stay(guard).reaches(0.48, 0.5) && !Bar::Stay(guard).reaches(0.479, 0.5));
        assert_eq!(Bar::strict(false, guard), Bar::Enter);
    }

    #[test]
    fn a_capacity_slack_is_a_fraction() {
        for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            let err = Slack::of_capacity(bad).expect_err("invalid").to_string();
            assert!(err.starts_with("hysteresis="), "{err}");
        }
        assert!(Slack::of_capacity(0.0).is_ok() && Slack::of_capacity(1.0).is_ok());
    }

    #[test]
    fn the_staying_bar_eases_every_threshold_of_a_check() {
        let slack = Bar::Stay(Slack::of_capacity(0.1).expect("valid"));
        let space = Thresholds::new(Some(0.5), Some(0.8), None, None, None, None).expect("valid");
        let u = usage(450, 550);
        assert_eq!(grade(&space, &u, Bar::Enter), (Level::Ok, vec![]));
        assert_eq!(grade(&space, &u, slack).0, Level::Warn);
        // 550 KiB available, a 500 KiB floor: left only 10% of the 1000 KiB disk above it.
        let floor = Thresholds::new(None, None, None, Some(500 * 1024), None, None).expect("valid");
        assert_eq!(grade(&floor, &u, Bar::Enter).0, Level::Ok);
        assert_eq!(grade(&floor, &u, slack).0, Level::Critical);
        let inodes = Thresholds::new(None, None, None, None, Some(0.5), None).expect("valid");
        let u = crate::check::tests::usage(450, 550, 100, 55); // 45% of the inodes used
        assert_eq!(grade(&inodes, &u, Bar::Enter).0, Level::Ok);
        assert_eq!(grade(&inodes, &u, slack).0, Level::Warn);
    }

    #[test]
    fn regrade_keeps_the_reasons_of_what_is_reached() {
        let thresholds = Thresholds::new(Some(0.5), Some(0.8), None, None, None, None).expect("valid");
        let slack = Slack::of_capacity(0.1).expect("valid");
        let (level, reasons) = regrade(&thresholds, &usage(600, 400), Some(Level::Ok), slack);
        assert_eq!(
            (level, reasons),
            (Level::Warn, vec!["60.0% used >= warn 50%".to_owned()])
        );
        let (level, reasons) = regrade(&thresholds, &usage(450, 550), Some(Level::Warn), slack);
        assert_eq!(level, Level::Warn, "within the slack: held");
        assert!(reasons.is_empty(), "nothing is reached at the threshold itself");
        assert_eq!(
            regrade(&thresholds, &usage(390, 610), Some(Level::Warn), slack).0,
            Level::Ok
        );
        assert_eq!(regrade(&thresholds, &usage(450, 550), None, slack).0, Level::Ok);
    }

    /// Property tests over random walks of a disk's usage (fractions on a 1000-block disk) with
    /// random thresholds and slacks: escalation is immediate, there is no flapping within the
    /// slack, and a level is left only once every threshold that holds it is cleared by the slack.
    #[test]
    fn hysteresis_properties_over_random_walks() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..2_000 {
            let warn = 100 + rng.below(700); // blocks used, out of 1000
            let critical = warn + rng.below(1000 - warn);
            let share = rng.below(200) as f64 / 1000.0;
            let thresholds = Thresholds::new(
                Some(warn as f64 / 1000.0),
                Some(critical as f64 / 1000.0),
                None,
                None,
                None,
                None,
            )
            .expect("valid");
            let slack = Slack::of_capacity(share).expect("valid");
            let mut used = rng.below(1001);
            let mut level: Option<Level> = None;
            for _ in 0..60 {
                // Small steps hover about a threshold; a few jumps cross several at once.
                used = if rng.below(10) == 0 {
                    rng.below(1001)
                } else {
                    (used + rng.below(61)).saturating_sub(30).min(1000)
                };
                let u = usage(used, 1000 - used);
                let entering = grade(&thresholds, &u, Bar::Enter).0;
                let staying = grade(&thresholds, &u, Bar::Stay(slack)).0;
                let next = regrade(&thresholds, &u, level, slack).0;
                let fraction = u.percent_used / 100.0;
                if let Some(before) = level {
                    if entering >= before {
                        assert_eq!(next, entering, "escalation is immediate");
                    }
                    if next < before {
                        // Recovery only past the slack: the level left is not reached at the eased bar.
                        let bar = if before == Level::Critical { critical } else { warn };
                        assert!(
                            fraction < bar as f64 / 1000.0 - share,
                            "left {before:?} at {fraction} (threshold {bar}, slack {share})"
                        );
                    }
                    if entering <= before && staying >= before {
                        assert_eq!(next, before, "no flapping within the slack");
                    }
                } else {
                    assert_eq!(next, entering);
                }
                assert!(next >= entering && next <= staying.max(entering));
                level = Some(next);
            }
        }
    }

    /// The same properties for floors of available bytes, with the guard's parameters.
    #[test]
    fn floor_hysteresis_properties_with_the_guards_slack() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for _ in 0..2_000 {
            let min_free = 10 + rng.below(300);
            let at_least = rng.below(100);
            let slack = Slack::of_floor(0.0, 4, at_least);
            let margin = (min_free / 4).max(at_least);
            let mut avail = rng.below(1001);
            let mut level = Level::Ok;
            for _ in 0..60 {
                avail = (avail + rng.below(41)).saturating_sub(20).min(1000);
                let entering = if Bar::Enter.short_of(avail, min_free, 1000) {
                    Level::Critical
                } else {
                    Level::Ok
                };
                let staying = if Bar::Stay(slack).short_of(avail, min_free, 1000) {
                    Level::Critical
                } else {
                    Level::Ok
                };
                let next = settle(Some(level), entering, staying);
                if avail < min_free {
                    assert_eq!(next, Level::Critical, "escalation is immediate");
                }
                if level == Level::Critical && next == Level::Ok {
                    assert!(avail >= min_free + margin, "recovery only past the slack");
                }
                if level == Level::Critical && avail < min_free + margin {
                    assert_eq!(next, Level::Critical, "no flapping within the slack");
                }
                level = next;
            }
        }
    }
}
