use super::*;

fn ckpt(name: &str, mtime: f64, complete: bool) -> Checkpoint {
    Checkpoint {
        incomplete: (!complete).then(|| "truncated".to_owned()),
        ..Checkpoint::for_test(name, mtime)
    }
}

fn last(n: usize) -> Rule {
    Rule::Last(KeepLast::new(n).expect("valid"))
}

fn policy(rules: Vec<Rule>, min_partial_age: f64) -> Policy {
    Policy::new(rules, min_partial_age, vec![]).expect("valid")
}

fn scan(cps: Vec<Checkpoint>) -> Scan {
    Scan {
        dir: "/d".into(),
        dev: 1,
        ino: 1,
        checkpoints: cps,
        links: vec![],
    }
}

fn decisions(plan: &Plan) -> Vec<(String, &'static str)> {
    plan.items
        .iter()
        .map(|i| (i.checkpoint.display_name(), i.action.name()))
        .collect()
}

#[test]
fn last_n_with_newest_complete_invariant() {
    let cps = (1..=5)
        .map(|s| ckpt(&format!("epoch=0-step={s}.ckpt"), f64::from(s), true))
        .collect();
    let policy = policy(vec![last(2)], 0.0);
    let p = plan(scan(cps), &policy, 100.0, |_| {}).expect("plan");
    let d = decisions(&p);
    assert_eq!(d.iter().filter(|(_, a)| *a == "keep").count(), 2);
    assert_eq!(d[4], ("epoch=0-step=5.ckpt".to_owned(), "keep"));
    assert!(p.items[4]
        .reasons
        .contains(&"newest complete checkpoint".to_owned()));
    assert_eq!(p.bytes_freed(), 300);
}

#[test]
fn partial_newest_is_skipped_and_never_counted() {
    let cps = vec![
        ckpt("step=1.ckpt", 1.0, true),
        ckpt("step=2.ckpt", 2.0, true),
        ckpt("step=3.ckpt", 3.0, false),
    ];
    let policy = policy(vec![last(1)], 0.0);
    let p = plan(scan(cps), &policy, 100.0, |_| {}).expect("plan");
    assert_eq!(
        decisions(&p),
        vec![
            ("step=1.ckpt".into(), "delete"),
            ("step=2.ckpt".into(), "keep"),
            ("step=3.ckpt".into(), "skip"),
        ]
    );
}

#[test]
fn old_partial_is_deleted_as_crash_leftover_only_when_old_enough() {
    let cps = vec![ckpt("step=1.ckpt", 1.0, false), ckpt("step=2.ckpt", 2.0, true)];
    let policy = policy(vec![last(5)], 3600.0);
    let young = plan(scan(cps.clone()), &policy, 100.0, |_| {}).expect("plan");
    assert_eq!(young.items[0].action, Action::Skip);
    let old = plan(scan(cps), &policy, 10_000.0, |_| {}).expect("plan");
    assert_eq!(old.items[0].action, Action::Delete);
    assert!(old.items[0].reasons[0].starts_with("partial save left by a crash"));
}

#[test]
fn best_k_by_metric_either_direction_and_overrides() {
    let cps = vec![
        ckpt("step=1-val_loss=0.5.ckpt", 1.0, true),
        ckpt("step=2-val_loss=0.2.ckpt", 2.0, true),
        ckpt("step=3-val_loss=0.9.ckpt", 3.0, true),
        ckpt("step=4-val_loss=0.4.ckpt", 4.0, true),
    ];
    let best = |mode, values: Vec<(PathBuf, f64)>| {
        let rule = KeepBest::new(1, "val_loss".into(), mode, values).expect("valid");
        let policy = policy(vec![Rule::Best(rule)], 0.0);
        decisions(&plan(scan(cps.clone()), &policy, 10.0, |_| {}).expect("plan"))
    };
    assert_eq!(best(Mode::Min, vec![])[1].1, "keep");
    assert_eq!(best(Mode::Min, vec![])[0].1, "delete");
    assert_eq!(best(Mode::Max, vec![])[2].1, "keep");
    assert_eq!(
        best(Mode::Min, vec![("step=1-val_loss=0.5.ckpt".into(), 0.01)])[0].1,
        "keep"
    );
}

#[test]
fn milestones_within_and_protected() {
    let cps = (1..=6)
        .map(|s| ckpt(&format!("step={}.ckpt", s * 500), f64::from(s), true))
        .collect();
    let policy = policy(
        vec![
            Rule::Every(KeepEvery::new(1000).expect("valid")),
            Rule::Within(KeepWithin::new(1.5).expect("valid")),
            Rule::Protect(Protect::new(vec!["step=500.ckpt".into()]).expect("valid")),
        ],
        0.0,
    );
    let p = plan(scan(cps), &policy, 6.0, |_| {}).expect("plan");
    let kept: Vec<String> = p
        .items
        .iter()
        .filter(|i| i.action == Action::Keep)
        .map(|i| i.checkpoint.display_name())
        .collect();
    assert_eq!(
        kept,
        vec![
            "step=500.ckpt",
            "step=1000.ckpt",
            "step=2000.ckpt",
            "step=2500.ckpt",
            "step=3000.ckpt"
        ]
    );
}

#[test]
fn symlink_target_is_protected() {
    let cps = vec![ckpt("step=1.ckpt", 1.0, true), ckpt("step=2.ckpt", 2.0, true)];
    let mut s = scan(cps);
    s.links.push(Link {
        name: "last.ckpt".into(),
        target: "step=1.ckpt".into(),
        target_inside: Some("step=1.ckpt".into()),
    });
    let p = plan(s, &policy(vec![last(1)], 0.0), 10.0, |_| {}).expect("plan");
    assert_eq!(p.items[0].action, Action::Keep);
    assert_eq!(p.items[0].reasons, vec!["target of symlink last.ckpt".to_owned()]);
}

#[test]
fn step_order_beats_mtime_for_stepped_names() {
    // checkpoint-100 touched after checkpoint-200: still older by step.
    let mut cps = vec![
        ckpt("step=200.ckpt", 1.0, true),
        ckpt("step=100.ckpt", 2.0, true),
        ckpt("best.ckpt", 3.0, true),
    ];
    order(&mut cps);
    let names: Vec<String> = cps.iter().map(Checkpoint::display_name).collect();
    assert_eq!(names, vec!["step=100.ckpt", "step=200.ckpt", "best.ckpt"]);
}

#[test]
fn free_space_order_never_includes_the_invariant() {
    let cps = (1..=4)
        .map(|s| ckpt(&format!("step={s}-acc=0.{s}.ckpt"), f64::from(s), true))
        .collect();
    let best = KeepBest::new(1, "acc".into(), Mode::Min, vec![]).expect("valid");
    let policy = policy(vec![last(2), Rule::Best(best)], 0.0);
    let p = plan(scan(cps), &policy, 10.0, |_| {}).expect("plan");
    let order: Vec<String> = free_space_order(&p)
        .iter()
        .map(|&i| p.items[i].checkpoint.display_name())
        .collect();
    assert_eq!(
        order,
        vec![
            "step=2-acc=0.2.ckpt",
            "step=3-acc=0.3.ckpt",
            "step=1-acc=0.1.ckpt"
        ]
    );
}

#[test]
fn rejects_bad_rules() {
    assert!(KeepLast::new(0).is_err());
    assert!(KeepEvery::new(0).is_err());
    for bad in [f64::NAN, f64::INFINITY, -1.0, 0.0] {
        assert!(KeepWithin::new(bad).is_err(), "{bad}");
    }
    assert!(KeepBest::new(1, String::new(), Mode::Min, vec![]).is_err());
    assert!(KeepBest::new(1, "loss".into(), Mode::Min, vec![("a.ckpt".into(), f64::NAN)]).is_err());
    assert!(KeepBest::new(1, "loss".into(), Mode::Min, vec![("..".into(), 1.0)]).is_err());
    assert!(Mode::from_name("avg").is_err());
    assert!(Protect::new(vec!["".into()]).is_err());
    assert!(Protect::new(vec!["ckpts/..".into()]).is_err());
    assert!(Policy::new(vec![Rule::Last(KeepLast { n: 0 })], 0.0, vec![]).is_err());
    assert!(Policy::new(vec![], -1.0, vec![]).is_err());
    assert!(Policy::new(vec![], f64::NAN, vec![]).is_err());
    for pattern in ["", "*", "*.*", "?*", ".*", "a/*.npz"] {
        assert!(
            Policy::new(vec![], 0.0, vec![pattern.into()]).is_err(),
            "{pattern}"
        );
    }
    assert!(Policy::new(vec![], 0.0, vec!["*.npz".into(), "w-??.bin".into()]).is_ok());
}

#[test]
fn rejects_a_time_that_is_not_one() {
    let cps = vec![ckpt("step=1.ckpt", 1.0, true)];
    for now in [f64::NAN, f64::INFINITY, -1.0] {
        let err = plan(scan(cps.clone()), &policy(vec![], 0.0), now, |_| {}).expect_err("rejected");
        assert!(err.to_string().starts_with("now="), "{err}");
    }
}

#[test]
fn a_metric_no_name_carries_is_an_error_naming_those_that_do() {
    let cps = vec![
        ckpt("step=1-val_loss=0.5.ckpt", 1.0, true),
        ckpt("step=2-val_acc=0.2.ckpt", 2.0, true),
    ];
    let typo = KeepBest::new(1, "val_los".into(), Mode::Min, vec![]).expect("valid");
    let err = plan(
        scan(cps.clone()),
        &policy(vec![Rule::Best(typo)], 0.0),
        10.0,
        |_| {},
    )
    .expect_err("unknown metric");
    let text = err.to_string();
    assert!(
        text.starts_with("metric='val_los'") && text.contains("val_acc, val_loss"),
        "{text}"
    );
    let given = KeepBest::new(
        1,
        "val_los".into(),
        Mode::Min,
        vec![("step=1-val_loss=0.5.ckpt".into(), 1.0)],
    )
    .expect("valid");
    assert!(plan(scan(cps), &policy(vec![Rule::Best(given)], 0.0), 10.0, |_| {}).is_ok());
    let partial_only = vec![ckpt("step=1.ckpt", 1.0, false)];
    let typo = KeepBest::new(1, "val_los".into(), Mode::Min, vec![]).expect("valid");
    assert!(
        plan(
            scan(partial_only),
            &policy(vec![Rule::Best(typo)], 0.0),
            10.0,
            |_| {}
        )
        .is_ok(),
        "nothing complete yet: nothing to rank, no error"
    );
}

#[test]
fn a_protected_path_outside_the_directory_is_rejected() {
    let cps = vec![ckpt("step=1.ckpt", 1.0, true), ckpt("step=2.ckpt", 2.0, true)];
    let outside = Protect::new(vec!["/etc/step=1.ckpt".into()]).expect("valid");
    let err = plan(
        scan(cps),
        &policy(vec![Rule::Protect(outside)], 0.0),
        10.0,
        |_| {},
    )
    .expect_err("outside");
    assert!(err.to_string().contains("its directory is another one"), "{err}");
}
