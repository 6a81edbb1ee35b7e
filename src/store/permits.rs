//! Department limits shared by every instance on one database: a department's `concurrency`
//! permits (a request holds one while it is on the wire) and its pacing (the next moment its rate
//! lets a request of a class start). One instance alone keeps these in memory; several must
//! agree, or three of them would send police three times what its document allows.

use sqlx::Row;

use super::rows::values;
use super::{Result, Store};

impl Store {
    /// Makes `department` have exactly `count` permits: missing ones are added, surplus ones
    /// removed once free (a held one goes when its holder gives it back and this runs again).
    pub async fn set_permits(&self, department: &str, count: u32) -> Result<()> {
        let mut tx = self.begin_write().await?;
        if count > 0 {
            let q = format!(
                "INSERT INTO permits (department, slot) VALUES {} ON CONFLICT (department, slot) DO NOTHING",
                values(count as usize, 2, 1)
            );
            let mut query = sqlx::query(self.sql(&q));
            for slot in 0..count as i64 {
                query = query.bind(department).bind(slot);
            }
            query.execute(&mut *tx).await?;
        }
        sqlx::query(
            self.sql("DELETE FROM permits WHERE department = $1 AND slot >= $2 AND holder IS NULL"),
        )
        .bind(department)
        .bind(count as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes a free permit of `department` for `holder` until `until` (real ms): its slot, or
    /// `None` when every permit is held (and not expired at `now`).
    pub async fn take_permit(
        &self,
        department: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<Option<i64>> {
        let q = format!(
            "UPDATE permits SET holder = $1, until = $2 WHERE department = $3 AND slot = (\
               SELECT slot FROM permits WHERE department = $3 AND (holder IS NULL OR until < $4) \
               ORDER BY slot LIMIT 1{}) \
             AND (holder IS NULL OR until < $4) RETURNING slot",
            self.skip_locked()
        );
        let row = sqlx::query(self.sql(&q))
            .bind(holder)
            .bind(until)
            .bind(department)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Gives a permit back (only if `holder` still holds it).
    pub async fn give_permit(&self, department: &str, slot: i64, holder: &str) -> Result<()> {
        sqlx::query(self.sql(
            "UPDATE permits SET holder = NULL, until = NULL WHERE department = $1 AND slot = $2 AND holder = $3",
        ))
        .bind(department)
        .bind(slot)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Reserves the next start of a request of `class` at `department`, at most one per
    /// `interval` ms across every instance: returns when it may start (real ms, `now` or later).
    pub async fn pace(
        &self,
        department: &str,
        class: &str,
        interval: i64,
        now: i64,
    ) -> Result<i64> {
        let row = sqlx::query(self.sql(
            "INSERT INTO pacing (department, class, next_at) VALUES ($1, $2, $3 + $4) \
             ON CONFLICT (department, class) DO UPDATE SET next_at = \
               (CASE WHEN pacing.next_at > $3 THEN pacing.next_at ELSE $3 END) + $4 \
             RETURNING next_at",
        ))
        .bind(department)
        .bind(class)
        .bind(now)
        .bind(interval)
        .fetch_one(&self.pool)
        .await?;
        let next: i64 = row.try_get(0)?;
        Ok(next - interval)
    }
}
