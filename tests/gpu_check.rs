//! `scripts/gpu-check.sh`, the one-shot hardware check, on a machine
//! without a hardware GPU (CI: lavapipe only): it runs the real
//! `vision-miner` up to the adapter check, writes a JSON report that says
//! why it stopped, and exits 3; and, told to take the software adapter as
//! the GPU, past it: each GPU test in a process of its own, the benches
//! within the budget, a report after every step. (The figures of a real
//! GPU are the device session's, not these tests'.)

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use vision_suite::{fresh_dir, workspace_binary};

/// A bundle as scripts/gpu-bundle.sh lays it out, with `vision-miner` and a
/// shell script as its test binary.
fn bundle(dir: &std::path::Path, tests_script: &str) -> std::path::PathBuf {
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::os::unix::fs::symlink(workspace_binary("vision-miner"), bundle.join("vision-miner")).unwrap();
    let tests = bundle.join("gpu-tests");
    std::fs::write(&tests, tests_script).unwrap();
    std::fs::set_permissions(&tests, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(bundle.join("manifest.txt"), "built_by=tests/gpu_check.rs\n").unwrap();
    bundle
}

fn gpu_check(bundle: &std::path::Path, report: &std::path::Path) -> Command {
    let mut run = Command::new("bash");
    run.arg(format!("{}/scripts/gpu-check.sh", env!("CARGO_MANIFEST_DIR")))
        .arg(bundle)
        .arg("--out")
        .arg(report)
        .env("GPU_CHECK_NO_UNPACK", "1");
    run
}

#[test]
fn gpu_check_runs_each_test_alone_and_reports_as_it_goes() {
    let dir = fresh_dir("gpu-check-steps");
    // Four tests: one passes, one fails, one crashes (as a driver can), and
    // one runs nothing (exit 0, as libtest for an ignored test). Each takes
    // a moment, so that a report written between them can be seen.
    let script = r#"#!/bin/bash
sleep 0.3
case "$*" in
  *--list*) printf 'passes: test\nfails: test\ncrashes: test\nruns_nothing: test\n' ;;
  *"--exact passes"*) printf 'test passes ... ok\n\ntest result: ok. 1 passed; 0 failed\n' ;;
  *"--exact fails"*) echo "test fails ... FAILED"; exit 101 ;;
  *"--exact crashes"*) kill -SEGV $$ ;;
  *"--exact runs_nothing"*) echo "test result: ok. 0 passed; 0 failed; 1 ignored" ;;
  *) echo "unexpected: $*" >&2; exit 2 ;;
esac
"#;
    let bundle = bundle(&dir, script);
    let report_path = dir.join("report.json");
    // An nvidia-smi that tells of a 24 GiB card: fixed batches whose tables
    // need more are skipped as not fitting, not run and failed.
    let fake_bin = dir.join("bin");
    std::fs::create_dir_all(&fake_bin).unwrap();
    let smi = r#"#!/bin/sh
case "$*" in
  *mig.mode*) echo "[N/A]" ;;
  *) echo "Fake GPU 24G, 999.99, 24576 MiB, 576 MiB, 0 %, 1000 MHz, 50.00 W" ;;
esac
"#;
    std::fs::write(fake_bin.join("nvidia-smi"), smi).unwrap();
    std::fs::set_permissions(fake_bin.join("nvidia-smi"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", fake_bin.display(), std::env::var("PATH").unwrap_or_default());
    // A budget that ends inside the first bench (lavapipe at consensus
    // params is far slower than a GPU): the rest are skipped, not hung on.
    let mut child = gpu_check(&bundle, &report_path)
        .env("PATH", path)
        .env("GPU_CHECK_ACCEPT_SOFTWARE", "1")
        .env("GPU_CHECK_BUDGET_S", "25")
        .env("GPU_CHECK_SECONDS", "0.2")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bash scripts/gpu-check.sh");
    // While it runs, the report on disk is already whole JSON.
    let mut seen: Vec<serde_json::Value> = Vec::new();
    while child.try_wait().unwrap().is_none() {
        if let Ok(bytes) = std::fs::read(&report_path) {
            let report: serde_json::Value = serde_json::from_slice(&bytes).expect("a partial report is JSON");
            if seen.last() != Some(&report) {
                seen.push(report);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "failed steps exit 1: {stderr}");
    let partial = |r: &&serde_json::Value| r["message"].as_str().is_some_and(|m| m.starts_with("partial"));
    assert!(seen.iter().any(|r| partial(&r) && r["tests"].is_null()), "a report before the tests: {seen:#?}");
    assert!(
        seen.iter().any(|r| partial(&r) && r["tests"]["running"] == true && r["benches"].is_null()),
        "a report between tests: {seen:#?}"
    );

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let tests = &report["tests"];
    assert_eq!(tests["passed"], false);
    assert_eq!(tests["summary"], "1 passed; 3 failed (of 4, each in its own process)", "{tests:#}");
    assert_eq!(tests["failed_tests"], "fails\ncrashes\nruns_nothing", "{tests:#}");
    let runs = tests["runs"].as_array().unwrap();
    let codes: Vec<_> = runs.iter().map(|r| (r["name"].as_str().unwrap(), r["exit_code"].as_i64().unwrap())).collect();
    assert_eq!(codes, [("passes", 0), ("fails", 101), ("crashes", 139), ("runs_nothing", 0)], "{tests:#}");
    let benches = report["benches"].as_array().expect("benches");
    assert!(benches.len() >= 2, "every bench is listed, run or skipped: {benches:?}");
    assert!(benches.iter().any(|b| b["skipped"] == "out of time"), "the budget holds: {benches:?}");
    // Skipped benches are listed, not failures.
    let failed = report["failed_steps"].as_array().unwrap();
    assert!(failed.iter().any(|f| f == "tests"), "{failed:?}");
    assert!(!failed.iter().any(|f| f == "bench batch-163840"), "{failed:?}");
    // 98,304 hashes take about 28 GiB; 65,536 about 19 (of 24).
    for (name, fits) in
        [("batch-65536", true), ("batch-98304", false), ("batch-114688", false), ("batch-163840", false)]
    {
        let bench = benches.iter().find(|b| b["name"] == name).unwrap_or_else(|| panic!("{name}: {benches:?}"));
        let skipped = bench["skipped"].as_str().unwrap_or_default();
        assert_eq!(!skipped.starts_with("does not fit"), fits, "{name}: {bench}");
        assert!(fits || skipped.contains("the card has 24000 MiB free"), "{name}: {bench}");
        assert!(!failed.iter().any(|f| f.as_str() == Some(&format!("bench {name}"))), "{failed:?}");
    }
    assert_eq!(report["memory_total"], "24576 MiB", "{report:#}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        3,
        "no temporary report is left: the bundle, the fake nvidia-smi and the report"
    );
}

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
    // The GPU tests are not reached without a hardware adapter.
    let dir = fresh_dir("gpu-check");
    let bundle = bundle(&dir, "#!/bin/sh\necho 'gpu-tests must not run without a GPU' >&2\nexit 1\n");
    let report_path = dir.join("report.json");
    let run =
        gpu_check(&bundle, &report_path).env("GPU_CHECK_BUDGET_S", "120").output().expect("bash scripts/gpu-check.sh");
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

/// Without nvidia-smi (an AMD or Intel card), a fixed batch is fitted to what
/// the Vulkan driver says of the adapter under test: lavapipe reports a heap
/// of 2 GiB and no free figure, so every fixed batch is skipped as not
/// fitting, and the report's memory is the driver's.
#[test]
fn gpu_check_fits_batches_to_the_vulkan_heap_without_nvidia_smi() {
    let miner = workspace_binary("vision-miner");
    let devices = Command::new(&miner).args(["devices", "--json"]).output().expect("vision-miner devices");
    let listed: serde_json::Value = serde_json::from_slice(&devices.stdout).expect("devices as JSON");
    let heap = listed["gpus"].get(0).and_then(|adapter| adapter["memory_bytes"].as_u64());
    let (Some(adapter), Some(heap)) = (listed["gpus"].get(0).cloned(), heap) else {
        assert!(std::env::var_os("CI").is_none(), "CI has lavapipe, and its heap: {listed}");
        eprintln!("no adapter here whose driver tells its memory: nothing to fit batches to");
        return;
    };
    let heap_mib = heap / 1_048_576;
    let dir = fresh_dir("gpu-check-vulkan-memory");
    let bundle = bundle(&dir, "#!/bin/sh\ncase \"$*\" in *--list*) echo 'passes: test' ;; *) echo ok ;; esac\n");
    let report_path = dir.join("report.json");
    // Time for `devices` and the tests, hardly any for a bench: only the
    // fit is looked at.
    let run = gpu_check(&bundle, &report_path)
        .env("GPU_CHECK_NVIDIA_SMI", "off")
        .env("GPU_CHECK_ACCEPT_SOFTWARE", "1")
        .env("GPU_CHECK_BUDGET_S", "15")
        .output()
        .expect("bash scripts/gpu-check.sh");
    let stderr = String::from_utf8_lossy(&run.stderr);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["nvidia_smi"]["present"], false, "{stderr}");
    let free = adapter["memory_free_bytes"].as_u64().map(|b| b / 1_048_576);
    let (card_mib, what) = match free {
        Some(free) => (free, "free (Vulkan)".to_string()),
        None => (heap_mib, "in its largest heap (Vulkan)".to_string()),
    };
    assert_eq!(report["memory_total"], format!("{heap_mib} MiB (Vulkan)"), "{report:#}");
    let benches = report["benches"].as_array().expect("benches");
    for batch in [8192u64, 16384, 65536, 98304, 114688, 163840] {
        let name = format!("batch-{batch}");
        let bench = benches.iter().find(|b| b["name"] == name).unwrap_or_else(|| panic!("{name}: {benches:?}"));
        // The script's memory_mb_used: compact tables of 24,576 slots, plus 512 MiB.
        let need = (batch * 294_944).div_ceil(1_048_576) + 512;
        let skipped = bench["skipped"].as_str().unwrap_or_default();
        if need * 10 > card_mib * 9 {
            assert_eq!(skipped, format!("does not fit: needs {need} MiB, the card has {card_mib} MiB {what}"));
        } else {
            assert!(!skipped.starts_with("does not fit"), "{name} fits in {card_mib} MiB: {bench}");
        }
    }
}
