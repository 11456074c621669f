//! `scripts/gpu-check.sh`, the one-shot hardware check, on a machine
//! without a hardware GPU (CI: lavapipe only): it runs the real
//! `vision-miner` up to the adapter check, writes a JSON report that says
//! why it stopped, and exits 3. (On a GPU machine the script goes on to
//! its benches: that run is the device session's, not this test's.)

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use vision_suite::{fresh_dir, workspace_binary};

#[test]
fn gpu_check_reports_a_machine_without_a_hardware_gpu() {
    let miner = workspace_binary("vision-miner");
    let devices = Command::new(&miner).args(["devices", "--json"]).output().expect("vision-miner devices");
    let listed: serde_json::Value = serde_json::from_slice(&devices.stdout).expect("devices as JSON");
    let gpus = listed["gpus"].as_array().cloned().unwrap_or_default();
    // (An NVIDIA container's driver sits outside the loader's search path:
    // the script finds it there.)
    let nvidia_container = std::path::Path::new("/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json").exists();
    if nvidia_container || gpus.iter().any(|g| g["is_software"] == false && g["device_type"] != "Cpu") {
        eprintln!("a hardware GPU is here: scripts/gpu-check.sh would run its benches; not this test's to run");
        return;
    }
    // A bundle as scripts/gpu-bundle.sh lays it out (the GPU tests are not
    // reached without a hardware adapter).
    let dir = fresh_dir("gpu-check");
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::os::unix::fs::symlink(&miner, bundle.join("vision-miner")).unwrap();
    let tests = bundle.join("gpu-tests");
    std::fs::write(&tests, "#!/bin/sh\necho 'gpu-tests must not run without a GPU' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&tests, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(bundle.join("manifest.txt"), "built_by=tests/gpu_check.rs\n").unwrap();
    let report_path = dir.join("report.json");

    let root = env!("CARGO_MANIFEST_DIR");
    let run = Command::new("bash")
        .arg(format!("{root}/scripts/gpu-check.sh"))
        .arg(&bundle)
        .arg("--out")
        .arg(&report_path)
        .env("GPU_CHECK_BUDGET_S", "120")
        .env("GPU_CHECK_NO_UNPACK", "1")
        .output()
        .expect("bash scripts/gpu-check.sh");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "exit 3 without a hardware GPU: {stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).expect("a report is written")).expect("the report is JSON");
    let text = report.to_string();
    assert!(text.contains("no hardware GPU adapter"), "{report:#}");
    assert!(text.contains("built_by"), "the bundle's manifest is in the report: {report:#}");
    // CI has lavapipe: the report names it as software.
    if std::env::var_os("CI").is_some() {
        assert!(text.contains("software only"), "{report:#}");
    }
}
