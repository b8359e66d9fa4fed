//! Which checkpoint is newer: the order retention, making room and `latest_complete` rely on.
//!
//! Names carry an order number: the step where a name has one, else the epoch (only where no
//! checkpoint in the directory names a step, so an epoch is never compared with a step). Numbered
//! checkpoints are ordered by that number within a *generation*; the rest keep their place by
//! write time.
//!
//! Generations come from one of two places:
//!
//! - **A run** ([`RunView`]) knows what it wrote (device and inode of each save, and of the
//!   checkpoint it resumed from). Checkpoints that were there before it started, or that belong
//!   to another user, form the older generation, whatever their step; its own saves (and, unless
//!   another live run guards the directory, what appeared meanwhile) the newer one.
//! - **Without a run** the directory is read by write time: a drop of the order number between
//!   two consecutive saves starts a new generation. A run restarted in the same directory leaves
//!   a whole later generation of lower steps (the later generation is the newer one); one old
//!   checkpoint copied or touched leaves a single out-of-place file (it must not jump ahead of
//!   later steps). Where the two readings disagree and neither is clear, [`read_directory`] says
//!   so instead of guessing.

use std::collections::{BTreeMap, HashSet};

use crate::checkpoints::Checkpoint;

/// A checkpoint's identity: device and inode.
pub type Identity = (u64, u64);

/// How to order checkpoints whose steps and write times disagree (`prune --order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderChoice {
    /// Read generations where that is unambiguous; report the ambiguity otherwise.
    Auto,
    /// By step (epoch) only: a later write of a lower step is an old checkpoint copied or touched.
    Step,
    /// By generation of writes: a later run of lower steps is a restart, newer than the earlier.
    Time,
}

impl OrderChoice {
    /// `'auto'`, `'step'` or `'time'`.
    pub fn name(self) -> &'static str {
        match self {
            OrderChoice::Auto => "auto",
            OrderChoice::Step => "step",
            OrderChoice::Time => "time",
        }
    }

    /// The choice [`OrderChoice::name`] names, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        [OrderChoice::Auto, OrderChoice::Step, OrderChoice::Time]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// What a run knows about its checkpoint directory (kept by the guard).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunView {
    /// Checkpoints this run wrote, and the one it resumed from.
    pub own: HashSet<Identity>,
    /// The newest save of this run: never deleted.
    pub newest_own: Option<Identity>,
    /// Checkpoints present when the run started (those of `own` excepted): older than every save
    /// of the run.
    pub before: HashSet<Identity>,
    /// Checkpoints taken over from a state (the lineage a resumed run continues): while another
    /// live run guards the directory (possibly the very run that wrote them) they are kept.
    pub adopted: HashSet<Identity>,
    /// The run's user: another user's checkpoint never outranks the run's.
    pub uid: u32,
    /// Another live run guards the directory: only this run's own checkpoints may be deleted, and
    /// only they count toward the rules.
    pub shared: bool,
}

impl RunView {
    /// Whether `c` is one of this run's own checkpoints.
    pub fn owns(&self, c: &Checkpoint) -> bool {
        self.own.contains(&(c.dev, c.ino))
    }

    /// 1 for the run's generation, 0 for the older one (see the module documentation).
    fn generation(&self, c: &Checkpoint) -> u32 {
        let id = (c.dev, c.ino);
        if self.own.contains(&id) {
            return 1;
        }
        let older = self.before.contains(&id) || c.uid != self.uid || self.shared;
        u32::from(!older)
    }

    /// Why the plan must keep `c` whatever the rules say, if it must.
    pub fn keeps(&self, c: &Checkpoint) -> Option<&'static str> {
        let id = (c.dev, c.ino);
        if self.newest_own == Some(id) {
            Some("newest save of this run")
        } else if self.shared && self.adopted.contains(&id) {
            Some("written before this run resumed, and another live run guards this directory")
        } else if self.own.contains(&id) {
            None
        } else if c.uid != self.uid {
            Some("another user's checkpoint: never deleted by this run")
        } else if self.shared {
            Some("not written by this run, and another live run guards this directory")
        } else {
            None
        }
    }

    /// Whether `c` counts toward the retention rules: not another user's, and with another live
    /// run in the directory, only the run's own.
    pub fn counts(&self, c: &Checkpoint) -> bool {
        self.own.contains(&(c.dev, c.ino)) || (c.uid == self.uid && !self.shared)
    }
}

/// The order number of each checkpoint: its step; its epoch where no checkpoint carries a step.
fn ordinals(checkpoints: &[Checkpoint]) -> Vec<Option<u64>> {
    let any_step = checkpoints.iter().any(|c| c.info.step.is_some());
    checkpoints
        .iter()
        .map(|c| if any_step { c.info.step } else { c.info.epoch })
        .collect()
}

/// Indices by write time (then name), oldest first.
fn by_time(checkpoints: &[Checkpoint]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..checkpoints.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&checkpoints[a], &checkpoints[b]);
        a.mtime.total_cmp(&b.mtime).then_with(|| a.name.cmp(&b.name))
    });
    order
}

/// Indices of `members` oldest to newest within one generation: numbered checkpoints keep the
/// write-time order's slots among themselves but are arranged by number in them, so a copied or
/// touched file cannot jump ahead of a later step (the Hugging Face mtime bugs).
fn within(checkpoints: &[Checkpoint], numbers: &[Option<u64>], members: &[usize]) -> Vec<usize> {
    let mut slots: Vec<usize> = members.to_vec();
    slots.sort_by(|&a, &b| {
        let (ca, cb) = (&checkpoints[a], &checkpoints[b]);
        ca.mtime.total_cmp(&cb.mtime).then_with(|| ca.name.cmp(&cb.name))
    });
    let numbered: Vec<usize> = (0..slots.len())
        .filter(|&k| numbers[slots[k]].is_some())
        .collect();
    let mut sorted: Vec<usize> = numbered.iter().map(|&k| slots[k]).collect();
    sorted.sort_by(|&a, &b| {
        numbers[a]
            .cmp(&numbers[b])
            .then_with(|| checkpoints[a].mtime.total_cmp(&checkpoints[b].mtime))
            .then_with(|| checkpoints[a].name.cmp(&checkpoints[b].name))
    });
    for (k, index) in numbered.into_iter().zip(sorted) {
        slots[k] = index;
    }
    slots
}

/// Rearranges `checkpoints` oldest to newest: generation by generation (lowest first), by
/// order number within each.
fn arrange(checkpoints: &mut Vec<Checkpoint>, generation: &[u32]) {
    let numbers = ordinals(checkpoints);
    let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, &g) in generation.iter().enumerate() {
        groups.entry(g).or_default().push(i);
    }
    let order: Vec<usize> = groups
        .values()
        .flat_map(|members| within(checkpoints, &numbers, members))
        .collect();
    let mut taken: Vec<Option<Checkpoint>> = std::mem::take(checkpoints).into_iter().map(Some).collect();
    checkpoints.extend(order.into_iter().filter_map(|i| taken[i].take()));
}

/// Oldest to newest by step (epoch): one generation.
pub fn by_step(checkpoints: &mut Vec<Checkpoint>) {
    let one = vec![0; checkpoints.len()];
    arrange(checkpoints, &one);
}

/// Oldest to newest as a run sees its directory (see [`RunView`]).
pub fn for_run(checkpoints: &mut Vec<Checkpoint>, run: &RunView) {
    let generation: Vec<u32> = checkpoints.iter().map(|c| run.generation(c)).collect();
    arrange(checkpoints, &generation);
}

/// The generation of each checkpoint when the directory is read by write time: a new one starts
/// wherever the order number drops from one save to the next. Unnumbered checkpoints join the
/// generation current at their write time.
fn write_generations(checkpoints: &[Checkpoint]) -> Vec<u32> {
    let numbers = ordinals(checkpoints);
    let mut generation = vec![0u32; checkpoints.len()];
    let (mut current, mut last) = (0u32, None::<u64>);
    for i in by_time(checkpoints) {
        if let Some(n) = numbers[i] {
            if last.is_some_and(|l| n < l) {
                current += 1;
            }
            last = Some(n);
        }
        generation[i] = current;
    }
    generation
}

/// Oldest to newest by generations of writes (the restart reading).
pub fn by_generations(checkpoints: &mut Vec<Checkpoint>) {
    let generation = write_generations(checkpoints);
    arrange(checkpoints, &generation);
}

/// How a directory reads without a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// Steps and write times agree, or one reading is clear: use it.
    Clear(OrderChoice),
    /// They disagree and neither reading is clear: the message names both orders.
    Ambiguous(String),
}

/// Reads the directory: [`OrderChoice::Step`] where steps and write times agree or one old
/// checkpoint was plainly copied or touched, [`OrderChoice::Time`] where later generations of lower
/// steps plainly are restarts, [`Reading::Ambiguous`] otherwise.
///
/// A restart is plain when every later generation holds at least two checkpoints, all below every
/// step written before it. A touch is plain when a single checkpoint is out of place and either
/// lies inside the steps written before it or is followed by saves past them.
pub fn read_directory(checkpoints: &[Checkpoint]) -> Reading {
    let numbers = ordinals(checkpoints);
    let timeline: Vec<u64> = by_time(checkpoints)
        .into_iter()
        .filter_map(|i| numbers[i])
        .collect();
    let mut segments: Vec<Vec<u64>> = Vec::new();
    for &n in &timeline {
        match segments.last_mut() {
            Some(segment) if segment.last().is_some_and(|&l| n >= l) => segment.push(n),
            _ => segments.push(vec![n]),
        }
    }
    if segments.len() <= 1 {
        return Reading::Clear(OrderChoice::Step);
    }
    let mut lowest_before = u64::MAX;
    let mut restart = true;
    for (j, segment) in segments.iter().enumerate() {
        let (low, high) = (segment[0], segment[segment.len() - 1]);
        if j > 0 && (segment.len() < 2 || high >= lowest_before) {
            restart = false;
        }
        lowest_before = lowest_before.min(low);
    }
    if restart {
        return Reading::Clear(OrderChoice::Time);
    }
    // Out of place: written after a higher number.
    let mut highest = None::<u64>;
    let mut lowest = u64::MAX;
    let mut touched = Vec::new();
    for (k, &n) in timeline.iter().enumerate() {
        if highest.is_some_and(|h| n < h) {
            touched.push((k, n, lowest, highest.unwrap_or(0)));
        }
        highest = highest.max(Some(n));
        lowest = lowest.min(n);
    }
    if let [(k, n, low, high)] = touched[..] {
        let inside = n > low;
        let followed = timeline[k + 1..].iter().any(|&later| later > high);
        if inside || followed {
            return Reading::Clear(OrderChoice::Step);
        }
    }
    Reading::Ambiguous(describe_both(checkpoints))
}

/// The newest few names by step and by generations of writes, for the ambiguity message.
fn describe_both(checkpoints: &[Checkpoint]) -> String {
    let newest = |mut v: Vec<Checkpoint>, arrange: fn(&mut Vec<Checkpoint>)| {
        arrange(&mut v);
        let names: Vec<String> = v.iter().rev().take(4).map(Checkpoint::display_name).collect();
        names.join(", ")
    };
    format!(
        "steps and write times disagree, and neither a restart nor a copied checkpoint explains it \
         plainly: newest first by step: {}; by time (a restart in the same directory): {}",
        newest(checkpoints.to_vec(), by_step),
        newest(checkpoints.to_vec(), by_generations)
    )
}

/// Arranges `checkpoints` as `choice` says; with [`OrderChoice::Auto`], as the directory reads
/// (step order when ambiguous). Returns the reading taken and the ambiguity, if any.
pub fn arrange_as(checkpoints: &mut Vec<Checkpoint>, choice: OrderChoice) -> (OrderChoice, Option<String>) {
    let (taken, ambiguity) = match choice {
        OrderChoice::Auto => match read_directory(checkpoints) {
            Reading::Clear(taken) => (taken, None),
            Reading::Ambiguous(why) => (OrderChoice::Step, Some(why)),
        },
        other => (other, None),
    };
    if taken == OrderChoice::Time {
        by_generations(checkpoints);
    } else {
        by_step(checkpoints);
    }
    (taken, ambiguity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ckpt(name: &str, mtime: f64) -> Checkpoint {
        Checkpoint::for_test(name, mtime)
    }

    fn steps(list: &[(u64, f64)]) -> Vec<Checkpoint> {
        list.iter()
            .map(|&(s, t)| ckpt(&format!("step={s}.pt"), t))
            .collect()
    }

    fn names(v: &[Checkpoint]) -> Vec<String> {
        v.iter().map(Checkpoint::display_name).collect()
    }

    #[test]
    fn a_restart_with_lower_steps_reads_as_the_newer_generation() {
        let cps = steps(&[(5000, 1.0), (100, 2.0), (200, 3.0), (300, 4.0)]);
        assert_eq!(read_directory(&cps), Reading::Clear(OrderChoice::Time));
        let mut v = cps;
        arrange_as(&mut v, OrderChoice::Auto);
        assert_eq!(names(&v).last().map(String::as_str), Some("step=300.pt"));
        assert_eq!(names(&v)[0], "step=5000.pt");
    }

    #[test]
    fn one_touched_checkpoint_keeps_its_place_by_step() {
        // step=100 touched after 300, then the run went on to 400.
        let cps = steps(&[(200, 1.0), (300, 2.0), (100, 3.0), (400, 4.0)]);
        assert_eq!(read_directory(&cps), Reading::Clear(OrderChoice::Step));
        let cps = steps(&[(100, 1.0), (200, 2.0), (300, 3.0), (200, 4.0)]);
        assert_eq!(read_directory(&cps), Reading::Clear(OrderChoice::Step));
    }

    #[test]
    fn one_new_low_step_after_higher_ones_is_ambiguous() {
        let cps = steps(&[(300, 1.0), (400, 2.0), (500, 3.0), (100, 4.0)]);
        let reading = read_directory(&cps);
        let Reading::Ambiguous(why) = reading else {
            unreachable!("expected an ambiguity, got {reading:?}")
        };
        assert!(
            why.contains("by step: step=500.pt")
                && why.contains("by time (a restart in the same directory): step=100.pt"),
            "{why}"
        );
    }

    #[test]
    fn agreeing_steps_and_times_are_clear() {
        let cps = steps(&[(100, 1.0), (200, 2.0), (300, 3.0)]);
        assert_eq!(read_directory(&cps), Reading::Clear(OrderChoice::Step));
    }

    #[test]
    fn epochs_order_where_no_name_has_a_step() {
        let mut v = vec![
            ckpt("checkpoint_epoch_11.pt", 1.0),
            ckpt("checkpoint_epoch_2.pt", 5.0),
            ckpt("epoch=5.pt", 2.0),
        ];
        by_step(&mut v);
        assert_eq!(
            names(&v),
            ["checkpoint_epoch_2.pt", "epoch=5.pt", "checkpoint_epoch_11.pt"]
        );
    }

    /// A small deterministic generator (xorshift): random sets without a new dependency.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_sets_keep_the_orders_promises() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..500 {
            let n = usize::try_from(xorshift(&mut seed) % 12).unwrap_or(0) + 1;
            let mut v: Vec<Checkpoint> = (0..n)
                .map(|k| {
                    let step = xorshift(&mut seed) % 50;
                    let mut c = ckpt(
                        &format!("step={step}-k{k}.pt"),
                        (xorshift(&mut seed) % 1000) as f64,
                    );
                    c.ino = k as u64;
                    c.uid = u32::from(xorshift(&mut seed) % 4 == 0);
                    c
                })
                .collect();
            let mut run = RunView::default();
            for c in &v {
                match xorshift(&mut seed) % 3 {
                    0 => drop(run.own.insert((c.dev, c.ino))),
                    1 => drop(run.before.insert((c.dev, c.ino))),
                    _ => {}
                }
            }
            let mut arranged = v.clone();
            for_run(&mut arranged, &run);
            let mut inos: Vec<u64> = arranged.iter().map(|c| c.ino).collect();
            inos.sort_unstable();
            assert_eq!(inos, (0..n as u64).collect::<Vec<_>>(), "a permutation");
            // Never a checkpoint of the older generation after one of the run's own.
            let first_own = arranged.iter().position(|c| run.owns(c)).unwrap_or(n);
            assert!(arranged[first_own..].iter().all(|c| run.generation(c) == 1));
            // Where steps grow with time, every reading is the time order.
            v.sort_by(|a, b| a.mtime.total_cmp(&b.mtime).then_with(|| a.name.cmp(&b.name)));
            let mut step = 0;
            for c in &mut v {
                step += 1 + xorshift(&mut seed) % 5;
                c.info.step = Some(step);
            }
            assert_eq!(read_directory(&v), Reading::Clear(OrderChoice::Step));
            let mut by_time = v.clone();
            by_generations(&mut by_time);
            assert_eq!(names(&by_time), names(&v));
        }
    }

    #[test]
    fn a_run_ranks_what_was_there_before_and_other_users_below_its_saves() {
        let mut v = steps(&[(5000, 1.0), (100, 2.0), (200, 3.0), (9000, 4.0)]);
        v[3].uid = 1234; // another user's, planted meanwhile
        let mut run = RunView {
            uid: 0,
            ..RunView::default()
        };
        run.before.insert((v[0].dev, v[0].ino));
        for c in &v[1..3] {
            run.own.insert((c.dev, c.ino));
        }
        for_run(&mut v, &run);
        assert_eq!(
            names(&v),
            ["step=5000.pt", "step=9000.pt", "step=100.pt", "step=200.pt"]
        );
    }
}
