//! Open cases as this process last stored them, kept in memory on SQLite. A case is loaded for
//! every timer, callback and poll that touches it (some 26 times for a newborn case); each load
//! was a round trip to a SQLite thread and a parse of the state. On SQLite the file is this
//! process's own and every change of a case is written by `Store::save_group`, which tells the
//! cache: so the cache knows each cached case's committed version, and never keeps a read older
//! than that (a read that raced a change). The case is held from before a change's commit until
//! its entry shows the commit; meanwhile loads read the file. No load therefore sees a state
//! older than the file's: a push timer committed with a change must find the case as that change
//! left it. Bounded; completed cases leave it (their version stays known).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::{StoredCase, Update};

/// Cases kept at most (a newborn case is a few kilobytes with its submission).
const CAPACITY: usize = 4096;

#[derive(Default)]
pub(super) struct Cache {
    inner: Mutex<Inner>,
}

/// A case's committed version, and the case itself when known and open.
struct Kept {
    version: i64,
    case: Option<StoredCase>,
}

#[derive(Default)]
struct Inner {
    cases: HashMap<String, Kept>,
    /// Cases whose change is being committed: their entries are not to be read or replaced.
    held: HashMap<String, u32>,
    /// Ids in the order they came in, to evict the oldest (ids already gone are skipped).
    order: VecDeque<String>,
}

impl Cache {
    /// The case as last committed, unless a change of it is being committed.
    pub fn get(&self, case_id: &str) -> Option<StoredCase> {
        let inner = self.lock();
        if inner.held.contains_key(case_id) {
            return None;
        }
        inner.cases.get(case_id)?.case.clone()
    }

    /// A case as read from the store or just inserted: kept unless held, older than the version
    /// known (a read that raced a change), or completed.
    pub fn offer(&self, case: &StoredCase) {
        let mut inner = self.lock();
        let id = &case.state.case_id;
        if inner.held.contains_key(id) {
            return;
        }
        let wanted = match inner.cases.get(id) {
            None => true,
            Some(kept) => {
                kept.version < case.version || (kept.version == case.version && kept.case.is_none())
            }
        };
        if wanted {
            let open = (!case.state.completed).then(|| case.clone());
            inner.keep(id.clone(), case.version, open);
        }
    }

    /// Before committing changes of these cases.
    pub fn hold<'a>(&self, case_ids: impl Iterator<Item = &'a str>) {
        let mut inner = self.lock();
        for id in case_ids {
            *inner.held.entry(id.to_string()).or_default() += 1;
        }
    }

    /// After the commit of a held change. A written one moves its case to the next version (its
    /// state kept if the entry had the case it was computed from). One not written (another
    /// writer was first, whose own commit already moved the entry on, or the commit failed and
    /// the file is unchanged) leaves the entry as it is.
    pub fn settle(&self, update: &Update, written: bool) {
        let mut inner = self.lock();
        let id = &update.case_id;
        if let Some(n) = inner.held.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                inner.held.remove(id);
            }
        }
        let Some(state) = update.state.as_ref().filter(|_| written) else {
            return;
        };
        let version = update.version + 1;
        match inner.cases.get_mut(id) {
            Some(kept) => {
                let follows = kept.version == update.version && !state.completed;
                match (&mut kept.case, follows) {
                    (Some(case), true) => {
                        case.state = state.clone();
                        case.version = version;
                    }
                    (case, _) => *case = None,
                }
                kept.version = version;
            }
            None => inner.keep(id.clone(), version, None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn keep(&mut self, id: String, version: i64, case: Option<StoredCase>) {
        if self
            .cases
            .insert(id.clone(), Kept { version, case })
            .is_none()
        {
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
pub(super) mod tests {
    use super::*;
    use crate::engine::Case;

    /// A case of no items (for the store's unit tests).
    pub fn case(id: &str, completed: bool) -> Case {
        Case {
            case_id: id.into(),
            onething: "one-thing".into(),
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
            state: case(id, false).into(),
            submission: "{}".into(),
            version,
        }
    }

    fn change(id: &str, version: i64, completed: bool) -> Update {
        Update {
            case_id: id.into(),
            version,
            state: Some(case(id, completed).into()),
            ..Default::default()
        }
    }

    fn save(cache: &Cache, update: &Update, written: bool) {
        cache.hold([update.case_id.as_str()].into_iter());
        cache.settle(update, written);
    }

    #[test]
    fn a_written_change_moves_the_case_on_and_one_not_written_leaves_it() {
        let cache = Cache::default();
        cache.offer(&stored("A", 1));
        save(&cache, &change("A", 1, false), true);
        assert_eq!(cache.get("A").map(|c| c.version), Some(2));
        // Computed from version 1 again (a stale read) and refused: the entry is still right.
        save(&cache, &change("A", 1, false), false);
        assert_eq!(cache.get("A").map(|c| c.version), Some(2));
        // Written from a copy the cache did not have: only the version is known now.
        save(&cache, &change("A", 7, false), true);
        assert!(cache.get("A").is_none());
        cache.offer(&stored("A", 7));
        assert!(cache.get("A").is_none(), "older than the version known");
        cache.offer(&stored("A", 8));
        assert_eq!(cache.get("A").map(|c| c.version), Some(8));
    }

    #[test]
    fn a_case_being_committed_is_read_from_the_store() {
        let cache = Cache::default();
        cache.offer(&stored("A", 1));
        cache.hold(["A"].into_iter());
        assert!(cache.get("A").is_none(), "held: the file is the truth");
        cache.offer(&stored("A", 2));
        assert!(cache.get("A").is_none(), "a read while held is not kept");
        cache.settle(&change("A", 1, false), true);
        assert_eq!(cache.get("A").map(|c| c.version), Some(2));
    }

    #[test]
    fn a_read_that_raced_a_change_of_an_uncached_case_is_not_kept() {
        let cache = Cache::default();
        // A load read version 1 from the file; before it offers it, version 1 → 2 commits (the
        // case was not cached, so the cache learns only the version).
        save(&cache, &change("A", 1, false), true);
        cache.offer(&stored("A", 1));
        assert!(cache.get("A").is_none(), "version 1 is stale");
        cache.offer(&stored("A", 2));
        assert_eq!(cache.get("A").map(|c| c.version), Some(2));
    }

    #[test]
    fn completed_cases_leave_and_older_reads_never_replace_newer_entries() {
        let cache = Cache::default();
        cache.offer(&stored("A", 5));
        cache.offer(&stored("A", 4));
        assert_eq!(cache.get("A").map(|c| c.version), Some(5));
        save(&cache, &change("A", 5, true), true);
        assert!(cache.get("A").is_none());
        cache.offer(&stored("A", 5));
        assert!(cache.get("A").is_none(), "a late read of the open case");
        let mut done = stored("B", 1);
        std::sync::Arc::make_mut(&mut done.state).completed = true;
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
