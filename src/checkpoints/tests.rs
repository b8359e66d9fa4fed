use super::*;
use crate::testing::temp_dir;
use std::io::Write;

fn zip_bytes(complete: bool) -> Vec<u8> {
    let mut v = b"PK\x03\x04".to_vec();
    v.extend_from_slice(&[0u8; 100]);
    if complete {
        v.extend_from_slice(b"PK\x05\x06");
        v.extend_from_slice(&[0u8; 18]);
    }
    v
}

fn safetensors_bytes(truncate: usize) -> Vec<u8> {
    let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header);
    v.extend_from_slice(&[0u8; 8]);
    v.truncate(v.len() - truncate);
    v
}

#[test]
fn finds_and_verifies_every_kind() {
    let dir = temp_dir("kinds");
    let write = |name: &str, bytes: &[u8]| {
        std::fs::File::create(dir.join(name))
            .and_then(|mut f| f.write_all(bytes))
            .expect("write");
    };
    write("epoch=1-step=10.ckpt", &zip_bytes(true));
    write("epoch=2-step=20.ckpt", &zip_bytes(false));
    write("model.safetensors", &safetensors_bytes(0));
    write("cut.safetensors", &safetensors_bytes(3));
    write("empty.pt", b"");
    write("x.ckpt.tmp", b"abc");
    write("notes.txt", b"hello");
    std::fs::create_dir_all(dir.join("checkpoint-500")).expect("mkdir");
    write("checkpoint-500/trainer_state.json", b"{}");
    std::fs::create_dir_all(dir.join("checkpoint-600")).expect("mkdir");
    std::fs::create_dir_all(dir.join("step-7")).expect("mkdir");
    write("step-7/__0_0.distcp", b"x");
    std::fs::create_dir_all(dir.join("step-8")).expect("mkdir");
    write("step-8/.metadata", b"x");
    std::fs::create_dir_all(dir.join("tmp-checkpoint-700")).expect("mkdir");
    std::os::unix::fs::symlink("epoch=1-step=10.ckpt", dir.join("last.ckpt")).expect("symlink");
    std::os::unix::fs::symlink("/etc/passwd", dir.join("evil.ckpt")).expect("symlink");

    let fd = open_dir(&dir).expect("open");
    let mut scan = scan(&fd, &dir, &[]).expect("scan");
    for c in &mut scan.checkpoints {
        verify_file(&fd, c);
    }
    let state = |n: &str| {
        scan.checkpoints
            .iter()
            .find(|c| c.name == n)
            .map(|c| c.incomplete.clone())
            .expect(n)
    };
    assert_eq!(state("epoch=1-step=10.ckpt"), None);
    assert!(state("epoch=2-step=20.ckpt").is_some_and(|s| s.contains("end-of-central-directory")));
    assert_eq!(state("model.safetensors"), None);
    assert!(state("cut.safetensors").is_some());
    assert_eq!(state("empty.pt").as_deref(), Some("empty file"));
    assert!(state("x.ckpt.tmp").is_some());
    assert_eq!(state("checkpoint-500"), None);
    assert!(state("checkpoint-600").is_some());
    assert!(state("step-7").is_some());
    assert_eq!(state("step-8"), None);
    assert!(state("tmp-checkpoint-700").is_some());
    assert!(!scan.checkpoints.iter().any(|c| c.name == "notes.txt"));
    assert_eq!(scan.links.len(), 2);
    let last = scan.links.iter().find(|l| l.name == "last.ckpt").expect("link");
    assert_eq!(
        last.target_inside.as_deref(),
        Some(OsStr::new("epoch=1-step=10.ckpt"))
    );
    let evil = scan.links.iter().find(|l| l.name == "evil.ckpt").expect("link");
    assert_eq!(
        evil.target_inside, None,
        "points outside: protects nothing, followed never"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hard_links_count_once_and_directories_recursively() {
    let dir = temp_dir("sizes");
    std::fs::write(dir.join("a.pt"), vec![1u8; 64 * 1024]).expect("write");
    std::fs::hard_link(dir.join("a.pt"), dir.join("b.pt")).expect("link");
    std::fs::create_dir_all(dir.join("checkpoint-1/sub")).expect("mkdir");
    std::fs::write(dir.join("checkpoint-1/sub/w.bin"), vec![1u8; 128 * 1024]).expect("write");
    std::fs::write(dir.join("checkpoint-1/trainer_state.json"), b"{}").expect("write");
    let scan = scan(&open_dir(&dir).expect("open"), &dir, &[]).expect("scan");
    let sizes: Vec<(String, u64, u64)> = scan
        .checkpoints
        .iter()
        .map(|c| (c.display_name(), c.size, c.apparent_size))
        .collect();
    let total_apparent: u64 = scan
        .checkpoints
        .iter()
        .filter(|c| c.name != "checkpoint-1")
        .map(|c| c.apparent_size)
        .sum();
    assert_eq!(total_apparent, 64 * 1024, "{sizes:?}");
    let hf = scan
        .checkpoints
        .iter()
        .find(|c| c.name == "checkpoint-1")
        .expect("dir");
    // The files plus the `sub` directory entry itself (whose size depends on the filesystem).
    assert!(
        (128 * 1024 + 2..128 * 1024 + 2 + 65536).contains(&hf.apparent_size),
        "{sizes:?}"
    );
    assert!(hf.size >= 128 * 1024);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn large_directories_are_statted_in_parallel_in_order() {
    use std::os::unix::fs::MetadataExt;
    let dir = temp_dir("many");
    for i in 0..3000 {
        std::fs::write(dir.join(format!("step={i}.pt")), vec![1u8; 1 + i % 7]).expect("write");
    }
    let scan = scan(&open_dir(&dir).expect("open"), &dir, &[]).expect("scan");
    assert_eq!(scan.checkpoints.len(), 3000);
    for c in &scan.checkpoints {
        let meta = std::fs::symlink_metadata(dir.join(&c.name)).expect("stat");
        assert_eq!(
            (c.ino, c.apparent_size),
            (meta.ino(), meta.size()),
            "{}",
            c.display_name()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refuses_root_and_symlinked_directories() {
    assert!(matches!(
        open_dir(Path::new("/")),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        open_dir(Path::new("//")),
        Err(Error::InvalidArgument { .. })
    ));
    let dir = temp_dir("symdir");
    std::os::unix::fs::symlink(&dir, dir.with_extension("link")).expect("symlink");
    let err = open_dir(&dir.with_extension("link")).expect_err("symlink refused");
    assert!(
        matches!(err.errno(), Some(nix::libc::ELOOP | nix::libc::ENOTDIR)),
        "{err}"
    );
    let _ = std::fs::remove_file(dir.with_extension("link"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The header is parsed in pieces: a key or a number split across two pieces, spaces,
/// several tensors, and the largest end wins, as when it is read whole.
#[test]
fn data_offsets_read_in_pieces_match_reading_whole() {
    let header: &[u8] = br#"{"a":{"data_offsets":[0, 8]},"__metadata__":{"x":"]"},"b":{"data_offsets" : [ 8 ,24 ] },"c":{"data_offsets":[1,2]}}"#;
    let whole = {
        let mut d = DataOffsets::default();
        d.feed(header);
        d.largest_end
    };
    assert_eq!(whole, 24);
    for size in 1..header.len() {
        let mut d = DataOffsets::default();
        for piece in header.chunks(size) {
            d.feed(piece);
        }
        assert_eq!(d.largest_end, whole, "pieces of {size}");
    }
}

/// A sparse file whose header claims 99 MiB is refused after one piece, not read whole.
#[test]
fn a_sparse_header_costs_one_piece() {
    let dir = temp_dir("sparse");
    let path = dir.join("step=1.safetensors");
    let claimed: u64 = 99 << 20;
    let mut bytes = claimed.to_le_bytes().to_vec();
    bytes.push(b'{');
    std::fs::write(&path, &bytes).expect("write");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open");
    file.set_len(8 + claimed + 100).expect("set_len");
    let problem = file_problem(&file, 8 + claimed + 100).expect("incomplete");
    assert!(problem.contains("NUL"), "{problem}");
    let _ = std::fs::remove_dir_all(&dir);
}
