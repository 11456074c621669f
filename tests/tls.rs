//! `--upstream https://`: a pool reaches its node through TLS. The node is a
//! coordinator's embedded devnet behind a TLS terminator (this test's own,
//! tokio-rustls, with a certificate from a throwaway CA made by `openssl`).
//! With `--upstream-ca` naming that CA the pool hands out jobs; without it,
//! the node's certificate is refused and the pool says the chain is
//! unavailable, naming the certificate in its log.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use vision_suite::{coordinator_log_path, free_port, fresh_dir, start_coordinator, workspace_binary};

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
    let node_args = ["--bind", node_bind.as_str(), "--node-token", "node-secret"];
    let (mut node, _) = start_coordinator(&root.join("node"), &node_args, &[]);
    let tls_port = tls_terminator(&root, node_bind.clone()).await;
    let upstream = format!("https://localhost:{tls_port}");
    let ca = root.join("ca.pem");
    let http = reqwest::Client::new();

    let trusting = ["--upstream", upstream.as_str(), "--upstream-token", "node-secret", "--upstream-ca"];
    let trusting: Vec<&str> = trusting.into_iter().chain([ca.to_str().unwrap()]).collect();
    let (mut pool, url) = start_coordinator(&root.join("pool"), &trusting, &[]);
    let (status, job) = job_status(&http, &url).await;
    assert_eq!(status, 200, "a job through the TLS upstream: {job}");
    assert!(job["height"].as_u64().is_some(), "{job}");

    // The system's roots do not include the throwaway CA: refused.
    let plain = ["--upstream", upstream.as_str(), "--upstream-token", "node-secret"];
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
