//! The run's identity in its directory: what was there before it, what it wrote, who else is there.

use std::path::Path;

use super::paths::{entry_under, identity_of, lexical_absolute};
use super::{Event, Guard};
use crate::checkpoints::Checkpoint;
use crate::deletion::Presence;
use crate::ordering::Identity;
use crate::retention::Plan;

impl Guard {
    /// The first time the directory is seen (at the start, or once a save created it): what is
    /// there now was not written by this run, and the run announces itself there.
    pub(super) fn see_dir(&mut self) {
        if self.dir_seen || !self.deletes() || !self.dir.is_dir() {
            return;
        }
        self.dir_seen = true;
        if let Ok(fd) = crate::checkpoints::open_dir(&self.dir) {
            if let Ok(scan) = crate::checkpoints::scan(&fd, &self.dir, &[]) {
                let own = &self.run.own;
                let before = scan
                    .checkpoints
                    .iter()
                    .map(|c| (c.dev, c.ino))
                    .filter(|id| !own.contains(id));
                self.run.before.extend(before);
            }
        }
        match Presence::announce(&self.dir, self.run_id) {
            Ok(presence) => self.presence = Some(presence),
            Err(err) => self.events.push(Event::new(
                "error",
                false,
                format!("cannot announce this run in {}: {err}", self.dir.display()),
            )),
        }
    }

    /// Whether another live run guards the directory now; said once when it starts to.
    pub(super) fn refresh_shared(&mut self) {
        let shared = self.presence.as_ref().is_some_and(Presence::others);
        if shared && !self.told.shared {
            self.told.shared = true;
            self.events.push(Event::new(
                "shared",
                true,
                format!(
                    "another live run guards {}: this run deletes only the checkpoints it wrote \
                     itself, never another run's (give each run its own directory to keep their \
                     retention apart)",
                    self.dir.display()
                ),
            ));
        }
        self.run.shared = shared;
    }

    /// The entry of the directory that `path` is or is under, and its identity.
    pub(super) fn entry_identity(&self, path: &Path) -> Option<Identity> {
        let entry = entry_under(&self.dir, &lexical_absolute(path))?;
        identity_of(&self.dir.join(entry))
    }

    /// Names, once each, the checkpoints this run did not write whose step is above its newest
    /// save's: they rank below the run's saves (they were there before it, or are another
    /// user's), whatever their step.
    pub(super) fn tell_foreign(&mut self, plan: &Plan) {
        let Some(newest) = self.run.newest_own else { return };
        let step_of = |c: &Checkpoint| c.info.step.or(c.info.epoch);
        let Some(own_step) = plan
            .items
            .iter()
            .find(|i| (i.checkpoint.dev, i.checkpoint.ino) == newest)
            .and_then(|i| step_of(&i.checkpoint))
        else {
            return;
        };
        let mut named = Vec::new();
        for item in &plan.items {
            let c = &item.checkpoint;
            let id = (c.dev, c.ino);
            if self.run.own.contains(&id) || step_of(c).is_none_or(|s| s <= own_step) {
                continue;
            }
            if self.told.foreign.insert(id) {
                named.push(c.display_name());
            }
        }
        if !named.is_empty() {
            self.events.push(Event::new(
                "foreign",
                true,
                format!(
                    "{} in {} {} a higher step than this run's newest save but {} not written by \
                     this run (left by an earlier run, or another user's): {} as older than every \
                     save of this run",
                    named.join(", "),
                    self.dir.display(),
                    if named.len() == 1 { "has" } else { "have" },
                    if named.len() == 1 { "was" } else { "were" },
                    if named.len() == 1 {
                        "it counts"
                    } else {
                        "they count"
                    },
                ),
            ));
        }
    }
}
