// Shared by the binaries' build scripts (`include!`d): sets `VISION_VERSION`
// to the package version and, when built from a git checkout, the revision
// ("0.1.0 (git 1a2b3c4d5e6f)"; just "0.1.0" from a source tarball), for
// `--version`.

fn git(args: &[&str]) -> Option<String> {
    let output = std::process::Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let full = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(revision) => format!("{version} (git {revision})"),
        None => version,
    };
    println!("cargo:rustc-env=VISION_VERSION={full}");
    // Build again when HEAD moves (a commit, a checkout). Only paths that
    // exist: cargo reruns a build script on every build for a missing one.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        for path in ["HEAD", "refs", "packed-refs"] {
            let path = std::path::Path::new(&dir).join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    } else {
        println!("cargo:rerun-if-changed=build.rs");
    }
}
