//! Leases: how instances share work without doing it twice. A timer or a case's pending events
//! are claimed with a token (`<instance>:<random>`) until a time; PostgreSQL claims with
//! `FOR UPDATE SKIP LOCKED`, so concurrent instances take disjoint rows. A live instance renews
//! its leases; one that dies stops renewing, and its work is taken over once they run out.

use std::time::Duration;

use super::{Backend, Done, EventLease, OutboxEvent, Result, Store, Touch, Work, outbox_row};

/// Where a failed timer's lease goes: no instance renews it, any may claim it once it runs out.
const DEFERRED: &str = "deferred";

impl Store {
    pub(super) fn token(owner: &str) -> String {
        format!("{owner}:{}", hex::encode(rand::random::<[u8; 6]>()))
    }

    pub(super) fn skip_locked(&self) -> &'static str {
        if self.backend == Backend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        }
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
        let lease = EventLease {
            token: Self::token(owner),
            until: now_real + lease.as_millis() as i64,
            now: now_real,
            limit,
        };
        let token = lease.token.clone();
        let claimed = if self.group.is_some() {
            match self.write_work(Work::LeaseEvents(lease)).await? {
                Done::EventsLeased(n) => n,
                _ => unreachable!("an event lease is answered with a count"),
            }
        } else {
            self.lease_events(&self.pool, &lease).await?
        };
        if claimed == 0 {
            return Ok((token, Vec::new()));
        }
        let rows = sqlx::query(self.sql(
            "SELECT event_id, case_id, seq, routing_key, body FROM outbox WHERE published_at IS NULL \
             AND case_id IN (SELECT case_id FROM outbox WHERE lease_owner = $1 AND published_at IS NULL) \
             ORDER BY case_id, seq",
        ))
        .bind(token.clone())
        .fetch_all(&self.read)
        .await?;
        let events = rows.iter().map(outbox_row).collect::<Result<Vec<_>>>()?;
        Ok((token, events))
    }

    /// Leases up to `limit` cases through their first unpublished event; how many.
    pub(super) async fn lease_events<'e>(
        &self,
        on: impl sqlx::Executor<'e, Database = sqlx::Any>,
        lease: &EventLease,
    ) -> Result<u64> {
        let q = format!(
            "UPDATE outbox SET lease_owner = $1, lease_until = $2 WHERE event_id IN (\
               SELECT o.event_id FROM outbox o WHERE o.published_at IS NULL \
               AND (o.lease_until IS NULL OR o.lease_until < $3) \
               AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.case_id = o.case_id \
                 AND p.published_at IS NULL AND p.seq < o.seq) \
               ORDER BY o.created_at LIMIT $4{})",
            self.skip_locked()
        );
        let r = sqlx::query(self.sql(&q))
            .bind(&lease.token)
            .bind(lease.until)
            .bind(lease.now)
            .bind(lease.limit)
            .execute(on)
            .await?;
        Ok(r.rows_affected())
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
