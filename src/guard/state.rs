//! What survives a restart: the guard's state out and back in, and a resumed run's lineage.

use super::Guard;
use crate::check::Level;
use crate::checkpoints::Checkpoint;
use crate::deletion::{Presence, MAX_RUN_ID};
use crate::error::Result;
use crate::ordering::Identity;
use crate::trend::{TrendMonitor, TrendState};

/// What survives a restart: plain values only.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardState {
    /// The level when saved (hysteresis carries over).
    pub level: Level,
    /// The largest checkpoint seen.
    pub largest: u64,
    /// Saves recorded.
    pub saves: u64,
    /// Why the earlier run stopped, if it did (for the record: a resumed run decides afresh).
    pub stop_reason: Option<String>,
    /// The trend monitor's history, its times as ages (a resumed run continues its forecast).
    pub trend: TrendState,
    /// The run's own checkpoints (device, inode), so a resumed run keeps knowing them.
    pub own: Vec<Identity>,
    /// The run's id (0: none): copies of one run (a pickled guard) are one run.
    pub run_id: u64,
}

impl Guard {
    /// The state worth keeping across a restart, trend times as ages before `t` (monotonic).
    pub fn state(&self, t: f64) -> Result<GuardState> {
        // The monitor's clock may have run ahead of `t` by a tagged event in the same instant.
        let now = self.trend.last_event_time().map_or(t, |last| t.max(last));
        Ok(GuardState {
            level: self.level,
            largest: self.largest,
            saves: self.saves,
            stop_reason: self.stop_reason.clone(),
            trend: self.trend.state(now)?,
            own: {
                let mut own: Vec<Identity> = self.run.own.iter().copied().collect();
                own.sort_unstable();
                own
            },
            run_id: self.run_id,
        })
    }

    /// Restores [`Guard::state`] at monotonic time `t`. The stop is not restored: a resumed run
    /// decides afresh (space may have been freed in between).
    pub fn load_state(&mut self, state: &GuardState, t: f64) -> Result<()> {
        self.fresh_until = 0.0;
        self.trend = TrendMonitor::from_state(&state.trend, t)?;
        self.level = state.level;
        self.largest = self.largest.max(state.largest);
        self.saves = state.saves;
        if (1..=MAX_RUN_ID).contains(&state.run_id) && state.run_id != self.run_id {
            // The same run (a pickled copy, a resumed run): announced under its id.
            self.run_id = state.run_id;
            if self.presence.take().is_some() {
                self.presence = Presence::announce(&self.dir, self.run_id).ok();
            }
        }
        self.adopt_lineage(&state.own);
        Ok(())
    }

    /// A resumed run keeps knowing its checkpoints: those of `own` still here, and the one
    /// written next after the newest of them (the checkpoint that carried this state, written
    /// once the state was taken: the one the run resumed from).
    pub(super) fn adopt_lineage(&mut self, own: &[Identity]) {
        self.run.own.extend(own.iter().copied());
        self.run.adopted.extend(own.iter().copied());
        if own.is_empty() || !self.dir.is_dir() {
            return;
        }
        let Ok(plan) = self.plan(None) else { return };
        let mut by_time: Vec<&Checkpoint> = plan.items.iter().map(|i| &i.checkpoint).collect();
        by_time.sort_by(|a, b| a.mtime.total_cmp(&b.mtime));
        let newest_own = by_time.iter().rposition(|c| own.contains(&(c.dev, c.ino)));
        let next = newest_own.and_then(|k| by_time.get(k + 1));
        if let Some(c) = next.filter(|c| c.uid == self.run.uid) {
            self.run.own.insert((c.dev, c.ino));
            self.run.adopted.insert((c.dev, c.ino));
        }
    }
}
