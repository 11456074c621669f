//! TLS on both of the pool's links, each through a TLS terminator of this
//! test's own (tokio-rustls, a certificate from a throwaway CA made by
//! `openssl`), as an operator terminates TLS in front of a coordinator:
//! - `--upstream https://`: a pool reaches its node (a coordinator's
//!   embedded devnet). With `--upstream-ca` naming the CA the pool hands out
//!   jobs; without it the node's certificate is refused and the pool says
//!   the chain is unavailable, naming the certificate in its log.
//! - `vision-miner --pool https://`: a real miner mines on a pool through
//!   TLS with `--pool-ca`; without it, it refuses the certificate and says so.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use vision_suite::{coordinator_log_path, free_port, fresh_dir, start_coordinator, workspace_binary, QUICK_REWARDS};

/// A CA and a server certificate for localhost / 127.0.0.1 signed by it.
fn make_certificates(dir: &Path) {
    let ext = dir.join("server.ext");
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    let new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca_out = ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=vision test CA"];
    let csr_out = ["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"];
    let sign = [
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ];
    let steps: [Vec<&str>; 3] = [
        [&["req", "-x509"][..], &new_key, &ca_out].concat(),
        [&["req"][..], &new_key, &csr_out].concat(),
        sign.to_vec(),
    ];
    for args in steps {
        let out = Command::new("openssl").args(&args).current_dir(dir).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Terminates TLS on a free port and forwards each connection to `target`.
async fn tls_terminator(dir: &Path, target: String) -> u16 {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("server.pem")).unwrap().map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else { return };
            let (acceptor, target) = (acceptor.clone(), target.clone());
            tokio::spawn(async move {
                // A refused handshake (the pool that lacks the CA) just ends here.
                let Ok(mut tls) = acceptor.accept(socket).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&target).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

async fn job_status(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let registration = json!({"worker_id": "rig", "wallet_address": "land1tls"});
    let registered: Value =
        http.post(format!("{url}/pool/register")).json(&registration).send().await.unwrap().json().await.unwrap();
    let token = registered["worker_token"].as_str().unwrap();
    let response = http.get(format!("{url}/pool/job")).bearer_auth(token).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_reaches_its_node_over_https_and_refuses_an_unknown_certificate() {
    let root = fresh_dir("upstream-tls");
    make_certificates(&root);
    let node_bind = format!("127.0.0.1:{}", free_port());
    let node_args = ["--bind", node_bind.as_str(), "--node-token", "node-secret-for-tests"];
    let (mut node, _) = start_coordinator(&root.join("node"), &node_args, &[]);
    let tls_port = tls_terminator(&root, node_bind.clone()).await;
    let upstream = format!("https://localhost:{tls_port}");
    let ca = root.join("ca.pem");
    let http = reqwest::Client::new();

    let trusting = ["--upstream", upstream.as_str(), "--upstream-token", "node-secret-for-tests", "--upstream-ca"];
    let trusting: Vec<&str> = trusting.into_iter().chain([ca.to_str().unwrap()]).collect();
    let (mut pool, url) = start_coordinator(&root.join("pool"), &trusting, &[]);
    let (status, job) = job_status(&http, &url).await;
    assert_eq!(status, 200, "a job through the TLS upstream: {job}");
    assert!(job["height"].as_u64().is_some(), "{job}");

    // The system's roots do not include the throwaway CA: refused.
    let plain = ["--upstream", upstream.as_str(), "--upstream-token", "node-secret-for-tests"];
    let (mut stranger, stranger_url) = start_coordinator(&root.join("stranger"), &plain, &[("RUST_LOG", "info")]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = job_status(&http, &stranger_url).await;
        if status == 503 && body["error"] == "chain_unavailable" {
            break;
        }
        assert!(Instant::now() < deadline, "expected chain_unavailable, got {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(coordinator_log_path(&root.join("stranger"))).unwrap_or_default();
    assert!(log.to_lowercase().contains("certificate"), "the log names the certificate problem:\n{log}");

    // A CA file that holds no certificate is a start-up error, not a silent fallback.
    std::fs::write(root.join("empty.pem"), "not a certificate\n").unwrap();
    let bad_ca = root.join("empty.pem");
    let out = Command::new(workspace_binary("vision-coordinator"))
        .args(["--data-dir", root.join("bad").to_str().unwrap(), "--upstream", &upstream, "--upstream-ca"])
        .arg(&bad_ca)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("upstream-ca"));

    for child in [&mut pool, &mut stranger, &mut node] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// A `vision-miner` on `pool_url` (one CPU thread), its status API on a free port.
fn start_miner(pool_url: &str, extra: &[&str], log: &Path) -> (std::process::Child, String) {
    let api = format!("127.0.0.1:{}", free_port());
    let child = Command::new(workspace_binary("vision-miner"))
        .args(["--pool", pool_url, "--wallet", "land1tls", "--worker", "tls-rig", "--backend", "cpu"])
        .args(["--threads", "1", "--status-interval", "3600", "--api-bind", &api])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    (child, format!("http://{api}/status"))
}

/// Kills its processes when dropped, so a failed assertion leaves none behind.
struct Processes(Vec<std::process::Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_mines_on_a_pool_over_https_and_refuses_an_unknown_certificate() {
    let root = fresh_dir("miner-tls");
    make_certificates(&root);
    let pool_bind = format!("127.0.0.1:{}", free_port());
    let args: Vec<&str> = QUICK_REWARDS.iter().copied().chain(["--bind", pool_bind.as_str()]).collect();
    let (pool, _) = start_coordinator(&root.join("pool"), &args, &[]);
    let mut processes = Processes(vec![pool]);
    let tls_port = tls_terminator(&root, pool_bind.clone()).await;
    let pool_url = format!("https://localhost:{tls_port}");
    let ca = root.join("ca.pem");
    let http = reqwest::Client::new();
    let status = async |url: &str| -> Value {
        match http.get(url).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    };

    let (trusting, trusting_status) =
        start_miner(&pool_url, &["--pool-ca", ca.to_str().unwrap()], &root.join("trusting.log"));
    let (stranger, stranger_status) = start_miner(&pool_url, &[], &root.join("stranger.log"));
    processes.0.extend([trusting, stranger]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(&trusting_status).await;
        if s["accepted"].as_u64().unwrap_or(0) > 0 && s["connection"]["connected"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "no share accepted through TLS: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The system's roots do not include the throwaway CA: the other miner
    // never connected, and says why (once its first try has failed: the
    // trusting miner can get its share before the stranger has tried).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(&stranger_status).await;
        assert_eq!(s["connection"]["connected"], false, "{s}");
        assert_eq!(s["accepted"].as_u64(), Some(0), "{s}");
        let error = s["connection"]["last_error"].as_str().unwrap_or_default().to_lowercase();
        let log = std::fs::read_to_string(root.join("stranger.log")).unwrap_or_default().to_lowercase();
        if error.contains("certificate") || log.contains("certificate") {
            break;
        }
        assert!(Instant::now() < deadline, "the miner names the certificate problem: {s}\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A CA file without a certificate is a one-line error and exit 2.
    std::fs::write(root.join("empty.pem"), "not a certificate\n").unwrap();
    let out = Command::new(workspace_binary("vision-miner"))
        .args(["--pool", &pool_url, "--wallet", "land1tls", "--pool-ca"])
        .arg(root.join("empty.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pool-ca"));

    drop(processes);
}
