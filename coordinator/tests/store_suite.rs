//! The store's behaviour suite: one set of cases, run against sled (real
//! files) and against PostgreSQL (a real throwaway server). Whatever the
//! pool relies on of its store is here, so a third backend gets the same
//! bar.

mod support;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use support::throwaway_postgres::ThrowawayPostgres;
use vision_coordinator::chain::BlockSubmission;
use vision_coordinator::storage::{
    AppendOutcome, BalanceBucket, BalanceDelta, BalanceRecord, BanRecord, BlockRewardRecord, BlockStatus,
    ClientCertificate, Credit, DatabaseTls, Expectation, FoundBlockRecord, JobRecord, LeaseTerms, PayoutOutput,
    PayoutRecord, PayoutStatus, PgStore, PoolSettings, PoolStore, RewardUpdate, SessionRecord, ShareRecord, SledStore,
    StoreError, StoredTemplate, TemplateRecord, WorkerRecord,
};
use vision_protocol::HeaderFields;

/// Opens the store under test, again and again on the same data.
#[derive(Clone)]
enum Backend {
    Sled(PathBuf),
    Postgres(String),
}

impl Backend {
    async fn open(&self) -> Arc<dyn PoolStore> {
        match self {
            Backend::Sled(path) => {
                // sled's flusher lets go of the file lock a moment after the
                // last handle drops: a reopen at once may find it held.
                for _ in 0..250 {
                    if let Ok(store) = SledStore::open_path(path) {
                        return Arc::new(store);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                panic!("sled store at {} did not open within 5 s", path.display())
            }
            Backend::Postgres(url) => {
                Arc::new(PgStore::connect(url, 8, &DatabaseTls::default()).await.expect("connect to PostgreSQL"))
            }
        }
    }
}

type Case = fn(Backend) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), (|b| Box::pin($name(b))) as Case)),*]
    };
}

const CASES: &[(&str, Case)] = cases![
    shares_append_in_order_and_duplicates_are_refused,
    ledger_positions_commit_in_order_so_a_pager_never_skips_a_share,
    a_worker_id_binds_to_the_first_wallet_only,
    a_worker_registered_again_outlives_a_prune_racing_it,
    sessions_unseen_for_long_are_pruned,
    a_touch_never_brings_back_a_pruned_session,
    share_keys_of_old_heights_are_pruned,
    a_share_whose_key_was_pruned_is_not_credited_again,
    compaction_folds_old_shares_into_aggregates,
    payouts_are_listed_newest_first_and_by_wallet,
    sending_batches_and_payable_balances_follow_every_update,
    a_refused_update_applies_nothing,
    an_update_decided_on_changed_state_applies_nothing,
    found_blocks_and_reward_records_are_read_by_height,
    jobs_templates_bans_and_settings_round_trip,
    ban_changes_are_logged,
    the_first_template_stored_for_a_tip_holds_it,
    coordinators_see_each_others_tips,
    state_survives_reopening,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_store_passes_the_suite() {
    for (name, case) in CASES {
        let dir = support::temp_dir(&format!("suite-{name}"));
        eprintln!("sled: {name}");
        case(Backend::Sled(dir.clone())).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_suite() {
    let server = ThrowawayPostgres::start();
    for (n, (name, case)) in CASES.iter().enumerate() {
        eprintln!("postgres: {name}");
        case(Backend::Postgres(server.database(&format!("suite_{n}")))).await;
    }
}

/// What only a shared database has: several stores (coordinators) at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stores_on_one_database_act_as_one() {
    let server = ThrowawayPostgres::start();
    let url = server.database("shared");
    // Coordinators starting at once: the schema is migrated once, and all
    // read one pool secret.
    let opening: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::connect(&url, 8, &DatabaseTls::default()).await })
        })
        .collect();
    let mut stores = Vec::new();
    for opened in opening {
        stores.push(Arc::new(opened.await.unwrap().expect("connect while others migrate")));
    }
    assert!(stores.iter().all(|s| s.secret() == stores[0].secret()), "one pool secret");

    // First credits of one new wallet from every store at once: none lost.
    let credits: Vec<_> = (0..30)
        .map(|i| {
            let store = stores[i % 3].clone();
            tokio::spawn(async move {
                let update = RewardUpdate {
                    balances: vec![BalanceDelta::new("land1new", BalanceBucket::Confirmed, 1)],
                    ..RewardUpdate::default()
                };
                store.apply_reward_update(&update).await.unwrap();
            })
        })
        .collect();
    for credit in credits {
        credit.await.unwrap();
    }
    assert_eq!(stores[1].balance("land1new").await.unwrap().map(|b| b.confirmed), Some(30));

    // The same share through every store: credited once.
    let outcomes: Vec<_> = (0..3)
        .map(|i| {
            let store = stores[i].clone();
            tokio::spawn(async move { store.append_share(&share("same", 7)).await.unwrap() })
        })
        .collect();
    let mut appended = 0;
    for outcome in outcomes {
        if matches!(outcome.await.unwrap(), AppendOutcome::Appended(_)) {
            appended += 1;
        }
    }
    assert_eq!(appended, 1, "one store credits the share, the others see the credit");
    assert_eq!(stores[2].ledger_len().await.unwrap(), 1);

    // Every store credits one new block at once: one does, once.
    let crediting: Vec<_> = (0..3)
        .map(|i| {
            let store = stores[i].clone();
            tokio::spawn(async move {
                let update = RewardUpdate {
                    expects: vec![Expectation::block(4, "h4", None)],
                    blocks: vec![BlockRewardRecord::pending(4, "h4", i as u64)],
                    balances: vec![BalanceDelta::new("land1finder", BalanceBucket::Immature, 100)],
                    ..RewardUpdate::default()
                };
                store.apply_reward_update(&update).await
            })
        })
        .collect();
    let mut credited = 0;
    for attempt in crediting {
        match attempt.await.unwrap() {
            Ok(()) => credited += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(err) => panic!("{err}"),
        }
    }
    assert_eq!(credited, 1);
    assert_eq!(stores[0].balance("land1finder").await.unwrap().map(|b| b.immature), Some(100));

    // A batch is sent by one coordinator at a time: leases, on the database's
    // clock, and only while it is sending; the claim hands out the batch as stored.
    let batch = PayoutRecord { status: PayoutStatus::Sending, ..payout(77, &["land1new"]) };
    stores[0]
        .apply_reward_update(&RewardUpdate { payouts: vec![batch.clone()], ..RewardUpdate::default() })
        .await
        .unwrap();
    // (Leases of 60 s; a retry needs 30 s of its lease left.)
    let claim = |n: usize, holder: &'static str, handover_ms: u64| {
        let store = stores[n].clone();
        let terms = LeaseTerms { lease_ms: 60_000, send_ms: 30_000, handover_ms };
        async move { store.claim_payout(77, holder, terms).await.unwrap() }
    };
    // (The lease runs out in `ms`, on the database's clock.)
    let runs_out_in = |ms: i64| {
        let sql = format!(
            "UPDATE pool_payouts SET lease_until = (extract(epoch FROM clock_timestamp()) * 1000)::bigint + {ms} \
             WHERE id = 77"
        );
        server.query("shared", &sql)
    };
    let left_under = |ms: i64| {
        let sql = format!(
            "SELECT lease_until - (extract(epoch FROM clock_timestamp()) * 1000)::bigint < {ms} FROM pool_payouts \
             WHERE id = 77"
        );
        server.query("shared", &sql) == "t"
    };
    assert_eq!(claim(0, "a", 0).await, Some(batch.clone()));
    assert_eq!(claim(1, "b", 0).await, None, "held by a");
    // Its holder retries while a send's time is left, without extending it.
    runs_out_in(45_000);
    assert!(claim(0, "a", 0).await.is_some(), "a retries");
    assert!(left_under(45_001), "the retry did not extend the lease");
    runs_out_in(20_000);
    assert_eq!(claim(0, "a", 0).await, None, "too little left for a send: a waits");
    assert_eq!(claim(1, "b", 0).await, None, "and it is still a's");
    // Just run out: another takes it at once; its last holder only after the handover.
    runs_out_in(-1);
    assert_eq!(claim(0, "a", 60_000).await, None, "its last holder waits the handover");
    assert!(claim(1, "b", 60_000).await.is_some(), "another takes it at once");
    runs_out_in(-120_000);
    assert!(claim(1, "b", 60_000).await.is_some(), "long run out: its last holder too");
    assert_eq!(claim(2, "c", 0).await, None);
    // What a decided while it held the batch no longer applies: it must not
    // split or settle a batch b is sending.
    let decided_by = |holder: &str| RewardUpdate {
        expects: vec![Expectation::payout(&batch), Expectation::Lease { id: 77, holder: holder.into() }],
        payouts: vec![PayoutRecord { reason: Some(format!("decided by {holder}")), ..batch.clone() }],
        ..RewardUpdate::default()
    };
    let refused = stores[0].apply_reward_update(&decided_by("a")).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    stores[1].apply_reward_update(&decided_by("b")).await.expect("the holder's own step");
    assert_eq!(claim(2, "c", 0).await, None, "a write keeps the lease");
    let paid = RewardUpdate { payouts: vec![payout(77, &["land1new"])], ..RewardUpdate::default() };
    stores[1].apply_reward_update(&paid).await.unwrap();
    runs_out_in(-120_000);
    assert_eq!(claim(2, "c", 0).await, None, "a paid batch is not sent again");
}

/// A database migrated by a newer coordinator: used when the newer
/// migrations say this schema can still read it (a rolling upgrade),
/// refused otherwise, with why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_newer_schema_is_used_only_where_it_says_this_one_still_works() {
    let server = ThrowawayPostgres::start();
    let url = server.database("schemas");
    let sql = |sql: &str| server.query("schemas", sql);
    let plain = DatabaseTls::default();
    let connect = || PgStore::connect(&url, 2, &plain);
    let marks = || sql("SELECT version, coalesce(oldest_reader, 0) FROM pool_schema_migrations ORDER BY version");

    // A database of schema 1, as schema-1 coordinators left it (no marks):
    // migrated, its old row unmarked, the new one marked.
    connect().await.expect("a fresh database migrates");
    sql("DELETE FROM pool_schema_migrations WHERE version IN (2, 3, 4, 5, 6, 7); DROP FUNCTION pool_append_shares; \
         DROP FUNCTION pool_append_shares_of_templates; \
         DROP TRIGGER pool_share_keys_go_below_the_mark ON pool_share_keys; \
         DROP FUNCTION pool_share_keys_go_below_the_mark; \
         DROP TABLE pool_coordinators, pool_pruned_templates, pool_ban_changes, pool_coordinator_tips; \
         ALTER TABLE pool_ledger_head DROP COLUMN share_keys_pruned_below; \
         ALTER TABLE pool_schema_migrations DROP COLUMN oldest_reader");
    connect().await.expect("a schema-1 database migrates");
    assert_eq!(marks(), "1|0\n2|1\n3|1\n4|4\n5|4\n6|4\n7|4", "schema 4 needs every coordinator at schema 4");

    let ours = vision_coordinator::storage::schema_version();
    let (next, later) = (ours + 1, ours + 2);
    sql(&format!(
        "INSERT INTO pool_schema_migrations (version, description, oldest_reader) VALUES ({next}, 'x', {ours})"
    ));
    connect().await.expect("a newer schema that this one can still read");
    // Refused where a newer migration needs a newer coordinator, or says
    // nothing; named, the one needing the newest.
    for mark in [format!("{next}"), "NULL".into()] {
        sql(&format!("UPDATE pool_schema_migrations SET oldest_reader = {mark} WHERE version = {next}"));
        let err = connect().await.unwrap_err().to_string();
        assert!(err.contains(&format!("schema version {next}")) && err.contains("upgrade the coordinator"), "{err}");
    }
    sql(&format!("UPDATE pool_schema_migrations SET oldest_reader = {ours} WHERE version = {next}"));
    sql(&format!(
        "INSERT INTO pool_schema_migrations (version, description, oldest_reader) VALUES ({later}, 'y', {later})"
    ));
    let err = connect().await.unwrap_err().to_string();
    assert!(err.contains(&format!("schema version {later}, which needs a coordinator of schema {later}")), "{err}");
    // And a newer schema with one of ours missing is not a history we know.
    sql(&format!("DELETE FROM pool_schema_migrations WHERE version IN ({later}, {ours})"));
    let err = connect().await.unwrap_err().to_string();
    assert!(err.contains(&format!("but not {ours}")), "{err}");
}

/// A database that would acknowledge commits before they are on disk is
/// refused, with what to do; the same database with the URL asking for
/// durable commits is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_without_durable_commits_is_refused() {
    let server = ThrowawayPostgres::start();
    let url = server.database("durability");
    let plain = DatabaseTls::default();
    let off = format!("{url}&options=-c%20synchronous_commit%3Doff");
    let err = PgStore::connect(&off, 2, &plain).await.unwrap_err().to_string();
    assert!(err.contains("synchronous_commit=off") && err.contains("synchronous_commit = on"), "{err}");
    server.query("durability", "ALTER DATABASE durability SET synchronous_commit = off");
    let err = PgStore::connect(&url, 2, &plain).await.unwrap_err().to_string();
    assert!(err.contains("synchronous_commit=off"), "{err}");
    let on = format!("{url}&options=-c%20synchronous_commit%3Don");
    PgStore::connect(&on, 2, &plain).await.expect("durable commits asked for in the URL");
    let local = format!("{url}&options=-c%20synchronous_commit%3Dlocal");
    PgStore::connect(&local, 2, &plain).await.expect("local commits are on disk");
}

/// A database whose transactions default to a stricter isolation than READ
/// COMMITTED is refused at start, with what to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_with_a_stricter_isolation_is_refused() {
    let server = ThrowawayPostgres::start();
    let url = server.database("isolation");
    let plain = DatabaseTls::default();
    server.query("isolation", "ALTER DATABASE isolation SET default_transaction_isolation = 'serializable'");
    let err = PgStore::connect(&url, 2, &plain).await.unwrap_err().to_string();
    assert!(err.contains("default to serializable") && err.contains("read committed"), "{err}");
    server.query("isolation", "ALTER DATABASE isolation RESET default_transaction_isolation");
    PgStore::connect(&url, 2, &plain).await.expect("read committed, the server's default");
}

/// A reward update that PostgreSQL aborts to break a deadlock (here with a
/// session that locks its wallets in the other order) is a conflict, retried
/// on a fresh read like any changed read, and applied nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_deadlocked_update_is_a_conflict_and_applies_nothing() {
    let server = ThrowawayPostgres::start();
    let db = "deadlock";
    let store = PgStore::connect(&server.database(db), 2, &DatabaseTls::default()).await.unwrap();
    let confirm = |amount: i128| RewardUpdate {
        balances: vec![
            BalanceDelta::new("a", BalanceBucket::Confirmed, amount),
            BalanceDelta::new("b", BalanceBucket::Confirmed, amount),
        ],
        ..RewardUpdate::default()
    };
    store.apply_reward_update(&confirm(10)).await.unwrap();
    // The session holds b, waits until the update waits for b (holding a),
    // then asks for a. Its own deadlock check comes late, so the update's
    // check finds the circle and is the one aborted.
    let crossing = "BEGIN; SET LOCAL deadlock_timeout = '30s'; \
                    SELECT 1 FROM pool_balances WHERE wallet = 'b' FOR UPDATE; \
                    DO $$ BEGIN FOR i IN 1..500 LOOP \
                      EXIT WHEN EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted); \
                      PERFORM pg_sleep(0.02); END LOOP; END $$; \
                    SELECT 1 FROM pool_balances WHERE wallet = 'a' FOR UPDATE; COMMIT;";
    let outcome = std::thread::scope(|scope| {
        let session = scope.spawn(|| server.query(db, crossing));
        let holding = "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE '%pg_locks%'";
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while server.query(db, holding) != "1" {
            assert!(!session.is_finished() && std::time::Instant::now() < deadline, "the session never held b");
            std::thread::sleep(Duration::from_millis(20));
        }
        let outcome = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(store.apply_reward_update(&confirm(5)))
        });
        session.join().unwrap();
        outcome
    });
    match &outcome {
        Err(StoreError::Conflict(why)) => assert!(why.contains("deadlock"), "{why}"),
        other => panic!("a deadlocked update should be a conflict: {other:?}"),
    }
    for wallet in ["a", "b"] {
        assert_eq!(store.balance(wallet).await.unwrap().map(|b| b.confirmed), Some(10), "{wallet}: nothing applied");
    }
    store.apply_reward_update(&confirm(5)).await.expect("the same update on a fresh try");
    assert_eq!(store.balance("a").await.unwrap().map(|b| b.confirmed), Some(15));
}

/// Coordinators on one database tell each other their reward rules: each
/// learns of the live ones whose rules differ (whatever the JSON's key
/// order), and of none once they agree or have not been seen lately.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_coordinators_learn_of_peers_with_other_rules() {
    let server = ThrowawayPostgres::start();
    let url = server.database("rules");
    let a = PgStore::connect(&url, 2, &DatabaseTls::default()).await.unwrap();
    let b = PgStore::connect(&url, 2, &DatabaseTls::default()).await.unwrap();
    let pplns = serde_json::json!({"scheme": "pplns", "confirmations": 10});
    let reordered: serde_json::Value = serde_json::from_str(r#"{"confirmations": 10, "scheme": "pplns"}"#).unwrap();
    let prop = serde_json::json!({"scheme": "prop", "confirmations": 10});
    let live = Duration::from_secs(30);
    let names = |peers: Vec<vision_coordinator::storage::CoordinatorRules>| {
        peers.into_iter().map(|p| (p.name, p.rules.contains("prop"))).collect::<Vec<_>>()
    };
    assert_eq!(names(a.meet_coordinators("a", &pplns, live).await.unwrap()), []);
    // b is told of a, and (refused) is not noted: a still sees nobody.
    assert_eq!(names(b.meet_coordinators("b", &prop, live).await.unwrap()), [("a".into(), false)]);
    assert_eq!(names(a.meet_coordinators("a", &pplns, live).await.unwrap()), []);
    // b with a's rules joins (whatever the key order).
    assert_eq!(names(b.meet_coordinators("b", &reordered, live).await.unwrap()), []);
    assert_eq!(names(a.meet_coordinators("a", &pplns, live).await.unwrap()), []);
    // A peer not seen within the window no longer counts: b changes its
    // rules once a has not been seen for a second, and then a learns of it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(names(b.meet_coordinators("b", &prop, Duration::from_secs(1)).await.unwrap()), []);
    assert_eq!(names(a.meet_coordinators("a", &pplns, live).await.unwrap()), [("b".into(), true)]);
}

/// Appends are batched per store (one transaction per batch): many at once
/// through three stores still give dense positions, each key credited once,
/// and every duplicate the credit of the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batched_appends_stay_dense_and_credit_each_share_once() {
    let server = ThrowawayPostgres::start();
    let url = server.database("batched");
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(PgStore::connect(&url, 4, &DatabaseTls::default()).await.unwrap()));
    }
    // 600 appends of 200 distinct shares, each sent three times, by
    // different sessions, all at once.
    let appends: Vec<_> = (0..600u64)
        .map(|i| {
            let store = stores[(i % 3) as usize].clone();
            tokio::spawn(async move {
                let record = ShareRecord { session_id: format!("s{}", i / 200), ..share("batched", i % 200) };
                (i % 200, record.session_id.clone(), store.append_share(&record).await.unwrap())
            })
        })
        .collect();
    let mut credits = std::collections::BTreeMap::new();
    let mut duplicates = Vec::new();
    for append in appends {
        match append.await.unwrap() {
            (nonce, session, AppendOutcome::Appended(position)) => {
                assert!(credits.insert(nonce, (position, session)).is_none(), "nonce {nonce} credited twice");
            }
            (nonce, _, AppendOutcome::Duplicate(credit)) => duplicates.push((nonce, credit)),
            (nonce, _, AppendOutcome::TemplateGone) => panic!("nonce {nonce}: nothing was pruned"),
        }
    }
    assert_eq!(credits.len(), 200, "every share credited once");
    assert_eq!(duplicates.len(), 400);
    for (nonce, credit) in duplicates {
        let (position, session) = &credits[&nonce];
        assert_eq!((credit.position, &credit.session_id), (*position, session), "nonce {nonce}");
    }
    let ledger = stores[1].shares_from(0, 1000).await.unwrap();
    assert!(ledger.iter().map(|(p, _)| *p).eq(0..200), "dense positions from 0");
    for (position, record) in &ledger {
        assert_eq!(credits[&record.nonce].0, *position);
    }

    // The function itself, on one batch holding a share twice: the second
    // answers the first's credit (deterministic, where the tasks above
    // batch as they happen to queue).
    let answer = server.query(
        "batched",
        "SELECT ord, outcome, credit_position, credit_session FROM pool_append_shares_of_templates(\
         ARRAY['\\x01', '\\x01', '\\x02']::bytea[], ARRAY[3, 3, 3]::bigint[], \
         ARRAY['a', 'b', 'c'], ARRAY['{}', '{}', '{}']::jsonb[], ARRAY['t', 't', 't'])",
    );
    assert_eq!(answer, "1|appended|200|a\n2|duplicate|200|a\n3|appended|201|c");

    // A transaction that holds the ledger head and does not commit (a
    // client that died unnoticed) fails appends within the function's
    // lock_timeout, not never; once it ends, appends go on.
    let holder = {
        let url_db = "batched";
        let server = &server;
        std::thread::scope(|scope| {
            let held = scope.spawn(move || {
                server.query(
                    url_db,
                    "BEGIN; SELECT next_position FROM pool_ledger_head WHERE id = 1 FOR UPDATE; \
                     SELECT pg_sleep(9); COMMIT;",
                )
            });
            // Until the holder is asleep with the lock.
            let asleep = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep(9)%' \
                          AND pid <> pg_backend_pid()";
            while server.query(url_db, asleep) != "1" {
                std::thread::sleep(Duration::from_millis(50));
            }
            let started = std::time::Instant::now();
            let stuck = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(stores[0].append_share(&share("held", 1)))
            });
            let waited = started.elapsed();
            let _ = held.join();
            (stuck, waited)
        })
    };
    let (stuck, waited) = holder;
    assert!(matches!(stuck, Err(StoreError::Backend(_))), "{stuck:?}");
    assert!(waited >= Duration::from_secs(4) && waited < Duration::from_secs(8), "failed after {waited:?}");
    // (The holder slept 9 s: an append that waited for it would have taken longer.)
    assert!(matches!(stores[0].append_share(&share("held", 1)).await.unwrap(), AppendOutcome::Appended(202)));
}

/// A prune holds the rows of the templates it is forgetting. An append
/// never waits for one: a share on such a template is gone at once (its
/// keys are going), and a share on any other template goes on. A prune
/// that rolls back leaves its templates taking shares again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_append_never_waits_for_a_template_being_pruned() {
    let server = ThrowawayPostgres::start();
    let db = "pruning";
    let store = PgStore::connect(&server.database(db), 4, &DatabaseTls::default()).await.unwrap();
    store.claim_template("t-held", &template(5, "p4", 1, 0)).await.unwrap();
    store.claim_template("t-free", &template(6, "p5", 1, 10)).await.unwrap();
    // A prune below 8 under way: the mark raised, its first template locked.
    server.query(db, "UPDATE pool_ledger_head SET share_keys_pruned_below = 8");
    let held = ShareRecord { height: 5, template_id: "t-held".into(), ..share("held", 1) };
    let free = ShareRecord { height: 6, template_id: "t-free".into(), ..share("free", 1) };
    let holding = "BEGIN; SELECT 1 FROM pool_templates WHERE template_id = 't-held' FOR UPDATE; \
                   SELECT pg_sleep(6); ROLLBACK;";
    let (outcomes, waited) = while_a_session_sleeps(&server, db, holding, async || {
        let started = std::time::Instant::now();
        let outcomes = (store.append_share(&held).await.unwrap(), store.append_share(&free).await.unwrap());
        (outcomes, started.elapsed())
    });
    assert_eq!(outcomes, (AppendOutcome::TemplateGone, AppendOutcome::Appended(0)));
    assert!(waited < Duration::from_secs(2), "the appends waited {waited:?} for the prune");
    assert_eq!(store.append_share(&held).await.unwrap(), AppendOutcome::Appended(1), "the prune rolled back");
    // One remembered as pruned yet stored (a claim that raced a prune's
    // commit) is gone all the same.
    server.query(db, "INSERT INTO pool_pruned_templates VALUES ('t-free', 6)");
    let late = ShareRecord { nonce: 2, ..free };
    assert_eq!(store.append_share(&late).await.unwrap(), AppendOutcome::TemplateGone);
}

/// A coordinator older than schema 4 still running after the upgrade can
/// neither append (its functions refuse, so its miners go elsewhere) nor
/// delete a share key the mark does not cover (a prune that never raised
/// it); this schema's prune, which raises the mark first, goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_coordinator_older_than_schema_4_can_neither_append_nor_prune() {
    let server = ThrowawayPostgres::start();
    let db = "retired";
    let store = PgStore::connect(&server.database(db), 2, &DatabaseTls::default()).await.unwrap();
    for height in 1..=3 {
        store.append_share(&ShareRecord { height, ..share("j", height) }).await.unwrap();
    }
    let appends = [
        "SELECT * FROM pool_append_share('\\x01', 9, 's', '{}')",
        "SELECT * FROM pool_append_shares(ARRAY['\\x01'::bytea], ARRAY[9::bigint], ARRAY['s'], ARRAY['{}'::jsonb])",
    ];
    for old in appends {
        let why = server.refused(db, old);
        assert!(why.contains("retired at schema 7: upgrade this coordinator"), "{why}");
    }
    let keys = "SELECT count(*) FROM pool_share_keys";
    let why = server.refused(db, "DELETE FROM pool_share_keys WHERE height < 3");
    assert!(why.contains("not below the pruned mark"), "{why}");
    assert_eq!(server.query(db, keys), "3", "no key gone");
    assert_eq!(store.prune_share_keys_below(3).await.unwrap(), 2);
    assert_eq!(server.query(db, keys), "1");
    assert_eq!(store.ledger_len().await.unwrap(), 3, "no share appended by the old functions");
}

/// Runs `sql` (which sleeps with `pg_sleep(6)`, holding what it locked) in a
/// psql session of its own and, once it sleeps, `during` on this runtime;
/// then waits for the session to end.
fn while_a_session_sleeps<T>(server: &ThrowawayPostgres, db: &str, sql: &str, during: impl AsyncFnOnce() -> T) -> T {
    std::thread::scope(|scope| {
        let held = scope.spawn(|| server.query(db, sql));
        // Asleep, so past what it locks first (the session is active from
        // its first statement).
        let asleep = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND wait_event = 'PgSleep' \
                      AND query LIKE '%pg_sleep(6)%' AND pid <> pg_backend_pid()";
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while server.query(db, asleep) != "1" {
            assert!(!held.is_finished() && std::time::Instant::now() < deadline, "the session never slept");
            std::thread::sleep(Duration::from_millis(50));
        }
        let outcome = tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(during()));
        let _ = held.join();
        outcome
    })
}

/// Reads that hold every general connection (stuck here behind a lock, as a
/// flood of public requests would hold them) leave the share path its own
/// connections: a share is still appended and checked for duplicates at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reads_cannot_take_the_share_paths_connections() {
    let server = ThrowawayPostgres::start();
    let db = "flood";
    let store = Arc::new(PgStore::connect(&server.database(db), 2, &DatabaseTls::default()).await.unwrap());
    let holding = "BEGIN; LOCK TABLE pool_payouts IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(6); COMMIT;";
    let (appended, credited, waited, reads) = while_a_session_sleeps(&server, db, holding, async || {
        let reads: Vec<_> = (0..6)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.payouts_newest(10, None, None).await })
            })
            .collect();
        // Until both general connections wait on the lock.
        let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                       AND query LIKE '%pool_payouts%'";
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while server.query(db, waiting) != "2" {
            assert!(std::time::Instant::now() < deadline, "the reads never held both connections");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let started = std::time::Instant::now();
        let appended = store.append_share(&share("flood", 1)).await;
        let credited = store.credited(3, "t-flood", 1).await;
        let waited = started.elapsed();
        let mut finished = Vec::new();
        for read in reads {
            finished.push(read.await.unwrap());
        }
        (appended, credited, waited, finished)
    });
    assert!(matches!(appended, Ok(AppendOutcome::Appended(0))), "{appended:?}");
    assert!(matches!(credited, Ok(Some(Credit { position: 0, .. }))), "{credited:?}");
    assert!(waited < Duration::from_secs(2), "the share waited {waited:?} behind the reads");
    // The reads themselves were only delayed (or, past the pool's wait, failed), never wrong.
    assert!(reads.iter().all(|r| matches!(r, Ok(p) if p.is_empty()) || matches!(r, Err(StoreError::Backend(_)))));
}

/// The coordinator's connections to `database` that meet `condition` on
/// `pg_stat_ssl s`, after `store` has written something (so one is open).
async fn coordinator_connections(store: &PgStore, server: &ThrowawayPostgres, database: &str, condition: &str) -> u32 {
    let ban =
        BanRecord { session_id: "s".into(), worker_id: "w".into(), source: None, until_ms: 1, reason: "r".into() };
    store.put_ban(&ban).await.unwrap();
    let sql = format!(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE {condition} AND a.application_name = 'vision-coordinator'"
    );
    server.query(database, &sql).parse().unwrap()
}

/// `sslmode=require`: the connection is encrypted and the server's
/// certificate checked (against `--database-ca`, else the system's store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_checks_the_servers_certificate() {
    let server = ThrowawayPostgres::start_tls();
    server.database("tls");
    let url = server.tls_url("tls");
    let trusting = |ca_pem: Vec<u8>| DatabaseTls { ca_pem: Some(ca_pem), client: None };
    let store = PgStore::connect(&url, 2, &trusting(server.ca_pem())).await.expect("TLS with the test CA");
    let encrypted = coordinator_connections(&store, &server, "tls", "s.ssl").await;
    assert!(encrypted >= 1, "the coordinator's connections use TLS");
    // The system's trust store does not know the test CA: refused.
    let untrusted = PgStore::connect(&url, 2, &DatabaseTls::default()).await;
    assert!(untrusted.is_err(), "a certificate no trusted CA signed is refused");
    // Another CA's certificates are refused too.
    let other = ThrowawayPostgres::start_tls();
    let wrong = PgStore::connect(&url, 2, &trusting(other.ca_pem())).await;
    assert!(wrong.is_err(), "a certificate of another CA is refused");
}

/// `cert` authentication: the server takes the coordinator's client
/// certificate (`--database-cert`, `--database-key`) and nothing less.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_with_a_client_certificate() {
    let server = ThrowawayPostgres::start_tls_client_certs();
    server.database("mtls");
    let url = server.tls_url("mtls");
    // Through the coordinator's settings, as an operator gives them.
    let files = support::temp_dir("mtls-files");
    std::fs::create_dir_all(&files).unwrap();
    for (name, pem) in
        [("ca.pem", server.ca_pem()), ("cert.pem", server.client_cert_pem()), ("key.pem", server.client_key_pem())]
    {
        std::fs::write(files.join(name), pem).unwrap();
    }
    std::fs::write(files.join("junk.key"), "-----BEGIN PRIVATE KEY-----\nsecretjunk\n-----END PRIVATE KEY-----\n")
        .unwrap();
    let settings = |url: Option<&str>, key: &str| vision_coordinator::config::CoordinatorArgs {
        database_url: url.map(String::from),
        database_ca: Some(files.join("ca.pem")),
        database_cert: Some(files.join("cert.pem")),
        database_key: Some(files.join(key)),
        ..Default::default()
    };
    let config = settings(Some(&url), "key.pem").resolve().expect("valid database TLS settings");
    // Settings refused at start, each with why (and never the key's contents).
    let refused = |url: Option<&str>, key: &str| settings(url, key).resolve().unwrap_err().to_string();
    assert!(refused(None, "key.pem").contains("is for --database-url"));
    assert!(refused(Some(&server.url("mtls")), "key.pem").contains("needs sslmode=require"));
    let junk = refused(Some(&url), "junk.key");
    assert!(junk.contains("no usable private key") && !junk.contains("secretjunk"), "{junk}");
    let other = ThrowawayPostgres::start_tls_client_certs();
    std::fs::write(files.join("other.key"), other.client_key_pem()).unwrap();
    assert!(refused(Some(&url), "other.key").contains("not the key of --database-cert"));
    let ours = config.database_tls.client.clone().expect("the client certificate");
    let store = PgStore::connect(&url, 2, &config.database_tls).await.expect("TLS with our client certificate");
    let tls = |client: Option<ClientCertificate>| DatabaseTls { ca_pem: Some(server.ca_pem()), client };
    let shown = coordinator_connections(&store, &server, "mtls", "s.client_dn = '/CN=postgres'").await;
    assert!(shown >= 1, "the server saw our certificate");

    // Without a certificate, or with another CA's: refused by the server.
    let without = PgStore::connect(&url, 2, &tls(None)).await;
    assert!(without.is_err(), "no client certificate, no connection");
    let foreign = ClientCertificate { cert_pem: other.client_cert_pem(), key_pem: other.client_key_pem() };
    let refused = PgStore::connect(&url, 2, &tls(Some(foreign))).await;
    assert!(refused.is_err(), "a client certificate of another CA is refused");
    // A key that is not the certificate's: refused before connecting.
    let mismatched = ClientCertificate { key_pem: other.client_key_pem(), ..ours.clone() };
    let err = PgStore::connect(&url, 2, &tls(Some(mismatched))).await.unwrap_err().to_string();
    assert!(err.contains("--database-cert") && err.contains("KeyMismatch"), "{err}");
    // And a client certificate without sslmode=require: refused, with why.
    let plain = server.url("mtls");
    let err = PgStore::connect(&plain, 2, &tls(Some(ours))).await.unwrap_err().to_string();
    assert!(err.contains("sslmode=require"), "{err}");
}

fn share(job: &str, nonce: u64) -> ShareRecord {
    ShareRecord {
        worker_id: "w1".into(),
        session_id: "s1".into(),
        wallet_address: "land1abc".into(),
        template_id: format!("t-{job}"),
        job_id: job.into(),
        nonce,
        share_difficulty: 10,
        height: 3,
        time_ms: 1,
        is_block: false,
    }
}

fn payout(id: u64, wallets: &[&str]) -> PayoutRecord {
    PayoutRecord {
        id,
        status: PayoutStatus::Paid,
        outputs: wallets.iter().map(|w| PayoutOutput::new(w, 5)).collect(),
        idempotency_key: format!("k{id}"),
        reason: None,
        created_ms: id,
        updated_ms: id,
        transfer_id: None,
        attempts: 1,
    }
}

fn ids(payouts: Vec<PayoutRecord>) -> Vec<u64> {
    payouts.into_iter().map(|p| p.id).collect()
}

fn found_block(height: u64, hash: &str) -> FoundBlockRecord {
    let header = HeaderFields {
        chain_id: "c".into(),
        height,
        parent_hash: String::new(),
        timestamp: 0,
        difficulty: 1,
        tx_root: String::new(),
        miner: "m".into(),
    };
    FoundBlockRecord {
        height,
        hash: hash.into(),
        template_id: "t".into(),
        nonce: 0,
        worker_id: "w".into(),
        session_id: "s".into(),
        wallet_address: "a".into(),
        time_ms: height,
        status: BlockStatus::Accepted,
        reason: None,
        attempts: 1,
        updated_ms: height,
        submission: BlockSubmission { header, nonce: 0 },
        share_position: Some(height),
        pool_fee_bps: None,
        share: None,
    }
}

async fn shares_append_in_order_and_duplicates_are_refused(backend: Backend) {
    let store = backend.open().await;
    let a = store.append_share(&share("j1", 1)).await.unwrap();
    let b = store.append_share(&share("j1", 2)).await.unwrap();
    let dup = store.append_share(&ShareRecord { session_id: "other".into(), ..share("j1", 1) }).await.unwrap();
    assert_eq!(dup, AppendOutcome::Duplicate(Credit { position: 0, session_id: "s1".into() }));
    let c = store.append_share(&share("j2", 1)).await.unwrap();
    assert_eq!((a, b, c), (AppendOutcome::Appended(0), AppendOutcome::Appended(1), AppendOutcome::Appended(2)));
    let all = store.shares_from(0, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|(_, s)| (s.job_id.as_str(), s.nonce)).collect::<Vec<_>>(),
        [("j1", 1), ("j1", 2), ("j2", 1)]
    );
    let back: Vec<u64> = store.shares_back_from(1, 10).await.unwrap().iter().map(|(p, _)| *p).collect();
    assert_eq!(back, [1, 0]);
    assert_eq!(store.credited(3, "t-j1", 2).await.unwrap().map(|c| c.position), Some(1));
    assert_eq!(store.credited(3, "t-j2", 2).await.unwrap(), None);
    assert_eq!(store.ledger_len().await.unwrap(), 3);
}

async fn ledger_positions_commit_in_order_so_a_pager_never_skips_a_share(backend: Backend) {
    let store = backend.open().await;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..150 {
                    store.append_share(&share(&format!("w{w}"), n)).await.unwrap();
                }
            })
        })
        .collect();
    // A reader paging by position while appends race: every page must
    // continue exactly where the last one ended.
    let mut next = 0u64;
    while next < 600 {
        for (position, _) in store.shares_from(next, 64).await.unwrap() {
            assert_eq!(position, next, "a position committed after a later one");
            next += 1;
        }
        tokio::task::yield_now().await;
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(store.ledger_len().await.unwrap(), 600);
}

async fn a_worker_id_binds_to_the_first_wallet_only(backend: Backend) {
    let store = backend.open().await;
    let worker = |wallet: &str| WorkerRecord {
        worker_id: "rig".into(),
        wallet_address: wallet.into(),
        worker_name: None,
        registered_at_ms: 5,
        owner_token_hash: wallet.into(),
    };
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let (store, wanted) = (store.clone(), worker(&format!("land1w{i}")));
            tokio::spawn(async move { store.bind_worker(&wanted).await.unwrap() })
        })
        .collect();
    let mut bound = Vec::new();
    for racer in racers {
        bound.push(racer.await.unwrap());
    }
    assert!(bound.windows(2).all(|p| p[0] == p[1]), "every racer sees one binding: {bound:?}");
    assert_eq!(store.worker("rig").await.unwrap().as_ref(), Some(&bound[0]));
    assert_eq!(store.worker("other").await.unwrap(), None);
    // A rename keeps the binding.
    let renamed = WorkerRecord { worker_name: Some("left".into()), ..bound[0].clone() };
    store.put_worker(&renamed).await.unwrap();
    assert_eq!(store.worker("rig").await.unwrap(), Some(renamed));
}

/// A worker registered again is not pruned by a prune that could not yet
/// see the new session: registering again moves the binding's time on.
async fn a_worker_registered_again_outlives_a_prune_racing_it(backend: Backend) {
    let store = backend.open().await;
    let first = WorkerRecord {
        worker_id: "land1w.rig".into(),
        wallet_address: "land1w".into(),
        worker_name: Some("rig one".into()),
        registered_at_ms: 5,
        owner_token_hash: "owner".into(),
    };
    store.bind_worker(&first).await.unwrap();
    // Registered again at 900; its session is not stored yet.
    let again =
        WorkerRecord { worker_name: None, registered_at_ms: 900, owner_token_hash: "second".into(), ..first.clone() };
    let bound = store.bind_worker(&again).await.unwrap();
    let expected = WorkerRecord { registered_at_ms: 900, ..first.clone() };
    assert_eq!(bound, expected, "the first binding holds, its name and owner kept");
    assert_eq!(store.prune_workers_without_sessions(600).await.unwrap(), 0, "registered at 900");
    assert_eq!(store.worker("land1w.rig").await.unwrap(), Some(expected.clone()));
    // An older registration never moves the time back.
    let late = WorkerRecord { registered_at_ms: 700, ..again };
    assert_eq!(store.bind_worker(&late).await.unwrap(), expected);
    assert_eq!(store.prune_workers_without_sessions(1_000).await.unwrap(), 1, "unused since 900");
}

async fn sessions_unseen_for_long_are_pruned(backend: Backend) {
    let store = backend.open().await;
    let session = |hash: &str, worker: &str, seen: u64, proven: bool| SessionRecord {
        session_id: hash[..4].into(),
        token_hash: hash.into(),
        worker_id: worker.into(),
        wallet_address: "land1w".into(),
        version: None,
        source: None,
        created_ms: 0,
        last_seen_ms: seen,
        proven,
    };
    for (hash, seen, proven) in [("aaaa1", 10, true), ("bbbb2", 500, true), ("cccc3", 1000, true)] {
        store.put_session(&session(hash, "land1w.rig", seen, proven)).await.unwrap();
    }
    // Seen again: no longer old.
    let touched = store.touch_session("bbbb2", 700, false).await.unwrap();
    assert_eq!(touched.map(|s| (s.last_seen_ms, s.proven)), Some((700, true)), "proven stays");
    // Never proven: forgotten by the sooner cutoff.
    store.put_session(&session("dddd4", "land1w.junk", 800, false)).await.unwrap();
    store.put_session(&session("eeee5", "land1w.fresh", 950, false)).await.unwrap();
    assert_eq!(store.prune_sessions(600, 900).await.unwrap(), 2);
    assert!(store.session("aaaa1").await.unwrap().is_none());
    assert!(store.session("dddd4").await.unwrap().is_none());
    assert_eq!(store.session("bbbb2").await.unwrap().map(|s| s.last_seen_ms), Some(700));
    assert_eq!(store.session("cccc3").await.unwrap().map(|s| s.last_seen_ms), Some(1000));
    assert_eq!(store.session("eeee5").await.unwrap().map(|s| s.last_seen_ms), Some(950));

    // Workers: forgotten once old and named by no session.
    let worker = |id: &str, registered: u64| WorkerRecord {
        worker_id: id.into(),
        wallet_address: "land1w".into(),
        worker_name: Some(format!("name of {id}")),
        registered_at_ms: registered,
        owner_token_hash: "owner".into(),
    };
    for (id, registered) in [("land1w.rig", 5), ("land1w.junk", 5), ("land1w.fresh", 5), ("land1w.new", 900)] {
        store.bind_worker(&worker(id, registered)).await.unwrap();
    }
    assert_eq!(store.prune_workers_without_sessions(600).await.unwrap(), 1);
    assert!(store.worker("land1w.junk").await.unwrap().is_none(), "its only session is gone");
    for kept in ["land1w.rig", "land1w.fresh", "land1w.new"] {
        assert!(store.worker(kept).await.unwrap().is_some(), "{kept}");
    }
    // The freed id binds again, to whoever registers it next.
    let next = WorkerRecord { owner_token_hash: "next".into(), ..worker("land1w.junk", 950) };
    assert_eq!(store.bind_worker(&next).await.unwrap().owner_token_hash, "next");
    assert_eq!(store.prune_workers_without_sessions(600).await.unwrap(), 0, "nothing left to forget");
}

/// A touch (a token seen again, a session proven, housekeeping) never
/// moves a session back in time nor unproves it, and never brings back a
/// session a prune forgot.
async fn a_touch_never_brings_back_a_pruned_session(backend: Backend) {
    let store = backend.open().await;
    let stored = SessionRecord {
        session_id: "ffff".into(),
        token_hash: "ffff6".into(),
        worker_id: "land1w.gone".into(),
        wallet_address: "land1w".into(),
        version: None,
        source: None,
        created_ms: 0,
        last_seen_ms: 100,
        proven: false,
    };
    store.put_session(&stored).await.unwrap();
    let touched = store.touch_session("ffff6", 800, true).await.unwrap().unwrap();
    assert_eq!((touched.last_seen_ms, touched.proven), (800, true));
    let touched = store.touch_session("ffff6", 300, false).await.unwrap().unwrap();
    assert_eq!((touched.last_seen_ms, touched.proven), (800, true), "never back, proven kept");
    assert_eq!(store.session("ffff6").await.unwrap(), Some(touched));
    assert_eq!(store.prune_sessions(900, 900).await.unwrap(), 1);
    // A late touch of the pruned session writes nothing.
    assert_eq!(store.touch_session("ffff6", 1_000, true).await.unwrap(), None);
    assert_eq!(store.session("ffff6").await.unwrap(), None);
    assert_eq!(store.touch_session("nope", 1_000, false).await.unwrap(), None);
}

async fn share_keys_of_old_heights_are_pruned(backend: Backend) {
    let store = backend.open().await;
    for height in 1..=5 {
        store.append_share(&ShareRecord { height, ..share("j", height) }).await.unwrap();
    }
    assert_eq!(store.prune_share_keys_below(4).await.unwrap(), 3);
    assert_eq!(store.credited(2, "t-j", 2).await.unwrap(), None);
    assert!(store.credited(4, "t-j", 4).await.unwrap().is_some());
    assert_eq!(store.shares_from(0, 10).await.unwrap().len(), 5, "the ledger itself stays");
}

/// Below the height keys were pruned to, a share's key may be gone: it is
/// appended only while its template is stored (one claimed again after the
/// tip went down, whose keys are whole), never credited a second time.
async fn a_share_whose_key_was_pruned_is_not_credited_again(backend: Backend) {
    let store = backend.open().await;
    store.claim_template("t-old", &template(5, "p4", 1, 0)).await.unwrap();
    let old = ShareRecord { height: 5, template_id: "t-old".into(), ..share("old", 1) };
    assert_eq!(store.append_share(&old).await.unwrap(), AppendOutcome::Appended(0));
    // The tip went on (here, or on another coordinator's chain), and
    // housekeeping forgot heights below 8.
    assert_eq!(store.prune_share_keys_below(8).await.unwrap(), 1);
    assert_eq!(store.template("t-old").await.unwrap(), None, "its template goes with its keys");
    // Sent again through a coordinator that still judges it current.
    assert_eq!(store.append_share(&old).await.unwrap(), AppendOutcome::TemplateGone);
    // A node handing out that very template again: never stored again.
    let again = store.claim_template("t-old", &template(5, "p4", 1, 20)).await;
    assert!(matches!(again, Err(StoreError::Refused(_))), "{again:?}");
    assert_eq!(store.append_share(&old).await.unwrap(), AppendOutcome::TemplateGone);
    // The tip went down: a template claimed below the mark takes shares.
    store.claim_template("t-new", &template(6, "p5b", 2, 10)).await.unwrap();
    let new = ShareRecord { height: 6, template_id: "t-new".into(), ..share("new", 1) };
    assert_eq!(store.append_share(&new).await.unwrap(), AppendOutcome::Appended(1));
    assert!(matches!(store.append_share(&new).await.unwrap(), AppendOutcome::Duplicate(_)));
    // At or above the mark no key was ever pruned: nothing to check.
    let above = ShareRecord { height: 8, ..share("above", 1) };
    assert_eq!(store.append_share(&above).await.unwrap(), AppendOutcome::Appended(2));
    // A lower prune does not lower the mark, and the mark outlives the process.
    store.prune_share_keys_below(3).await.unwrap();
    drop(store);
    let store = backend.open().await;
    assert_eq!(store.append_share(&old).await.unwrap(), AppendOutcome::TemplateGone);
    assert!(matches!(store.append_share(&new).await.unwrap(), AppendOutcome::Duplicate(_)));
    assert_eq!(store.shares_from(0, 10).await.unwrap().len(), 3, "each share credited once");
}

async fn compaction_folds_old_shares_into_aggregates(backend: Backend) {
    let store = backend.open().await;
    for n in 0..10u64 {
        let worker = if n % 2 == 0 { "even" } else { "odd" };
        let record = ShareRecord { worker_id: worker.into(), share_difficulty: n + 1, time_ms: n, ..share("j", n) };
        store.append_share(&record).await.unwrap();
    }
    assert_eq!(store.ledger_floor().await.unwrap(), 0);
    assert_eq!(store.compact_shares_below(4, 3).await.unwrap(), 3, "at most max");
    assert_eq!(store.compact_shares_below(4, 100).await.unwrap(), 1, "only below the bound");
    assert_eq!(store.compact_shares_below(4, 100).await.unwrap(), 0, "nothing twice");
    assert_eq!(store.ledger_floor().await.unwrap(), 4);
    assert_eq!(store.shares_from(0, 100).await.unwrap().first().map(|(p, _)| *p), Some(4));
    let aggregates = store.share_aggregates().await.unwrap();
    let even = aggregates.iter().find(|a| a.worker_id == "even").unwrap();
    let odd = aggregates.iter().find(|a| a.worker_id == "odd").unwrap();
    assert_eq!((even.shares, even.difficulty_sum, even.first_position, even.last_position), (2, 1 + 3, 0, 2));
    assert_eq!((odd.shares, odd.difficulty_sum, odd.first_position, odd.last_position), (2, 2 + 4, 1, 3));
    // Everything, with the ledger's end as the bound: the floor is the end.
    assert_eq!(store.compact_shares_below(u64::MAX, 100).await.unwrap(), 6);
    assert_eq!(store.ledger_floor().await.unwrap(), 10);
    assert_eq!(store.ledger_len().await.unwrap(), 10, "positions keep counting");
    let total: u64 = store.share_aggregates().await.unwrap().iter().map(|a| a.shares).sum();
    assert_eq!(total, 10, "every share is accounted for");
    assert_eq!(store.append_share(&share("k", 1)).await.unwrap(), AppendOutcome::Appended(10));
}

async fn payouts_are_listed_newest_first_and_by_wallet(backend: Backend) {
    let store = backend.open().await;
    let batches = [(1, &["a"][..]), (2, &["b"][..]), (3, &["a", "b"][..]), (4, &["b"][..]), (5, &["a"][..])];
    let payouts = batches.iter().map(|(id, w)| payout(*id, w)).collect();
    store.apply_reward_update(&RewardUpdate { payouts, ..RewardUpdate::default() }).await.unwrap();
    assert_eq!(ids(store.payouts_newest(2, None, None).await.unwrap()), [5, 4]);
    assert_eq!(ids(store.payouts_newest(10, Some("a"), None).await.unwrap()), [5, 3, 1]);
    assert_eq!(ids(store.payouts_newest(2, Some("a"), None).await.unwrap()), [5, 3]);
    assert!(store.payouts_newest(10, Some("nobody"), None).await.unwrap().is_empty());
    // Pages: below a batch's id, with and without a wallet.
    assert_eq!(ids(store.payouts_newest(2, None, Some(4)).await.unwrap()), [3, 2]);
    assert_eq!(ids(store.payouts_newest(10, None, Some(2)).await.unwrap()), [1]);
    assert_eq!(ids(store.payouts_newest(10, Some("a"), Some(5)).await.unwrap()), [3, 1]);
    assert_eq!(ids(store.payouts_newest(1, Some("a"), Some(3)).await.unwrap()), [1]);
    assert!(store.payouts_newest(10, Some("a"), Some(1)).await.unwrap().is_empty());
    assert_eq!(ids(store.payouts_newest(10, Some("b"), Some(u64::MAX)).await.unwrap()), [4, 3, 2]);
    // Batch 3 split per payee into 6 (a) and 7 (b); batch 1 forgotten.
    let update = RewardUpdate {
        payouts: vec![payout(6, &["a"]), payout(7, &["b"])],
        payouts_removed: vec![1, 3],
        ..RewardUpdate::default()
    };
    store.apply_reward_update(&update).await.unwrap();
    assert_eq!(ids(store.payouts_newest(10, Some("a"), None).await.unwrap()), [6, 5]);
    assert_eq!(ids(store.payouts_newest(10, Some("b"), None).await.unwrap()), [7, 4, 2]);
    assert_eq!(ids(store.payouts().await.unwrap()), [2, 4, 5, 6, 7]);
    assert_eq!(store.payout(4).await.unwrap().map(|p| p.id), Some(4));
    assert_eq!(store.payout(3).await.unwrap(), None);
}

async fn sending_batches_and_payable_balances_follow_every_update(backend: Backend) {
    let store = backend.open().await;
    let sending = |id, w: &[&str]| PayoutRecord { status: PayoutStatus::Sending, ..payout(id, w) };
    let credit = |wallet: &str, bucket, amount| BalanceDelta::new(wallet, bucket, amount);
    let update = RewardUpdate {
        payouts: vec![sending(1, &["a"]), payout(2, &["b"]), sending(3, &["c"])],
        balances: vec![credit("a", BalanceBucket::Confirmed, 5), credit("b", BalanceBucket::Immature, 7)],
        ..RewardUpdate::default()
    };
    store.apply_reward_update(&update).await.unwrap();
    assert_eq!(ids(store.payouts_sending().await.unwrap()), [1, 3]);
    let wallets =
        |b: Vec<vision_coordinator::storage::BalanceRecord>| b.into_iter().map(|b| b.wallet).collect::<Vec<_>>();
    assert_eq!(wallets(store.balances_confirmed().await.unwrap()), ["a"]);
    // Batch 1 paid, 3 split into 4; a's confirmed part moves on, b's matures.
    let update = RewardUpdate {
        payouts: vec![payout(1, &["a"]), sending(4, &["c"])],
        payouts_removed: vec![3],
        balances: vec![
            credit("a", BalanceBucket::Confirmed, -5),
            credit("a", BalanceBucket::Paid, 5),
            credit("b", BalanceBucket::Immature, -7),
            credit("b", BalanceBucket::Confirmed, 7),
        ],
        ..RewardUpdate::default()
    };
    store.apply_reward_update(&update).await.unwrap();
    assert_eq!(ids(store.payouts_sending().await.unwrap()), [4]);
    assert_eq!(wallets(store.balances_confirmed().await.unwrap()), ["b"]);
    let a = store.balance("a").await.unwrap().unwrap();
    assert_eq!((a.confirmed, a.paid), (0, 5));
    assert_eq!(wallets(store.balances().await.unwrap()), ["a", "b"]);
}

async fn a_refused_update_applies_nothing(backend: Backend) {
    let store = backend.open().await;
    let credit = |wallet: &str, bucket, amount| BalanceDelta::new(wallet, bucket, amount);
    let start = RewardUpdate { balances: vec![credit("a", BalanceBucket::Confirmed, 10)], ..RewardUpdate::default() };
    store.apply_reward_update(&start).await.unwrap();
    let overdraw = RewardUpdate {
        blocks: vec![BlockRewardRecord::pending(9, "h9", 1)],
        payouts: vec![payout(1, &["a"])],
        balances: vec![
            credit("b", BalanceBucket::Confirmed, 3),
            credit("a", BalanceBucket::Confirmed, -11),
            credit("a", BalanceBucket::Sending, 11),
        ],
        ..RewardUpdate::default()
    };
    let refused = store.apply_reward_update(&overdraw).await;
    assert!(matches!(refused, Err(StoreError::Refused(_))), "{refused:?}");
    assert_eq!(store.balance("a").await.unwrap().map(|b| (b.confirmed, b.sending)), Some((10, 0)));
    assert_eq!(store.balance("b").await.unwrap(), None, "no part of a refused update lands");
    assert_eq!(store.payout(1).await.unwrap(), None);
    assert_eq!(store.block_reward(9, "h9").await.unwrap(), None);
}

async fn an_update_decided_on_changed_state_applies_nothing(backend: Backend) {
    let store = backend.open().await;
    let credit = |amount| vec![BalanceDelta::new("a", BalanceBucket::Immature, amount)];
    let first = BlockRewardRecord::pending(9, "h9", 1);
    let credit_block = |expected: Option<&BlockRewardRecord>, record: &BlockRewardRecord| RewardUpdate {
        expects: vec![Expectation::block(9, "h9", expected)],
        blocks: vec![record.clone()],
        balances: credit(10),
        ..RewardUpdate::default()
    };
    store.apply_reward_update(&credit_block(None, &first)).await.unwrap();
    // Decided on "no record yet" again (a second coordinator's credit).
    let second = BlockRewardRecord::pending(9, "h9", 2);
    let again = store.apply_reward_update(&credit_block(None, &second)).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(store.balance("a").await.unwrap().map(|b| b.immature), Some(10), "credited once");
    assert_eq!(store.block_reward(9, "h9").await.unwrap(), Some(first.clone()));
    // Decided on the record as stored: applies; on the old one: conflicts.
    store.apply_reward_update(&credit_block(Some(&first), &second)).await.unwrap();
    let stale = store.apply_reward_update(&credit_block(Some(&first), &second)).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(store.balance("a").await.unwrap().map(|b| b.immature), Some(20));

    // A batch is settled once: the second settlement of it conflicts.
    let sending = PayoutRecord { status: PayoutStatus::Sending, ..payout(5, &["a"]) };
    let create = RewardUpdate {
        expects: vec![Expectation::Payout { id: 5, state: None }],
        payouts: vec![sending.clone()],
        ..RewardUpdate::default()
    };
    store.apply_reward_update(&create).await.unwrap();
    assert!(matches!(store.apply_reward_update(&create).await, Err(StoreError::Conflict(_))));
    // Marked orphaned meanwhile (same status, same key): a step decided on
    // the unmarked copy conflicts, so it cannot write the mark away.
    let mut marked = sending.clone();
    marked.outputs[0].orphaned = 3;
    let mark = RewardUpdate {
        expects: vec![Expectation::payout(&sending)],
        payouts: vec![marked.clone()],
        ..RewardUpdate::default()
    };
    store.apply_reward_update(&mark).await.unwrap();
    let unmarked = RewardUpdate {
        expects: vec![Expectation::payout(&sending)],
        payouts: vec![PayoutRecord { reason: Some("retrying".into()), ..sending.clone() }],
        ..RewardUpdate::default()
    };
    assert!(matches!(store.apply_reward_update(&unmarked).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.payout(5).await.unwrap(), Some(marked.clone()), "stored with its mark");
    let sending = marked;
    let settle = RewardUpdate {
        expects: vec![Expectation::payout(&sending)],
        payouts: vec![payout(5, &["a"])],
        balances: vec![BalanceDelta::new("a", BalanceBucket::Paid, 5)],
        ..RewardUpdate::default()
    };
    store.apply_reward_update(&settle).await.unwrap();
    assert!(matches!(store.apply_reward_update(&settle).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.balance("a").await.unwrap().map(|b| b.paid), Some(5), "paid once");

    // A take-back decided on a wallet's confirmed balance as read conflicts
    // once it changed (a block of the wallet's confirmed meanwhile); a
    // wallet without a balance is read as zero.
    let confirm = |amount: i128| RewardUpdate {
        balances: vec![BalanceDelta::new("b", BalanceBucket::Confirmed, amount)],
        ..RewardUpdate::default()
    };
    let take_back = |read: Option<&BalanceRecord>| RewardUpdate {
        expects: vec![Expectation::balance("b", read)],
        balances: vec![BalanceDelta::new("b", BalanceBucket::Confirmed, -3)],
        ..RewardUpdate::default()
    };
    let none = RewardUpdate { expects: vec![Expectation::balance("b", None)], ..RewardUpdate::default() };
    store.apply_reward_update(&none).await.expect("no balance: zero, as read");
    store.apply_reward_update(&confirm(10)).await.unwrap();
    let read = store.balance("b").await.unwrap();
    store.apply_reward_update(&confirm(5)).await.unwrap();
    let stale = store.apply_reward_update(&take_back(read.as_ref())).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(store.balance("b").await.unwrap().map(|b| b.confirmed), Some(15), "nothing taken");
    let fresh = store.balance("b").await.unwrap();
    store.apply_reward_update(&take_back(fresh.as_ref())).await.expect("decided on the balance as it is");
    assert_eq!(store.balance("b").await.unwrap().map(|b| b.confirmed), Some(12));
}

async fn found_blocks_and_reward_records_are_read_by_height(backend: Backend) {
    let store = backend.open().await;
    for (height, hash) in [(1, "x"), (2, "y"), (2, "z"), (10, "w"), (256, "v")] {
        store.put_found_block(&found_block(height, hash)).await.unwrap();
    }
    let newest: Vec<u64> = store.found_blocks_newest(3).await.unwrap().iter().map(|b| b.height).collect();
    assert_eq!(newest, [256, 10, 2]);
    let at_two: Vec<String> = store.found_blocks_at(2).await.unwrap().into_iter().map(|b| b.hash).collect();
    assert_eq!(at_two, ["y", "z"]);
    assert!(store.found_blocks_at(3).await.unwrap().is_empty());
    let from_two: Vec<u64> = store.found_blocks_from(2).await.unwrap().iter().map(|b| b.height).collect();
    assert_eq!(from_two, [2, 2, 10, 256]);
    assert_eq!(store.found_blocks().await.unwrap().len(), 5);
    // An update of a found block replaces it, but never undoes the chain's
    // answer, and a share position once known stays.
    let write = |status, share_position, attempts| {
        let record = FoundBlockRecord { status, share_position, attempts, ..found_block(20, "u") };
        let store = store.clone();
        async move {
            store.put_found_block(&record).await.unwrap();
            let stored = store.found_blocks_at(20).await.unwrap();
            assert_eq!(stored.len(), 1);
            let b = &stored[0];
            (b.status, b.share_position, b.attempts)
        }
    };
    use BlockStatus::{Accepted, Rejected, Submitted};
    assert_eq!(write(Submitted, None, 1).await, (Submitted, None, 1));
    assert_eq!(write(Submitted, Some(7), 2).await, (Submitted, Some(7), 2));
    assert_eq!(write(Rejected, None, 3).await, (Rejected, Some(7), 3));
    assert_eq!(write(Submitted, None, 1).await, (Rejected, Some(7), 3), "submitted does not unsettle");
    assert_eq!(write(Accepted, None, 4).await, (Accepted, Some(7), 4), "the chain turned out to hold it");
    assert_eq!(write(Rejected, Some(9), 5).await, (Accepted, Some(7), 5), "accepted stays accepted");
    // Writers at once (coordinators retrying a block one of them settled):
    // the answer stands, and no write is lost (the most attempts win).
    let accepted = FoundBlockRecord { status: Accepted, share_position: None, attempts: 1, ..found_block(30, "r") };
    store.put_found_block(&accepted).await.unwrap();
    let racing: Vec<_> = (0..12u32)
        .map(|i| {
            let store = store.clone();
            let status = [Submitted, Rejected][i as usize % 2];
            let record = FoundBlockRecord { status, share_position: None, attempts: 2 + i, ..found_block(30, "r") };
            tokio::spawn(async move { store.put_found_block(&record).await.unwrap() })
        })
        .collect();
    for writer in racing {
        writer.await.unwrap();
    }
    let raced = store.found_blocks_at(30).await.unwrap();
    assert_eq!((raced.len(), raced[0].status, raced[0].attempts), (1, Accepted, 13));
    // Who found it stays as first recorded.
    let other_finder =
        FoundBlockRecord { wallet_address: "thief".into(), session_id: "x".into(), ..found_block(30, "r") };
    store.put_found_block(&other_finder).await.unwrap();
    assert_eq!(store.found_blocks_at(30).await.unwrap()[0].wallet_address, "a");
    let record = BlockRewardRecord::pending(2, "z", 0);
    store.apply_reward_update(&RewardUpdate { blocks: vec![record.clone()], ..RewardUpdate::default() }).await.unwrap();
    assert_eq!(store.block_reward(2, "z").await.unwrap(), Some(record.clone()));
    assert_eq!(store.block_reward(2, "y").await.unwrap(), None);
    assert_eq!(store.block_rewards_from(2).await.unwrap(), std::slice::from_ref(&record));
    assert!(store.block_rewards_from(3).await.unwrap().is_empty());
    assert_eq!(store.block_rewards().await.unwrap(), [record]);
}

/// Every put and removal of a ban is logged with the store's time, so
/// coordinators on a shared store read only what changed since they looked.
async fn ban_changes_are_logged(backend: Backend) {
    let store = backend.open().await;
    let ban = |id: &str| BanRecord {
        session_id: id.into(),
        worker_id: format!("w-{id}"),
        source: None,
        until_ms: 10,
        reason: "r".into(),
    };
    let before = store.ban_changes_since(0).await.unwrap();
    assert_eq!((before.bans.len(), before.lifted.len()), (0, 0));
    store.put_ban(&ban("kept")).await.unwrap();
    store.put_ban(&ban("lifted")).await.unwrap();
    assert!(store.remove_ban("lifted").await.unwrap());
    let changes = store.ban_changes_since(before.now_ms).await.unwrap();
    assert_eq!(changes.bans, [ban("kept")]);
    assert_eq!(changes.lifted, ["lifted"]);
    assert!(changes.now_ms >= before.now_ms);
    // Nothing changed since that look.
    let later = store.ban_changes_since(changes.now_ms + 1).await.unwrap();
    assert_eq!((later.bans.len(), later.lifted.len()), (0, 0));
    // A ban changed again shows its latest record once.
    store.put_ban(&BanRecord { until_ms: 20, ..ban("kept") }).await.unwrap();
    let again = store.ban_changes_since(before.now_ms).await.unwrap();
    assert_eq!(again.bans, [BanRecord { until_ms: 20, ..ban("kept") }]);
}

async fn jobs_templates_bans_and_settings_round_trip(backend: Backend) {
    let store = backend.open().await;
    let job = |height: u64, id: &str| JobRecord {
        job_id: id.into(),
        worker_id: "w".into(),
        session_id: "s".into(),
        template_id: format!("t{height}"),
        height,
        share_difficulty: 10,
        nonce_start: 0,
        nonce_end: 100,
    };
    for (height, id) in [(5, "a"), (6, "b"), (7, "c")] {
        store.put_job(&job(height, id)).await.unwrap();
    }
    assert_eq!(store.jobs_from_height(6).await.unwrap(), [job(6, "b"), job(7, "c")]);
    store.prune_jobs_below(7).await.unwrap();
    assert_eq!(store.jobs_from_height(0).await.unwrap(), [job(7, "c")]);

    let ban = BanRecord {
        session_id: "s".into(),
        worker_id: "bad".into(),
        source: Some("127.0.0.1".into()),
        until_ms: 123,
        reason: "r".into(),
    };
    store.put_ban(&ban).await.unwrap();
    assert_eq!(store.bans().await.unwrap(), std::slice::from_ref(&ban));
    assert!(store.remove_ban("s").await.unwrap());
    assert!(!store.remove_ban("s").await.unwrap());
    assert!(store.bans().await.unwrap().is_empty());
    // An expired ban is removed only if it is still the one that ran out.
    let again = BanRecord { until_ms: 456, ..ban.clone() };
    store.put_ban(&again).await.unwrap();
    assert!(!store.remove_expired_ban("s", 123).await.unwrap(), "a ban put since is kept");
    assert_eq!(store.bans().await.unwrap(), [again]);
    assert!(store.remove_expired_ban("s", 456).await.unwrap());
    assert!(store.bans().await.unwrap().is_empty());
    assert!(!store.remove_expired_ban("s", 456).await.unwrap());

    assert_eq!(store.settings().await.unwrap(), None);
    let settings = PoolSettings {
        pool_name: "p".into(),
        pool_fee_bps: 100,
        target_share_seconds: 10,
        min_share_difficulty: 1,
        max_share_difficulty: 1000,
        running: true,
    };
    store.put_settings(&settings, None).await.unwrap();
    let changed = PoolSettings { pool_fee_bps: 150, ..settings.clone() };
    store.put_settings(&changed, Some(&settings)).await.unwrap();
    assert_eq!(store.settings().await.unwrap(), Some(changed.clone()));
    // A change decided on settings read before another's is refused, and
    // changes nothing: the other's stop holds.
    let stopped = PoolSettings { running: false, ..changed.clone() };
    store.put_settings(&stopped, Some(&changed)).await.unwrap();
    let late = PoolSettings { pool_fee_bps: 200, ..changed.clone() };
    for expected in [Some(&changed), None] {
        let refused = store.put_settings(&late, expected).await;
        assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    }
    assert_eq!(store.settings().await.unwrap(), Some(stopped));

    let first = store.next_id().await.unwrap();
    let second = store.next_id().await.unwrap();
    assert!(second > first, "ids increase: {first} then {second}");
}

fn template(height: u64, parent: &str, timestamp: u64, first_job_index: u64) -> TemplateRecord {
    TemplateRecord {
        template: StoredTemplate {
            chain_id: "c".into(),
            height,
            parent_hash: parent.into(),
            timestamp,
            difficulty: 100,
            tx_root: String::new(),
            miner: "vision-pool".into(),
            epoch: 0,
            epoch_seed: String::new(),
            pow_message: String::new(),
            params: visionx::Params::CONSENSUS,
            reward: 50,
        },
        first_job_index,
    }
}

async fn the_first_template_stored_for_a_tip_holds_it(backend: Backend) {
    let store = backend.open().await;
    assert_eq!(store.highest_template_height_below(u64::MAX).await.unwrap(), None);
    let first = template(5, "p", 100, 7);
    assert_eq!(store.claim_template("t1", &first).await.unwrap(), ("t1".into(), first.clone()));
    // Another coordinator's template of the same tip (a later timestamp).
    let (held, record) = store.claim_template("t2", &template(5, "p", 101, 9)).await.unwrap();
    assert_eq!((held.as_str(), record.first_job_index), ("t1", 7), "the first one holds the tip");
    assert_eq!(store.template("t2").await.unwrap(), None);
    // Another tip (a rival parent, the next height) is a template of its own.
    assert_eq!(store.claim_template("t3", &template(5, "q", 100, 11)).await.unwrap().0, "t3");
    assert_eq!(store.highest_template_height_below(100).await.unwrap(), Some(5));
    assert_eq!(store.highest_template_height_below(5).await.unwrap(), None, "strictly below");
    assert_eq!(store.claim_template("t4", &template(6, "t1", 102, 12)).await.unwrap().0, "t4");
    // A rival of a lower height, stored later, is not the highest.
    assert_eq!(store.claim_template("t5", &template(4, "r", 103, 13)).await.unwrap().0, "t5");
    assert_eq!(store.highest_template_height_below(100).await.unwrap(), Some(6));
    assert_eq!(store.highest_template_height_below(6).await.unwrap(), Some(5));
    store.prune_share_keys_below(6).await.unwrap();
    assert_eq!(store.highest_template_height_below(100).await.unwrap(), Some(6), "kept with its height");
    assert_eq!(store.highest_template_height_below(6).await.unwrap(), None, "pruned with theirs");
    assert_eq!(store.template("t1").await.unwrap(), None, "pruned with its height");
    assert_eq!(store.template("t4").await.unwrap().map(|t| t.first_job_index), Some(12));
}

async fn coordinators_see_each_others_tips(backend: Backend) {
    let store = backend.open().await;
    let live = Duration::from_secs(60);
    assert_eq!(store.exchange_tips("a #1", 10, live).await.unwrap(), Vec::<u64>::new(), "alone");
    assert_eq!(store.exchange_tips("b #1", 12, live).await.unwrap(), vec![10]);
    let mut seen = store.exchange_tips("c #1", 11, live).await.unwrap();
    seen.sort_unstable();
    assert_eq!(seen, vec![10, 12], "every other coordinator, not itself");
    // A coordinator's tip is the last it noted, up or down.
    store.exchange_tips("b #1", 9, live).await.unwrap();
    let mut seen = store.exchange_tips("a #1", 10, live).await.unwrap();
    seen.sort_unstable();
    assert_eq!(seen, vec![9, 11]);
    // Only those seen lately count.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    store.exchange_tips("c #1", 11, live).await.unwrap();
    assert_eq!(store.exchange_tips("a #1", 10, Duration::from_secs(1)).await.unwrap(), vec![11]);
}

async fn state_survives_reopening(backend: Backend) {
    let (secret, id) = {
        let store = backend.open().await;
        store.append_share(&share("j", 9)).await.unwrap();
        store.flush().unwrap();
        (store.secret(), store.next_id().await.unwrap())
    };
    let store = backend.open().await;
    assert_eq!(store.secret(), secret, "the pool secret is kept");
    assert!(store.next_id().await.unwrap() > id, "ids never repeat across restarts");
    assert!(store.credited(3, "t-j", 9).await.unwrap().is_some());
    assert_eq!(store.ledger_len().await.unwrap(), 1, "positions continue after a restart");
    assert_eq!(store.append_share(&share("j", 10)).await.unwrap(), AppendOutcome::Appended(1));
    assert!(matches!(store.append_share(&share("j", 9)).await.unwrap(), AppendOutcome::Duplicate(_)));
}
