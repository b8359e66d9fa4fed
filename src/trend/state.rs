//! A monitor's history in plain numbers, for a checkpoint, and a monitor rebuilt from it.

use super::{Reading, Sample, Save, TrendConfig, TrendMonitor, SAVE_MEMORY};
use crate::error::{Error, Result};

impl TrendMonitor {
    /// The monitor's history as plain numbers, with times as ages: seconds before `now` (the
    /// moment of saving, on the clock the samples use, not before the latest event).
    pub fn state(&self, now: f64) -> Result<TrendState> {
        if !now.is_finite() || self.last_t.is_some_and(|last| now < last) {
            return Err(Error::invalid(
                "t",
                now,
                format!(
                    "expected a finite time on the samples' clock, not before the latest event ({})",
                    self.last_t
                        .map_or_else(|| "none yet".to_owned(), |t| t.to_string())
                ),
            ));
        }
        let age = |t: f64| now - t;
        Ok(TrendState {
            config: self.config,
            samples: self
                .samples
                .iter()
                .map(|s| [age(s.t), s.used, s.background])
                .collect(),
            saves: self.saves.iter().map(|s| [age(s.t), s.offset_before]).collect(),
            offset: self.offset,
            latest: self.latest.map(|r| [age(r.t), r.used, r.avail]),
            last_event_age: self.last_t.map(age),
            last_write_bytes: self.last_write_bytes,
            freed_since_write: self.freed_since_write,
            first_free_age: self.first_free_t.map(age),
        })
    }

    /// [`Self::state`] with ages from `clock_now`, or from the latest event when the samples' clock
    /// runs ahead of the one `clock_now` reads (times passed in from `time.time()`, say): what
    /// saving without a time argument means, so it never fails.
    pub fn state_now(&self, clock_now: f64) -> Result<TrendState> {
        self.state(self.last_t.map_or(clock_now, |last| clock_now.max(last)))
    }

    /// A monitor continuing from `state` (validated), its ages counted back from `now`: a job
    /// resumed on another host, with another monotonic clock, continues its forecast.
    pub fn from_state(state: &TrendState, now: f64) -> Result<Self> {
        if !(now.is_finite() && now >= 0.0) {
            return Err(Error::invalid(
                "t",
                now,
                "expected a finite monotonic time >= 0 in seconds",
            ));
        }
        state.validate()?;
        let time = |age: f64| now - age;
        Ok(TrendMonitor {
            config: state.config,
            samples: state
                .samples
                .iter()
                .map(|&[age, used, background]| Sample {
                    t: time(age),
                    background,
                    used,
                })
                .collect(),
            saves: state
                .saves
                .iter()
                .map(|&[age, offset_before]| Save {
                    t: time(age),
                    offset_before,
                })
                .collect(),
            offset: state.offset,
            last_t: state.last_event_age.map(time),
            latest: state.latest.map(|[age, used, avail]| Reading {
                t: time(age),
                used,
                avail,
            }),
            last_write_bytes: state.last_write_bytes,
            freed_since_write: state.freed_since_write,
            first_free_t: state.first_free_age.map(time),
        })
    }
}

/// A [`TrendMonitor`]'s history in plain numbers, for a checkpoint: times are ages (seconds before
/// the moment the state was taken), so it means the same on any host and any monotonic clock.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendState {
    /// The monitor's settings.
    pub config: TrendConfig,
    /// Stored samples, oldest first: `[age, used, background]` (background = used - offset then).
    pub samples: Vec<[f64; 3]>,
    /// Tagged saves, oldest first: `[age, running offset just before the save]`.
    pub saves: Vec<[f64; 2]>,
    /// The running offset of tagged writes and frees.
    pub offset: f64,
    /// The latest measurement, `[age, used, avail]` (it may be newer than the last stored sample).
    pub latest: Option<[f64; 3]>,
    /// Age of the latest sample, write or free; later times must not come before it.
    pub last_event_age: Option<f64>,
    /// Bytes of the latest tagged write.
    pub last_write_bytes: f64,
    /// A free was tagged after the latest write.
    pub freed_since_write: bool,
    /// Age of the first tagged free (`None`: none yet).
    pub first_free_age: Option<f64>,
}

/// The check of one loaded number: `field` names where it sits in the state.
pub(super) fn state_number(field: &'static str, value: f64, non_negative_only: bool) -> Result<()> {
    let fits = value.is_finite() && (!non_negative_only || value >= 0.0);
    if fits {
        Ok(())
    } else {
        let rule = if non_negative_only {
            "expected a finite number >= 0"
        } else {
            "expected a finite number"
        };
        Err(Error::invalid(field, value, rule))
    }
}

/// Ages must run from oldest to newest (never increasing) and be no younger than the last event.
pub(super) fn ages_in_order(field: &'static str, ages: impl Iterator<Item = f64>, newest: f64) -> Result<()> {
    let mut previous = f64::INFINITY;
    for age in ages {
        state_number(field, age, true)?;
        if age > previous || age < newest {
            return Err(Error::invalid(
                field,
                age,
                format!("expected ages oldest first, none younger than the last event ({newest})"),
            ));
        }
        previous = age;
    }
    Ok(())
}

impl TrendState {
    /// Checks a state (perhaps loaded from a corrupt or hostile checkpoint): settings valid, no
    /// more samples than the capacity nor saves than [`SAVE_MEMORY`], every number finite, byte
    /// counts and ages `>= 0`, ages in order. The error names the field, the value and the rule.
    pub fn validate(&self) -> Result<()> {
        self.config.validate()?;
        self.validate_lengths()?;
        let newest = self.newest_age()?;
        self.validate_samples(newest)?;
        for &[_, offset_before] in &self.saves {
            state_number("state['saves'] offset", offset_before, false)?;
        }
        ages_in_order("state['saves'] age", self.saves.iter().map(|s| s[0]), newest)?;
        ages_in_order("state['first_free_age']", self.first_free_age.into_iter(), newest)?;
        state_number("state['offset']", self.offset, false)?;
        state_number("state['last_write_bytes']", self.last_write_bytes, true)?;
        Ok(())
    }

    /// No more samples than the capacity, nor saves than [`SAVE_MEMORY`]: memory stays bounded.
    fn validate_lengths(&self) -> Result<()> {
        if self.samples.len() > self.config.capacity {
            return Err(Error::invalid(
                "state['samples']",
                format!("{} samples", self.samples.len()),
                format!("expected at most capacity={}", self.config.capacity),
            ));
        }
        if self.saves.len() > SAVE_MEMORY {
            return Err(Error::invalid(
                "state['saves']",
                format!("{} saves", self.saves.len()),
                format!("expected at most {SAVE_MEMORY}"),
            ));
        }
        Ok(())
    }

    /// The age of the last event, which every other age must be at least (0 for an empty state).
    fn newest_age(&self) -> Result<f64> {
        match self.last_event_age {
            Some(age) => state_number("state['last_event_age']", age, true).map(|()| age),
            None if self.samples.is_empty() && self.saves.is_empty() && self.latest.is_none() => Ok(0.0),
            None => Err(Error::invalid(
                "state['last_event_age']",
                "None",
                "expected the age of the last event when the state holds samples or saves",
            )),
        }
    }

    /// The samples and the latest measurement: byte counts `>= 0`, ages in order.
    fn validate_samples(&self, newest: f64) -> Result<()> {
        for &[_, used, background] in &self.samples {
            state_number("state['samples'] used", used, true)?;
            state_number("state['samples'] background", background, false)?;
        }
        ages_in_order("state['samples'] age", self.samples.iter().map(|s| s[0]), newest)?;
        match self.latest {
            Some([age, used, avail]) => {
                ages_in_order("state['latest'] age", std::iter::once(age), newest)?;
                state_number("state['latest'] used", used, true)?;
                state_number("state['latest'] avail", avail, true)
            }
            None if !self.samples.is_empty() => Err(Error::invalid(
                "state['latest']",
                "None",
                "expected the latest measurement when the state holds samples",
            )),
            None => Ok(()),
        }
    }
}
