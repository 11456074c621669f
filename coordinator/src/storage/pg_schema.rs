//! The PostgreSQL schema, as numbered migrations.
//!
//! Every coordinator runs [`migrate`] at start-up. It takes a
//! transaction-scoped advisory lock first, so coordinators starting at once
//! apply each migration exactly once, one after the other; a migration
//! already recorded in `pool_schema_migrations` is skipped. Migrations are
//! only ever appended: a released one is never edited.
//!
//! Each migration records the oldest schema whose coordinators still work
//! on the database after it (`oldest_reader`): an additive one (a new
//! function, table or index) keeps older coordinators working, so a rolling
//! upgrade can restart them. A coordinator refuses a database holding a
//! migration it does not know unless that migration names its schema or an
//! older one as still readable. (Coordinators of schema 1 predate the mark
//! and refuse any newer migration.)
//!
//! Records are stored whole as `jsonb` (the same serde shapes as sled's
//! trees), beside the columns that keys, indexes and constraints need.

use tokio_postgres::Client;

use super::StoreError;

/// The advisory lock key of the migration step ("VSNM" in ASCII).
const MIGRATION_LOCK: i64 = 0x5653_4e4d;

/// A migration: its version, the oldest schema whose coordinators still
/// work after it, what it does, and its SQL.
struct Migration {
    version: i32,
    oldest_reader: i32,
    description: &'static str,
    sql: &'static str,
}

/// Appended to, never edited.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        oldest_reader: 1,
        description: "the pool's tables",
        sql: r#"
CREATE TABLE pool_secret (
    id integer PRIMARY KEY CHECK (id = 1),
    secret bytea NOT NULL CHECK (length(secret) = 32)
);
CREATE TABLE pool_settings (
    id integer PRIMARY KEY CHECK (id = 1),
    record jsonb NOT NULL
);
CREATE SEQUENCE pool_ids START 1;

CREATE TABLE pool_workers (
    worker_id text COLLATE "C" PRIMARY KEY,
    record jsonb NOT NULL
);
CREATE TABLE pool_sessions (
    token_hash text COLLATE "C" PRIMARY KEY,
    last_seen_ms bigint NOT NULL,
    record jsonb NOT NULL
);
CREATE INDEX pool_sessions_last_seen ON pool_sessions (last_seen_ms);
CREATE TABLE pool_bans (
    session_id text COLLATE "C" PRIMARY KEY,
    record jsonb NOT NULL
);

-- The ledger's head: appends lock this row, so positions commit in order
-- (a sequence's values can commit out of order and make a reader skip one).
CREATE TABLE pool_ledger_head (
    id integer PRIMARY KEY CHECK (id = 1),
    next_position bigint NOT NULL,
    floor bigint NOT NULL
);
INSERT INTO pool_ledger_head VALUES (1, 0, 0);
CREATE TABLE pool_shares (
    position bigint PRIMARY KEY,
    record jsonb NOT NULL
);
-- The duplicate key of a credited share: height ++ keyed hash of (template,
-- nonce) with the pool secret, as sled's. Unique across every coordinator.
CREATE TABLE pool_share_keys (
    key bytea PRIMARY KEY,
    height bigint NOT NULL,
    position bigint NOT NULL,
    session_id text NOT NULL
);
CREATE INDEX pool_share_keys_height ON pool_share_keys (height);
CREATE TABLE pool_share_aggregates (
    worker_id text COLLATE "C" PRIMARY KEY,
    record jsonb NOT NULL
);

-- One round trip and one transaction per append: the head row is locked
-- until the commit, the key is unique, and a duplicate answers who holds it.
CREATE FUNCTION pool_append_share(p_key bytea, p_height bigint, p_session text, p_record jsonb)
RETURNS TABLE (appended boolean, credit_position bigint, credit_session text)
LANGUAGE plpgsql AS $$
DECLARE
    v_next bigint;
    v_position bigint;
    v_session text;
BEGIN
    SELECT h.next_position INTO v_next FROM pool_ledger_head h WHERE h.id = 1 FOR UPDATE;
    LOOP
        INSERT INTO pool_share_keys (key, height, position, session_id)
            VALUES (p_key, p_height, v_next, p_session)
            ON CONFLICT (key) DO NOTHING;
        EXIT WHEN FOUND;
        SELECT k.position, k.session_id INTO v_position, v_session FROM pool_share_keys k WHERE k.key = p_key;
        IF FOUND THEN
            RETURN QUERY SELECT false, v_position, v_session;
            RETURN;
        END IF;
        -- The key was pruned between the two statements: try again.
    END LOOP;
    INSERT INTO pool_shares (position, record) VALUES (v_next, p_record);
    UPDATE pool_ledger_head SET next_position = v_next + 1 WHERE id = 1;
    RETURN QUERY SELECT true, v_next, p_session;
END
$$;

-- One template per tip (height and parent), whichever coordinator stored
-- it first: every coordinator mines it, so job ranges never overlap.
CREATE TABLE pool_templates (
    template_id text COLLATE "C" PRIMARY KEY,
    height bigint NOT NULL,
    parent_hash text COLLATE "C" NOT NULL,
    record jsonb NOT NULL,
    UNIQUE (height, parent_hash)
);
CREATE TABLE pool_jobs (
    job_id text COLLATE "C" PRIMARY KEY,
    height bigint NOT NULL,
    record jsonb NOT NULL
);
CREATE INDEX pool_jobs_height ON pool_jobs (height, job_id);

CREATE TABLE pool_found_blocks (
    height bigint NOT NULL,
    hash text COLLATE "C" NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (height, hash)
);
CREATE TABLE pool_block_rewards (
    height bigint NOT NULL,
    hash text COLLATE "C" NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (height, hash)
);
CREATE TABLE pool_balances (
    wallet text COLLATE "C" PRIMARY KEY,
    confirmed bigint NOT NULL CHECK (confirmed >= 0),
    record jsonb NOT NULL
);
CREATE INDEX pool_balances_payable ON pool_balances (wallet) WHERE confirmed > 0;
CREATE TABLE pool_payouts (
    id bigint PRIMARY KEY,
    sending boolean NOT NULL,
    wallets text[] NOT NULL,
    record jsonb NOT NULL,
    -- Who is sending it, until when (ms since the epoch): one coordinator at a time.
    lease_holder text,
    lease_until bigint NOT NULL DEFAULT 0
);
CREATE INDEX pool_payouts_sending ON pool_payouts (id) WHERE sending;
CREATE INDEX pool_payouts_wallets ON pool_payouts USING gin (wallets);
"#,
    },
    Migration {
        version: 2,
        // Additive: pool_append_share stays, and appends from both lock the
        // ledger head, so schema-1 coordinators keep working beside ours.
        oldest_reader: 1,
        description: "batched share appends",
        sql: r#"
-- Appends a batch of shares in one transaction, as pool_append_share does one
-- (which stays, for coordinators of schema 1): the head row is locked once,
-- each share takes the next position unless its key is already held, and
-- one row per share comes back, `ord` its 1-based place in the arrays. A
-- duplicate later in the batch sees the earlier one's credit.
CREATE FUNCTION pool_append_shares(p_keys bytea[], p_heights bigint[], p_sessions text[], p_records jsonb[])
RETURNS TABLE (ord integer, appended boolean, credit_position bigint, credit_session text)
-- A holder of the head that never commits (its client died unnoticed) fails
-- the batch after 5 s, to be retried, instead of stalling every append.
LANGUAGE plpgsql SET lock_timeout = '5s' AS $$
DECLARE
    v_next bigint;
    v_position bigint;
    v_session text;
BEGIN
    SELECT h.next_position INTO v_next FROM pool_ledger_head h WHERE h.id = 1 FOR UPDATE;
    FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
        LOOP
            INSERT INTO pool_share_keys (key, height, position, session_id)
                VALUES (p_keys[i], p_heights[i], v_next, p_sessions[i])
                ON CONFLICT (key) DO NOTHING;
            IF FOUND THEN
                INSERT INTO pool_shares (position, record) VALUES (v_next, p_records[i]);
                ord := i;
                appended := true;
                credit_position := v_next;
                credit_session := p_sessions[i];
                RETURN NEXT;
                v_next := v_next + 1;
                EXIT;
            END IF;
            SELECT k.position, k.session_id INTO v_position, v_session FROM pool_share_keys k WHERE k.key = p_keys[i];
            IF FOUND THEN
                ord := i;
                appended := false;
                credit_position := v_position;
                credit_session := v_session;
                RETURN NEXT;
                EXIT;
            END IF;
            -- The key was pruned between the two statements: try again.
        END LOOP;
    END LOOP;
    UPDATE pool_ledger_head SET next_position = v_next WHERE id = 1;
END
$$;
"#,
    },
    Migration {
        version: 3,
        // Additive: a table older coordinators never read.
        oldest_reader: 1,
        description: "coordinators and their reward rules",
        sql: r#"
-- Every coordinator's reward rules, as of its last rewards round: one that
-- would credit blocks by other rules than a live peer's refuses to start,
-- and a running one skips its rounds while that lasts.
CREATE TABLE pool_coordinators (
    name text COLLATE "C" PRIMARY KEY,
    rules jsonb NOT NULL,
    seen_at timestamptz NOT NULL
);
"#,
    },
    Migration {
        version: 4,
        // Coordinators of schema 2 and 3 prune keys without raising the
        // mark, which would let a coordinator behind them credit a share
        // twice: they refuse a database of this schema when they restart.
        oldest_reader: 4,
        description: "shares below the pruned height need their template",
        sql: r#"
-- Duplicate keys below this height may have been forgotten. Raised (never
-- lowered) under the head's row lock before any key goes, so every append
-- sees it before a key it could have matched is missing.
ALTER TABLE pool_ledger_head ADD COLUMN share_keys_pruned_below bigint NOT NULL DEFAULT 0;

-- Templates pruned with their keys: never claimed again (a node that hands
-- out the same template for a tip would otherwise bring back a template
-- whose old shares' keys are gone). Kept 1,000 heights.
CREATE TABLE pool_pruned_templates (
    template_id text COLLATE "C" PRIMARY KEY,
    height bigint NOT NULL
);
CREATE INDEX pool_pruned_templates_height ON pool_pruned_templates (height);

-- pool_append_shares, and: a share below the pruned height is appended only
-- while its template is stored, locked against a prune until the commit (a
-- prune locks a height's templates, then deletes its keys and templates, in
-- one transaction); otherwise its key may be gone: 'template_gone'.
-- Templates are locked before the head, and never waited for: only a prune
-- locks a template row FOR UPDATE, so one locked is being pruned (skipped:
-- gone), and an append holds up neither a prune nor another append. One
-- pruned before and stored again (a claim racing the prune's commit) counts
-- as gone too.
-- Outcomes: 'appended', 'duplicate' (with who holds the key), 'template_gone'.
CREATE FUNCTION pool_append_shares_of_templates(
    p_keys bytea[], p_heights bigint[], p_sessions text[], p_records jsonb[], p_templates text[])
RETURNS TABLE (ord integer, outcome text, credit_position bigint, credit_session text)
LANGUAGE plpgsql SET lock_timeout = '5s' AS $$
DECLARE
    v_locked_below bigint;
    v_held text[];
    v_next bigint;
    v_mark bigint;
    v_position bigint;
    v_session text;
BEGIN
    IF array_length(p_templates, 1) IS DISTINCT FROM array_length(p_keys, 1) THEN
        RAISE EXCEPTION 'pool_append_shares_of_templates: one template per share';
    END IF;
    SELECT h.share_keys_pruned_below INTO v_locked_below FROM pool_ledger_head h WHERE h.id = 1;
    SELECT coalesce(array_agg(held.template_id), '{}') INTO v_held FROM (
        SELECT t.template_id FROM pool_templates t
        WHERE t.template_id IN (
            SELECT p_templates[i] FROM generate_subscripts(p_keys, 1) i WHERE p_heights[i] < v_locked_below)
          AND NOT EXISTS (SELECT 1 FROM pool_pruned_templates p WHERE p.template_id = t.template_id)
        FOR KEY SHARE SKIP LOCKED
    ) held;
    SELECT h.next_position, h.share_keys_pruned_below INTO v_next, v_mark
        FROM pool_ledger_head h WHERE h.id = 1 FOR UPDATE;
    FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
        ord := i;
        IF p_heights[i] < v_mark AND (p_templates[i] = ANY (v_held)) IS NOT TRUE THEN
            IF p_heights[i] >= v_locked_below THEN
                -- The mark rose after the templates were locked (rare).
                PERFORM 1 FROM pool_templates t WHERE t.template_id = p_templates[i]
                    AND NOT EXISTS (SELECT 1 FROM pool_pruned_templates p WHERE p.template_id = t.template_id)
                    FOR KEY SHARE SKIP LOCKED;
                IF FOUND THEN
                    v_held := v_held || p_templates[i];
                END IF;
            END IF;
            IF (p_templates[i] = ANY (v_held)) IS NOT TRUE THEN
                outcome := 'template_gone';
                credit_position := NULL;
                credit_session := NULL;
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        LOOP
            INSERT INTO pool_share_keys (key, height, position, session_id)
                VALUES (p_keys[i], p_heights[i], v_next, p_sessions[i])
                ON CONFLICT (key) DO NOTHING;
            IF FOUND THEN
                INSERT INTO pool_shares (position, record) VALUES (v_next, p_records[i]);
                outcome := 'appended';
                credit_position := v_next;
                credit_session := p_sessions[i];
                RETURN NEXT;
                v_next := v_next + 1;
                EXIT;
            END IF;
            SELECT k.position, k.session_id INTO v_position, v_session FROM pool_share_keys k WHERE k.key = p_keys[i];
            IF FOUND THEN
                outcome := 'duplicate';
                credit_position := v_position;
                credit_session := v_session;
                RETURN NEXT;
                EXIT;
            END IF;
            -- The key was pruned between the two statements: try again.
        END LOOP;
    END LOOP;
    UPDATE pool_ledger_head SET next_position = v_next WHERE id = 1;
END
$$;
"#,
    },
    Migration {
        version: 5,
        // Additive: a table older coordinators never read (their ban
        // changes are not logged; the once-a-minute full read finds them).
        oldest_reader: 4,
        description: "a log of ban changes",
        sql: r#"
-- Every put or removal of a ban, at the database's clock, written in the
-- transaction of the change: coordinators re-read only the bans changed
-- since their last look. Trimmed after an hour.
CREATE TABLE pool_ban_changes (
    id bigserial PRIMARY KEY,
    session_id text COLLATE "C" NOT NULL,
    at_ms bigint NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint
);
CREATE INDEX pool_ban_changes_at ON pool_ban_changes (at_ms);
"#,
    },
    Migration {
        version: 6,
        // Additive: older coordinators note no tip (they are never counted,
        // and never see themselves behind).
        oldest_reader: 4,
        description: "the tip each coordinator mines",
        sql: r#"
-- Each coordinator notes its tip's height every second (the database's
-- clock) and reads the others': one whose node lags most of the live ones
-- by 2+ heights reports itself not ready and hands out no jobs.
CREATE TABLE pool_coordinator_tips (
    name text COLLATE "C" PRIMARY KEY,
    height bigint NOT NULL,
    seen_at timestamptz NOT NULL
);
"#,
    },
    Migration {
        version: 7,
        // Coordinators of schema 4 on use neither function, and raise the
        // mark before they delete a key.
        oldest_reader: 4,
        description: "the appends and prunes of schema 1-3 refused",
        sql: r#"
-- A coordinator of schema 1-3 still running after schema 4 appends without
-- the pruned-height check and prunes keys without raising the mark: either
-- could let a replayed share be credited twice. Its appends now fail (its
-- miners get 503s and go to an upgraded coordinator), and a key goes only
-- below the mark, which every prune of schema 4 on raises first.
CREATE OR REPLACE FUNCTION pool_append_share(p_key bytea, p_height bigint, p_session text, p_record jsonb)
RETURNS TABLE (appended boolean, credit_position bigint, credit_session text)
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pool_append_share was retired at schema 7: upgrade this coordinator';
END
$$;
CREATE OR REPLACE FUNCTION pool_append_shares(p_keys bytea[], p_heights bigint[], p_sessions text[], p_records jsonb[])
RETURNS TABLE (ord integer, appended boolean, credit_position bigint, credit_session text)
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pool_append_shares was retired at schema 7: upgrade this coordinator';
END
$$;
-- (Once a statement, on the keys it deleted: a prune of many keys checks
-- the mark once.)
CREATE FUNCTION pool_share_keys_go_below_the_mark() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_highest bigint;
BEGIN
    SELECT max(g.height) INTO v_highest FROM gone g;
    IF v_highest >= (SELECT h.share_keys_pruned_below FROM pool_ledger_head h WHERE h.id = 1) THEN
        RAISE EXCEPTION 'a share key at height % is not below the pruned mark: a coordinator older than schema 4 is pruning; upgrade it',
            v_highest;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER pool_share_keys_go_below_the_mark AFTER DELETE ON pool_share_keys
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION pool_share_keys_go_below_the_mark();
"#,
    },
];

/// Brings the schema up to date; safe when several coordinators run it at once.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(pg_error)?;
    // `oldest_reader` came with schema 2; rows from before have none, which
    // counts as readable by their own schema only. Added only when missing:
    // ALTER TABLE takes an exclusive lock (a running pg_dump would hold up
    // every start).
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS pool_schema_migrations (
            version integer PRIMARY KEY,
            description text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(pg_error)?;
    let marked = tx
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'pool_schema_migrations'::regclass \
             AND attname = 'oldest_reader' AND NOT attisdropped",
            &[],
        )
        .await
        .map_err(pg_error)?
        .get::<_, i64>(0)
        > 0;
    if !marked {
        tx.batch_execute("ALTER TABLE pool_schema_migrations ADD COLUMN oldest_reader integer")
            .await
            .map_err(pg_error)?;
    }
    let applied: Vec<(i32, Option<i32>)> = tx
        .query("SELECT version, oldest_reader FROM pool_schema_migrations ORDER BY version", &[])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let ours = schema_version();
    let unknown: Vec<(i32, i32)> = applied
        .iter()
        .filter(|(v, _)| !MIGRATIONS.iter().any(|m| m.version == *v))
        .map(|&(version, oldest_reader)| (version, oldest_reader.unwrap_or(version)))
        .collect();
    // The one needing the newest coordinator is the one to name.
    if let Some(&(version, needs)) = unknown.iter().max_by_key(|(_, needs)| *needs).filter(|(_, needs)| *needs > ours) {
        return Err(StoreError::Backend(format!(
            "the database has schema version {version}, which needs a coordinator of schema {needs} or newer \
             (this one is of schema {ours}): upgrade the coordinator"
        )));
    }
    if let Some(&(version, _)) = unknown.first() {
        // Migrations are applied in order, all in one transaction: a newer
        // one with one of ours missing is not this project's history.
        if let Some(missing) = MIGRATIONS.iter().find(|m| !applied.iter().any(|(v, _)| *v == m.version)) {
            return Err(StoreError::Backend(format!(
                "the database has schema version {version} but not {}: not a history this coordinator knows",
                missing.version
            )));
        }
        tracing::info!(version, ours, "the database has a newer schema, which this coordinator can still use");
    }
    for migration in MIGRATIONS {
        if applied.iter().any(|(v, _)| *v == migration.version) {
            continue;
        }
        tx.batch_execute(migration.sql).await.map_err(pg_error)?;
        tx.execute(
            "INSERT INTO pool_schema_migrations (version, description, oldest_reader) VALUES ($1, $2, $3)",
            &[&migration.version, &migration.description, &migration.oldest_reader],
        )
        .await
        .map_err(pg_error)?;
        tracing::info!(version = migration.version, "applied schema migration: {}", migration.description);
    }
    tx.commit().await.map_err(pg_error)
}

/// The number of the newest migration this build knows.
pub fn schema_version() -> i32 {
    MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0)
}

/// An error in a transaction decided on what it read (a reward update, a
/// settings change): PostgreSQL aborting it to break a deadlock, or for a
/// serialization failure, applied nothing, and the caller's answer is the
/// same as to a changed read, a [`StoreError::Conflict`] retried on a fresh
/// read, not a store fault. Elsewhere (a share's append) such an abort stays
/// a store error, answered "try again", never as a refused share.
pub(super) fn pg_update_error(err: tokio_postgres::Error) -> StoreError {
    use tokio_postgres::error::SqlState;
    match err.code() {
        Some(code) if *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE => {
            StoreError::Conflict(format!("the database aborted the transaction: {}", with_message(&err)))
        }
        _ => pg_error(err),
    }
}

/// A client error as the store's (the server's own message when it sent one).
pub(super) fn pg_error(err: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(format!("postgresql: {}", with_message(&err)))
}

/// The server's own message and code when it sent one, else the client's.
fn with_message(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => super::with_causes(err),
    }
}
