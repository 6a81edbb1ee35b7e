//! The demo's progress model and its rendering, pure: events in, a table (or lines) out.

use std::fmt::Write as _;

use indexmap::IndexMap;
use serde_json::Value;

/// What the demo knows of one case, from its events.
#[derive(Debug, Clone, Default)]
pub struct CaseView {
    pub onething: String,
    /// item → (department, status).
    pub items: IndexMap<String, (String, String)>,
    pub events: usize,
    pub completed: bool,
    pub withdrawn: bool,
    pub invalid: bool,
    /// The last event's type.
    pub last: String,
}

/// Every case of the demo, in the order they were published.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub cases: IndexMap<String, CaseView>,
}

impl Progress {
    pub fn expect(&mut self, case_id: &str, onething: &str) {
        self.cases.entry(case_id.to_string()).or_default().onething = onething.to_string();
    }

    /// Takes one event; returns a one-line description of it.
    pub fn apply(&mut self, ev: &Value) -> String {
        let case_id = ev["case_id"].as_str().unwrap_or_default().to_string();
        let kind = ev["type"].as_str().unwrap_or_default().to_string();
        let c = self.cases.entry(case_id.clone()).or_default();
        c.events += 1;
        c.last = kind.clone();
        if let Some(o) = ev["onething"].as_str() {
            c.onething = o.to_string();
        }
        if let (Some(item), Some(status)) = (ev["item"].as_str(), ev["status"].as_str()) {
            let dept = ev["department"].as_str().unwrap_or_default().to_string();
            c.items.insert(item.to_string(), (dept, status.to_string()));
        }
        match kind.as_str() {
            "case.received" => {
                // The case's items as first seen: pending until an event says otherwise.
                if let Some(items) = ev["detail"]["items"].as_array() {
                    for it in items {
                        let code = it["item"].as_str().or(it.as_str()).unwrap_or_default();
                        let dept = it["department"].as_str().unwrap_or_default();
                        if !code.is_empty() {
                            c.items
                                .entry(code.to_string())
                                .or_insert_with(|| (dept.to_string(), "pending".into()));
                        }
                    }
                }
            }
            "case.completed" => c.completed = true,
            "case.withdrawn" => c.withdrawn = true,
            "case.invalid" => {
                c.invalid = true;
                c.completed = true;
            }
            _ => {}
        }
        let mut line = format!("{case_id}  {kind}");
        if let Some(item) = ev["item"].as_str() {
            let _ = write!(line, "  {item}");
        }
        if let Some(d) = ev["department"].as_str() {
            let _ = write!(line, " @ {d}");
        }
        if let Some(r) = ev["detail"]["reason"].as_str() {
            let _ = write!(line, "  ({r})");
        }
        line
    }

    pub fn all_completed(&self) -> bool {
        !self.cases.is_empty() && self.cases.values().all(|c| c.completed)
    }

    /// The table: one block per case, one line per item.
    pub fn table(&self) -> String {
        let mut s = String::new();
        for (id, c) in &self.cases {
            let state = if c.invalid {
                "invalid"
            } else if c.completed {
                "completed"
            } else if c.withdrawn {
                "withdrawing"
            } else {
                "open"
            };
            let _ = writeln!(s, "{id}  {:<15} {state}", c.onething);
            for (item, (dept, status)) in &c.items {
                let _ = writeln!(s, "    {} {:<18} {:<10} {status}", mark(status), item, dept);
            }
        }
        s
    }

    /// The closing summary: final statuses counted, and each case's outcome.
    pub fn summary(&self) -> String {
        let mut counts: IndexMap<String, usize> = IndexMap::new();
        for c in self.cases.values() {
            for (_, status) in c.items.values() {
                *counts.entry(status.clone()).or_default() += 1;
            }
        }
        let done = self.cases.values().filter(|c| c.completed).count();
        let mut s = format!("{done} of {} case(s) completed; items:", self.cases.len());
        for (status, n) in &counts {
            let _ = write!(s, " {n} {status}");
        }
        s.push('\n');
        s
    }
}

fn mark(status: &str) -> &'static str {
    match status {
        "approved" => "✔",
        "denied" | "rejected" | "failed" => "✘",
        "cancelled" | "withdrawn" => "–",
        _ => "…",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_move_items_and_complete_cases() {
        let mut p = Progress::default();
        p.expect("C1", "newborn");
        assert!(!p.all_completed());
        p.apply(&json!({"case_id": "C1", "type": "case.received", "onething": "newborn"}));
        let line = p.apply(
            &json!({"case_id": "C1", "type": "item.rejected", "item": "social-card",
            "department": "hrss", "status": "rejected", "detail": {"reason": "材料不符合要求"}}),
        );
        assert_eq!(
            line,
            "C1  item.rejected  social-card @ hrss  (材料不符合要求)"
        );
        assert!(p.table().contains("✘ social-card"));
        p.apply(&json!({"case_id": "C1", "type": "case.completed"}));
        assert!(p.all_completed());
        assert_eq!(p.summary(), "1 of 1 case(s) completed; items: 1 rejected\n");
    }
}
