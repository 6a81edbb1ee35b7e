//! The case and item state machine of amqp.md, as pure code: a case's state and one input give the
//! new state and the effects to carry out (events to publish, pushes, withdrawals, queries). No
//! I/O, no clock: the time comes in with the input.
//!
//! ```text
//! pending ─▶ waiting ─▶ prereview ─▶ dispatched ─▶ accepted ─▶ approved | denied
//!    └──────────────┴───────────┴────────────┴─────────────┴─▶ rejected | cancelled | withdrawn | failed
//! ```

mod machine;
#[cfg(test)]
mod tests;

use chrono::{DateTime, FixedOffset};
use indexmap::{IndexMap, IndexSet};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use machine::apply;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Waiting,
    Prereview,
    Dispatched,
    Accepted,
    Approved,
    Denied,
    Rejected,
    Cancelled,
    Withdrawn,
    Failed,
}

impl Status {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Approved
                | Status::Denied
                | Status::Rejected
                | Status::Cancelled
                | Status::Withdrawn
                | Status::Failed
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Waiting => "waiting",
            Status::Prereview => "prereview",
            Status::Dispatched => "dispatched",
            Status::Accepted => "accepted",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Rejected => "rejected",
            Status::Cancelled => "cancelled",
            Status::Withdrawn => "withdrawn",
            Status::Failed => "failed",
        }
    }
}

/// Which push an item is waiting for an answer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Push {
    Submit,
    Prereview,
    Complete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub department: String,
    pub prerequisites: Vec<String>,
    pub prereview_allowed: bool,
    /// Promised working days (the complete limit).
    pub complete_days: u32,
    pub status: Status,
    /// The push sent and not answered yet.
    pub in_flight: Option<Push>,
    pub department_ref: Option<String>,
    pub accepted_at: Option<DateTime<FixedOffset>>,
    /// When the accept clock started (the push or follow-up was acknowledged).
    pub dispatched_at: Option<DateTime<FixedOffset>>,
    /// The accept limit, once its clock started.
    #[serde(default)]
    pub accept_due: Option<DateTime<FixedOffset>>,
    /// The complete limit, once accepted.
    #[serde(default)]
    pub complete_due: Option<DateTime<FixedOffset>>,
    pub results: IndexMap<String, String>,
    /// The last progress stage reported (repeats emit nothing).
    pub stage: Option<String>,
    /// A withdrawal asked of the department and not answered yet.
    pub withdrawing: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub case_id: String,
    pub onething: String,
    pub items: IndexMap<String, Item>,
    /// Results given in the submission's `prior_results` (their items are not requested).
    pub prior_results: IndexMap<String, IndexMap<String, String>>,
    pub delivery: Value,
    /// The last event's sequence number.
    pub seq: u64,
    pub withdrawal: Option<Withdrawal>,
    pub completed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Withdrawal {
    pub reason: String,
    /// Items withdrawn because of it.
    pub withdrawn: Vec<String>,
    /// Whether `case.withdrawn` was emitted.
    pub announced: bool,
}

/// Something that happened to a case.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The case was stored.
    Received,
    /// A department took a push (`reference` as it answered).
    PushTaken {
        item: String,
        push: Push,
        reference: Option<String>,
    },
    /// A push failed for good (refused as malformed, retry budget spent, never taken).
    PushFailed {
        item: String,
        error: String,
        attempts: u32,
    },
    /// A department's status report (callback, poll answer, answer file).
    Report {
        item: String,
        reference: Option<String>,
        change: Change,
    },
    /// The platform withdrew the case.
    Withdraw { reason: String },
    /// The department answered a withdrawal.
    WithdrawAnswered {
        item: String,
        answer: WithdrawAnswer,
    },
    /// A time limit passed (督办): overdue if the item still waits for that decision.
    Overdue {
        item: String,
        limit: Limit,
        due_at: DateTime<FixedOffset>,
    },
}

/// The two legal time limits of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Limit {
    /// 受理 within 1 working day of the push.
    Accept,
    /// 办结 within the promised working days of acceptance.
    Complete,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Accept => "accept",
            Limit::Complete => "complete",
        }
    }
}

/// A report's change, with times already read.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Dispatched,
    Progress {
        stage: String,
        note: Option<String>,
    },
    Accepted {
        at: Option<DateTime<FixedOffset>>,
    },
    Rejected {
        reason: String,
    },
    Approved {
        results: IndexMap<String, String>,
        accepted_at: Option<DateTime<FixedOffset>>,
    },
    Denied {
        reason: String,
        accepted_at: Option<DateTime<FixedOffset>>,
    },
    Withdrawn {
        reason: Option<String>,
    },
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithdrawAnswer {
    /// Withdrawn there.
    Done,
    /// Already finished there: its real outcome will come by query or report.
    Finished,
    /// The department does not know it: nothing to withdraw there.
    NotFound,
}

/// An event to publish (the shell adds `event_id`, `case_id`, `onething` and writes it with the
/// state change, in the outbox).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: u64,
    pub kind: &'static str,
    pub item: Option<String>,
    pub department: Option<String>,
    pub status: Option<Status>,
    pub detail: Value,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Emit(Event),
    Push {
        item: String,
        push: Push,
    },
    Withdraw {
        item: String,
    },
    /// Ask the department (its real outcome after a refused withdrawal).
    Query {
        item: String,
    },
    /// Start the accept clock (1 working day) from `from`.
    AcceptClock {
        item: String,
        from: DateTime<FixedOffset>,
    },
    /// Start the complete clock (the item's promised days) from `from`.
    CompleteClock {
        item: String,
        from: DateTime<FixedOffset>,
        days: u32,
    },
    /// The item is final: drop its timers.
    StopClocks {
        item: String,
    },
}

/// Computes deadlines (the working-day calendar) for events that carry them.
pub trait Deadlines {
    fn deadline(&self, from: DateTime<FixedOffset>, days: u32) -> DateTime<FixedOffset>;
}

impl Deadlines for crate::calendar::Calendar {
    fn deadline(&self, from: DateTime<FixedOffset>, days: u32) -> DateTime<FixedOffset> {
        crate::calendar::Calendar::deadline(self, from, days)
    }
}

impl Case {
    /// A new case from the catalog's items (in catalog order) and the submission.
    pub fn new(
        case_id: &str,
        onething: &str,
        items: IndexMap<String, Item>,
        prior_results: IndexMap<String, IndexMap<String, String>>,
        delivery: Value,
    ) -> Case {
        Case {
            case_id: case_id.to_string(),
            onething: onething.to_string(),
            items,
            prior_results,
            delivery,
            seq: 0,
            withdrawal: None,
            completed: false,
        }
    }

    /// The results an item's operations may use: approved items' and prior results.
    pub fn results(&self) -> IndexMap<String, IndexMap<String, String>> {
        let mut r = self.prior_results.clone();
        for (code, it) in &self.items {
            if it.status == Status::Approved {
                r.insert(code.clone(), it.results.clone());
            }
        }
        r
    }

    /// Items that depend (directly) on `item`.
    pub fn dependants(&self, item: &str) -> Vec<String> {
        self.items
            .iter()
            .filter(|(_, it)| it.prerequisites.iter().any(|p| p == item))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Prerequisites of `item` that are neither approved nor given.
    pub fn missing_prerequisites(&self, item: &str) -> Vec<String> {
        self.items[item]
            .prerequisites
            .iter()
            .filter(|p| {
                !self.prior_results.contains_key(*p)
                    && self
                        .items
                        .get(*p)
                        .is_none_or(|x| x.status != Status::Approved)
            })
            .cloned()
            .collect()
    }

    pub fn open_items(&self) -> IndexSet<String> {
        self.items
            .iter()
            .filter(|(_, it)| !it.status.is_final())
            .map(|(k, _)| k.clone())
            .collect()
    }
}
