//! Connections: pools for PostgreSQL, and for SQLite the one writer, the readers beside it and
//! the WAL checkpointer, each set up with its pragmas; SQLite's form of placeholders.

use std::str::FromStr;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

use super::{Backend, Result};

/// Read-only connections beside SQLite's one writer.
pub(super) const SQLITE_READERS: u32 = 4;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Write,
    Read,
    /// Copies the WAL back into the database file beside the writer (`checkpoints`).
    Checkpoint,
}

/// A pool of `max` connections; on SQLite each in WAL mode with a busy timeout, readers refusing
/// to write.
pub(super) async fn connect(backend: Backend, url: &str, max: u32, role: Role) -> Result<AnyPool> {
    let opts = AnyConnectOptions::from_str(url)?;
    Ok(AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(30))
        // A SQLite connection is a file in this process and cannot go stale; pinging it before
        // every statement doubled the round trips to its thread. PostgreSQL's are pinged: a
        // restarted server leaves dead connections in the pool.
        .test_before_acquire(backend == Backend::Postgres)
        // Nor is a SQLite connection ever worth reopening: that throws its compiled statements
        // away, and the writer's thread would be started again by whichever task asked, at that
        // task's priority (the daemon runs its workers below the writer, see `main.rs`).
        .max_lifetime((backend == Backend::Postgres).then_some(Duration::from_secs(30 * 60)))
        .idle_timeout((backend == Backend::Postgres).then_some(Duration::from_secs(10 * 60)))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    let pragmas: &[&str] = match role {
                        Role::Write => &[
                            "PRAGMA journal_mode=WAL",
                            "PRAGMA synchronous=NORMAL",
                            "PRAGMA busy_timeout=10000",
                            // Checkpoints are `checkpoints`' work; this is only a bound on the
                            // WAL (40 MB) should that task fall behind.
                            "PRAGMA wal_autocheckpoint=10000",
                            // A statement inside a transaction that may fail half-way keeps the
                            // pages it changes in a statement journal, by default a temporary
                            // file past 64 KiB: under load a tenth of the writer thread's time
                            // went to writing that file (perf). In memory it is a copy.
                            "PRAGMA temp_store=MEMORY",
                            // 16 MB of pages instead of 2: a group's writes land on pages all
                            // over the cases, outbox and audit indexes, which a small cache read
                            // back from the file again and again.
                            "PRAGMA cache_size=-16000",
                        ],
                        Role::Read => &["PRAGMA busy_timeout=10000", "PRAGMA query_only=1"],
                        Role::Checkpoint => &["PRAGMA busy_timeout=10000"],
                    };
                    for p in pragmas {
                        sqlx::query(*p).execute(&mut *conn).await?;
                    }
                }
                Ok(())
            })
        })
        .connect_with(opts)
        .await?)
}

/// SQLite's form of `$1` placeholders: plain `?` when they run `$1, $2, …` in order, each once
/// (the multi-row statements), `?1` otherwise. Binding a statement asks SQLite each parameter's
/// name, and SQLite finds a numbered one by walking the list of names: a multi-row statement of
/// `n` numbered values cost `n²` steps to bind, while plain ones have no names to walk.
pub(super) fn sqlite_placeholders(q: &str) -> String {
    let sequential = q.split('$').skip(1).enumerate().all(|(i, rest)| {
        let len = rest.bytes().take_while(u8::is_ascii_digit).count();
        rest[..len].parse::<usize>() == Ok(i + 1)
    });
    if !sequential {
        return q.replace('$', "?");
    }
    let mut out = String::with_capacity(q.len());
    let mut chars = q.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' {
            out.push('?');
            while chars.next_if(char::is_ascii_digit).is_some() {}
        } else {
            out.push(c);
        }
    }
    out
}

/// Copies SQLite's WAL back into the database file every second, on a connection of its own,
/// until the store closes. Left to the writer, every thousandth page it wrote made one of its
/// commits copy them all (12 % of the writer thread's time under load), while the work queued.
/// `PASSIVE`: it never waits for, nor blocks, the writer or readers.
pub(super) async fn checkpoints(pool: AnyPool) {
    while !pool.is_closed() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
            && !pool.is_closed()
        {
            tracing::warn!(error = %e, "WAL checkpoint failed; the writer checkpoints on its own past 40 MB");
        }
    }
}

pub(super) fn sqlite_path(url: &str) -> Option<&str> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
}

#[cfg(test)]
mod tests {
    use super::sqlite_placeholders;

    #[test]
    fn sequential_placeholders_become_plain() {
        assert_eq!(
            sqlite_placeholders("INSERT INTO t VALUES ($1, $2), ($3, $4)"),
            "INSERT INTO t VALUES (?, ?), (?, ?)"
        );
        assert_eq!(sqlite_placeholders("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn repeated_or_unordered_placeholders_stay_numbered() {
        assert_eq!(
            sqlite_placeholders("UPDATE t SET a = $1 WHERE b < $1 AND c = $2"),
            "UPDATE t SET a = ?1 WHERE b < ?1 AND c = ?2"
        );
        assert_eq!(
            sqlite_placeholders("SELECT $2, $1, $10"),
            "SELECT ?2, ?1, ?10"
        );
    }
}
