//! Writing a case change: its events, timers, timer releases, item rows and audit records, each
//! kind as one multi-row statement rather than one statement per row. Every statement is a round
//! trip (on SQLite, to the connection's own thread), and a state change writes a few dozen rows, so
//! the number of statements, not their size, is what a change costs.

use sqlx::Row;

use super::{AuditRecord, Backend, NewTimer, Release, Result, Store, Update, chain_hash};
use crate::engine::Case;
use crate::store::item_rows;

/// Rows per statement: far below SQLite's and PostgreSQL's limits on bound values.
const CHUNK: usize = 100;

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// `($1, $2), ($3, $4)`: placeholders for `rows` rows of `cols` values, numbered from `$first`.
pub(super) fn values(rows: usize, cols: usize, first: usize) -> String {
    let mut s = String::new();
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            s.push('$');
            s.push_str(&(first + r * cols + c).to_string());
        }
        s.push(')');
    }
    s
}

/// The timers to write, one per (case, item, kind): a later one replaces an earlier one, as a
/// sequence of single upserts would (PostgreSQL refuses to upsert one row twice in a statement).
fn last_per_key(timers: &[NewTimer]) -> Vec<&NewTimer> {
    let mut out: Vec<&NewTimer> = Vec::with_capacity(timers.len());
    for t in timers {
        match out
            .iter_mut()
            .find(|o| (&o.case_id, &o.item, &o.kind) == (&t.case_id, &t.item, &t.kind))
        {
            Some(o) => *o = t,
            None => out.push(t),
        }
    }
    out
}

impl Store {
    /// Everything of an update but the case row: events, dropped timers, releases, new timers and
    /// audit records.
    pub(super) async fn write_parts(&self, tx: &mut Tx<'_>, u: &Update) -> Result<()> {
        for chunk in u.events.chunks(CHUNK) {
            let q = format!(
                "INSERT INTO outbox (event_id, case_id, seq, routing_key, body, created_at) VALUES {}",
                values(chunk.len(), 6, 1)
            );
            let mut query = sqlx::query(self.sql(&q));
            for e in chunk {
                query = query
                    .bind(&e.event_id)
                    .bind(&e.case_id)
                    .bind(e.seq)
                    .bind(&e.routing_key)
                    .bind(&e.body)
                    .bind(u.now);
            }
            query.execute(&mut **tx).await?;
        }
        for chunk in u.drop_timers.chunks(CHUNK) {
            let pairs: Vec<String> = (0..chunk.len())
                .map(|i| format!("(item = ${} AND kind = ${})", 2 + 2 * i, 3 + 2 * i))
                .collect();
            let q = format!(
                "DELETE FROM timers WHERE case_id = $1 AND ({})",
                pairs.join(" OR ")
            );
            let mut query = sqlx::query(self.sql(&q)).bind(&u.case_id);
            for (item, kind) in chunk {
                query = query.bind(item).bind(kind);
            }
            query.execute(&mut **tx).await?;
        }
        self.write_releases(tx, &u.release).await?;
        let timers = last_per_key(&u.timers);
        for chunk in timers.chunks(CHUNK) {
            let q = format!(
                "INSERT INTO timers (case_id, item, kind, department, clock, due_at, payload) VALUES {} \
                 ON CONFLICT (case_id, item, kind) DO UPDATE SET department = excluded.department, clock = excluded.clock, \
                 due_at = excluded.due_at, payload = excluded.payload, lease_owner = NULL, lease_until = NULL",
                values(chunk.len(), 7, 1)
            );
            let mut query = sqlx::query(self.sql(&q));
            for t in chunk {
                query = query
                    .bind(&t.case_id)
                    .bind(&t.item)
                    .bind(&t.kind)
                    .bind(&t.department)
                    .bind(t.clock.code())
                    .bind(t.due_at)
                    .bind(t.payload.to_string());
            }
            query.execute(&mut **tx).await?;
        }
        self.append_audit(tx, &u.audit).await
    }

    /// Deletes or reschedules claimed timers (only while the claim is still ours). Usually one.
    async fn write_releases(&self, tx: &mut Tx<'_>, releases: &[Release]) -> Result<()> {
        for r in releases {
            match r {
                Release::Delete { id, token } => {
                    sqlx::query(self.sql("DELETE FROM timers WHERE id = $1 AND lease_owner = $2"))
                        .bind(*id)
                        .bind(token)
                        .execute(&mut **tx)
                        .await?;
                }
                Release::Reschedule {
                    id,
                    token,
                    due_at,
                    payload,
                } => {
                    sqlx::query(self.sql(
                        "UPDATE timers SET due_at = $1, payload = $2, lease_owner = NULL, lease_until = NULL WHERE id = $3 AND lease_owner = $4",
                    ))
                    .bind(*due_at)
                    .bind(payload.to_string())
                    .bind(*id)
                    .bind(token)
                    .execute(&mut **tx)
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// The case's item rows (`items`), all in one upsert.
    pub(super) async fn write_items(&self, tx: &mut Tx<'_>, case: &Case) -> Result<()> {
        let rows = item_rows(case);
        for chunk in rows.chunks(CHUNK) {
            let q = format!(
                "INSERT INTO items (case_id, item, department, status, limit_due) VALUES {} \
                 ON CONFLICT (case_id, item) DO UPDATE SET department = excluded.department, \
                 status = excluded.status, limit_due = excluded.limit_due",
                values(chunk.len(), 5, 1)
            );
            let mut query = sqlx::query(self.sql(&q));
            for r in chunk {
                query = query
                    .bind(&case.case_id)
                    .bind(&r.item)
                    .bind(&r.department)
                    .bind(r.status)
                    .bind(r.limit_due);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Appends audit records to their chains: each chain's head is read once (on PostgreSQL under
    /// the chain's advisory lock, so two instances never fork it), the hashes are chained in
    /// memory, and the records go in as one insert, in order, so ids follow each chain.
    pub(super) async fn append_audit(
        &self,
        tx: &mut Tx<'_>,
        records: &[AuditRecord],
    ) -> Result<()> {
        let mut heads: Vec<(Option<String>, Option<String>)> = Vec::new();
        let mut rows: Vec<(&AuditRecord, Option<String>, String)> =
            Vec::with_capacity(records.len());
        for a in records {
            let head = match heads.iter_mut().find(|(c, _)| *c == a.case_id) {
                Some((_, h)) => h,
                None => {
                    let h = self.audit_head(tx, a.case_id.as_deref()).await?;
                    heads.push((a.case_id.clone(), h));
                    &mut heads.last_mut().expect("just pushed").1
                }
            };
            let hash = chain_hash(head.as_deref(), a);
            rows.push((a, head.replace(hash.clone()), hash));
        }
        for chunk in rows.chunks(CHUNK) {
            let q = format!(
                "INSERT INTO audit (case_id, item, department, at, kind, summary, body_sha256, prev_hash, hash) VALUES {}",
                values(chunk.len(), 9, 1)
            );
            let mut query = sqlx::query(self.sql(&q));
            for (a, prev, hash) in chunk {
                query = query
                    .bind(a.case_id.clone())
                    .bind(a.item.clone())
                    .bind(a.department.clone())
                    .bind(a.at)
                    .bind(&a.kind)
                    .bind(&a.summary)
                    .bind(a.body_sha256.clone())
                    .bind(prev.clone())
                    .bind(hash);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The last hash of a chain (a case's, or with `None` the records of no case).
    async fn audit_head(&self, tx: &mut Tx<'_>, case_id: Option<&str>) -> Result<Option<String>> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(case_id.unwrap_or_default().to_string())
                .execute(&mut **tx)
                .await?;
        }
        sqlx::query(self.sql(
            "SELECT hash FROM audit WHERE case_id IS NOT DISTINCT FROM $1 ORDER BY id DESC LIMIT 1",
        ))
        .bind(case_id.map(str::to_string))
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TimerClock;

    #[test]
    fn placeholders_are_numbered_row_by_row() {
        assert_eq!(values(2, 3, 1), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values(1, 2, 2), "($2, $3)");
    }

    #[test]
    fn a_later_timer_of_the_same_key_replaces_the_earlier() {
        let t = |item: &str, kind: &str, due_at| NewTimer {
            case_id: "c".into(),
            item: item.into(),
            kind: kind.into(),
            department: "d".into(),
            clock: TimerClock::Real,
            due_at,
            payload: serde_json::Value::Null,
        };
        let timers = [t("a", "push", 1), t("b", "push", 2), t("a", "push", 3)];
        let kept: Vec<(&str, i64)> = last_per_key(&timers)
            .iter()
            .map(|t| (t.item.as_str(), t.due_at))
            .collect();
        assert_eq!(kept, [("a", 3), ("b", 2)]);
    }
}
