//! The data directory as an operator meets it: a database whose log was
//! damaged (sled then opens it empty) or lost is refused, not taken for a
//! new pool; a second coordinator on it is told it is in use.

use std::process::Command;

use vision_suite::{fresh_dir, start_coordinator, stop_gracefully, workspace_binary};

fn start_fails(data_dir: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(workspace_binary("vision-coordinator"))
        .args(["--data-dir", data_dir.to_str().unwrap(), "--bind", "127.0.0.1:0"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_damaged_or_missing_database_is_refused_not_started_afresh() {
    let dir = fresh_dir("data-dir-damaged");
    let (mut first, _) = start_coordinator(&dir, &[], &[]);
    // Held by a running coordinator: a second one is told so.
    let (code, err) = start_fails(&dir);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("in use by another process"), "{err}");
    stop_gracefully(&mut first);
    assert!(dir.join("POOL").exists(), "the first start marks the directory");

    // The head of sled's log overwritten (a bad sector, a stray dd): sled
    // reads an empty database from what is left.
    let log = dir.join("db").join("db");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[..100].fill(0xA5);
    std::fs::write(&log, &bytes).unwrap();
    let (code, err) = start_fails(&dir);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is empty, but") && err.contains("Restore"), "{err}");

    // The database gone altogether (a volume not mounted).
    std::fs::remove_dir_all(dir.join("db")).unwrap();
    let (code, err) = start_fails(&dir);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is empty, but"), "{err}");
}
