use super::*;
use std::fs;
use std::os::unix::fs::symlink;

fn tree() -> tempdir::Dir {
    tempdir::Dir::new("du")
}

/// A throwaway directory removed on drop (no test dependency needed).
mod tempdir {
    use std::path::PathBuf;
    pub struct Dir(pub PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let path = std::env::temp_dir().join(format!("diskguard-{tag}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&path).expect("create temp dir");
            Dir(path)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn options(threads: usize) -> Options {
    Options::new(Some(threads), true).expect("valid options")
}

#[test]
fn sums_apparent_sizes_per_child_and_counts_hard_links_once() {
    let t = tree();
    let root = &t.0;
    fs::create_dir_all(root.join("a/deep/er")).expect("mkdir");
    fs::create_dir(root.join("b")).expect("mkdir");
    fs::write(root.join("a/deep/er/x"), vec![1u8; 10_000]).expect("write");
    fs::write(root.join("a/y"), vec![1u8; 5_000]).expect("write");
    fs::write(root.join("top"), vec![1u8; 7]).expect("write");
    fs::hard_link(root.join("a/y"), root.join("b/y-link")).expect("link");
    symlink("/", root.join("b/escape")).expect("symlink");
    for threads in [1, 4] {
        let r = scan(root, options(threads)).expect("scan");
        let by_name: HashMap<_, _> = r.children.iter().map(|c| (c.name.clone(), c)).collect();
        assert_eq!(by_name[OsStr::new("a")].sizes.files, 2);
        assert!(by_name[OsStr::new("a")].sizes.apparent >= 15_000);
        assert_eq!(by_name[OsStr::new("top")].sizes.apparent, 7);
        // b holds the second link of y (not counted again) and a symlink (itself, not /).
        let b = by_name[OsStr::new("b")].sizes;
        assert_eq!((b.files, b.dirs), (1, 1), "{b:?}");
        assert!(b.apparent < 5_000, "{b:?}");
        assert_eq!(r.total.files, 4);
        assert_eq!(r.total.dirs, 5);
        assert_eq!(r.errors, 0);
        assert!(!r.cancelled);
    }
}

/// 20 nested 250-byte names (over 5,000 bytes of path, past `PATH_MAX`) with a file at the
/// bottom: everything is measured, nothing is unreadable.
#[test]
fn depth_is_no_limit() {
    use nix::fcntl::OFlag;
    let t = tree();
    let name = "d".repeat(250);
    let mut fd = openat(
        AT_FDCWD,
        &t.0,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY,
        Mode::empty(),
    )
    .expect("open");
    for _ in 0..20 {
        nix::sys::stat::mkdirat(&fd, name.as_str(), Mode::from_bits_truncate(0o755)).expect("mkdirat");
        fd = openat(
            &fd,
            name.as_str(),
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .expect("open");
    }
    let file = openat(
        &fd,
        "bottom",
        OFlag::O_CREAT | OFlag::O_WRONLY,
        Mode::from_bits_truncate(0o644),
    )
    .expect("create");
    nix::unistd::write(&file, &vec![1u8; 100_000]).expect("write");
    for threads in [1, 3] {
        let r = scan(&t.0, options(threads)).expect("scan");
        assert_eq!(r.errors, 0, "{:?}", r.error_samples);
        assert_eq!((r.total.files, r.total.dirs), (1, 21));
        assert!(r.total.apparent >= 100_000, "{:?}", r.total);
    }
}

#[test]
fn a_file_root_is_its_own_total_and_a_missing_root_is_an_error() {
    let t = tree();
    let file = t.0.join("f");
    fs::write(&file, b"hello").expect("write");
    let r = scan(&file, options(2)).expect("scan");
    assert_eq!((r.total.apparent, r.total.files, r.children.len()), (5, 1, 0));
    let err = scan(&t.0.join("missing"), options(2)).expect_err("missing root");
    assert_eq!(err.errno(), Some(nix::errno::Errno::ENOENT as i32));
}

#[test]
fn threads_out_of_range_are_refused() {
    assert!(Options::new(Some(0), true).is_err());
    assert!(Options::new(Some(MAX_THREADS + 1), true).is_err());
}

#[test]
fn a_cancelled_scan_says_so_and_a_late_cancel_changes_nothing() {
    let t = tree();
    for i in 0..50 {
        fs::create_dir_all(t.0.join(format!("d{i}/e"))).expect("mkdir");
    }
    let cancelled = run(&t.0, options(2), &AtomicBool::new(true), &Progress::default()).expect("scan");
    assert!(cancelled.cancelled);
    assert_eq!(cancelled.total.dirs, 51, "the root and its listed entries only");
    let running = Scan::start(&t.0, options(2)).expect("start");
    let done = running
        .wait(Duration::from_secs(30))
        .expect("finishes")
        .expect("report");
    running.cancel();
    assert!(!done.cancelled);
    assert_eq!(done.total.dirs, 101);
}

#[test]
fn root_level_files_past_the_limit_share_one_entry() {
    let t = tree();
    for i in 0..MAX_LISTED_FILES + 5 {
        fs::write(t.0.join(format!("f{i}")), b"").expect("write");
    }
    let r = scan(&t.0, options(2)).expect("scan");
    assert_eq!(r.children.len(), MAX_LISTED_FILES + 1);
    let other = r.children.iter().find(|c| c.name == OTHER_FILES).expect("bucket");
    assert_eq!(other.sizes.files, 5);
    assert_eq!(r.total.files, (MAX_LISTED_FILES + 5) as u64);
}

#[test]
fn error_sample_count_is_bounded() {
    let mut tally = Tally::default();
    for _ in 0..100 {
        tally.error("cannot open", Path::new("/x"), "denied");
    }
    assert_eq!(tally.errors, 100);
    assert_eq!(tally.error_samples.len(), ERROR_SAMPLES);
}
