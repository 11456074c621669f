//! Hostile input over real HTTP: 10,000 generated requests per run against a
//! real coordinator on loopback: odd methods and paths, malformed and deeply
//! nested JSON, wrong types, huge numbers, invalid hex, unknown jobs,
//! replays, out-of-range nonces, forged digests, missing and wrong tokens,
//! admin and node calls without a credential. The server never answers 5xx
//! (deliberate 503 backpressure aside) and no share is credited unless this
//! test computed its digest honestly.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::Method;
use serde_json::{json, Value};
use support::{settings, Job, TestPool};
use vision_coordinator::config::CoordinatorArgs;
use vision_coordinator::storage::{PoolStore, SledStore};

const ADMIN: &str = "admin-token-for-hostile-tests";
const NODE: &str = "node-token-for-hostile-tests";

/// Who a request claims to be.
#[derive(Debug, Clone)]
enum Auth {
    None,
    Garbage(String),
    Basic,
    Worker(usize),
    Admin,
    Node,
}

/// What a request carries.
#[derive(Debug, Clone)]
enum Body {
    None,
    Bytes(Vec<u8>),
    Json(Value),
    /// Deeply nested arrays (past serde_json's recursion limit).
    Nested(usize),
    /// A share for worker `n`'s current job: honest digest or not.
    Share {
        worker: usize,
        nonce_offset: u64,
        honest: bool,
        digest: String,
    },
}

#[derive(Debug, Clone)]
struct Request {
    method: Method,
    path: String,
    auth: Auth,
    body: Body,
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._~:-]{0,40}",
        Just("18446744073709551616".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("%00%ff".to_string()),
        Just("a".repeat(300)),
        "[0-9]{1,25}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "/pool/register",
        "/pool/job",
        "/pool/share",
        "/pool/stats",
        "/pool/blocks",
        "/pool/payouts",
        "/pool/configure",
        "/pool/start",
        "/pool/stop",
        "/pool/mode",
        "/pool/bans",
        "/pool/metrics",
        "/metrics",
        "/node/submit",
        "/node/transfer",
        "/node/tip",
        "/",
        "//pool//job",
    ])
    .prop_map(str::to_string);
    let with_segment = (
        prop::sample::select(vec![
            "/pool/blocks/",
            "/pool/balances/",
            "/pool/workers/",
            "/pool/bans/",
            "/pool/payouts?wallet=",
            "/pool/payouts?limit=",
            "/pool/payouts?before=",
            "/pool/blocks?limit=",
            "/node/block/",
            "/node/balance/",
            "/node/template?address=",
            "/node/transfer?idempotency_key=",
            "/pool/",
            "/",
        ]),
        segment(),
    )
        .prop_map(|(prefix, seg)| format!("{prefix}{seg}"));
    let retry = (segment(), prop::sample::select(vec!["retry", "paid"]))
        .prop_map(|(seg, action)| format!("/pool/payouts/{seg}/{action}"));
    // Long-polls wait for real (up to a minute): short or malformed waits only.
    let long_poll = prop::sample::select(vec!["0", "1", "x", "-1", "", "1e3", "18446744073709551616"])
        .prop_map(|wait| format!("/pool/job?wait={wait}"));
    prop_oneof![3 => fixed, 3 => with_segment, 1 => retry, 1 => long_poll]
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        4 => Just(Method::GET),
        4 => Just(Method::POST),
        1 => Just(Method::PUT),
        1 => Just(Method::DELETE),
        1 => Just(Method::PATCH),
        1 => Just(Method::HEAD),
        1 => Just(Method::OPTIONS),
        1 => Just(Method::from_bytes(b"BREW").unwrap()),
    ]
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        2 => Just(Auth::None),
        1 => "[ -~]{0,80}".prop_map(Auth::Garbage),
        1 => Just(Auth::Basic),
        4 => (0usize..4).prop_map(Auth::Worker),
        1 => Just(Auth::Admin),
        1 => Just(Auth::Node),
    ]
}

/// A JSON value of random shape, with the field names the routes read.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(1e300)),
        "[ -~]{0,64}".prop_map(Value::String),
        "[0-9a-f]{0,130}".prop_map(Value::String),
    ];
    let keys = prop::sample::select(vec![
        "worker_id",
        "wallet_address",
        "worker_name",
        "version",
        "job_id",
        "nonce",
        "digest",
        "hashrate",
        "pool_name",
        "pool_fee_bps",
        "target_share_seconds",
        "min_share_difficulty",
        "max_share_difficulty",
        "from",
        "outputs",
        "idempotency_key",
        "chain_id",
        "height",
        "parent_hash",
        "timestamp",
        "difficulty",
        "tx_root",
        "miner",
        "unknown",
    ]);
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone().prop_map(str::to_string), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        2 => Just(Body::None),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Body::Bytes),
        1 => Just(Body::Bytes(vec![b'{'; 70_000])),
        4 => json_value().prop_map(Body::Json),
        1 => (100usize..5000).prop_map(Body::Nested),
        4 => (0usize..4, 0u64..80, prop::bool::weighted(0.3), "[0-9a-f]{64}|[0-9a-fA-FxZ]{0,70}")
            .prop_map(|(worker, nonce_offset, honest, digest)| Body::Share { worker, nonce_offset, honest, digest }),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (method(), path(), auth(), body()).prop_map(|(method, path, auth, body)| Request { method, path, auth, body })
}

/// A share request aimed at the real share route, so forged and honest
/// shares are judged for real.
fn share_request() -> impl Strategy<Value = Request> {
    ((0usize..4), body()).prop_map(|(worker, body)| Request {
        method: Method::POST,
        path: "/pool/share".into(),
        auth: Auth::Worker(worker),
        body: match body {
            share @ Body::Share { .. } => share,
            other => other,
        },
    })
}

struct Target {
    pool: TestPool,
    tokens: Vec<String>,
    jobs: Vec<Job>,
    /// (job id, nonce) of every share this test sent with an honest digest.
    honest: Mutex<HashSet<(String, u64)>>,
    /// The operator's client, from an address of its own: the wrong
    /// credentials the others send hold their address (`bearer_auth`), not
    /// this one, so the admin and node handlers are reached throughout.
    operator: reqwest::Client,
    /// Answers "too many wrong credentials", to the others and to the operator.
    held: [std::sync::atomic::AtomicUsize; 2],
}

impl Target {
    async fn send(&self, request: &Request) -> (u16, Value) {
        let url = format!("{}{}", self.pool.url, request.path);
        // (The admin token passes on the node routes too; the node token on
        // an admin route is a wrong guess.)
        let operator = matches!(request.auth, Auth::Admin);
        let client = if operator { &self.operator } else { &self.pool.http };
        let mut builder = client.request(request.method.clone(), &url);
        builder = match &request.auth {
            Auth::None => builder,
            Auth::Garbage(text) => builder.header("Authorization", text.as_str()),
            Auth::Basic => builder.header("Authorization", "Basic dXNlcjpwYXNz"),
            Auth::Worker(n) => builder.bearer_auth(&self.tokens[*n % self.tokens.len()]),
            Auth::Admin => builder.bearer_auth(ADMIN),
            Auth::Node => builder.bearer_auth(NODE),
        };
        builder = match &request.body {
            Body::None => builder,
            Body::Bytes(bytes) => builder.header("Content-Type", "application/json").body(bytes.clone()),
            Body::Json(value) => builder.json(value),
            Body::Nested(depth) => builder.header("Content-Type", "application/json").body(format!(
                "{}{}",
                "[".repeat(*depth),
                "]".repeat(*depth)
            )),
            Body::Share { worker, nonce_offset, honest, digest } => {
                let job = &self.jobs[*worker % self.jobs.len()];
                let nonce = job.nonce_start().wrapping_add(*nonce_offset).wrapping_sub(5);
                let digest = if *honest { job.digest(nonce) } else { digest.clone() };
                if *honest {
                    self.honest.lock().unwrap().insert((job.id().to_string(), nonce));
                }
                builder.json(&json!({"job_id": job.id(), "nonce": nonce, "digest": digest}))
            }
        };
        // A server may close a connection after a request it refuses unread
        // (a body over the limit); the client's next request on that pooled
        // connection then fails before reaching it. Sent again on a fresh
        // connection, it must be answered.
        let again = builder.try_clone().expect("bodies are not streams");
        let response = match builder.send().await {
            Ok(response) => response,
            Err(_) => again.send().await.expect("the server answers every request"),
        };
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        if body["message"].as_str().is_some_and(|m| m.contains("wrong credentials")) {
            self.held[usize::from(operator)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        (status, body)
    }
}

#[test]
fn ten_thousand_hostile_requests_get_no_5xx_and_credit_no_forged_share() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let target = runtime.block_on(async {
        let pool = TestPool::start(CoordinatorArgs {
            admin_token: Some(ADMIN.into()),
            node_token: Some(NODE.into()),
            registrations_per_sec: Some(1000.0),
            shares_per_sec: Some(10_000.0),
            ..settings("hostile")
        })
        .await;
        let mut tokens = Vec::new();
        let mut jobs = Vec::new();
        for n in 0..4 {
            let token = pool.register(&format!("rig-{n}"), &format!("land1hostile{n}")).await;
            jobs.push(pool.job(&token).await);
            tokens.push(token);
        }
        Arc::new(Target {
            pool,
            tokens,
            jobs,
            honest: Mutex::new(HashSet::new()),
            operator: support::client_from("127.0.0.2"),
            held: Default::default(),
        })
    });

    let mut runner = TestRunner::new(Config { cases: 10_000, failure_persistence: None, ..Config::default() });
    let strategy = prop_oneof![3 => request(), 1 => share_request()];
    let outcome = runner.run(&strategy, |request| {
        let (status, body) = runtime.block_on(target.send(&request));
        prop_assert!(status < 500 || status == 503, "{request:?} -> {status} {body}");
        if status >= 400 && request.method != Method::HEAD {
            prop_assert!(body["error"].is_string() || status == 408 || status == 405, "{request:?} -> {status} {body}");
        }
        Ok(())
    });
    if let Err(err) = outcome {
        panic!("{err}");
    }
    // The fuzz's wrong credentials held its own address, not the operator's.
    let held = target.held.each_ref().map(|n| n.load(std::sync::atomic::Ordering::Relaxed));
    assert!(held[0] > 0, "the wrong guesses were counted: {held:?}");
    assert_eq!(held[1], 0, "the operator was never held");

    // Every share in the ledger is one this test computed honestly.
    let data_dir = target.pool.data_dir.clone();
    let honest = target.honest.lock().unwrap().clone();
    let target = Arc::try_unwrap(target).ok().expect("the only owner");
    runtime.block_on(target.pool.stop());
    let store = SledStore::open_path(&data_dir.join("db")).unwrap();
    let ledger = runtime.block_on(store.shares_from(0, usize::MAX)).unwrap();
    for (_, share) in &ledger {
        assert!(
            honest.contains(&(share.job_id.clone(), share.nonce)),
            "a share credited without an honest digest: {share:?}"
        );
    }
    assert!(!ledger.is_empty(), "the honest shares among them were credited");
}
