//! The coordinator's dashboard and the miner's page in a real headless
//! Chromium (Debian's `chromium` and `chromium-driver`, driven over WebDriver
//! with fantoccini), against a real `vision-coordinator` and a real
//! `vision-miner` process mining on it.
//!
//! What a person would do: watch the miner's page, pause the miner there,
//! see it warn when reached by another machine's name over plain http;
//! check that the dashboard's figures are the API's; open a block's split, a
//! wallet, a worker; try the admin panel with a wrong token (nothing changes)
//! and the right one (the pool fee changes); resume the miner; switch it to
//! another pool from its page; kill the coordinator and see the dashboard say
//! so and recover. No console errors; screenshots are saved under
//! `target/tmp/dashboards/` (a CI artifact).
//!
//! Without Chromium or chromedriver the test fails under `CI=true` and is
//! skipped (with a message) elsewhere. `VISION_CHROMIUM` names another
//! browser binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use vision_suite::{free_port, fresh_dir, get_json, start_coordinator, workspace_binary, QUICK_REWARDS};

const ADMIN_TOKEN: &str = "browser-admin-secret";

/// Kills its process when dropped (a failed assertion leaves nothing behind).
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver and the browsers it starts, in a process group of their
/// own: dropped, the whole group is killed (no Chromium outlives the test).
struct ProcessGroup(Child);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0.id())]).status();
        let _ = self.0.wait();
    }
}

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|dir| names.iter().map(move |n| dir.join(n))).find(|p| p.is_file())
}

fn chromium() -> Option<PathBuf> {
    match std::env::var_os("VISION_CHROMIUM") {
        Some(path) => Some(PathBuf::from(path)),
        None => on_path(&["chromium", "chromium-browser", "google-chrome"]),
    }
}

/// chromedriver on a free port, and a headless Chromium session through it.
async fn open_browser(driver: &Path, chromium: &Path) -> (ProcessGroup, Client, String) {
    use std::os::unix::process::CommandExt;
    let port = free_port();
    let process = ProcessGroup(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1800", "--no-first-run", "--disable-extensions",
                     // A name other machines would use, resolving here.
                     "--host-resolver-rules=MAP rig.test 127.0.0.1"],
        }),
    );
    capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return (process, client, url),
            Err(err) if Instant::now() > deadline => panic!("no browser session: {err}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Polls `check` until it returns `Some`, or fails the test saying `what`.
async fn until<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn js(browser: &Client, script: &str) -> Value {
    browser.execute(script, vec![]).await.unwrap_or_else(|e| panic!("script {script:?} failed: {e}"))
}

/// The raw value behind a `data-field` figure on the page.
async fn field(browser: &Client, name: &str) -> String {
    let script =
        format!("const e = document.querySelector('[data-field=\"{name}\"]'); return e ? e.dataset.value : null;");
    js(browser, &script).await.as_str().unwrap_or_default().to_string()
}

async fn text(browser: &Client, css: &str) -> String {
    js(browser, &format!("const e = document.querySelector('{css}'); return e ? e.textContent : '';"))
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn visible(browser: &Client, css: &str) -> bool {
    js(browser, &format!("const e = document.querySelector('{css}'); return !!e && !e.classList.contains('hidden');"))
        .await
        .as_bool()
        == Some(true)
}

async fn click(browser: &Client, css: &str) {
    browser.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}")).click().await.unwrap();
}

/// Types `value` into an emptied, focused field (focused, the page leaves
/// it alone while it refreshes).
async fn type_into(browser: &Client, css: &str, value: &str) {
    let input = browser.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
    js(browser, &format!("const e = document.querySelector(\"{css}\"); e.focus(); e.value = '';")).await;
    input.send_keys(value).await.unwrap();
}

/// Waits for the page's next two refreshes (`#updated`'s counter), so what it
/// shows was read after this call.
async fn fresh_figures(browser: &Client) {
    let count = async || text_attr(browser, "#updated", "refreshes").await.parse::<u64>().unwrap_or(0);
    let now = count().await;
    until("the page to refresh", Duration::from_secs(30), async || (count().await >= now + 2).then_some(())).await;
}

async fn text_attr(browser: &Client, css: &str, key: &str) -> String {
    js(browser, &format!("const e = document.querySelector('{css}'); return e ? (e.dataset['{key}'] || '') : '';"))
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn screenshot(browser: &Client, dir: &Path, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("save screenshot");
}

/// The browser's console since the last call, from chromedriver's log.
async fn console(driver_url: &str, browser: &Client) -> Vec<Value> {
    let session = browser.session_id().await.unwrap().expect("session id");
    let answer: Value = reqwest::Client::new()
        .post(format!("{driver_url}/session/{session}/se/log"))
        .json(&json!({"type": "browser"}))
        .send()
        .await
        .expect("log request")
        .json()
        .await
        .expect("log answer");
    answer["value"].as_array().cloned().unwrap_or_default()
}

fn severe(entries: &[Value], allowed: &[&str]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .filter(|m| !allowed.iter().any(|a| m.contains(a)))
        .collect()
}

/// The outermost elements that stick out past the window's right edge.
const OVERFLOWING: &str = "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.table-wrap') && e.getBoundingClientRect().width > 0).filter(e => !e.parentElement || e.parentElement.getBoundingClientRect().right <= window.innerWidth + 1).slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className + ' in #' + (e.parentElement || {}).id + ' ' + Math.round(e.getBoundingClientRect().right));";

fn pool_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = QUICK_REWARDS.to_vec();
    args.extend_from_slice(&["--admin-token", ADMIN_TOKEN, "--chart-interval-secs", "1"]);
    args.extend_from_slice(extra);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_in_a_real_browser() {
    let (Some(driver), Some(chromium)) = (on_path(&["chromedriver"]), chromium()) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs chromium and chromium-driver (scripts/test.sh installs them)"
        );
        eprintln!("SKIPPED: no chromium or chromedriver here (apt-get install chromium chromium-driver)");
        return;
    };
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboards");
    std::fs::create_dir_all(&shots).unwrap();
    let http = reqwest::Client::new();

    let root = fresh_dir("dashboards");
    let bind = format!("127.0.0.1:{}", free_port());
    let args = pool_args(&["--bind", &bind, "--pool-name", "Browser pool"]);
    let (child, pool) = start_coordinator(&root.join("a"), &args, &[]);
    let mut pool_a = Process(child);
    let (child, pool_b) = start_coordinator(&root.join("b"), &pool_args(&["--pool-name", "Second pool"]), &[]);
    let _pool_b_process = Process(child);

    let miner_api = format!("127.0.0.1:{}", free_port());
    let _miner = Process(
        Command::new(workspace_binary("vision-miner"))
            .args(["--pool", &pool, "--wallet", "land1browser", "--worker", "browser-rig"])
            .args(["--backend", "cpu", "--threads", "1", "--status-interval", "3600", "--api-bind", &miner_api])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start vision-miner"),
    );
    let miner_page = format!("http://{miner_api}/");

    // Mine until the pool has paid someone: blocks, balances and payouts to show.
    until("a confirmed block and a paid payout", Duration::from_secs(180), async || {
        let payouts = get_json(&http, &format!("{pool}/pool/payouts"), None).await;
        payouts.as_array().is_some_and(|p| p.iter().any(|p| p["status"] == "paid")).then_some(())
    })
    .await;

    let (_driver_process, browser, driver_url) = open_browser(&driver, &chromium).await;

    // ---- the miner's page: pause ----
    browser.goto(&miner_page).await.unwrap();
    until("the miner page to show accepted shares", Duration::from_secs(30), async || {
        (field(&browser, "accepted").await.parse::<u64>().unwrap_or(0) > 0).then_some(())
    })
    .await;
    assert_eq!(field(&browser, "connection.url").await, pool);
    assert!(js(&browser, "return document.querySelectorAll('#chart-devices canvas').length").await.as_u64() >= Some(1));
    click(&browser, "#pause").await;
    until("the miner to pause", Duration::from_secs(10), async || {
        let status = get_json(&http, &format!("{miner_page}status"), None).await;
        (status["paused"] == true).then_some(())
    })
    .await;
    fresh_figures(&browser).await;
    assert_eq!(field(&browser, "paused").await, "true");
    // A share found just before the pause may still be answered: compare once both agree.
    until("the miner page to show /status's accepted count", Duration::from_secs(20), async || {
        let accepted = async || get_json(&http, &format!("{miner_page}status"), None).await["accepted"].clone();
        let before = accepted().await;
        fresh_figures(&browser).await;
        let shown = field(&browser, "accepted").await;
        (before.as_u64().map(|n| n.to_string()) == Some(shown) && accepted().await == before).then_some(())
    })
    .await;
    screenshot(&browser, &shots, "miner-paused").await;

    // ---- the miner's page by another name: the cleartext banner ----
    assert!(!visible(&browser, "#cleartext-warning").await, "no banner on the rig's own loopback");
    let port = miner_api.rsplit_once(':').unwrap().1;
    browser.goto(&format!("http://rig.test:{port}/")).await.unwrap();
    until("the cleartext banner by another name", Duration::from_secs(10), async || {
        visible(&browser, "#cleartext-warning").await.then_some(())
    })
    .await;
    screenshot(&browser, &shots, "miner-cleartext").await;

    // Paused: let the pool settle (shares in flight, reward rounds).
    let mut last = Value::Null;
    until("the pool's figures to settle", Duration::from_secs(30), async || {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = json!([
            get_json(&http, &format!("{pool}/pool/stats"), None).await["shares"],
            get_json(&http, &format!("{pool}/pool/payouts"), None).await,
            get_json(&http, &format!("{pool}/pool/blocks"), None).await
        ]);
        let settled = now == last;
        last = now;
        settled.then_some(())
    })
    .await;

    // ---- the dashboard: figures are the API's ----
    browser.goto(&format!("{pool}/")).await.unwrap();
    fresh_figures(&browser).await;
    let stats = get_json(&http, &format!("{pool}/pool/stats"), None).await;
    assert_eq!(text(&browser, "#pool-name").await, "Browser pool");
    for (name, expected) in [
        ("height", stats["height"].to_string()),
        ("network_difficulty", stats["network_difficulty"].to_string()),
        ("blocks_found", stats["blocks_found"].to_string()),
        ("pool_fee_bps", stats["pool_fee_bps"].to_string()),
        ("foundation_fee_bps", stats["foundation_fee_bps"].to_string()),
        ("payout_threshold", stats["payout_threshold"].to_string()),
        ("confirmations", stats["confirmations"].to_string()),
        ("foundation_address", stats["foundation_address"].as_str().unwrap().to_string()),
        (
            "shares",
            format!(
                "{}/{}/{}",
                stats["shares"]["accepted"],
                stats["shares"]["stale"],
                stats["shares"]["rejected"].as_u64().unwrap() + stats["shares"]["duplicate"].as_u64().unwrap()
            ),
        ),
    ] {
        assert_eq!(field(&browser, name).await, expected, "dashboard {name} vs /pool/stats");
    }
    assert!(text(&browser, "[data-field=foundation_fee_bps]").await.starts_with('1'), "the 1% foundation fee shows");
    assert!(text(&browser, "#join-command").await.contains(&format!("--pool {pool}")));
    let worker = &stats["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["worker_id"] == "land1browser.browser-rig")
        .unwrap()
        .clone();
    let shown = text(&browser, "[data-worker-accepted=\"land1browser.browser-rig\"]").await.replace(',', "");
    assert_eq!(shown, worker["shares"]["accepted"].to_string(), "the workers table vs /pool/stats");
    let blocks = get_json(&http, &format!("{pool}/pool/blocks"), None).await;
    let rows = js(&browser, "return document.querySelectorAll('#blocks-table tbody tr').length").await;
    assert_eq!(rows.as_u64(), Some(blocks.as_array().unwrap().len().min(200) as u64), "one row per block");
    let payouts = get_json(&http, &format!("{pool}/pool/payouts"), None).await;
    let rows = js(&browser, "return document.querySelectorAll('#payouts-table tbody tr').length").await;
    assert_eq!(rows.as_u64(), Some(payouts.as_array().unwrap().len().min(100) as u64), "one row per payout");
    // Amounts past 2^53 base units keep every digit (read as BigInt from
    // their source text); other integers stay Numbers.
    let exact = js(
        &browser,
        r#"const b = Vision.parseJson('{"amount": 123456789012345678, "height": 123456789012345678, "rate": 1.5, "difficulty_sum": 340282366920938463463374607431768211455}');
           return [Vision.coins(b.amount), String(b.amount), Vision.count(b.amount), typeof b.height, typeof b.rate, String(b.difficulty_sum)]"#,
    )
    .await;
    assert_eq!(
        exact,
        json!([
            "1,234,567,890.12345678 LAND",
            "123456789012345678",
            "123,456,789,012,345,678",
            "number",
            "number",
            "340282366920938463463374607431768211455"
        ]),
        "this browser lacks JSON.parse source access, or the reviver broke"
    );
    for chart in ["#chart-hashrate", "#chart-shares", "#chart-blocks"] {
        let canvases = js(&browser, &format!("return document.querySelectorAll('{chart} canvas').length")).await;
        assert_eq!(canvases.as_u64(), Some(1), "{chart} is drawn");
    }
    click(&browser, "#range-tabs [data-range='10m']").await;
    fresh_figures(&browser).await;
    assert!(
        js(&browser, "return document.querySelector(\"[data-range='10m']\").classList.contains('current')").await
            == true
    );
    let points = js(&browser, "return document.getElementById('history-note').textContent").await;
    assert!(!points.as_str().unwrap_or_default().starts_with("0 points"), "the charts have history: {points}");
    // The blocks chart follows the range too (this pool is younger than 10 min).
    let listed = blocks.as_array().unwrap().len().min(200);
    let charted = js(&browser, "return document.getElementById('blocks-note').textContent").await;
    let expected = format!("{listed} of the {listed} blocks listed were found in the last 10 min.");
    assert_eq!(charted.as_str(), Some(expected.as_str()));
    screenshot(&browser, &shots, "dashboard").await;

    // Phone width: the page itself never scrolls sideways (tables scroll in place).
    browser.set_window_size(390, 900).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let overflow = js(&browser, "return document.documentElement.scrollWidth - window.innerWidth").await;
        if overflow.as_i64().unwrap_or(1) <= 0 {
            break;
        }
        if Instant::now() > deadline {
            let culprits = js(&browser, OVERFLOWING).await;
            panic!("the page overflows a phone's width by {overflow} px: {culprits}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    screenshot(&browser, &shots, "dashboard-phone").await;
    browser.set_window_size(1280, 1800).await.unwrap();

    // ---- a block: who got what and why ----
    let confirmed = blocks.as_array().unwrap().iter().find(|b| b["status"] == "confirmed").expect("a confirmed block");
    let height = confirmed["height"].as_u64().unwrap();
    browser.goto(&format!("{pool}/#/block/{height}")).await.unwrap();
    fresh_figures(&browser).await;
    let detail = get_json(&http, &format!("{pool}/pool/blocks/{height}"), None).await;
    let split_rows = js(&browser, "return document.querySelectorAll('#block-split tbody tr').length").await;
    assert_eq!(split_rows.as_u64(), Some(detail["split"].as_array().unwrap().len() as u64));
    let window = text(&browser, "#block-window").await;
    assert!(window.contains(&format!("N = {}", detail["window"]["target"])), "{window}");
    screenshot(&browser, &shots, "block").await;

    // ---- look up a wallet ----
    browser.goto(&format!("{pool}/#/wallet")).await.unwrap();
    type_into(&browser, "#wallet-input", "land1browser").await;
    click(&browser, "#wallet-form button[type=submit]").await;
    fresh_figures(&browser).await;
    let balance = get_json(&http, &format!("{pool}/pool/balances/land1browser"), None).await;
    for key in ["immature", "confirmed", "paid", "threshold"] {
        assert_eq!(field(&browser, &format!("balance.{key}")).await, balance[key].to_string(), "wallet {key}");
    }
    assert!(balance["paid"].as_u64() > Some(0), "the miner was paid: {balance}");
    // Each batch shows this wallet's part of it, not only the batch's total.
    let paid = get_json(&http, &format!("{pool}/pool/payouts?wallet=land1browser&limit=100"), None).await;
    // (The oldest: on the page whatever was paid since it was read.)
    let batch = paid.as_array().unwrap().last().expect("a payout to this wallet");
    let outputs = batch["outputs"].as_array().unwrap();
    let part: u64 =
        outputs.iter().filter(|o| o["address"] == "land1browser").map(|o| o["amount"].as_u64().unwrap()).sum();
    assert!(part > 0, "{batch}");
    let shown = text(&browser, &format!("[data-payout-part=\"{}\"]", batch["id"])).await;
    assert_eq!(json!(shown), js(&browser, &format!("return Vision.coins({part}n)")).await, "{batch}");
    screenshot(&browser, &shots, "wallet").await;

    // ---- a worker's page ----
    browser.goto(&format!("{pool}/#/worker/land1browser.browser-rig")).await.unwrap();
    fresh_figures(&browser).await;
    assert!(!visible(&browser, "#worker-missing").await, "the worker is known");
    assert!(js(&browser, "return document.querySelectorAll('#chart-worker canvas').length").await.as_u64() == Some(1));
    screenshot(&browser, &shots, "worker").await;

    // ---- admin: a wrong token changes nothing; the right one sets the fee ----
    browser.goto(&format!("{pool}/#/admin")).await.unwrap();
    type_into(&browser, "#admin-token", "not-the-token").await;
    click(&browser, "#admin-login button[type=submit]").await;
    until("the wrong token to be refused", Duration::from_secs(10), async || {
        text(&browser, "#admin-message").await.contains("wrong admin token").then_some(())
    })
    .await;
    assert!(!visible(&browser, "#admin-panel").await, "no admin panel without the right token");
    let fee_before = get_json(&http, &format!("{pool}/pool/stats"), None).await["pool_fee_bps"].clone();
    type_into(&browser, "#admin-token", ADMIN_TOKEN).await;
    click(&browser, "#admin-login button[type=submit]").await;
    until("the admin panel", Duration::from_secs(10), async || visible(&browser, "#admin-panel").await.then_some(()))
        .await;
    assert_eq!(
        get_json(&http, &format!("{pool}/pool/stats"), None).await["pool_fee_bps"],
        fee_before,
        "unlocking changed nothing"
    );
    type_into(&browser, "#set-pool-fee", "250").await;
    click(&browser, "#save-settings").await;
    until("the new pool fee", Duration::from_secs(10), async || {
        (get_json(&http, &format!("{pool}/pool/stats"), None).await["pool_fee_bps"] == 250).then_some(())
    })
    .await;
    until("the page to say so", Duration::from_secs(10), async || {
        text(&browser, "#admin-message").await.contains("saved").then_some(())
    })
    .await;
    let href = js(&browser, "return location.href").await;
    assert!(!href.as_str().unwrap().contains(ADMIN_TOKEN), "the token is never in a URL");
    let stored = js(&browser, "return JSON.stringify(localStorage) + document.cookie").await;
    assert!(!stored.as_str().unwrap().contains(ADMIN_TOKEN), "the token is kept in the session only");
    screenshot(&browser, &shots, "admin").await;
    browser.goto(&format!("{pool}/#/")).await.unwrap();
    fresh_figures(&browser).await;
    assert_eq!(field(&browser, "pool_fee_bps").await, "250");

    // No console errors so far, but the 403s the wrong admin token and the
    // miner's page by another name (no token: /status refused) earned.
    let errors = severe(&console(&driver_url, &browser).await, &["status of 403"]);
    assert!(errors.is_empty(), "console errors on the dashboard: {errors:#?}");

    // ---- the miner's page: resume, then join the second pool ----
    browser.goto(&miner_page).await.unwrap();
    fresh_figures(&browser).await;
    let accepted = get_json(&http, &format!("{miner_page}status"), None).await["accepted"].as_u64().unwrap();
    click(&browser, "#resume").await;
    until("the miner to mine again", Duration::from_secs(60), async || {
        let status = get_json(&http, &format!("{miner_page}status"), None).await;
        (status["paused"] == false && status["accepted"].as_u64() > Some(accepted)).then_some(())
    })
    .await;
    type_into(&browser, "#threads-input", "2").await;
    click(&browser, "#threads-form button[type=submit]").await;
    until("two CPU threads", Duration::from_secs(10), async || {
        (get_json(&http, &format!("{miner_page}status"), None).await["cpu_threads"] == 2).then_some(())
    })
    .await;
    type_into(&browser, "#pool-input", &pool_b).await;
    click(&browser, "#pool-form button[type=submit]").await;
    until("shares on the second pool", Duration::from_secs(60), async || {
        let stats = get_json(&http, &format!("{pool_b}/pool/stats"), None).await;
        (stats["shares"]["accepted"].as_u64() > Some(0)).then_some(())
    })
    .await;
    fresh_figures(&browser).await;
    assert_eq!(field(&browser, "connection.url").await, pool_b);
    let pools = js(&browser, "return document.querySelectorAll('#pools-table tbody tr').length").await;
    assert_eq!(pools.as_u64(), Some(2), "the failover list holds both pools");
    screenshot(&browser, &shots, "miner-switched").await;
    let errors = severe(&console(&driver_url, &browser).await, &[]);
    assert!(errors.is_empty(), "console errors on the miner's page: {errors:#?}");

    // ---- the coordinator goes away and comes back ----
    browser.goto(&format!("{pool}/")).await.unwrap();
    fresh_figures(&browser).await;
    assert!(!visible(&browser, "#offline").await);
    drop(pool_a); // SIGKILL
    until("the dashboard to say the coordinator is unreachable", Duration::from_secs(30), async || {
        visible(&browser, "#offline").await.then_some(())
    })
    .await;
    screenshot(&browser, &shots, "dashboard-offline").await;
    let (child, _) = start_coordinator(&root.join("a"), &args, &[]);
    pool_a = Process(child);
    until("the dashboard to recover", Duration::from_secs(30), async || {
        (!visible(&browser, "#offline").await).then_some(())
    })
    .await;
    assert_eq!(field(&browser, "pool_fee_bps").await, "250", "the admin's change survived the restart");

    browser.close().await.unwrap();
    drop(pool_a);
    let _ = std::fs::remove_dir_all(&root);
}
