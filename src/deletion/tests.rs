use super::*;
use crate::testing::temp_dir;

#[test]
fn targets_and_lock_waits_are_checked() {
    assert_eq!(Target::from_options(Some(5), None).ok(), Some(Target::Bytes(5)));
    assert_eq!(
        Target::from_options(None, Some(1.0)).ok(),
        Some(Target::Fraction(1.0))
    );
    for (bytes, fraction) in [
        (None, None),
        (Some(1), Some(0.5)),
        (None, Some(0.0)),
        (None, Some(f64::NAN)),
    ] {
        assert!(
            Target::from_options(bytes, fraction).is_err(),
            "{bytes:?} {fraction:?}"
        );
    }
    assert_eq!(
        LockWait::from_options(false, None).ok(),
        Some(LockWait::FailIfBusy)
    );
    assert_eq!(
        LockWait::from_options(true, Some(1e300)).ok(),
        Some(LockWait::Wait)
    );
    assert!(LockWait::from_options(true, Some(-1.0)).is_err());
    assert!(LockWait::from_options(false, Some(1.0)).is_err());
}

#[test]
fn a_held_lock_names_its_holder_and_a_timeout_ends_the_wait() {
    let dir = temp_dir("lock");
    let held = LockedDir::open(&dir, None, LockWait::Wait, DirLink::Refuse).expect("lock");
    let err = LockedDir::open(&dir, None, LockWait::FailIfBusy, DirLink::Refuse)
        .err()
        .expect("busy");
    assert!(
        matches!(&err, Error::Busy { holders, .. } if holders.contains(&std::process::id())),
        "{err}"
    );
    let started = Instant::now();
    let timeout = LockWait::Timeout(Duration::from_millis(60));
    assert!(matches!(
        LockedDir::open(&dir, None, timeout, DirLink::Refuse),
        Err(Error::Busy { .. })
    ));
    assert!(started.elapsed() >= Duration::from_millis(60));
    drop(held);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn orphans_under_a_symlinked_temp_dir_are_found_and_removed() {
    let root = temp_dir("orphans");
    let (ckpts, real, link) = (root.join("ckpts"), root.join("real"), root.join("tmp"));
    std::fs::create_dir_all(&ckpts).expect("mkdir");
    std::fs::create_dir_all(real.join("tmp-checkpoint-3")).expect("mkdir");
    std::fs::write(real.join("step=4.ckpt.tmp"), b"partial").expect("write");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&real).expect("stat"));
    let found = find_orphans(&ckpts, Some(&link), 0.0, uid, crate::retention::now() + 1.0).expect("find");
    assert_eq!(found.len(), 2, "{found:?}");
    let outcomes = remove_orphans(&found);
    assert_eq!(outcomes, vec![Outcome::Deleted, Outcome::Deleted]);
    assert_eq!(std::fs::read_dir(&real).expect("list").count(), 0);
    assert!(find_orphans(&ckpts, None, f64::NAN, uid, 0.0).is_err());
    let _ = std::fs::remove_dir_all(&root);
}
