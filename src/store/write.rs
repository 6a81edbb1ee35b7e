//! Writing case changes: the version-checked case rows, then their events, timers, timer releases,
//! item rows and audit records — each kind as one multi-row statement for every change written
//! together, rather than one statement per row. Every statement is a round trip (on SQLite, to the
//! connection's own thread) and the transaction holds the writer meanwhile, so the number of
//! statements, not their size, is what a change costs.

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use super::rows::Col::{Int, Int32, Text};
use super::rows::{CHUNK, Col, bind_padding, insert_rows, repeat_last, values};
use super::{
    AuditRecord, Backend, Batch, Inserted, NewCase, NewTimer, Release, Result, Store, StoreError,
    Touch, Update, Written, chain_hash,
};
use crate::engine::Case;
use crate::store::{ItemRow, item_rows};

pub(super) type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

// The columns of each insert, for the rows of NULLs that pad it (`rows::insert_rows`).
const CASE_COLS: [Col; 8] = [Text, Text, Text, Text, Int, Int, Int, Int32];
const OUTBOX_COLS: [Col; 6] = [Text, Text, Int, Text, Text, Int];
const TIMER_COLS: [Col; 7] = [Text, Text, Text, Text, Text, Int, Text];
const ITEM_COLS: [Col; 5] = [Text, Text, Text, Text, Int];
const AUDIT_COLS: [Col; 9] = [Text, Text, Text, Int, Text, Text, Text, Text, Text];

/// The timers to write, one per (case, item, kind): a later one replaces an earlier one, as a
/// sequence of single upserts would (PostgreSQL refuses to upsert one row twice in a statement).
fn last_per_key<'a>(timers: impl Iterator<Item = &'a NewTimer>) -> Vec<&'a NewTimer> {
    let mut out: Vec<&NewTimer> = Vec::new();
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

/// Every item row of a case, with its case id.
fn case_item_rows(case: &Case) -> impl Iterator<Item = (&str, ItemRow)> {
    let id = case.case_id.as_str();
    item_rows(case).into_iter().map(move |r| (id, r))
}

impl Store {
    /// Writes a batch in the open transaction: a new case only if its id is free, a change with a
    /// state only if its case is still at the version it was computed from (`false`: another
    /// writer changed the case first; load again and retry), a touch only while its claim holds.
    pub(super) async fn write_group(&self, tx: &mut Tx<'_>, batch: &Batch<'_>) -> Result<Written> {
        let inserted = self.insert_cases(tx, &batch.inserts).await?;
        let stored: Vec<&NewCase> = batch
            .inserts
            .iter()
            .zip(&inserted)
            .filter(|(_, i)| **i == Inserted::New)
            .map(|(n, _)| *n)
            .collect();
        let current = self.update_cases(tx, &batch.updates, &batch.states).await?;
        let updated: Vec<bool> = batch
            .updates
            .iter()
            .map(|u| u.state.is_none() || current.contains(&u.case_id))
            .collect();
        let applied: Vec<&Update> = batch
            .updates
            .iter()
            .zip(&updated)
            .filter(|(_, w)| **w)
            .map(|(u, _)| *u)
            .chain(stored.iter().map(|n| &n.first))
            .collect();
        let mut rows: Vec<(&str, ItemRow)> = Vec::new();
        for n in &stored {
            rows.extend(case_item_rows(&n.state));
        }
        for u in &applied {
            match (&u.state, &u.items) {
                (Some(_), Some(changed)) => {
                    rows.extend(changed.iter().map(|r| (u.case_id.as_str(), r.clone())))
                }
                (Some(state), None) => rows.extend(case_item_rows(state)),
                (None, _) => {}
            }
        }
        self.write_item_rows(tx, &rows).await?;
        self.write_parts(tx, &applied).await?;
        let touched = self.write_touches(tx, &batch.touches).await?;
        self.write_published(tx, &batch.published).await?;
        let events = match self.handoff {
            Some(_) => applied.iter().flat_map(|u| u.events.clone()).collect(),
            None => Vec::new(),
        };
        Ok(Written {
            updated,
            inserted,
            touched,
            events,
        })
    }

    /// New payloads and leases of claimed timers, while each claim holds; the claims written.
    async fn write_touches(
        &self,
        tx: &mut Tx<'_>,
        touches: &[&Touch],
    ) -> Result<HashSet<(i64, String)>> {
        let mut touched = HashSet::new();
        for chunk in touches.chunks(CHUNK) {
            let sql = self.sql_rows(chunk.len(), |n| {
                format!(
                    "WITH v(id, token, payload, lease_until) AS (VALUES {}) \
                     UPDATE timers SET payload = v.payload, lease_until = v.lease_until \
                     FROM v WHERE timers.id = v.id AND timers.lease_owner = v.token \
                     RETURNING timers.id, timers.lease_owner",
                    values(n, 4, 1)
                )
            });
            let mut query = sqlx::query(sql);
            for t in repeat_last(chunk) {
                query = query
                    .bind(t.id)
                    .bind(&t.token)
                    .bind(&t.payload)
                    .bind(t.lease_until);
            }
            for row in query.fetch_all(&mut **tx).await? {
                touched.insert((row.try_get(0)?, row.try_get(1)?));
            }
        }
        Ok(touched)
    }

    /// Marks events published, one statement per moment and hundred events.
    pub(super) async fn write_published(
        &self,
        tx: &mut Tx<'_>,
        marks: &[(&str, i64)],
    ) -> Result<()> {
        let mut moments: Vec<i64> = marks.iter().map(|(_, at)| *at).collect();
        moments.sort_unstable();
        moments.dedup();
        for at in moments {
            let ids: Vec<&str> = marks
                .iter()
                .filter(|(_, a)| *a == at)
                .map(|(id, _)| *id)
                .collect();
            for chunk in ids.chunks(CHUNK) {
                let sql = self.sql_rows(chunk.len(), |n| {
                    format!(
                        "UPDATE outbox SET published_at = $1 WHERE event_id IN {}",
                        values(1, n, 2)
                    )
                });
                let mut query = sqlx::query(sql).bind(at);
                for id in repeat_last(chunk) {
                    query = query.bind(*id);
                }
                query.execute(&mut **tx).await?;
            }
        }
        Ok(())
    }

    /// The case rows of new cases whose id is free; per case, whether it was new (an id taken
    /// meanwhile by another connection counts as taken: the insert waits for it, then skips).
    async fn insert_cases(&self, tx: &mut Tx<'_>, inserts: &[&NewCase]) -> Result<Vec<Inserted>> {
        let mut new: HashSet<String> = HashSet::new();
        for chunk in inserts.chunks(CHUNK) {
            let sql = self.sql_rows(chunk.len(), |n| {
                format!(
                    "INSERT INTO cases (case_id, onething, submission, state, version, received_at, updated_at, completed) \
                     {} ON CONFLICT (case_id) DO NOTHING RETURNING case_id",
                    insert_rows(n, 8, 1)
                )
            });
            let mut query = sqlx::query(sql);
            for n in chunk {
                query = query
                    .bind(&n.state.case_id)
                    .bind(&n.state.onething)
                    .bind(&n.submission)
                    .bind(&n.json)
                    .bind(1_i64)
                    .bind(n.first.now)
                    .bind(n.first.now)
                    .bind(i32::from(n.state.completed));
            }
            let query = bind_padding(query, chunk.len(), &CASE_COLS);
            for row in query.fetch_all(&mut **tx).await? {
                new.insert(row.try_get(0)?);
            }
        }
        let taken: Vec<&str> = inserts
            .iter()
            .map(|n| n.state.case_id.as_str())
            .filter(|id| !new.contains(*id))
            .collect();
        let mut stored: HashMap<String, String> = HashMap::new();
        for chunk in taken.chunks(CHUNK) {
            let sql = self.sql_rows(chunk.len(), |n| {
                format!(
                    "SELECT case_id, submission FROM cases WHERE case_id IN {}",
                    values(1, n, 1)
                )
            });
            let mut query = sqlx::query(sql);
            for id in repeat_last(chunk) {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&mut **tx).await? {
                stored.insert(row.try_get(0)?, row.try_get(1)?);
            }
        }
        inserts
            .iter()
            .map(|n| {
                let id = &n.state.case_id;
                if new.contains(id) {
                    return Ok(Inserted::New);
                }
                let submission = stored.remove(id).ok_or_else(|| {
                    StoreError::Db(format!("case {id}: neither inserted nor found"))
                })?;
                Ok(Inserted::Existing { submission })
            })
            .collect()
    }

    /// The version-checked case rows of the changes that carry a state (as JSON in `states`, in
    /// the order of `updates`); the ids written.
    async fn update_cases(
        &self,
        tx: &mut Tx<'_>,
        updates: &[&Update],
        states: &[Option<&str>],
    ) -> Result<HashSet<String>> {
        let stateful: Vec<(&Update, &str)> = updates
            .iter()
            .zip(states)
            .filter_map(|(u, json)| Some((*u, (*json)?)))
            .collect();
        let mut current: HashSet<String> = HashSet::new();
        for chunk in stateful.chunks(CHUNK) {
            let sql = self.sql_rows(chunk.len(), |n| {
                format!(
                    "WITH v(case_id, version, state, updated_at, completed) AS (VALUES {}) \
                     UPDATE cases SET state = v.state, version = cases.version + 1, \
                     updated_at = v.updated_at, completed = v.completed \
                     FROM v WHERE cases.case_id = v.case_id AND cases.version = v.version \
                     RETURNING cases.case_id",
                    values(n, 5, 1)
                )
            });
            let mut query = sqlx::query(sql);
            for (u, json) in repeat_last(chunk) {
                let completed = u.state.as_ref().is_some_and(|s| s.completed);
                query = query
                    .bind(&u.case_id)
                    .bind(u.version)
                    .bind(*json)
                    .bind(u.now)
                    .bind(i32::from(completed));
            }
            for row in query.fetch_all(&mut **tx).await? {
                current.insert(row.try_get(0)?);
            }
        }
        Ok(current)
    }

    /// Everything of the changes but their case rows: events, dropped timers, releases, new
    /// timers and audit records.
    pub(super) async fn write_parts(&self, tx: &mut Tx<'_>, updates: &[&Update]) -> Result<()> {
        let events: Vec<_> = updates
            .iter()
            .flat_map(|u| u.events.iter().map(move |e| (e, u.now)))
            .collect();
        for chunk in events.chunks(CHUNK) {
            let sql = self.sql_rows(chunk.len(), |n| {
                format!(
                    "INSERT INTO outbox (event_id, case_id, seq, routing_key, body, created_at) {}",
                    insert_rows(n, 6, 1)
                )
            });
            let mut query = sqlx::query(sql);
            for (e, now) in chunk {
                query = query
                    .bind(&e.event_id)
                    .bind(&e.case_id)
                    .bind(e.seq)
                    .bind(&e.routing_key)
                    .bind(&e.body)
                    .bind(*now);
            }
            let query = bind_padding(query, chunk.len(), &OUTBOX_COLS);
            query.execute(&mut **tx).await?;
        }
        let drops: Vec<_> = updates
            .iter()
            .flat_map(|u| u.drop_timers.iter().map(move |(i, k)| (&u.case_id, i, k)))
            .collect();
        for chunk in drops.chunks(CHUNK) {
            let sql = self.sql_rows(chunk.len(), |rows| {
                let terms: Vec<String> = (0..rows)
                    .map(|i| {
                        let n = 1 + 3 * i;
                        format!(
                            "(case_id = ${n} AND item = ${} AND kind = ${})",
                            n + 1,
                            n + 2
                        )
                    })
                    .collect();
                format!("DELETE FROM timers WHERE {}", terms.join(" OR "))
            });
            let mut query = sqlx::query(sql);
            for (case_id, item, kind) in repeat_last(chunk) {
                query = query.bind(*case_id).bind(*item).bind(*kind);
            }
            query.execute(&mut **tx).await?;
        }
        let releases: Vec<&Release> = updates.iter().flat_map(|u| &u.release).collect();
        self.write_releases(tx, &releases).await?;
        let timers = last_per_key(updates.iter().flat_map(|u| &u.timers));
        for chunk in timers.chunks(CHUNK) {
            let sql = self.sql_rows(chunk.len(), |n| {
                format!(
                    "INSERT INTO timers (case_id, item, kind, department, clock, due_at, payload) {} \
                     ON CONFLICT (case_id, item, kind) DO UPDATE SET department = excluded.department, clock = excluded.clock, \
                     due_at = excluded.due_at, payload = excluded.payload, lease_owner = NULL, lease_until = NULL",
                    insert_rows(n, 7, 1)
                )
            });
            let mut query = sqlx::query(sql);
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
            let query = bind_padding(query, chunk.len(), &TIMER_COLS);
            query.execute(&mut **tx).await?;
        }
        let audit: Vec<&AuditRecord> = updates.iter().flat_map(|u| &u.audit).collect();
        self.append_audit(tx, &audit).await
    }

    /// Deletes (all in one statement) or reschedules claimed timers, only while each claim is
    /// still the releaser's.
    async fn write_releases(&self, tx: &mut Tx<'_>, releases: &[&Release]) -> Result<()> {
        let deletes: Vec<(i64, &str)> = releases
            .iter()
            .filter_map(|r| match r {
                Release::Delete { id, token } => Some((*id, token.as_str())),
                Release::Reschedule { .. } => None,
            })
            .collect();
        for chunk in deletes.chunks(CHUNK) {
            let sql = self.sql_rows(chunk.len(), |rows| {
                let terms: Vec<String> = (0..rows)
                    .map(|i| format!("(id = ${} AND lease_owner = ${})", 1 + 2 * i, 2 + 2 * i))
                    .collect();
                format!("DELETE FROM timers WHERE {}", terms.join(" OR "))
            });
            let mut query = sqlx::query(sql);
            for (id, token) in repeat_last(chunk) {
                query = query.bind(*id).bind(*token);
            }
            query.execute(&mut **tx).await?;
        }
        let reschedules: Vec<(i64, &str, i64, String)> = releases
            .iter()
            .filter_map(|r| match r {
                Release::Reschedule {
                    id,
                    token,
                    due_at,
                    payload,
                } => Some((*id, token.as_str(), *due_at, payload.to_string())),
                Release::Delete { .. } => None,
            })
            .collect();
        for chunk in reschedules.chunks(CHUNK) {
            let sql = self.sql_rows(chunk.len(), |n| {
                format!(
                    "WITH v(id, token, due_at, payload) AS (VALUES {}) \
                     UPDATE timers SET due_at = v.due_at, payload = v.payload, lease_owner = NULL, lease_until = NULL \
                     FROM v WHERE timers.id = v.id AND timers.lease_owner = v.token",
                    values(n, 4, 1)
                )
            });
            let mut query = sqlx::query(sql);
            for (id, token, due_at, payload) in repeat_last(chunk) {
                query = query.bind(*id).bind(*token).bind(*due_at).bind(payload);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The cases' item rows (`items`), all in one upsert.
    pub(super) async fn write_items(&self, tx: &mut Tx<'_>, cases: &[&Case]) -> Result<()> {
        let rows: Vec<(&str, ItemRow)> = cases.iter().flat_map(|c| case_item_rows(c)).collect();
        self.write_item_rows(tx, &rows).await
    }

    /// Item rows of cases, all in one upsert.
    async fn write_item_rows(&self, tx: &mut Tx<'_>, rows: &[(&str, ItemRow)]) -> Result<()> {
        for chunk in rows.chunks(CHUNK) {
            let sql = self.sql_rows(chunk.len(), |n| {
                format!(
                    "INSERT INTO items (case_id, item, department, status, limit_due) {} \
                     ON CONFLICT (case_id, item) DO UPDATE SET department = excluded.department, \
                     status = excluded.status, limit_due = excluded.limit_due",
                    insert_rows(n, 5, 1)
                )
            });
            let mut query = sqlx::query(sql);
            for (case_id, r) in chunk {
                query = query
                    .bind(*case_id)
                    .bind(&r.item)
                    .bind(&r.department)
                    .bind(r.status)
                    .bind(r.limit_due);
            }
            let query = bind_padding(query, chunk.len(), &ITEM_COLS);
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Appends audit records to their chains: the heads of every chain involved are read at
    /// once (on PostgreSQL under each chain's advisory lock, taken in a fixed order, so two
    /// instances never fork a chain nor wait on each other in a circle), the hashes are chained
    /// in memory, and the records go in as one insert, in order, so ids follow each chain.
    pub(super) async fn append_audit(
        &self,
        tx: &mut Tx<'_>,
        records: &[&AuditRecord],
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut chains: Vec<Option<&str>> = records.iter().map(|a| a.case_id.as_deref()).collect();
        chains.sort();
        chains.dedup();
        let mut heads = self.audit_heads(tx, &chains).await?;
        let mut rows: Vec<(&AuditRecord, Option<String>, String)> =
            Vec::with_capacity(records.len());
        for a in records {
            let head = heads
                .iter_mut()
                .find(|(c, _)| c.as_deref() == a.case_id.as_deref())
                .map(|(_, h)| h)
                .expect("every chain's head was read");
            let hash = chain_hash(head.as_deref(), a);
            rows.push((a, head.replace(hash.clone()), hash));
        }
        for chunk in rows.chunks(CHUNK) {
            let sql = self.sql_rows(chunk.len(), |n| {
                format!(
                    "INSERT INTO audit (case_id, item, department, at, kind, summary, body_sha256, prev_hash, hash) {}",
                    insert_rows(n, 9, 4)
                )
            });
            let mut query = sqlx::query(sql);
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
            let query = bind_padding(query, chunk.len(), &AUDIT_COLS);
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The last hash of each chain (a case's; `None`: the records of no case), `chains` sorted.
    async fn audit_heads(
        &self,
        tx: &mut Tx<'_>,
        chains: &[Option<&str>],
    ) -> Result<Vec<(Option<String>, Option<String>)>> {
        let mut heads: Vec<(Option<String>, Option<String>)> = chains
            .iter()
            .map(|c| (c.map(str::to_string), None))
            .collect();
        if self.backend == Backend::Postgres {
            for c in chains {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(c.unwrap_or_default().to_string())
                    .execute(&mut **tx)
                    .await?;
            }
        }
        let cases: Vec<&str> = chains.iter().flatten().copied().collect();
        for chunk in cases.chunks(CHUNK) {
            let sql = self.sql_rows(chunk.len(), |n| {
                format!(
                    "SELECT case_id, hash FROM audit WHERE id IN (SELECT MAX(id) FROM audit \
                     WHERE case_id IN {} GROUP BY case_id)",
                    values(1, n, 1)
                )
            });
            let mut query = sqlx::query(sql);
            for c in repeat_last(chunk) {
                query = query.bind(*c);
            }
            for row in query.fetch_all(&mut **tx).await? {
                let (case_id, hash): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                if let Some(h) = heads
                    .iter_mut()
                    .find(|(c, _)| c.as_deref() == Some(&case_id))
                {
                    h.1 = Some(hash);
                }
            }
        }
        if chains.contains(&None) {
            let hash: Option<String> = sqlx::query(
                "SELECT hash FROM audit WHERE case_id IS NULL ORDER BY id DESC LIMIT 1",
            )
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
            if let Some(h) = heads.iter_mut().find(|(c, _)| c.is_none()) {
                h.1 = hash;
            }
        }
        Ok(heads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TimerClock;

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
        let kept: Vec<(&str, i64)> = last_per_key(timers.iter())
            .iter()
            .map(|t| (t.item.as_str(), t.due_at))
            .collect();
        assert_eq!(kept, [("a", 3), ("b", 2)]);
    }
}
