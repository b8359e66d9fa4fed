use super::grading::{FASTEST_FILL, LONGEST_FRESH};
use super::paths::inside;
use super::*;
use crate::names::OWN_PREFIX;
use crate::retention::{KeepBest, KeepLast, Mode, Policy, Protect, Rule};
use crate::testing::temp_dir;
use std::io::Write;

const MIB: u64 = 1024 * 1024;

/// A complete torch-style zip of about `bytes`, written for real (allocated blocks).
fn write_checkpoint(dir: &Path, name: &str, bytes: u64) {
    let mut data = b"PK\x03\x04".to_vec();
    data.resize(usize::try_from(bytes).expect("small") - 22, 7);
    data.extend_from_slice(b"PK\x05\x06");
    data.extend_from_slice(&[0u8; 18]);
    std::fs::File::create(dir.join(name))
        .and_then(|mut f| f.write_all(&data))
        .expect("write checkpoint");
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn config(budget: u64, policy: Option<Policy>) -> GuardConfig {
    GuardConfig {
        budget: Some(budget),
        policy,
        warn: None,
        critical: None,
        ..GuardConfig::default()
    }
}

fn guard(dir: &Path, config: GuardConfig) -> Guard {
    Guard::new(dir, &std::env::temp_dir(), &[], config, 0.0).expect("guard")
}

fn deleted(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.kind == "deleted")
        .map(|e| {
            e.message
                .split(' ')
                .nth(1)
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

#[test]
fn ranks_decide_who_measures_and_are_validated() {
    let ranks = |rank, local_rank, world_size| Ranks {
        rank,
        local_rank,
        world_size,
    };
    assert!(ranks(0, 0, 1).measures(true) && ranks(0, 0, 1).measures(false));
    assert!(ranks(4, 0, 8).measures(false) && !ranks(4, 0, 8).measures(true));
    assert!(!ranks(1, 1, 8).measures(false) && !ranks(1, 1, 8).measures(true));
    assert!(ranks(0, 0, 0).validate().is_err());
    assert!(ranks(2, 0, 2).validate().is_err());
    assert!(ranks(1, 2, 2).validate().is_err());
    assert!(ranks(1, 1, 2).validate().is_ok());
}

#[test]
fn only_the_measuring_rank_deletes() {
    let dir = temp_dir("ranks");
    for step in 1..=3 {
        write_checkpoint(&dir, &format!("step={step}.pt"), MIB);
    }
    let short = |rank, local_rank| GuardConfig {
        ranks: Ranks {
            rank,
            local_rank,
            world_size: 2,
        },
        ..config(7 * MIB / 2, None)
    };
    let mut other = guard(&dir, short(1, 1));
    other.check(1.0);
    assert!(!other.deletes() && !other.should_stop() && other.metrics().is_none());
    assert_eq!(names(&dir).len(), 3);
    let mut owner = guard(&dir, short(0, 0));
    owner.check(1.0);
    assert!(owner.deletes() && owner.metrics().is_some());
    assert_eq!(names(&dir), ["step=3.pt"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn referenced_entries_are_never_deleted() {
    let dir = temp_dir("referenced");
    for step in 1..=3 {
        write_checkpoint(&dir, &format!("step={step}.pt"), MIB);
    }
    let mut g = guard(&dir, config(9 * MIB / 2, None));
    g.set_referenced(&[
        dir.join("step=1.pt"),
        dir.join("../elsewhere.pt"),
        PathBuf::from("/etc"),
    ])
    .expect("paths");
    g.check(1.0);
    assert_eq!(names(&dir), ["step=1.pt", "step=3.pt"]);
    assert!(g.set_referenced(&[PathBuf::new()]).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn making_room_deletes_least_valuable_first_and_never_newest_best_or_protected() {
    let dir = temp_dir("ladder");
    for (step, loss) in [(1, 0.9), (2, 0.1), (3, 0.8), (4, 0.7), (5, 0.6), (6, 0.5)] {
        write_checkpoint(&dir, &format!("step={step}-val_loss={loss}.pt"), MIB);
    }
    let policy = Policy::new(
        vec![
            Rule::Last(KeepLast::new(6).expect("rule")),
            Rule::Best(KeepBest::new(1, "val_loss".into(), Mode::Min, vec![]).expect("rule")),
            Rule::Protect(Protect::new(vec!["step=3-val_loss=0.8.pt".into()]).expect("rule")),
        ],
        3600.0,
        vec![],
    )
    .expect("policy");
    // Six checkpoints held; the budget leaves room for one, the ladder needs two and a margin.
    let mut g = guard(&dir, config(7 * MIB, Some(policy)));
    g.check(1.0);
    let events = g.take_events();
    // Oldest kept-as-last first; step 2 (best) and 3 (protected) are skipped; 6 is newest.
    assert_eq!(
        deleted(&events),
        ["step=1-val_loss=0.9.pt", "step=4-val_loss=0.7.pt"]
    );
    assert!(names(&dir).contains(&"step=2-val_loss=0.1.pt".to_owned()));
    assert!(names(&dir).contains(&"step=3-val_loss=0.8.pt".to_owned()));
    assert!(names(&dir).contains(&"step=6-val_loss=0.5.pt".to_owned()));
    // Each deletion is a log record; one warning says retention degraded.
    assert!(events.iter().filter(|e| e.kind == "deleted").all(|e| !e.warning));
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == "degraded" && e.warning)
            .count(),
        1,
        "{events:?}"
    );
    assert!(!g.should_stop(), "room was made: {events:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn on_full_stop_deletes_nothing_kept_and_stops_with_a_reason() {
    let dir = temp_dir("stop");
    for step in 1..=4 {
        write_checkpoint(&dir, &format!("step={step}.pt"), MIB);
    }
    let mut cfg = config(
        5 * MIB,
        Some(Policy::new(vec![Rule::Last(KeepLast::new(4).expect("rule"))], 3600.0, vec![]).expect("policy")),
    );
    cfg.on_full = OnFull::Stop;
    let mut g = guard(&dir, cfg);
    g.check(1.0);
    assert_eq!(names(&dir).len(), 4);
    let reason = g.stop_reason().expect("stopped").to_owned();
    assert!(reason.contains("on_full='stop'"), "{reason}");
    assert!(reason.contains("budget"), "{reason}");
}

#[test]
fn the_only_checkpoint_is_never_deleted_and_a_save_that_cannot_fit_is_refused() {
    let dir = temp_dir("refuse");
    write_checkpoint(&dir, "step=1.pt", MIB);
    let mut g = guard(&dir, config(2 * MIB, None));
    let err = g
        .before_save(&dir.join("step=2.pt"), 3 * MIB, 1.0)
        .expect_err("cannot fit");
    match err {
        Error::InsufficientSpace {
            needed,
            available,
            message,
        } => {
            assert!(needed > 3 * MIB && available < MIB, "{needed} {available}");
            assert!(message.contains("tried"), "{message}");
        }
        other => unreachable!("{other:?}"),
    }
    assert_eq!(names(&dir), ["step=1.pt"]);
    assert!(g.should_stop());
}

#[test]
fn a_save_that_fits_but_leaves_no_room_for_a_final_one_stops_the_run() {
    let dir = temp_dir("last-slot");
    let mut g = guard(&dir, config(3 * MIB, None));
    g.before_save(&dir.join("step=1.pt"), MIB, 1.0).expect("fits");
    assert!(!g.should_stop());
    write_checkpoint(&dir, "step=1.pt", MIB);
    g.after_save(&dir.join("step=1.pt"), MIB, 2.0).expect("recorded");
    // The budget holds two checkpoints: the next save fits, a final one after it would not.
    g.before_save(&dir.join("step=2.pt"), MIB, 3.0)
        .expect("still fits");
    assert!(g.should_stop(), "{:?}", g.take_events());
    // The final save is allowed into the last slot.
    write_checkpoint(&dir, "step=2.pt", MIB);
    g.after_save(&dir.join("step=2.pt"), MIB, 4.0).expect("recorded");
    assert!(g.before_save(&dir.join("step=3.pt"), MIB, 5.0).is_ok() == (names(&dir).len() < 2));
}

#[test]
fn overwriting_a_checkpoint_needs_room_for_both_until_the_rename() {
    let dir = temp_dir("overwrite");
    write_checkpoint(&dir, "last.pt", 2 * MIB);
    // Room for one more 2 MiB file (plus margin), not for the replacement and a final save.
    let mut g = guard(&dir, config(5 * MIB, None));
    let fresh = g.before_save(&dir.join("new.pt"), 2 * MIB, 1.0);
    assert!(
        fresh.is_ok() && g.should_stop(),
        "a new name fits, and is the last save"
    );
    let mut g = guard(&dir, config(5 * MIB, None));
    match g.before_save(&dir.join("last.pt"), 2 * MIB, 1.0) {
        Err(Error::InsufficientSpace { needed, message, .. }) => {
            assert!(needed >= 4 * MIB, "the old file stays until the rename: {needed}");
            assert!(message.contains("of the file it replaces"), "{message}");
        }
        other => unreachable!("{other:?}"),
    }
    assert_eq!(names(&dir), ["last.pt"], "the only checkpoint is never deleted");
}

#[test]
fn levels_change_with_hysteresis_not_at_every_crossing() {
    use Level::{Ok as Fine, Warn};
    let dir = temp_dir("hysteresis");
    let mut cfg = config(100 * MIB, None);
    cfg.warn = Some(0.85);
    cfg.reserve = Reserve::Bytes(MIB);
    let mut g = guard(&dir, cfg);
    g.settle_held(); // the first walk lands before the figures below replace it
    let mut levels = Vec::new();
    for (t, held) in [86, 84, 86, 84, 82, 84].into_iter().enumerate() {
        g.held = held * MIB;
        #[allow(clippy::cast_precision_loss)]
        g.check(t as f64);
        levels.push(g.level());
    }
    assert_eq!(levels, [Warn, Warn, Warn, Warn, Fine, Fine]);
    let changes = g.take_events().into_iter().filter(|e| e.kind == "level").count();
    assert_eq!(changes, 2, "one event per level change");
}

#[test]
fn the_emergency_reserve_is_not_a_checkpoint_and_is_released_at_the_stop() {
    let dir = temp_dir("reserve");
    write_checkpoint(&dir, "step=1.pt", MIB);
    let mut cfg = config(4 * MIB, None);
    cfg.emergency_reserve = Some(MIB);
    cfg.on_full = OnFull::Stop;
    let mut g = guard(&dir, cfg);
    let (reserve, bytes) = g.status().emergency_reserve.expect("a reserve file");
    assert_eq!(bytes, MIB);
    assert_eq!(std::fs::metadata(&reserve).expect("reserve file").len(), MIB);
    let name = reserve.file_name().expect("name").to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("{OWN_PREFIX}{RESERVE_TAG}")), "{name}");
    let plan = g.plan(None).expect("plan");
    assert_eq!(plan.items.len(), 1, "the reserve file is not a checkpoint");
    write_checkpoint(&dir, "step=2.pt", MIB);
    g.after_save(&dir.join("step=2.pt"), MIB, 1.0).expect("recorded");
    assert!(g.should_stop());
    assert!(!reserve.exists(), "released for the final checkpoint");
    assert!(g.take_events().iter().any(|e| e.kind == "reserve"));
    drop(g);
    let mut cfg = config(4 * MIB, None);
    cfg.emergency_reserve = Some(MIB);
    let mut g = guard(&dir, cfg);
    let (reserve, _) = g.status().emergency_reserve.expect("a reserve file");
    assert!(reserve.exists());
    drop(g);
    assert!(!reserve.exists(), "removed when the guard goes");
}

#[test]
fn paths_outside_the_directory_and_bad_settings_are_refused() {
    let dir = temp_dir("outside");
    let mut g = guard(&dir, config(MIB, None));
    for path in [dir.join("../x.pt"), PathBuf::from("/etc/x.pt"), dir.clone()] {
        assert!(
            matches!(g.before_save(&path, 1, 1.0), Err(Error::InvalidArgument { .. })),
            "{path:?}"
        );
    }
    assert!(inside(&dir, &dir.join("sub/../x.pt")));
    let bad = [
        GuardConfig {
            warn: Some(f64::NAN),
            ..GuardConfig::default()
        },
        GuardConfig {
            critical: Some(1.5),
            ..GuardConfig::default()
        },
        GuardConfig {
            budget: Some(0),
            ..GuardConfig::default()
        },
        GuardConfig {
            hysteresis: f64::INFINITY,
            ..GuardConfig::default()
        },
        GuardConfig {
            statfs_timeout: 0.0,
            ..GuardConfig::default()
        },
        GuardConfig {
            check_every_steps: 0,
            ..GuardConfig::default()
        },
        GuardConfig {
            check_every_seconds: -1.0,
            ..GuardConfig::default()
        },
    ];
    for cfg in bad {
        let err = Guard::new(&dir, Path::new("/tmp"), &[], cfg.clone(), 0.0).expect_err("invalid");
        assert!(matches!(err, Error::InvalidArgument { .. }), "{cfg:?}: {err}");
    }
    assert!(Reserve::parse("nope").is_err() && OnFull::parse("maybe").is_err());
    assert_eq!(Reserve::parse("2MiB").expect("size"), Reserve::Bytes(2 * MIB));
}

#[test]
#[allow(clippy::float_cmp)] // the times compared are the ones handed in, unchanged
fn a_step_check_grades_the_last_figures_only_while_no_writer_could_reach_a_threshold() {
    let dir = temp_dir("fresh");
    let far = GuardConfig {
        warn: None,
        critical: None,
        ..GuardConfig::default()
    };
    let mut g = guard(&dir, far);
    g.check(100.0);
    let measured = |g: &Guard| g.trend.last_event_time().expect("measured");
    // No threshold: the window is the time the fastest writer needs to fill what is available
    // (this disk's and the temp directory's), at most LONGEST_FRESH; then a step measures.
    #[allow(clippy::cast_precision_loss)]
    let expected = g
        .spaces
        .iter()
        .filter_map(|s| s.usage.as_ref())
        .map(|u| u.avail as f64 / FASTEST_FILL)
        .fold(LONGEST_FRESH, f64::min);
    let window = g.fresh_until - 100.0;
    assert!(
        window > 0.0 && (window - expected).abs() < 1e-3 * expected,
        "{window} vs {expected}"
    );
    let checks = g.checks;
    g.check_step(100.0 + window * 0.5);
    g.check_step(100.0 + window * 0.99);
    assert_eq!(measured(&g), 100.0, "graded again, not measured");
    assert_eq!(g.checks, checks + 2, "each is a check made");
    g.check_step(100.0 + window * 1.01);
    assert_eq!(measured(&g), 100.0 + window * 1.01);

    // A save: its bytes are measured at the next step, whatever the window said.
    let path = dir.join("step=1.pt");
    g.before_save(&path, MIB, 101.0).expect("fits");
    assert_eq!(g.fresh_until, 0.0);
    write_checkpoint(&dir, "step=1.pt", MIB);
    g.after_save(&path, MIB, 101.0).expect("after");
    let window = g.fresh_until - 101.0;
    g.check_step(101.0 + window * 0.5);
    assert_eq!(measured(&g), 101.0, "after_save re-checked after the write");
    g.rescan(101.0 + window * 0.6);
    g.check_step(101.0 + window * 0.7);
    assert_eq!(
        measured(&g),
        101.0 + window * 0.7,
        "a rescan changes what the run holds: graded at once"
    );

    // A few MiB before min_free: the fastest writer needs microseconds, so every step measures.
    let avail = g.dir_usage().expect("measured").avail;
    let near = GuardConfig {
        warn: None,
        critical: None,
        min_free: Some(avail.saturating_sub(64 * MIB)),
        ..GuardConfig::default()
    };
    let mut g = guard(&dir, near);
    g.check(200.0);
    let window = g.fresh_until - 200.0;
    assert!(window > 0.0 && window < 0.001, "{window}");
    g.check_step(200.001);
    assert_eq!(measured(&g), 200.001);

    // Past a threshold (warn): measured at every step.
    let warned = GuardConfig {
        warn: Some(0.000_001),
        critical: None,
        ..GuardConfig::default()
    };
    let mut g = guard(&dir, warned);
    g.check(300.0);
    assert_eq!(g.level(), Level::Warn);
    assert!(g.fresh_until <= 300.0);
    g.check_step(300.000_001);
    assert_eq!(g.trend.last_event_time(), Some(300.000_001));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[allow(clippy::float_cmp)] // the times compared are the ones handed in, unchanged
fn under_a_budget_every_step_measures() {
    // A budget on a roomy filesystem: what fills it is known from the walks of the directory,
    // which land at a measurement, not from statfs: no step grades earlier figures again.
    let dir = temp_dir("fresh-budget");
    let config = GuardConfig {
        budget: Some(64 * MIB),
        warn: None,
        critical: None,
        ..GuardConfig::default()
    };
    let mut g = guard(&dir, config);
    g.check(100.0);
    assert_eq!(g.level(), Level::Ok);
    assert!(g.fresh_until <= 100.0, "{}", g.fresh_until);
    g.check_step(100.001);
    assert_eq!(g.trend.last_event_time(), Some(100.001));
    let _ = std::fs::remove_dir_all(&dir);
}
