//! One row per item beside the case's state: its department, status and the legal limit running
//! now. Written in the same transaction as the case, so `/metrics` counts open and overdue items
//! with one indexed query instead of reading every case.

use sqlx::Row;

use super::{Result, Store};
use crate::engine::Case;

/// An item as the `items` table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRow {
    pub item: String,
    pub department: String,
    pub status: &'static str,
    /// Gateway-clock ms of the limit the item is under now (accept or complete); none once final.
    pub limit_due: Option<i64>,
}

/// The rows of a case (pure).
pub fn item_rows(case: &Case) -> Vec<ItemRow> {
    case.items
        .iter()
        .map(|(code, it)| {
            let limit = if it.status.is_final() {
                None
            } else if it.accepted_at.is_some() {
                it.complete_due
            } else {
                it.accept_due
            };
            ItemRow {
                item: code.clone(),
                department: it.department.clone(),
                status: it.status.as_str(),
                limit_due: limit.map(|d| d.timestamp_millis()),
            }
        })
        .collect()
}

/// Open items per (department, status) and overdue items per department.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemCounts {
    pub open: Vec<(String, String, i64)>,
    pub overdue: Vec<(String, i64)>,
}

const FINAL: &str = "('approved','denied','rejected','cancelled','withdrawn','failed')";

impl Store {
    /// Fills `items` from the stored cases (once, when the table is new on an existing store).
    pub(super) async fn backfill_items(&self) -> Result<u64> {
        let mut after = String::new();
        let mut n = 0;
        loop {
            let rows = sqlx::query(self.sql(
                "SELECT case_id, state FROM cases WHERE case_id > $1 ORDER BY case_id LIMIT 500",
            ))
            .bind(&after)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                return Ok(n);
            }
            let mut tx = self.begin_write().await?;
            for row in &rows {
                let id: String = row.try_get(0)?;
                let state: String = row.try_get(1)?;
                let case: Case = serde_json::from_str(&state)
                    .map_err(|e| super::StoreError::Corrupt(format!("case {id}: {e}")))?;
                self.write_items(&mut tx, &[&case]).await?;
                after = id;
                n += 1;
            }
            tx.commit().await?;
        }
    }

    /// Open items by department and status, and items past their running limit at `now` (gateway
    /// clock, ms) by department.
    pub async fn item_counts(&self, now: i64) -> Result<ItemCounts> {
        let open = sqlx::query(self.sql(&format!(
            "SELECT department, status, COUNT(*) FROM items WHERE status NOT IN {FINAL} GROUP BY department, status ORDER BY department, status"
        )))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<Vec<_>>>()?;
        let overdue = sqlx::query(self.sql(
            "SELECT department, COUNT(*) FROM items WHERE limit_due IS NOT NULL AND limit_due < $1 GROUP BY department ORDER BY department",
        ))
        .bind(now)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<Vec<_>>>()?;
        Ok(ItemCounts { open, overdue })
    }
}

impl Store {
    /// (department, item) pairs that open items are at, for a reload's safety check.
    pub async fn open_item_kinds(&self) -> Result<Vec<(String, String)>> {
        sqlx::query(self.sql(&format!(
            "SELECT DISTINCT department, item FROM items WHERE status NOT IN {FINAL} ORDER BY department, item"
        )))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
    }
}
