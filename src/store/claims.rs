//! Claiming due timers. A claim reads, for every (department, kind, clock), only the oldest due
//! timers it may take, through the index `timers_work (department, kind, clock, due_at)`: a
//! department's backlog waiting for its limits is never read past, however long it grows. The
//! candidates are then leased with one conditional update, so a row leased meanwhile (by another
//! instance) is simply not returned.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use sqlx::Row;

use super::group::{Done, Work};
use super::write::{Tx, values};
use super::{Backend, Lease, Result, Store, Timer, timer_row};

/// What a claim may take of each department's work. Each counted kind belongs to a class (the
/// runtime's: requests that send, requests that poll); timers of a counted kind are taken only
/// while their (department, class) has room left. Timers of `kinds` not counted (deadlines) are
/// always taken. The departments are those `room` names; a claim reads nothing else.
#[derive(Debug, Clone, Copy)]
pub struct Admit<'a> {
    /// (kind, class) for every counted kind.
    pub classes: &'a [(&'a str, &'a str)],
    /// Every kind a timer may have, counted or not.
    pub kinds: &'a [&'a str],
    /// Room left per (department, class), for every department.
    pub room: &'a HashMap<(String, String), usize>,
}

/// One index range a claim reads: a department's timers of one kind on one clock, oldest first,
/// at most `take` of them.
#[derive(Debug, PartialEq, Eq)]
struct Branch<'a> {
    department: &'a str,
    kind: &'a str,
    gateway_clock: bool,
    take: usize,
}

impl Admit<'_> {
    /// Takes everything, oldest first, whatever the department (tests and tools).
    pub fn all() -> Admit<'static> {
        Admit {
            classes: &[],
            kinds: &[],
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

    /// The ranges to read, each bounded by its class's room and by `limit`; `None` for
    /// [`Admit::all`]. Every (department, kind, clock) is listed, a full one with `take` 0, so
    /// the statement's text stays the same from one claim to the next (prepared once).
    fn branches(&self, limit: usize) -> Option<Vec<Branch<'_>>> {
        if self.room.is_empty() && self.kinds.is_empty() {
            return None;
        }
        let departments: BTreeSet<&str> = self.room.keys().map(|(d, _)| d.as_str()).collect();
        let mut out = Vec::new();
        for department in departments {
            for kind in self.kinds {
                let room = match self.class(kind) {
                    Some(class) => self
                        .room
                        .get(&(department.to_string(), class.to_string()))
                        .copied()
                        .unwrap_or(limit),
                    None => limit,
                };
                for gateway_clock in [true, false] {
                    out.push(Branch {
                        department,
                        kind,
                        gateway_clock,
                        take: room.min(limit),
                    });
                }
            }
        }
        Some(out)
    }
}

static EMPTY: std::sync::LazyLock<HashMap<(String, String), usize>> =
    std::sync::LazyLock::new(HashMap::new);

/// `SELECT id FROM (…) AS b0 UNION ALL …` over `branches`, placeholders numbered from `$first`
/// in the order they appear (so SQLite binds them as plain `?`): per branch the department, the
/// kind, then with `now` the branch's clock's "now" and the real "now" (due and not leased), else
/// nothing (not leased), and how many.
fn union(branches: &[Branch<'_>], due: bool, first: usize) -> String {
    let mut parts = Vec::with_capacity(branches.len());
    let mut p = first;
    let mut next = || {
        p += 1;
        p - 1
    };
    for (i, b) in branches.iter().enumerate() {
        let clock = if b.gateway_clock { "g" } else { "r" };
        let (department, kind) = (next(), next());
        let condition = if due {
            let (now, real) = (next(), next());
            format!("due_at <= ${now} AND (lease_until IS NULL OR lease_until < ${real})")
        } else {
            "lease_owner IS NULL".to_string()
        };
        parts.push(format!(
            "SELECT id FROM (SELECT id FROM timers WHERE department = ${department} \
             AND kind = ${kind} AND clock = '{clock}' AND {condition} ORDER BY due_at \
             LIMIT ${}) AS b{i}",
            next()
        ));
    }
    parts.join(" UNION ALL ")
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds what [`union`] numbered, in its order; `now` is (gateway, real) ms for a claim.
fn bind_branches<'q>(
    mut query: Query<'q>,
    branches: &[Branch<'_>],
    now: Option<(i64, i64)>,
) -> Query<'q> {
    for b in branches {
        query = query
            .bind(b.department.to_string())
            .bind(b.kind.to_string());
        if let Some((gateway, real)) = now {
            query = query
                .bind(if b.gateway_clock { gateway } else { real })
                .bind(real);
        }
        query = query.bind(b.take as i64);
    }
    query
}

impl Store {
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
        let branches = admit.branches(limit.max(0) as usize);
        self.claim(now, owner, lease, limit, branches.as_deref(), Some(admit))
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
        let take = limit.max(0) as usize;
        let branches = [true, false].map(|gateway_clock| Branch {
            department,
            kind,
            gateway_clock,
            take,
        });
        self.claim(now, owner, lease, limit, Some(&branches), None)
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
        branches: Option<&[Branch<'_>]>,
        admit: Option<Admit<'_>>,
    ) -> Result<Vec<Timer>> {
        let (q, listed) = match branches {
            Some(b) => {
                let q = format!(
                    "SELECT id, kind, department FROM timers WHERE id IN ({}) \
                     ORDER BY due_at LIMIT ${}{}",
                    union(b, true, 1),
                    5 * b.len() + 1,
                    self.skip_locked()
                );
                (q, b)
            }
            None => {
                let q = format!(
                    "SELECT id, kind, department FROM timers WHERE \
                     ((clock = 'g' AND due_at <= $1) OR (clock = 'r' AND due_at <= $2)) \
                     AND (lease_until IS NULL OR lease_until < $2) ORDER BY due_at LIMIT $3{}",
                    self.skip_locked()
                );
                (q, &[][..])
            }
        };
        let query = sqlx::query(self.sql(&q));
        let query = match branches {
            Some(_) => bind_branches(query, listed, Some((now_gateway, now_real))).bind(limit),
            None => query.bind(now_gateway).bind(now_real).bind(limit),
        };
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
            if let Some(a) = admit
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
        let lease = Lease {
            ids,
            token: Self::token(owner),
            until: now_real + lease.as_millis() as i64,
            now: now_real,
        };
        let mut timers = match tx {
            Some(mut tx) => {
                let timers = self.lease_timers(&mut tx, &lease).await?;
                tx.commit().await?;
                timers
            }
            // SQLite: with the group writer's next transaction.
            None => match self.write_work(Work::Lease(lease)).await? {
                Done::Leased(timers) => timers,
                _ => unreachable!("a lease is answered with its timers"),
            },
        };
        timers.sort_by_key(|t| t.due_at);
        Ok(timers)
    }

    /// Leases the listed timers not leased meanwhile; those it leased.
    pub(super) async fn lease_timers(&self, tx: &mut Tx<'_>, lease: &Lease) -> Result<Vec<Timer>> {
        let q = format!(
            "UPDATE timers SET lease_owner = $1, lease_until = $2 WHERE id IN {} \
             AND (lease_until IS NULL OR lease_until < $3) \
             RETURNING id, case_id, item, kind, department, clock, due_at, payload",
            values(1, lease.ids.len(), 4)
        );
        let mut query = sqlx::query(self.sql(&q))
            .bind(&lease.token)
            .bind(lease.until)
            .bind(lease.now);
        for id in &lease.ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&mut **tx).await?;
        rows.iter().map(|r| timer_row(r, &lease.token)).collect()
    }
    /// When the earliest timer `admit` would take falls due, per clock: (gateway ms, real ms).
    /// Leased timers do not count; a department without room does not either.
    pub async fn next_due(&self, admit: Admit<'_>) -> Result<(Option<i64>, Option<i64>)> {
        let mins = "SELECT MIN(CASE WHEN clock = 'g' THEN due_at END), \
                    MIN(CASE WHEN clock = 'r' THEN due_at END) FROM timers";
        let row = match admit.branches(1) {
            Some(branches) => {
                let q = format!("{mins} WHERE id IN ({})", union(&branches, false, 1));
                let query = bind_branches(sqlx::query(self.sql(&q)), &branches, None);
                query.fetch_one(&self.read).await?
            }
            None => {
                let q = format!("{mins} WHERE lease_owner IS NULL");
                sqlx::query(self.sql(&q)).fetch_one(&self.read).await?
            }
        };
        Ok((row.try_get(0)?, row.try_get(1)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(entries: &[(&str, &str, usize)]) -> HashMap<(String, String), usize> {
        entries
            .iter()
            .map(|(d, c, n)| ((d.to_string(), c.to_string()), *n))
            .collect()
    }

    #[test]
    fn every_department_kind_and_clock_is_a_branch_bounded_by_its_room() {
        let rooms = room(&[("b", "send", 3), ("a", "send", 0), ("a", "ask", 9)]);
        let admit = Admit {
            classes: &[("push", "send"), ("poll", "ask")],
            kinds: &["push", "poll", "deadline"],
            room: &rooms,
        };
        let got: Vec<(&str, &str, bool, usize)> = admit
            .branches(5)
            .unwrap()
            .into_iter()
            .map(|b| (b.department, b.kind, b.gateway_clock, b.take))
            .collect();
        let mut want = Vec::new();
        for (d, k, take) in [
            ("a", "push", 0), // full
            ("a", "poll", 5), // room 9, but 5 asked for
            ("a", "deadline", 5),
            ("b", "push", 3),
            ("b", "poll", 5), // no room named for (b, ask): unbounded
            ("b", "deadline", 5),
        ] {
            want.push((d, k, true, take));
            want.push((d, k, false, take));
        }
        assert_eq!(got, want);
        assert!(Admit::all().branches(5).is_none());
    }

    #[test]
    fn branches_read_their_clock_with_placeholders_in_the_order_they_are_bound() {
        let b = |gateway_clock| Branch {
            department: "d",
            kind: "k",
            gateway_clock,
            take: 1,
        };
        assert_eq!(
            union(&[b(true), b(false)], true, 1),
            "SELECT id FROM (SELECT id FROM timers WHERE department = $1 AND kind = $2 \
             AND clock = 'g' AND due_at <= $3 AND (lease_until IS NULL OR lease_until < $4) \
             ORDER BY due_at LIMIT $5) AS b0 UNION ALL \
             SELECT id FROM (SELECT id FROM timers WHERE department = $6 AND kind = $7 \
             AND clock = 'r' AND due_at <= $8 AND (lease_until IS NULL OR lease_until < $9) \
             ORDER BY due_at LIMIT $10) AS b1"
        );
        assert_eq!(
            union(&[b(false)], false, 1),
            "SELECT id FROM (SELECT id FROM timers WHERE department = $1 AND kind = $2 \
             AND clock = 'r' AND lease_owner IS NULL ORDER BY due_at LIMIT $3) AS b0"
        );
    }

    /// On SQLite every branch is one range of `timers_work`, read in due order: no scan of the
    /// table, so a department's backlog is never read past. (PostgreSQL plans by statistics;
    /// the same index serves it.)
    #[tokio::test]
    async fn every_branch_is_one_range_of_the_index() {
        let path =
            std::env::temp_dir().join(format!("onething-claims-plan-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let store = Store::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let rooms = room(&[("a", "send", 1), ("b", "send", 0)]);
        let admit = Admit {
            classes: &[("push", "send")],
            kinds: &["push", "deadline"],
            room: &rooms,
        };
        let branches = admit.branches(10).unwrap();
        for now in [Some((0, 0)), None] {
            let q = format!(
                "EXPLAIN QUERY PLAN SELECT id FROM timers WHERE id IN ({})",
                union(&branches, now.is_some(), 1)
            );
            let rows = bind_branches(sqlx::query(store.sql(&q)), &branches, now)
                .fetch_all(&store.read)
                .await
                .unwrap();
            let plan: Vec<String> = rows.iter().map(|r| r.try_get(3).unwrap()).collect();
            assert!(
                !plan.iter().any(|l| l.starts_with("SCAN timers")),
                "{plan:#?}"
            );
            assert!(!plan.iter().any(|l| l.contains("TEMP B-TREE")), "{plan:#?}");
            let ranges = plan
                .iter()
                .filter(|l| {
                    l.contains("USING INDEX timers_work (department=? AND kind=? AND clock=?")
                })
                .count();
            assert_eq!(ranges, branches.len(), "{plan:#?}");
        }
        store.close().await;
        let _ = std::fs::remove_file(&path);
    }
}
