//! Leases: how instances share work without doing it twice. A timer or a case's pending events
//! are claimed with a token (`<instance>:<random>`) until a time; PostgreSQL claims with
//! `FOR UPDATE SKIP LOCKED`, so concurrent instances take disjoint rows. A live instance renews
//! its leases; one that dies stops renewing, and its work is taken over once they run out.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::Row;

use super::rows::{repeat_last, values};
use super::{Backend, Done, OutboxEvent, Result, Store, Timer, Touch, Work, outbox_row, timer_row};

/// What a claim may take of each department's work. Each counted kind belongs to a class (the
/// runtime's: requests that send, requests that poll); timers of a counted kind are taken only
/// while their (department, class) has room left. A pair not named in `room` has no bound, and
/// timers of kinds not counted (deadlines) are always taken.
#[derive(Debug, Clone, Copy)]
pub struct Admit<'a> {
    /// (kind, class) for every counted kind.
    pub classes: &'a [(&'a str, &'a str)],
    /// Room left per (department, class).
    pub room: &'a HashMap<(String, String), usize>,
}

impl Admit<'_> {
    /// Takes everything.
    pub fn all() -> Admit<'static> {
        Admit {
            classes: &[],
            room: &EMPTY,
        }
    }

    fn class(&self, kind: &str) -> Option<&str> {
        self.classes
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, c)| *c)
    }

    /// Whether one more timer of `kind` at `department` fits; if so, counts it in `taken`.
    fn take(
        &self,
        kind: &str,
        department: &str,
        taken: &mut HashMap<(String, String), usize>,
    ) -> bool {
        let Some(class) = self.class(kind) else {
            return true;
        };
        let key = (department.to_string(), class.to_string());
        let room = self.room.get(&key).copied().unwrap_or(usize::MAX);
        let n = taken.entry(key).or_default();
        if *n >= room {
            return false;
        }
        *n += 1;
        true
    }

    /// `NOT ((department = … AND kind IN (…)) OR …) AND ` for every (department, class) without
    /// room, with placeholders from `$first`, their values appended to `binds`; empty when none
    /// is full.
    pub(super) fn exclusion(&self, first: usize, binds: &mut Vec<String>) -> String {
        let mut full: Vec<&(String, String)> = self
            .room
            .iter()
            .filter(|(_, r)| **r == 0)
            .map(|(k, _)| k)
            .collect();
        full.sort();
        let mut terms = Vec::new();
        for (department, class) in full {
            let kinds: Vec<&str> = self
                .classes
                .iter()
                .filter(|(_, c)| c == class)
                .map(|(k, _)| *k)
                .collect();
            if kinds.is_empty() {
                continue;
            }
            binds.push(department.clone());
            let d = first + binds.len() - 1;
            let marks: Vec<String> = kinds
                .iter()
                .map(|k| {
                    binds.push(k.to_string());
                    format!("${}", first + binds.len() - 1)
                })
                .collect();
            terms.push(format!(
                "(department = ${d} AND kind IN ({}))",
                marks.join(", ")
            ));
        }
        if terms.is_empty() {
            return String::new();
        }
        format!("NOT ({}) AND ", terms.join(" OR "))
    }
}

static EMPTY: std::sync::LazyLock<HashMap<(String, String), usize>> =
    std::sync::LazyLock::new(HashMap::new);

/// Where a failed timer's lease goes: no instance renews it, any may claim it once it runs out.
const DEFERRED: &str = "deferred";

/// Which due timers a claim considers.
#[derive(Clone, Copy)]
enum Filter<'a> {
    /// Every kind, within the departments' room.
    Admit(Admit<'a>),
    /// One kind at one department (a batch poll's companions).
    Only(&'a str, &'a str),
}

impl Store {
    fn token(owner: &str) -> String {
        format!("{owner}:{}", hex::encode(rand::random::<[u8; 6]>()))
    }

    pub(super) fn skip_locked(&self) -> &'static str {
        if self.backend == Backend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        }
    }

    /// Claims due timers for `lease`, oldest first: `now` is (gateway, real) ms. Timers of the
    /// kinds `admit` counts are taken only while their department has room, so that the claim
    /// never holds more of one department's work than it can start.
    pub async fn claim_due(
        &self,
        now: (i64, i64),
        owner: &str,
        lease: Duration,
        limit: i64,
        admit: Admit<'_>,
    ) -> Result<Vec<Timer>> {
        self.claim(now, owner, lease, limit, Filter::Admit(admit))
            .await
    }

    /// Claims due timers of one kind at one department (batch polls); `now` is (gateway, real).
    pub async fn claim_kind(
        &self,
        kind: &str,
        department: &str,
        now: (i64, i64),
        owner: &str,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<Timer>> {
        self.claim(now, owner, lease, limit, Filter::Only(kind, department))
            .await
    }

    /// Picks the due, unleased candidates and leases those admitted. PostgreSQL: in one
    /// transaction, the candidates locked with SKIP LOCKED, so instances take disjoint rows.
    /// SQLite (one instance, one writer): candidates from a reader, then one conditional update
    /// on the writer, only when something is due; a row leased meanwhile is simply not returned.
    async fn claim(
        &self,
        (now_gateway, now_real): (i64, i64),
        owner: &str,
        lease: Duration,
        limit: i64,
        filter: Filter<'_>,
    ) -> Result<Vec<Timer>> {
        let mut binds: Vec<String> = Vec::new();
        let extra = match filter {
            Filter::Only(kind, department) => {
                binds.extend([kind.to_string(), department.to_string()]);
                "kind = $5 AND department = $6 AND ".to_string()
            }
            Filter::Admit(a) => a.exclusion(5, &mut binds),
        };
        // Each clock's due timers are a range of `timers_clock_due`; `due_at <= $4` (the later
        // clock) bounds the walk should a plan go by due time alone. Walking every timer (the
        // distant deadlines too) on each claim was a quarter of the store's time under load.
        let q = format!(
            "SELECT id, kind, department FROM timers WHERE {extra}due_at <= $4 AND \
             ((clock = 'g' AND due_at <= $1) OR (clock = 'r' AND due_at <= $2)) \
             AND (lease_until IS NULL OR lease_until < $2) ORDER BY due_at LIMIT $3{}",
            self.skip_locked()
        );
        let mut query = sqlx::query(self.sql(&q))
            .bind(now_gateway)
            .bind(now_real)
            .bind(limit)
            .bind(now_gateway.max(now_real));
        for b in &binds {
            query = query.bind(b);
        }
        let mut tx = match self.backend {
            Backend::Postgres => Some(self.begin_write().await?),
            Backend::Sqlite => None,
        };
        let candidates = match &mut tx {
            Some(tx) => query.fetch_all(&mut **tx).await?,
            None => query.fetch_all(&self.read).await?,
        };
        let mut taken = HashMap::new();
        let mut ids = Vec::new();
        for row in candidates {
            let (id, kind, department): (i64, String, String) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            if let Filter::Admit(a) = filter
                && !a.take(&kind, &department, &mut taken)
            {
                continue;
            }
            ids.push(id);
        }
        if ids.is_empty() {
            if let Some(tx) = tx {
                tx.commit().await?;
            }
            return Ok(Vec::new());
        }
        let token = Self::token(owner);
        let sql = self.sql_rows(ids.len(), |n| {
            format!(
                "UPDATE timers SET lease_owner = $1, lease_until = $2 WHERE id IN {} \
                 AND (lease_until IS NULL OR lease_until < $3) \
                 RETURNING id, case_id, item, kind, department, clock, due_at, payload",
                values(1, n, 4)
            )
        });
        let mut query = sqlx::query(sql)
            .bind(token.clone())
            .bind(now_real + lease.as_millis() as i64)
            .bind(now_real);
        for id in repeat_last(&ids) {
            query = query.bind(*id);
        }
        let rows = match tx {
            Some(mut tx) => {
                let rows = query.fetch_all(&mut *tx).await?;
                tx.commit().await?;
                rows
            }
            None => query.fetch_all(&self.pool).await?,
        };
        let mut timers = rows
            .iter()
            .map(|r| timer_row(r, &token))
            .collect::<Result<Vec<_>>>()?;
        timers.sort_by_key(|t| t.due_at);
        Ok(timers)
    }

    /// Updates a claimed timer's payload and extends its lease (e.g. "sent" before a push goes
    /// out, so that a crash leaves the outcome marked unknown). `false` if the claim was lost.
    pub async fn touch(
        &self,
        id: i64,
        token: &str,
        payload: &serde_json::Value,
        lease_until: i64,
    ) -> Result<bool> {
        if self.group.is_some() {
            let touch = Touch {
                id,
                token: token.to_string(),
                payload: payload.to_string(),
                lease_until,
            };
            let done = self.write_work(Work::Touch(touch)).await?;
            return Ok(matches!(done, Done::Written(true)));
        }
        let r = sqlx::query(self.sql(
            "UPDATE timers SET payload = $1, lease_until = $2 WHERE id = $3 AND lease_owner = $4",
        ))
        .bind(payload.to_string())
        .bind(lease_until)
        .bind(id)
        .bind(token)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Extends to `until` (real ms) every lease `owner` holds on timers and events: the
    /// heartbeat of a live instance. Returns how many.
    pub async fn renew_leases(&self, owner: &str, until: i64) -> Result<u64> {
        // Rows being written right now (released, rescheduled, published) are skipped, not
        // waited for: the heartbeat never queues behind the work it keeps alive.
        let mut n = 0;
        for (table, key, pending) in [
            ("timers", "id", ""),
            ("outbox", "event_id", "published_at IS NULL AND "),
        ] {
            let q = format!(
                "UPDATE {table} SET lease_until = $1 WHERE {key} IN (SELECT {key} FROM {table} \
                 WHERE {pending}lease_owner LIKE $2 AND lease_until < $1{})",
                self.skip_locked()
            );
            n += sqlx::query(self.sql(&q))
                .bind(until)
                .bind(format!("{owner}:%"))
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(n)
    }

    /// Gives up a claimed timer that failed: nobody renews it, and any instance may run it again
    /// after `until` (real ms). `false` if the claim was lost.
    pub async fn defer(&self, id: i64, token: &str, until: i64) -> Result<bool> {
        let r = sqlx::query(self.sql(
            "UPDATE timers SET lease_owner = $1, lease_until = $2 WHERE id = $3 AND lease_owner = $4",
        ))
        .bind(DEFERRED)
        .bind(until)
        .bind(id)
        .bind(token)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Frees every timer and event claimed by `owner` (this instance before a restart): its work
    /// runs again at once instead of after the lease. Returns how many.
    pub async fn release_owner(&self, owner: &str) -> Result<u64> {
        let mut n = 0;
        for table in ["timers", "outbox"] {
            let q = format!(
                "UPDATE {table} SET lease_owner = NULL, lease_until = NULL WHERE lease_owner LIKE $1"
            );
            n += sqlx::query(self.sql(&q))
                .bind(format!("{owner}:%"))
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(n)
    }

    /// Claims up to `limit` cases' pending events for the relay: a case is claimed through its
    /// first unpublished event, so while one instance holds it no other publishes any of that
    /// case's events, and they leave in `seq` order. Returns the claim's token and every pending
    /// event of the claimed cases, each case in `seq` order.
    pub async fn claim_events(
        &self,
        owner: &str,
        now_real: i64,
        lease: Duration,
        limit: i64,
    ) -> Result<(String, Vec<OutboxEvent>)> {
        let token = Self::token(owner);
        let q = format!(
            "UPDATE outbox SET lease_owner = $1, lease_until = $2 WHERE event_id IN (\
               SELECT o.event_id FROM outbox o WHERE o.published_at IS NULL \
               AND (o.lease_until IS NULL OR o.lease_until < $3) \
               AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.case_id = o.case_id \
                 AND p.published_at IS NULL AND p.seq < o.seq) \
               ORDER BY o.created_at LIMIT $4{}) RETURNING case_id",
            self.skip_locked()
        );
        let claimed: Vec<String> = sqlx::query(self.sql(&q))
            .bind(token.clone())
            .bind(now_real + lease.as_millis() as i64)
            .bind(now_real)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        if claimed.is_empty() {
            return Ok((token, Vec::new()));
        }
        // The claimed cases' pending events, by the cases' ids: finding the cases by the lease
        // instead read every pending event's row, milliseconds a round once the relay had a
        // backlog. One statement: `limit` ids are far below either database's bound on
        // parameters.
        let sql = self.sql_rows(claimed.len(), |n| {
            format!(
                "SELECT event_id, case_id, seq, routing_key, body FROM outbox \
                 WHERE published_at IS NULL AND case_id IN {} ORDER BY case_id, seq",
                values(1, n, 1)
            )
        });
        let mut query = sqlx::query(sql);
        for id in repeat_last(&claimed) {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.read).await?;
        let events = rows.iter().map(outbox_row).collect::<Result<Vec<_>>>()?;
        Ok((token, events))
    }

    /// Gives back a relay claim whose events were not all published (the broker failed), so
    /// they go out again at once rather than after the lease.
    pub async fn release_events(&self, token: &str) -> Result<()> {
        sqlx::query(self.sql(
            "UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1 AND published_at IS NULL",
        ))
        .bind(token)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
