//! Admission: how much of each department's work the scheduler holds at once. A claimed timer
//! waits for its department's limits (concurrency, rate, poll budget) before it sends, and while
//! it waits it holds one of the scheduler's slots. Holding more than a department can start soon
//! would only take the slots other departments' work needs: a rate-limited system (police: 2 at
//! a time, 20 a second, 60 queries a minute) would delay every other department's first push.
//! So each department has a room per class of request, sized from its own limits, and the
//! scheduler claims a department's timers only while that room has space.

use std::collections::HashMap;

use super::apply::kind;
use super::gateway::Config;
use crate::mapping::department::Limits;
use crate::store::Admit;

/// Requests that send something (an application, a follow-up, a withdrawal).
pub const SEND: &str = "send";
/// Requests that ask (a poll, a query after an unknown outcome).
pub const ASK: &str = "ask";

/// The timer kinds that contact a department, each with its class.
pub const CLASSES: &[(&str, &str)] = &[
    (kind::PUSH, SEND),
    (kind::WITHDRAW, SEND),
    (kind::QUERY, ASK),
    (kind::POLL, ASK),
];

/// How many timers of a class a department may have in hand: what it can run at once, plus
/// about a second of what its rate lets start. A department asked by batch query has one poll in
/// hand: that poll gathers every other due one into its batch, which it could not if they were
/// claimed one by one.
pub fn cap(l: &Limits, class: &str, batched: bool) -> usize {
    if batched && class == ASK {
        return 1;
    }
    let at_once = l.concurrency.max(1);
    let per_second = match class {
        ASK => l.poll_per_minute.map(|m| m.div_ceil(60)),
        _ => None,
    }
    .or(l.per_second)
    .unwrap_or(at_once);
    (at_once + per_second) as usize
}

/// Timers claimed and not finished, per (department, class).
#[derive(Debug, Default)]
pub struct InHand(HashMap<(String, String), usize>);

impl InHand {
    /// Counts a claimed timer; returns the key to give back when it finishes, if it counts.
    pub fn took(&mut self, kind: &str, department: &str) -> Option<(String, String)> {
        let class = CLASSES.iter().find(|(k, _)| *k == kind)?.1;
        let key = (department.to_string(), class.to_string());
        *self.0.entry(key.clone()).or_default() += 1;
        Some(key)
    }

    pub fn done(&mut self, key: &(String, String)) {
        if let Some(n) = self.0.get_mut(key) {
            *n = n.saturating_sub(1);
        }
    }

    /// Room left per (department, class) under the configuration in force.
    pub fn rooms(&self, cfg: &Config) -> HashMap<(String, String), usize> {
        let mut rooms = HashMap::new();
        for d in cfg.mapping.departments.values() {
            for class in [SEND, ASK] {
                let key = (d.id.clone(), class.to_string());
                let held = self.0.get(&key).copied().unwrap_or(0);
                let batched = d.batch_query.is_some();
                rooms.insert(key, cap(&d.limits, class, batched).saturating_sub(held));
            }
        }
        rooms
    }
}

/// What a claim may take, given the rooms left.
pub fn admit(rooms: &HashMap<(String, String), usize>) -> Admit<'_> {
    Admit {
        classes: CLASSES,
        room: rooms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(concurrency: u32, per_second: Option<u32>, per_minute: Option<u32>) -> Limits {
        Limits {
            concurrency,
            per_second,
            timeout: Duration::from_secs(10),
            retry_attempts: 8,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            poll_interval: Duration::from_secs(60),
            poll_per_minute: per_minute,
            quiet: Duration::from_secs(600),
        }
    }

    #[test]
    fn a_department_holds_what_it_can_start_within_about_a_second() {
        // police.md: 2 at a time, about 20 a second, 60 queries a minute.
        let police = limits(2, Some(20), Some(60));
        assert_eq!(cap(&police, SEND, false), 22);
        assert_eq!(cap(&police, ASK, false), 3);
        // tax.md: 30 calls a minute, and a batch query: one poll asks for every due item.
        let tax = limits(4, None, Some(30));
        assert_eq!(cap(&tax, ASK, true), 1);
        assert_eq!(cap(&tax, SEND, true), 8);
        // No rate: twice what runs at once.
        assert_eq!(cap(&limits(8, None, None), SEND, false), 16);
    }

    #[test]
    fn timers_in_hand_are_counted_per_department_and_class_until_done() {
        let mut h = InHand::default();
        let a = h.took(kind::PUSH, "police").unwrap();
        let b = h.took(kind::POLL, "police").unwrap();
        h.took(kind::WITHDRAW, "police").unwrap();
        assert!(
            h.took(kind::ACCEPT, "police").is_none(),
            "a deadline sends nothing"
        );
        assert_eq!(h.0[&a], 2);
        assert_eq!(h.0[&b], 1);
        h.done(&a);
        h.done(&b);
        h.done(&b);
        assert_eq!((h.0[&a], h.0[&b]), (1, 0));
    }
}
