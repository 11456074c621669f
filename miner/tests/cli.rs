//! `vision-miner` as a user runs it: the real binary, its stdout, stderr and exit code.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use visionx::vectors;

fn miner(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vision-miner")).args(args).output().expect("run vision-miner")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Asserts a bad-input failure: exit code 2, nothing on stdout, one line on stderr mentioning `needle`.
fn assert_input_error(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(out));
    assert!(out.stdout.is_empty(), "stdout: {}", stdout(out));
    let err = stderr(out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line expected: {err}");
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vision-miner-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn explicit_args(v: &vectors::HashVector) -> Vec<String> {
    let p = v.params;
    [
        ("--seed", v.seed.clone()),
        ("--epoch", v.epoch.to_string()),
        ("--header", v.header.clone()),
        ("--nonce", v.nonce.to_string()),
        ("--dataset-mb", p.dataset_mb.to_string()),
        ("--scratch-mb", p.scratch_mb.to_string()),
        ("--mix-iters", p.mix_iters.to_string()),
        ("--reads-per-iter", p.reads_per_iter.to_string()),
        ("--write-every", p.write_every.to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value])
    .collect()
}

#[test]
fn hash_prints_the_digest_alone_for_every_vector() {
    for v in vectors::hash_vectors() {
        let args = explicit_args(&v);
        let mut argv: Vec<&str> = vec!["hash"];
        argv.extend(args.iter().map(String::as_str));
        let out = miner(&argv);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), format!("{}\n", v.digest));
    }
}

#[test]
fn hash_without_params_flags_uses_consensus_params() {
    let v = vectors::hash_vectors().into_iter().find(|v| v.is_consensus()).unwrap();
    let nonce = v.nonce.to_string();
    let out =
        miner(&["hash", "--seed", &v.seed, "--epoch", &v.epoch.to_string(), "--header", &v.header, "--nonce", &nonce]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), v.digest);
}

#[test]
fn reference_engine_gives_the_same_digest() {
    let v = vectors::hash_vectors().into_iter().find(|v| !v.is_consensus()).unwrap();
    let args = explicit_args(&v);
    let mut argv: Vec<&str> = vec!["hash", "--engine", "reference"];
    argv.extend(args.iter().map(String::as_str));
    let out = miner(&argv);
    assert_eq!(stdout(&out).trim(), v.digest, "{}", stderr(&out));
}

#[test]
fn hash_block_file_prints_every_derived_field() {
    for v in vectors::block_vectors() {
        let json = serde_json::json!({
            "chain_id": v.chain_id, "height": v.height, "parent_hash": v.parent_hash,
            "timestamp": v.timestamp, "difficulty": v.difficulty, "tx_root": v.tx_root,
            "miner": v.miner, "nonce": v.nonce,
        });
        let path = temp_file(&format!("block-{}-{}.json", v.chain_id, v.height), &json.to_string());
        let out = miner(&["hash", "--block", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let printed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(printed["epoch"].as_u64(), Some(v.epoch));
        assert_eq!(printed["epoch_seed"], v.epoch_seed);
        assert_eq!(printed["pow_message"], v.pow_message);
        assert_eq!(printed["digest"], v.digest);
        assert_eq!(printed["meets_target"], v.meets_target);
    }
}

#[test]
fn hash_block_reads_stdin() {
    let v = &vectors::block_vectors()[0];
    let json = serde_json::json!({
        "chain_id": v.chain_id, "height": v.height, "parent_hash": format!("0x{}", v.parent_hash),
        "timestamp": v.timestamp, "difficulty": v.difficulty, "tx_root": v.tx_root,
        "miner": v.miner, "nonce": v.nonce,
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_vision-miner"))
        .args(["hash", "--block", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(json.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["digest"], v.digest);
}

#[test]
fn bad_input_is_a_one_line_error_with_exit_code_2() {
    let seed = "00".repeat(32);
    let base = ["hash", "--epoch", "0", "--nonce", "1"];
    let with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| s.to_string()).collect() };
    let run = |args: Vec<String>| miner(&args.iter().map(String::as_str).collect::<Vec<_>>());

    assert_input_error(&run(with(&["--seed", "xyz", "--header", ""])), "--seed");
    assert_input_error(&run(with(&["--seed", &"00".repeat(31), "--header", ""])), "expected 32 bytes");
    assert_input_error(&run(with(&["--seed", &seed, "--header", "abc"])), "--header");
    assert_input_error(&run(with(&["--seed", &seed, "--header", "", "--mix-iters", "1000001"])), "mix_iters");
    assert_input_error(&run(with(&["--seed", &seed, "--header", "", "--dataset-mb", "513"])), "dataset_mb");
    assert_input_error(&run(with(&["--seed", &seed, "--header", "", "--scratch-mb", "129"])), "scratch_mb");
    assert_input_error(&run(with(&["--seed", &seed, "--header", "", "--reads-per-iter", "9"])), "reads_per_iter");
    assert_input_error(&miner(&["hash", "--block", "/nonexistent/block.json"]), "cannot read block file");
    let two_gpus = ["--seed", &seed, "--header", "", "--engine", "gpu", "--device", "0,1"];
    assert_input_error(&run(with(&two_gpus)), "give one --device");
    let bad_json = temp_file("bad.json", "{\"chain_id\": 5}");
    assert_input_error(&miner(&["hash", "--block", bad_json.to_str().unwrap()]), "not a valid block");
    // Argument errors come from clap, also with exit code 2.
    assert_eq!(miner(&["hash", "--seed", &seed]).status.code(), Some(2));
    assert_eq!(miner(&["hash", "--block", "x", "--nonce", "1"]).status.code(), Some(2));
    assert_eq!(miner(&["bench", "--threads", "0", "--seconds", "0.1"]).status.code(), Some(2));
    // (100,000 threads of a 32 MiB scratchpad each would be the OOM killer's.)
    assert_input_error(&miner(&["bench", "--threads", "100000", "--seconds", "0.1"]), "--threads must be 1-");
    assert_eq!(miner(&["hash", "--engine", "quantum", "--block", "x"]).status.code(), Some(2));
}

#[test]
fn bench_json_reports_the_rate() {
    let out = miner(&["bench", "--threads", "2", "--seconds", "0.5", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["backend"], "cpu");
    assert_eq!(report["engine"], "fast");
    assert_eq!(report["threads"], 2);
    assert!(report["hashes"].as_u64().unwrap() > 0);
    assert!(report["seconds"].as_f64().unwrap() >= 0.5);
    let rate = report["hashes_per_second"].as_f64().unwrap();
    let expected = report["hashes"].as_f64().unwrap() / report["seconds"].as_f64().unwrap();
    assert!((rate - expected).abs() < 1e-6 * expected);
    assert_eq!(report["per_thread"].as_array().unwrap().len(), 2);
}

#[test]
fn help_explains_every_option() {
    for sub in ["hash", "bench"] {
        let help = stdout(&miner(&[sub, "--help"]));
        let lines: Vec<&str> = help.lines().collect();
        let options: Vec<usize> = (0..lines.len())
            .filter(|&i| {
                let t = lines[i].trim_start();
                t.starts_with("--") || (t.starts_with('-') && t.chars().nth(2) == Some(','))
            })
            .collect();
        assert!(options.len() >= 4, "`{sub} --help` lists its options:\n{help}");
        for i in options {
            // `--help` puts each option's description on the lines below it.
            let description = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
            assert!(
                !description.is_empty() && !description.starts_with('-'),
                "undocumented option in `{sub} --help`: {}",
                lines[i]
            );
        }
    }
}

/// `vision-miner --check-config` with `args` and the environment `envs`;
/// it must end within 20 s (not start mining: a pool that answers nothing
/// would hold it).
fn check_config(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vision-miner"))
        .arg("--check-config")
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("it started mining instead of checking");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `--check-config`: the settings (file, flags) resolved as mining would,
/// shown without a token, and nothing started: a pool that answers nothing
/// is not waited on.
#[test]
fn check_config_shows_the_settings_and_mines_nothing() {
    let file = temp_file("check.toml", "api_token = \"a-token-of-thirty-two-characters\"\nworker = \"rig7\"\n");
    let check = |extra: &[&str]| {
        let args = ["--config", file.to_str().unwrap(), "--api-bind", "127.0.0.1:0"];
        check_config(&args.iter().chain(extra).copied().collect::<Vec<_>>(), &[])
    };
    // (Port 1 answers nothing: a miner would wait and retry there.)
    let out = check(&["--pool", "http://127.0.0.1:1", "--wallet", "land1check", "--backend", "cpu"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    for needed in
        ["the configuration holds", "pool mode: http://127.0.0.1:1", "worker: rig7", "devices: cpu", "token set"]
    {
        assert!(shown.contains(needed), "{needed}: {shown}");
    }
    assert!(!shown.contains("a-token-of"), "the token shown: {shown}");
    assert_input_error(&check(&["--wallet", "land1check"]), "nothing to mine");
    assert_input_error(&check(&["--pool", "ftp://pool", "--wallet", "land1check"]), "not a pool URL");
}

/// Switches set in the environment take what people write there: 1 or 0,
/// yes or no, on or off, true or false (only true and false were taken).
#[test]
fn switches_in_the_environment_take_1_yes_and_on() {
    let check = |value: &str| {
        let envs = [("VISION_EXIT_ON_BAN", value), ("VISION_NO_API", value), ("VISION_QUIET", value)];
        check_config(&["--pool", "http://127.0.0.1:1", "--wallet", "land1env", "--backend", "cpu"], &envs)
    };
    for (value, set) in
        [("1", true), ("yes", true), ("on", true), ("true", true), ("0", false), ("no", false), ("off", false)]
    {
        let out = check(value);
        assert!(out.status.success(), "{value}: {}", stderr(&out));
        let shown = stdout(&out);
        assert_eq!(shown.contains("banned by every pool: exit (code 4)"), set, "{value}: {shown}");
        assert_eq!(shown.contains("banned by every pool: wait the ban out"), !set, "{value}: {shown}");
        assert_eq!(shown.contains("local API: off"), set, "{value}: {shown}");
    }
    assert_eq!(check("maybe").status.code(), Some(2), "none of those: bad input");
}

/// `--device` takes a list of adapters (as `VISION_DEVICE=0,2` does).
#[test]
fn several_devices_are_named_by_a_list() {
    let pool = ["--pool", "http://127.0.0.1:1", "--wallet", "land1dev"];
    let check = |args: &[&str], envs: &[(&str, &str)]| {
        let out = check_config(&pool.iter().chain(args).copied().collect::<Vec<_>>(), envs);
        assert!(out.status.success(), "{args:?} {envs:?}: {}", stderr(&out));
        stdout(&out)
    };
    let lists = [
        check(&["--device", "0,2"], &[]),
        check(&["--device", "0", "--device", "2"], &[]),
        check(&[], &[("VISION_DEVICE", "0,2")]),
    ];
    for shown in lists {
        assert!(shown.contains("adapter #0, #2 only"), "{shown}");
    }
    assert!(check(&["--device", "1"], &[]).contains("adapter #1 only"));
    let not_a_number = check_config(&pool.iter().chain(&["--device", "x"]).copied().collect::<Vec<_>>(), &[]);
    assert_eq!(not_a_number.status.code(), Some(2), "{}", stderr(&not_a_number));
}

/// A status API port already taken (a second miner on the host) is said
/// before any device starts: here a GPU that cannot start would otherwise
/// be the error (exit 5), after its probe.
#[test]
fn a_taken_api_port_is_said_before_the_devices_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_vision-miner"))
        .args(["--pool", "http://127.0.0.1:9", "--wallet", "land1taken", "--backend", "gpu", "--api-bind", &addr])
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    assert_input_error(&out, "cannot serve the status API");
}

/// `--device N` naming an adapter this machine lacks is bad input (exit
/// 2), as in `bench`, whether or not any GPU driver is present.
#[test]
fn an_absent_device_index_is_bad_input() {
    for driver in [None, Some("/nonexistent/icd.json")] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vision-miner"));
        command.args(["--pool", "http://127.0.0.1:9", "--wallet", "land1absent", "--backend", "gpu", "--device", "99"]);
        // A debug build turns on wgpu's debug messenger, which relays the
        // Vulkan loader's "no drivers" complaint; a release build does not.
        command.env("WGPU_DEBUG", "0").env("WGPU_VALIDATION", "0");
        if let Some(icd) = driver {
            command.env("VK_ICD_FILENAMES", icd).env("VK_DRIVER_FILES", icd);
        }
        assert_input_error(&command.output().unwrap(), "--device 99: there is no such adapter");
    }
}

/// The status line goes on being written after whoever read stdout has
/// gone (`vision-miner ... | head -1`): the writes fail quietly, the miner
/// mines on, and a SIGTERM still stops it cleanly (exit 0).
#[test]
fn a_closed_stdout_does_not_break_the_status_printer() {
    use std::io::{BufRead, BufReader, Read};
    let mut child = Command::new(env!("CARGO_BIN_EXE_vision-miner"))
        // (Port 9 refuses: the miner waits for its pool and retries.)
        .args(["--pool", "http://127.0.0.1:9", "--wallet", "land1closed", "--backend", "cpu", "--threads", "1"])
        .args(["--status-interval", "1", "--no-api"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(!first.trim().is_empty(), "no status line");
    // The reader (and with it the pipe's last read end) is gone: the next
    // lines meet a broken pipe.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(child.try_wait().unwrap().is_none(), "the miner stopped once stdout closed");
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.code(), Some(0), "{err}");
}
