//! The audit trail: every inbound message, push, answer, callback, poll answer, state change and
//! event, with its time and the SHA-256 of its body. Records are chained per case (the records of no
//! case form one chain of their own): each hash covers the record and the previous hash, so
//! altering or removing a record breaks the chain from there on, which `onething audit verify`
//! finds. Retention drops whole chains of long-finished cases, and the oldest records of no case
//! behind an anchor, so what remains still verifies.

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{AuditRecord, Result, Store, StoredAudit};

/// The audit chain: each record's hash covers its content and the previous record's hash (per
/// case), so altering or removing a record breaks every later link.
pub fn chain_hash(prev: Option<&str>, a: &AuditRecord) -> String {
    let mut h = Sha256::new();
    for part in [
        prev.unwrap_or(""),
        a.case_id.as_deref().unwrap_or(""),
        a.item.as_deref().unwrap_or(""),
        a.department.as_deref().unwrap_or(""),
        &a.at.to_string(),
        &a.kind,
        &a.summary,
        a.body_sha256.as_deref().unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// What `verify` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub chains: u64,
    /// One line per broken link: `audit record #ID (case X): …`.
    pub problems: Vec<String>,
}

/// What `prune` removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub cases: u64,
    pub records: u64,
    /// Published events of those cases removed from the outbox.
    pub events: u64,
}

const COLUMNS: &str =
    "id, case_id, item, department, at, kind, summary, body_sha256, prev_hash, hash";

fn audit_row(r: &sqlx::any::AnyRow) -> Result<StoredAudit> {
    Ok(StoredAudit {
        id: r.try_get(0)?,
        record: AuditRecord {
            case_id: r.try_get(1)?,
            item: r.try_get(2)?,
            department: r.try_get(3)?,
            at: r.try_get(4)?,
            kind: r.try_get(5)?,
            summary: r.try_get(6)?,
            body_sha256: r.try_get(7)?,
        },
        prev_hash: r.try_get(8)?,
        hash: r.try_get(9)?,
    })
}

impl Store {
    /// Audit records that belong to no case update (an unknown case's callback, say).
    pub async fn audit(&self, records: &[AuditRecord]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let records: Vec<&AuditRecord> = records.iter().collect();
        self.append_audit(&mut tx, &records).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn case_audit(&self, case_id: &str) -> Result<Vec<StoredAudit>> {
        let q = format!("SELECT {COLUMNS} FROM audit WHERE case_id = $1 ORDER BY id");
        sqlx::query(self.sql(&q))
            .bind(case_id)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(audit_row)
            .collect()
    }

    /// Checks every chain (or one case's): each record's hash against its content, each link
    /// against the record before it (or the chain's anchor where retention pruned it).
    pub async fn verify_audit(&self, case_id: Option<&str>) -> Result<Verified> {
        let mut anchors = std::collections::HashMap::new();
        for r in sqlx::query("SELECT chain, hash FROM audit_anchors")
            .fetch_all(&self.read)
            .await?
        {
            anchors.insert(r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?);
        }
        // The last hash seen per chain; records come in id order, which is each chain's order.
        let mut last: std::collections::HashMap<String, String> = Default::default();
        let mut out = Verified::default();
        let mut after = 0i64;
        loop {
            let q = match case_id {
                Some(_) => format!(
                    "SELECT {COLUMNS} FROM audit WHERE id > $1 AND case_id = $2 ORDER BY id LIMIT 2000"
                ),
                None => format!("SELECT {COLUMNS} FROM audit WHERE id > $1 ORDER BY id LIMIT 2000"),
            };
            let mut query = sqlx::query(self.sql(&q)).bind(after);
            if let Some(c) = case_id {
                query = query.bind(c);
            }
            let rows = query.fetch_all(&self.read).await?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let a = audit_row(r)?;
                after = a.id;
                out.records += 1;
                let chain = a.record.case_id.clone().unwrap_or_default();
                let whose = match &a.record.case_id {
                    Some(c) => format!("case {c}"),
                    None => "no case".to_string(),
                };
                let expected = match last.get(&chain) {
                    Some(h) => Some(h.clone()),
                    None => {
                        out.chains += 1;
                        anchors.get(&chain).cloned()
                    }
                };
                if a.prev_hash != expected {
                    out.problems.push(format!(
                        "audit record #{} ({whose}): chain broken: the record before it was removed or altered",
                        a.id
                    ));
                }
                if chain_hash(a.prev_hash.as_deref(), &a.record) != a.hash {
                    out.problems.push(format!(
                        "audit record #{} ({whose}): altered: its content does not match its hash",
                        a.id
                    ));
                }
                last.insert(chain, a.hash);
            }
        }
        Ok(out)
    }

    /// Retention: removes the audit trails of cases completed and untouched since before `cutoff`
    /// (gateway-clock ms), and the records of no case older than it (the newest one always stays,
    /// and an anchor keeps the chain verifiable).
    pub async fn prune_audit(&self, cutoff: i64, now: i64) -> Result<Pruned> {
        let mut out = Pruned::default();
        let mut tx = self.begin_write().await?;
        let finished = "SELECT case_id FROM cases WHERE completed = 1 AND updated_at < $1";
        let cases = sqlx::query(self.sql(&format!(
            "SELECT COUNT(DISTINCT case_id) FROM audit WHERE case_id IN ({finished})"
        )))
        .bind(cutoff)
        .fetch_one(&mut *tx)
        .await?;
        out.cases = cases.try_get::<i64, _>(0)? as u64;
        let r = sqlx::query(self.sql(&format!("DELETE FROM audit WHERE case_id IN ({finished})")))
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        out.records += r.rows_affected();
        // Their published events have served their purpose (the broker confirmed them); the
        // outbox would otherwise keep every event ever sent.
        let r = sqlx::query(self.sql(&format!(
            "DELETE FROM outbox WHERE published_at IS NOT NULL AND case_id IN ({finished})"
        )))
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        out.events = r.rows_affected();
        // Records of no case: keep the newest, anchor the chain at the last one removed.
        let newest: Option<i64> = sqlx::query("SELECT MAX(id) FROM audit WHERE case_id IS NULL")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if let Some(newest) = newest {
            let last_removed = sqlx::query(self.sql(
                "SELECT id, hash FROM audit WHERE case_id IS NULL AND at < $1 AND id < $2 ORDER BY id DESC LIMIT 1",
            ))
            .bind(cutoff)
            .bind(newest)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = last_removed {
                let id: i64 = row.try_get(0)?;
                let hash: String = row.try_get(1)?;
                let r =
                    sqlx::query(self.sql("DELETE FROM audit WHERE case_id IS NULL AND id <= $1"))
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                out.records += r.rows_affected();
                sqlx::query(self.sql(
                    "INSERT INTO audit_anchors (chain, hash, pruned_at) VALUES ('', $1, $2) \
                     ON CONFLICT (chain) DO UPDATE SET hash = excluded.hash, pruned_at = excluded.pruned_at",
                ))
                .bind(hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(out)
    }
}
