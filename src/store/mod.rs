//! The state store behind one interface: SQLite (a file; the embedded default) or PostgreSQL
//! (several instances), chosen by the URL. Everything the gateway must not lose lives here: cases
//! with their state machine, the outbox of events, durable timers (pushes, retries, polls,
//! deadlines), the audit trail and dead letters.
//!
//! Every change to a case is one transaction: the new state, the events it emits (outbox), its
//! timers and its audit records — so an event exists if and only if its state change does.

mod audit;
mod cache;
mod connect;
mod dead;
mod group;
mod handoff;
mod items;
mod leases;
mod permits;
mod rows;
mod schema;
mod write;

pub use audit::{Pruned, Verified, chain_hash};
pub use dead::{DeadLetter, NewDeadLetter};
pub use handoff::{Handed, Handoff};
pub use items::{ItemCounts, ItemRow, item_rows};
pub use leases::Admit;

use std::any::TypeId;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};

use crate::engine::Case;
use connect::{Role, SQLITE_READERS, checkpoints, connect, sqlite_path, sqlite_placeholders};
use group::{Done, Work};

#[derive(Debug)]
pub enum StoreError {
    Db(String),
    Corrupt(String),
}

impl std::error::Error for StoreError {}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Db(e) => write!(f, "store: {e}"),
            StoreError::Corrupt(e) => write!(f, "store holds unreadable data: {e}"),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Which clock a timer's `due_at` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerClock {
    /// The gateway's (drill) clock: polls, deadlines.
    Gateway,
    /// Wall-clock time: retry back-off, network waits.
    Real,
}

impl TimerClock {
    fn code(self) -> &'static str {
        match self {
            TimerClock::Gateway => "g",
            TimerClock::Real => "r",
        }
    }
}

/// A timer to create or replace (one per case, item and kind).
#[derive(Debug, Clone, PartialEq)]
pub struct NewTimer {
    pub case_id: String,
    pub item: String,
    pub kind: String,
    pub department: String,
    pub clock: TimerClock,
    /// Milliseconds since the Unix epoch on `clock`.
    pub due_at: i64,
    pub payload: serde_json::Value,
}

/// A claimed timer.
#[derive(Debug, Clone, PartialEq)]
pub struct Timer {
    pub id: i64,
    pub case_id: String,
    pub item: String,
    pub kind: String,
    pub department: String,
    pub clock: TimerClock,
    pub due_at: i64,
    pub payload: serde_json::Value,
    /// The claim, to release it safely.
    pub token: String,
}

/// What becomes of a claimed timer.
#[derive(Debug, Clone, PartialEq)]
pub enum Release {
    Delete {
        id: i64,
        token: String,
    },
    Reschedule {
        id: i64,
        token: String,
        due_at: i64,
        payload: serde_json::Value,
    },
}

/// An event in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub event_id: String,
    pub case_id: String,
    pub seq: i64,
    pub routing_key: String,
    pub body: String,
}

/// One audit record (its chain hash is computed by the store).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub case_id: Option<String>,
    pub item: Option<String>,
    pub department: Option<String>,
    /// Gateway-clock milliseconds.
    pub at: i64,
    /// `inbound`, `push`, `answer`, `callback`, `poll`, `file`, `state`, `event`, `note`.
    pub kind: String,
    pub summary: String,
    pub body_sha256: Option<String>,
}

impl AuditRecord {
    pub fn new(
        case_id: &str,
        item: Option<&str>,
        department: Option<&str>,
        at: i64,
        kind: &str,
        summary: impl Into<String>,
        body: Option<&[u8]>,
    ) -> AuditRecord {
        AuditRecord {
            case_id: Some(case_id.to_string()),
            item: item.map(str::to_string),
            department: department.map(str::to_string),
            at,
            kind: kind.to_string(),
            summary: summary.into(),
            body_sha256: body.map(|b| hex::encode(Sha256::digest(b))),
        }
    }
}

/// A stored audit record with its chain.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAudit {
    pub id: i64,
    pub record: AuditRecord,
    pub prev_hash: Option<String>,
    pub hash: String,
}

/// A case as stored.
#[derive(Debug, Clone)]
pub struct StoredCase {
    pub state: Arc<Case>,
    /// Shared: the cache hands out copies of a case for every load.
    pub submission: Arc<str>,
    pub version: i64,
}

/// A change to a case, applied in one transaction if the case is still at `version`.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub case_id: String,
    pub version: i64,
    pub state: Option<Arc<Case>>,
    pub events: Vec<OutboxEvent>,
    pub timers: Vec<NewTimer>,
    /// Timers of this case to drop (item, kind).
    pub drop_timers: Vec<(String, String)>,
    pub release: Vec<Release>,
    pub audit: Vec<AuditRecord>,
    pub now: i64,
    /// The item rows to write with `state`: those that changed; `None`: every item of `state`.
    pub items: Option<Vec<ItemRow>>,
}

/// A new case with its first change (events, timers, audit), as `insert_case` stores it.
#[derive(Debug, Clone)]
pub(super) struct NewCase {
    /// Shared with the cache once stored.
    pub state: Arc<Case>,
    /// `state` as JSON.
    pub json: String,
    pub submission: String,
    pub first: Update,
}

/// A claimed timer's new payload and lease (see `touch`).
#[derive(Debug, Clone)]
pub(super) struct Touch {
    pub id: i64,
    pub token: String,
    pub payload: String,
    pub lease_until: i64,
}

/// Writes made in one transaction (`group.rs`).
#[derive(Default)]
pub(super) struct Batch<'a> {
    pub updates: Vec<&'a Update>,
    /// The JSON of each update's state, in the order of `updates`.
    pub states: Vec<Option<&'a str>>,
    pub inserts: Vec<&'a NewCase>,
    pub touches: Vec<&'a Touch>,
    /// Events confirmed by the broker, and when.
    pub published: Vec<(&'a str, i64)>,
}

/// What a batch wrote: per change whether it was written, per new case whether it was new, and
/// the touches whose claim held (timer id, claim).
pub(super) struct Written {
    pub updated: Vec<bool>,
    pub inserted: Vec<Inserted>,
    pub touched: HashSet<(i64, String)>,
    /// The events written, in order, when they go to the relay in memory (`handoff.rs`).
    pub events: Vec<OutboxEvent>,
}

/// The result of storing a new case.
#[derive(Debug, PartialEq)]
pub enum Inserted {
    New,
    /// The id was taken; here is the submission stored under it.
    Existing {
        submission: String,
    },
}

/// Statement texts by the closure that builds them and their number of rows (`sql_rows`).
type Texts = HashMap<(TypeId, usize), Arc<str>>;

#[derive(Clone)]
pub struct Store {
    /// Every write, and reads that must see a transaction's own writes. SQLite: one connection
    /// (SQLite has one writer at a time); PostgreSQL: a pool.
    pool: AnyPool,
    /// Reads outside a transaction. SQLite: a few connections of their own; PostgreSQL: `pool`.
    read: AnyPool,
    backend: Backend,
    /// SQLite: the group-commit writer that `save` hands changes to (`group.rs`).
    group: Option<group::Queue>,
    /// SQLite: open cases as last stored, so that loads need not ask the file (`cache.rs`).
    cache: Option<Arc<cache::Cache>>,
    /// SQLite: the connection of `checkpoints`.
    checkpointer: Option<AnyPool>,
    /// The texts of multi-row statements, built once per statement and size (`sql_rows`).
    texts: Arc<std::sync::Mutex<Texts>>,
    /// SQLite: the events of each commit, handed to the relay (`handoff.rs`).
    handoff: Option<Arc<Handoff>>,
}

impl Store {
    /// Connects (creating a SQLite file and its folder if needed) and migrates.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url, max) = if let Some(path) = sqlite_path(url) {
            let file = path.split('?').next().unwrap_or(path);
            if let Some(dir) = std::path::Path::new(file).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Db(format!("{}: {e}", dir.display())))?;
            }
            let sep = if path.contains('?') { '&' } else { '?' };
            (Backend::Sqlite, format!("sqlite://{path}{sep}mode=rwc"), 1)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string(), 16)
        } else {
            return Err(StoreError::Db(format!(
                "unsupported database URL `{url}` (sqlite://… or postgres://…)"
            )));
        };
        let pool = connect(backend, &url, max, Role::Write).await?;
        let mut store = Store {
            read: pool.clone(),
            pool,
            backend,
            group: None,
            cache: None,
            checkpointer: None,
            texts: Arc::default(),
            handoff: None,
        };
        store.migrate().await?;
        if backend == Backend::Sqlite {
            // WAL lets readers run beside the one writer: loads and scans never queue behind a
            // transaction. Opened after the migration, so they see the current schema.
            store.read = connect(backend, &url, SQLITE_READERS, Role::Read).await?;
            store.cache = Some(Arc::default());
            store.handoff = Some(Arc::default());
            store.group = Some(group::start(store.clone()));
            let checkpointer = connect(backend, &url, 1, Role::Checkpoint).await?;
            tokio::spawn(checkpoints(checkpointer.clone()));
            store.checkpointer = Some(checkpointer);
        }
        Ok(store)
    }

    /// Closes every connection (tests drop their database afterwards).
    pub async fn close(&self) {
        self.pool.close().await;
        self.read.close().await;
        if let Some(c) = &self.checkpointer {
            c.close().await;
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// `$1` placeholders in SQLite's form. Every statement is a constant of this file; values
    /// always go through `bind`.
    fn sql(&self, q: &str) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(match self.backend {
            Backend::Postgres => q.to_string(),
            Backend::Sqlite => sqlite_placeholders(q),
        })
    }

    /// The text of a multi-row statement for `rows` rows, in this store's placeholders: written
    /// for the padded number of rows (`rows::padded`, the rows `rows::repeat_last` and
    /// `rows::bind_padding` bind), built by `build(padded)` the first time, then kept. A
    /// statement is known by its `build` closure, which must depend on its argument alone.
    /// Building and rewriting the placeholders of each statement of each group was 2 % of the
    /// daemon's time under load.
    fn sql_rows<F>(&self, rows: usize, build: F) -> sqlx::AssertSqlSafe<Arc<str>>
    where
        F: FnOnce(usize) -> String + 'static,
    {
        let rows = rows::padded(rows);
        let key = (TypeId::of::<F>(), rows);
        let mut texts = self.texts.lock().unwrap_or_else(|e| e.into_inner());
        let text = texts
            .entry(key)
            .or_insert_with(|| self.sql(&build(rows)).0.into());
        sqlx::AssertSqlSafe(text.clone())
    }

    /// A transaction that writes (every one in this store). On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred one that read first, then found another connection had written
    /// meanwhile, could not upgrade and would fail with "database is locked" whatever the busy
    /// timeout. PostgreSQL needs nothing special.
    pub(super) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Brings the schema up to date. On PostgreSQL an advisory lock makes instances that start
    /// together migrate one after the other (the later ones find nothing to do).
    async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_lock(5010701)")
                .execute(&mut *conn)
                .await?;
        }
        let done = self.migrate_on(&mut conn).await;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_unlock(5010701)")
                .execute(&mut *conn)
                .await?;
        }
        drop(conn);
        if done? {
            let n = self.backfill_items().await?;
            tracing::info!(cases = n, "store migrated: items table filled");
        }
        Ok(())
    }

    /// Applies the missing steps on `conn`; `true` when the items table must be filled from
    /// existing cases (a store older than version 2).
    async fn migrate_on(&self, conn: &mut sqlx::AnyConnection) -> Result<bool> {
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .execute(&mut *conn)
            .await?;
        let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        let steps = match self.backend {
            Backend::Sqlite => schema::SQLITE,
            Backend::Postgres => schema::POSTGRES,
        };
        for (version, statements) in steps.iter().filter(|(v, _)| *v > current) {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            for s in *statements {
                sqlx::query(*s).execute(&mut *tx).await?;
            }
            sqlx::query(self.sql("INSERT INTO schema_version (version) VALUES ($1)"))
                .bind(*version)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(current > 0 && current < 2)
    }

    /// Runs one statement as given: for operators' repairs and for tests that tamper with the
    /// store on purpose. The gateway itself never calls it.
    #[doc(hidden)]
    pub async fn execute_raw(&self, sql: &str) -> Result<u64> {
        let r = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Stores a new case with its first update (events, timers, audit), unless its id is taken.
    /// On SQLite it goes through the group writer with the changes of other cases.
    pub async fn insert_case(
        &self,
        state: &Case,
        submission: &str,
        first: Update,
    ) -> Result<Inserted> {
        let shared = Arc::new(state.clone());
        let new = NewCase {
            state: shared.clone(),
            json: state_json(state)?,
            submission: submission.to_string(),
            first,
        };
        let inserted = match self.write_work(Work::Insert(Box::new(new))).await? {
            Done::Inserted(i) => i,
            Done::Written(_) => unreachable!("a new case is answered with Inserted"),
        };
        if let (Inserted::New, Some(cache)) = (&inserted, &self.cache) {
            cache.offer(&StoredCase {
                state: shared,
                submission: submission.into(),
                version: 1,
            });
        }
        Ok(inserted)
    }

    pub async fn load(&self, case_id: &str) -> Result<Option<StoredCase>> {
        if let Some(kept) = self.cache.as_ref().and_then(|c| c.get(case_id)) {
            return Ok(Some(kept));
        }
        let row = sqlx::query(
            self.sql("SELECT state, submission, version FROM cases WHERE case_id = $1"),
        )
        .bind(case_id)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let state: String = row.try_get(0)?;
        let stored = StoredCase {
            state: Arc::new(
                serde_json::from_str(&state)
                    .map_err(|e| StoreError::Corrupt(format!("case {case_id}: {e}")))?,
            ),
            submission: row.try_get::<String, _>(1)?.into(),
            version: row.try_get(2)?,
        };
        if let Some(cache) = &self.cache {
            cache.offer(&stored);
        }
        Ok(Some(stored))
    }

    /// Applies an update if the case is still at `update.version`; `false` when another writer
    /// got there first (load again and retry).
    pub async fn save(&self, update: Update) -> Result<bool> {
        let done = self.write_work(Work::change(update)?).await?;
        Ok(matches!(done, Done::Written(true)))
    }

    /// One write through the group writer (SQLite), else in a transaction of its own.
    async fn write_work(&self, work: Work) -> Result<Done> {
        match &self.group {
            Some(queue) => group::write_through(self, queue, work).await,
            None => Ok(group::write(self, &[&work]).await?.remove(0)),
        }
    }

    /// Writes a batch in one transaction (see `save`, `insert_case`, `group.rs`).
    /// The cached cases it changes are held from before the commit until they show its outcome
    /// (`cache.rs`).
    /// On SQLite the events written go to the relay, under the hand-off's lock from before the
    /// commit (`handoff.rs`).
    async fn save_group(&self, batch: &Batch<'_>) -> Result<Written> {
        let mut tx = self.begin_write().await?;
        let mut written = self.write_group(&mut tx, batch).await?;
        let Some(cache) = &self.cache else {
            tx.commit().await?;
            return Ok(written);
        };
        let changes = || batch.updates.iter().filter(|u| u.state.is_some());
        cache.hold(changes().map(|u| u.case_id.as_str()));
        let handoff = match &self.handoff {
            Some(h) => Some((h, h.lock().await)),
            None => None,
        };
        let committed = tx.commit().await;
        if let Some((h, mut waiting)) = handoff
            && committed.is_ok()
            && waiting.push(std::mem::take(&mut written.events))
        {
            h.notify();
        }
        for (u, w) in batch.updates.iter().zip(&written.updated) {
            if u.state.is_some() {
                cache.settle(u, *w && committed.is_ok());
            }
        }
        committed?;
        Ok(written)
    }

    /// SQLite: the relay's hand-off of committed events (`handoff.rs`).
    pub fn handoff(&self) -> Option<&Handoff> {
        self.handoff.as_deref()
    }

    /// Releases claimed timers outside a case update.
    pub async fn release(&self, releases: &[Release]) -> Result<()> {
        let u = Update {
            release: releases.to_vec(),
            ..Default::default()
        };
        self.write_work(Work::change(u)?).await?;
        Ok(())
    }

    /// The earliest due time on each clock (to sleep until) of the unleased timers `admit` would
    /// take, if any: work of a department without room waits for the room, not for its time.
    pub async fn next_due(&self, admit: Admit<'_>) -> Result<(Option<i64>, Option<i64>)> {
        let mut binds = Vec::new();
        let extra = admit.exclusion(1, &mut binds);
        // Each clock's first unleased timer along `timers_clock_due`: the walk passes only that
        // clock's timers running now (leased), not every timer as a `MIN` over the table did.
        let first = |clock: &str| {
            format!(
                "(SELECT due_at FROM timers WHERE {extra}clock = '{clock}' AND lease_owner IS NULL \
                 ORDER BY due_at LIMIT 1)"
            )
        };
        let q = format!("SELECT {}, {}", first("g"), first("r"));
        let mut query = sqlx::query(self.sql(&q));
        for b in &binds {
            query = query.bind(b);
        }
        let row = query.fetch_one(&self.read).await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Events not yet confirmed by the broker, oldest first (per case in `seq` order). The relay
    /// claims them instead (`claim_events`); this is for inspection.
    pub async fn unpublished(&self, limit: i64) -> Result<Vec<OutboxEvent>> {
        let rows = sqlx::query(self.sql(
            "SELECT event_id, case_id, seq, routing_key, body FROM outbox WHERE published_at IS NULL ORDER BY created_at, case_id, seq LIMIT $1",
        ))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(outbox_row).collect()
    }

    /// Marks several events published, a hundred per statement (on SQLite with the group writer's
    /// next transaction).
    pub async fn mark_published_all(&self, event_ids: &[String], now: i64) -> Result<()> {
        if self.group.is_some() {
            self.write_work(Work::Published(event_ids.to_vec(), now))
                .await?;
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        let marks: Vec<(&str, i64)> = event_ids.iter().map(|id| (id.as_str(), now)).collect();
        self.write_published(&mut tx, &marks).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn mark_published(&self, event_id: &str, now: i64) -> Result<()> {
        self.mark_published_all(&[event_id.to_string()], now).await
    }

    /// Events of a case in `seq` order, as the outbox still holds them (for inspection and tests).
    pub async fn case_events(&self, case_id: &str) -> Result<Vec<OutboxEvent>> {
        let rows = sqlx::query(self.sql(
            "SELECT event_id, case_id, seq, routing_key, body FROM outbox WHERE case_id = $1 ORDER BY seq",
        ))
        .bind(case_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(outbox_row).collect()
    }

    /// A case's timers: (item, kind, due at).
    pub async fn timers_of(&self, case_id: &str) -> Result<Vec<(String, String, i64)>> {
        let rows =
            sqlx::query(self.sql(
                "SELECT item, kind, due_at FROM timers WHERE case_id = $1 ORDER BY item, kind",
            ))
            .bind(case_id)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Numbers for metrics and tests: cases, open cases, unpublished events, timers.
    pub async fn counts(&self) -> Result<Counts> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM cases), (SELECT COUNT(*) FROM cases WHERE completed = 0), \
             (SELECT COUNT(*) FROM outbox WHERE published_at IS NULL), (SELECT COUNT(*) FROM timers)",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(Counts {
            cases: row.try_get(0)?,
            open_cases: row.try_get(1)?,
            unpublished: row.try_get(2)?,
            timers: row.try_get(3)?,
        })
    }
}

/// A case's state as stored.
pub(super) fn state_json(state: &Case) -> Result<String> {
    serde_json::to_string(state).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn outbox_row(r: &sqlx::any::AnyRow) -> Result<OutboxEvent> {
    Ok(OutboxEvent {
        event_id: r.try_get(0)?,
        case_id: r.try_get(1)?,
        seq: r.try_get(2)?,
        routing_key: r.try_get(3)?,
        body: r.try_get(4)?,
    })
}

pub(super) fn timer_row(r: &sqlx::any::AnyRow, token: &str) -> Result<Timer> {
    let clock: String = r.try_get(5)?;
    let payload: String = r.try_get(7)?;
    Ok(Timer {
        id: r.try_get(0)?,
        case_id: r.try_get(1)?,
        item: r.try_get(2)?,
        kind: r.try_get(3)?,
        department: r.try_get(4)?,
        clock: if clock == "g" {
            TimerClock::Gateway
        } else {
            TimerClock::Real
        },
        due_at: r.try_get(6)?,
        payload: serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        token: token.to_string(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub cases: i64,
    pub open_cases: i64,
    pub unpublished: i64,
    pub timers: i64,
}
