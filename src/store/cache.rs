//! Open cases as this process last stored them, kept in memory on SQLite. A case is loaded for
//! every timer, callback and poll that touches it (some 26 times for a newborn case); each load
//! was a round trip to a SQLite thread and a parse of the state. On SQLite the file is this
//! process's own and every change of a case goes through `Store::save`, so what it stored last is
//! what the file holds. Even so the cache only ever saves a read: a change computed from a stale
//! entry fails its version check like any other, the entry is dropped, and the retry loads from
//! the file. Bounded; completed cases leave it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::{StoredCase, Update};

/// Open cases kept at most (a newborn case is a few kilobytes with its submission).
const CAPACITY: usize = 4096;

#[derive(Default)]
pub(super) struct Cache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    cases: HashMap<String, StoredCase>,
    /// Ids in the order they came in, to evict the oldest (ids already gone are skipped).
    order: VecDeque<String>,
}

impl Cache {
    pub fn get(&self, case_id: &str) -> Option<StoredCase> {
        self.lock().cases.get(case_id).cloned()
    }

    /// A case as read from the store or just inserted: kept unless completed or older than what
    /// is kept already (a read that raced a newer change).
    pub fn offer(&self, case: &StoredCase) {
        let mut inner = self.lock();
        if case.state.completed {
            inner.cases.remove(&case.state.case_id);
            return;
        }
        let newer = inner
            .cases
            .get(&case.state.case_id)
            .is_none_or(|kept| kept.version < case.version);
        if newer {
            inner.keep(case.clone());
        }
    }

    /// The outcome of saving `update`: a written change moves its case to the next version, a
    /// refused one (another writer was first) drops it.
    pub fn saved(&self, update: &Update, written: bool) {
        let Some(state) = &update.state else { return };
        let mut inner = self.lock();
        let next = match inner.cases.get(&update.case_id) {
            Some(kept) if written && kept.version == update.version && !state.completed => {
                StoredCase {
                    state: state.clone(),
                    submission: kept.submission.clone(),
                    version: update.version + 1,
                }
            }
            _ => {
                inner.cases.remove(&update.case_id);
                return;
            }
        };
        inner.cases.insert(update.case_id.clone(), next);
    }

    /// Drops a case (its change failed: what is stored is unknown).
    pub fn forget(&self, case_id: &str) {
        self.lock().cases.remove(case_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn keep(&mut self, case: StoredCase) {
        let id = case.state.case_id.clone();
        if self.cases.insert(id.clone(), case).is_none() {
            self.order.push_back(id);
        }
        while self.cases.len() > CAPACITY {
            match self.order.pop_front() {
                Some(old) => {
                    self.cases.remove(&old);
                }
                None => break,
            }
        }
        // Ids of cases that left early pile up in `order`: compact when they outnumber the cases.
        if self.order.len() > 2 * CAPACITY {
            let cases = &self.cases;
            self.order.retain(|id| cases.contains_key(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Case;

    fn case(id: &str, completed: bool) -> Case {
        Case {
            case_id: id.into(),
            onething: "newborn".into(),
            items: Default::default(),
            prior_results: Default::default(),
            delivery: serde_json::Value::Null,
            seq: 0,
            withdrawal: None,
            completed,
        }
    }

    fn stored(id: &str, version: i64) -> StoredCase {
        StoredCase {
            state: case(id, false),
            submission: "{}".into(),
            version,
        }
    }

    fn change(id: &str, version: i64, completed: bool) -> Update {
        Update {
            case_id: id.into(),
            version,
            state: Some(case(id, completed)),
            ..Default::default()
        }
    }

    #[test]
    fn a_written_change_moves_the_case_on_and_a_refused_one_drops_it() {
        let cache = Cache::default();
        cache.offer(&stored("A", 1));
        cache.saved(&change("A", 1, false), true);
        assert_eq!(cache.get("A").map(|c| c.version), Some(2));
        // Computed from version 1 again (a stale copy): whatever is stored now is unknown.
        cache.saved(&change("A", 1, false), true);
        assert!(cache.get("A").is_none());
        cache.offer(&stored("A", 3));
        cache.saved(&change("A", 3, false), false);
        assert!(cache.get("A").is_none());
    }

    #[test]
    fn completed_cases_leave_and_older_reads_never_replace_newer_entries() {
        let cache = Cache::default();
        cache.offer(&stored("A", 5));
        cache.offer(&stored("A", 4));
        assert_eq!(cache.get("A").map(|c| c.version), Some(5));
        cache.saved(&change("A", 5, true), true);
        assert!(cache.get("A").is_none());
        let mut done = stored("B", 1);
        done.state.completed = true;
        cache.offer(&done);
        assert!(cache.get("B").is_none());
    }

    #[test]
    fn the_oldest_cases_are_evicted_beyond_capacity() {
        let cache = Cache::default();
        for i in 0..CAPACITY + 10 {
            cache.offer(&stored(&i.to_string(), 1));
        }
        assert!(cache.get("0").is_none());
        assert!(cache.get("9").is_none());
        assert!(cache.get("10").is_some());
        assert_eq!(cache.lock().cases.len(), CAPACITY);
    }
}
