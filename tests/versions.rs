//! `--version` on both binaries: the package version and, built from a git
//! checkout, the revision it was built from.

use std::process::Command;

use vision_suite::workspace_binary;

#[test]
fn both_binaries_print_their_version_and_revision() {
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    for name in ["vision-miner", "vision-coordinator"] {
        let output = Command::new(workspace_binary(name)).arg("--version").output().unwrap();
        assert!(output.status.success(), "{name} --version exits 0");
        let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let expected = match &head {
            Some(revision) => format!("{name} {} (git {revision})", env!("CARGO_PKG_VERSION")),
            None => format!("{name} {}", env!("CARGO_PKG_VERSION")),
        };
        assert_eq!(text, expected);
    }
}
