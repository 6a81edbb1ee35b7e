//! Dead letters kept in the store: every inbound message the gateway could not take, with its
//! reason and errors, for `onething dead list` and `onething dead replay`. The body is kept exactly
//! (base64 when it is not UTF-8), so a replay re-submits the same bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sqlx::Row;

use super::{Result, Store, StoreError};

/// A stored dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    /// Gateway-clock ms.
    pub at: i64,
    pub reason: String,
    /// JSON text of the error list.
    pub errors: String,
    pub case_id: Option<String>,
    /// The routing key it arrived with (`submission`, `withdrawal`), if known.
    pub routing_key: Option<String>,
    pub body: Vec<u8>,
    /// When it was last re-submitted (gateway-clock ms).
    pub replayed_at: Option<i64>,
}

/// A new dead letter.
pub struct NewDeadLetter<'a> {
    pub at: i64,
    pub reason: &'a str,
    pub errors: &'a str,
    pub case_id: Option<&'a str>,
    pub routing_key: &'a str,
    pub body: &'a [u8],
}

const COLUMNS: &str =
    "id, at, reason, errors, case_id, routing_key, body, body_base64, replayed_at";

fn row(r: &sqlx::any::AnyRow) -> Result<DeadLetter> {
    let text: String = r.try_get(6)?;
    let encoded: i32 = r.try_get(7)?;
    let body = if encoded != 0 {
        B64.decode(text.as_bytes())
            .map_err(|e| StoreError::Corrupt(format!("dead letter body: {e}")))?
    } else {
        text.into_bytes()
    };
    Ok(DeadLetter {
        id: r.try_get(0)?,
        at: r.try_get(1)?,
        reason: r.try_get(2)?,
        errors: r.try_get(3)?,
        case_id: r.try_get(4)?,
        routing_key: r.try_get(5)?,
        body,
        replayed_at: r.try_get(8)?,
    })
}

impl Store {
    /// Keeps a dead-lettered message.
    pub async fn dead_letter(&self, d: &NewDeadLetter<'_>) -> Result<i64> {
        let (text, encoded) = match std::str::from_utf8(d.body) {
            Ok(s) => (s.to_string(), 0),
            Err(_) => (B64.encode(d.body), 1),
        };
        let row = sqlx::query(self.sql(
            "INSERT INTO dead_letters (at, reason, errors, case_id, routing_key, body, body_base64) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        ))
        .bind(d.at)
        .bind(d.reason)
        .bind(d.errors)
        .bind(d.case_id.map(str::to_string))
        .bind(d.routing_key)
        .bind(text)
        .bind(encoded)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Dead letters, oldest first; `pending_only` leaves out those already replayed.
    pub async fn dead_letters(&self, pending_only: bool) -> Result<Vec<DeadLetter>> {
        let filter = if pending_only {
            " WHERE replayed_at IS NULL"
        } else {
            ""
        };
        let q = format!("SELECT {COLUMNS} FROM dead_letters{filter} ORDER BY id");
        sqlx::query(self.sql(&q))
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(row)
            .collect()
    }

    pub async fn dead_letter_by_id(&self, id: i64) -> Result<Option<DeadLetter>> {
        let q = format!("SELECT {COLUMNS} FROM dead_letters WHERE id = $1");
        sqlx::query(self.sql(&q))
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(row)
            .transpose()
    }

    /// Marks a dead letter replayed; `false` if it was already (another replay got there first).
    pub async fn mark_replayed(&self, id: i64, at: i64) -> Result<bool> {
        let r =
            sqlx::query(self.sql(
                "UPDATE dead_letters SET replayed_at = $1 WHERE id = $2 AND replayed_at IS NULL",
            ))
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Clears a replay mark (the re-submission could not be confirmed by the broker).
    pub async fn unmark_replayed(&self, id: i64) -> Result<()> {
        sqlx::query(self.sql("UPDATE dead_letters SET replayed_at = NULL WHERE id = $1"))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
