//! `apply`: one input to a case, giving the effects. Forward-only: a report that would move an
//! item backwards, arrives for a final item or changes nothing emits nothing (the shell audits it).

use chrono::{DateTime, FixedOffset};
use serde_json::{Value, json};

use super::{Case, Change, Deadlines, Effect, Event, Input, Limit, Push, Status, WithdrawAnswer};
use crate::model::time::rfc3339;

struct Machine<'a> {
    case: &'a mut Case,
    now: DateTime<FixedOffset>,
    deadlines: &'a dyn Deadlines,
    fx: Vec<Effect>,
}

/// Applies `input` to `case` at `now`; returns what the shell must do, events first in `seq` order.
pub fn apply(
    case: &mut Case,
    input: Input,
    now: DateTime<FixedOffset>,
    deadlines: &dyn Deadlines,
) -> Vec<Effect> {
    let mut m = Machine {
        case,
        now,
        deadlines,
        fx: Vec::new(),
    };
    match input {
        Input::Received => m.received(),
        Input::PushTaken {
            item,
            push,
            reference,
        } => m.push_taken(&item, push, reference),
        Input::PushFailed {
            item,
            error,
            attempts,
        } => m.fail(&item, error, attempts),
        Input::Report {
            item,
            reference,
            change,
        } => m.report(&item, reference, change),
        Input::Withdraw { reason } => m.withdraw(reason),
        Input::WithdrawAnswered { item, answer } => m.withdraw_answered(&item, answer),
        Input::Overdue {
            item,
            limit,
            due_at,
        } => m.overdue(&item, limit, due_at),
    }
    m.finish();
    m.fx
}

impl Machine<'_> {
    fn emit(&mut self, kind: &'static str, item: Option<&str>, detail: Value) {
        self.case.seq += 1;
        let (department, status) = match item.and_then(|i| self.case.items.get(i)) {
            Some(it) => (Some(it.department.clone()), Some(it.status)),
            None => (None, None),
        };
        self.fx.push(Effect::Emit(Event {
            seq: self.case.seq,
            kind,
            item: item.map(str::to_string),
            department,
            status,
            detail,
        }));
    }

    fn status(&self, item: &str) -> Status {
        self.case.items[item].status
    }

    fn set(&mut self, item: &str, s: Status) {
        let it = self.case.items.get_mut(item).expect("known item");
        it.status = s;
        if s.is_final() {
            it.in_flight = None;
            self.fx.push(Effect::StopClocks {
                item: item.to_string(),
            });
        }
    }

    fn push(&mut self, item: &str, push: Push) {
        self.case.items.get_mut(item).expect("known item").in_flight = Some(push);
        self.fx.push(Effect::Push {
            item: item.to_string(),
            push,
        });
    }

    /// Whether a department holds (or may hold) the item.
    fn held(&self, item: &str) -> bool {
        let it = &self.case.items[item];
        it.in_flight.is_some()
            || matches!(
                it.status,
                Status::Prereview | Status::Dispatched | Status::Accepted
            )
    }

    fn received(&mut self) {
        let items: Vec<String> = self.case.items.keys().cloned().collect();
        self.emit("case.received", None, json!({ "items": items }));
        for item in items {
            self.start(&item);
        }
    }

    /// The first push of a pending item, or waiting.
    fn start(&mut self, item: &str) {
        let missing = self.case.missing_prerequisites(item);
        if missing.is_empty() {
            self.push(item, Push::Submit);
        } else if self.case.items[item].prereview_allowed {
            self.push(item, Push::Prereview);
        } else if self.status(item) == Status::Pending {
            self.set(item, Status::Waiting);
            self.emit(
                "item.waiting",
                Some(item),
                json!({ "prerequisites": missing }),
            );
        }
    }

    fn push_taken(&mut self, item: &str, push: Push, reference: Option<String>) {
        let Some(it) = self.case.items.get_mut(item) else {
            return;
        };
        if reference.is_some() {
            it.department_ref = reference;
        }
        it.in_flight = None;
        let dref = it.department_ref.clone();
        if it.status.is_final() {
            // Cancelled or withdrawn while the push was on its way: the department holds it now.
            if matches!(it.status, Status::Cancelled | Status::Withdrawn) {
                self.fx.push(Effect::Withdraw {
                    item: item.to_string(),
                });
            }
            return;
        }
        match push {
            Push::Submit | Push::Complete => {
                if self.status(item) < Status::Dispatched {
                    self.set(item, Status::Dispatched);
                    self.case.items[item].dispatched_at = Some(self.now);
                    self.case.items[item].accept_due = Some(self.deadlines.deadline(self.now, 1));
                    self.emit(
                        "item.dispatched",
                        Some(item),
                        json!({ "department_ref": dref }),
                    );
                    self.fx.push(Effect::AcceptClock {
                        item: item.to_string(),
                        from: self.now,
                    });
                }
            }
            Push::Prereview => {
                if self.status(item) < Status::Prereview {
                    self.set(item, Status::Prereview);
                    self.emit(
                        "item.prereview",
                        Some(item),
                        json!({ "department_ref": dref }),
                    );
                }
                if self.case.withdrawal.is_none()
                    && self.case.missing_prerequisites(item).is_empty()
                {
                    self.push(item, Push::Complete);
                }
            }
        }
        if self.case.withdrawal.is_some() && !self.status(item).is_final() {
            self.case.items[item].withdrawing = true;
            self.fx.push(Effect::Withdraw {
                item: item.to_string(),
            });
        }
    }

    fn fail(&mut self, item: &str, error: String, attempts: u32) {
        if !self.case.items.contains_key(item) || self.status(item).is_final() {
            return;
        }
        self.set(item, Status::Failed);
        self.case.items[item].withdrawing = false;
        self.emit(
            "item.failed",
            Some(item),
            json!({ "error": error, "attempts": attempts }),
        );
        self.cascade(item);
    }

    fn accept(&mut self, item: &str, at: Option<DateTime<FixedOffset>>) {
        let at = at.unwrap_or(self.now);
        let days = self.case.items[item].complete_days;
        let due = self.deadlines.deadline(at, days);
        self.case.items[item].accepted_at = Some(at);
        self.case.items[item].complete_due = Some(due);
        self.set(item, Status::Accepted);
        self.emit(
            "item.accepted",
            Some(item),
            json!({ "accepted_at": rfc3339(at), "due_at": rfc3339(due) }),
        );
        self.fx.push(Effect::CompleteClock {
            item: item.to_string(),
            from: at,
            days,
        });
    }

    /// Whether an acceptance may be applied now (a pre-reviewed item only after its follow-up).
    fn may_accept(&self, item: &str) -> bool {
        let it = &self.case.items[item];
        match it.status {
            Status::Dispatched => true,
            Status::Pending | Status::Waiting => {
                matches!(it.in_flight, Some(Push::Submit | Push::Complete))
            }
            Status::Prereview => it.in_flight == Some(Push::Complete),
            _ => false,
        }
    }

    fn report(&mut self, item: &str, reference: Option<String>, change: Change) {
        let Some(it) = self.case.items.get_mut(item) else {
            return;
        };
        if it.status.is_final() {
            return;
        }
        if it.department_ref.is_none() && reference.is_some() {
            it.department_ref = reference;
        }
        // A report can overtake the answer to the push it is about: it shows the department took
        // the push, so that comes first (the answer, when it arrives, changes nothing).
        let implied = match (it.in_flight, &change) {
            (_, Change::Dispatched) => None,
            (Some(p @ (Push::Submit | Push::Prereview)), _) if it.status < Status::Prereview => {
                Some(p)
            }
            (
                Some(Push::Complete),
                Change::Accepted { .. } | Change::Approved { .. } | Change::Denied { .. },
            ) => Some(Push::Complete),
            _ => None,
        };
        if let Some(p) = implied {
            self.push_taken(item, p, None);
            if self.status(item).is_final() {
                return;
            }
        }
        match change {
            Change::Dispatched => {
                let it = &self.case.items[item];
                if it.status < Status::Prereview && it.in_flight != Some(Push::Prereview) {
                    self.push_taken(item, it.in_flight.unwrap_or(Push::Submit), None);
                }
            }
            Change::Progress { stage, note } => {
                if self.case.items[item].stage.as_deref() != Some(stage.as_str()) {
                    self.case.items[item].stage = Some(stage.clone());
                    self.emit(
                        "item.progress",
                        Some(item),
                        json!({ "stage": stage, "note": note }),
                    );
                }
            }
            Change::Accepted { at } => {
                if self.may_accept(item) {
                    self.accept(item, at);
                }
            }
            Change::Rejected { reason } => {
                self.set(item, Status::Rejected);
                self.emit("item.rejected", Some(item), json!({ "reason": reason }));
                self.cascade(item);
            }
            Change::Approved {
                results,
                accepted_at,
            } => {
                if self.status(item) < Status::Accepted {
                    self.accept(item, accepted_at);
                }
                self.case.items[item].results = results.clone();
                self.set(item, Status::Approved);
                self.emit("item.approved", Some(item), json!({ "results": results }));
                self.release(item);
            }
            Change::Denied {
                reason,
                accepted_at,
            } => {
                if self.status(item) < Status::Accepted {
                    self.accept(item, accepted_at);
                }
                self.set(item, Status::Denied);
                self.emit("item.denied", Some(item), json!({ "reason": reason }));
                self.cascade(item);
            }
            Change::Withdrawn { reason } => self.withdrawn(item, reason),
            Change::Failed { error } => self.fail(item, error, 1),
        }
        if self.status(item).is_final() {
            self.case.items[item].withdrawing = false;
        }
    }

    fn withdrawn(&mut self, item: &str, reason: Option<String>) {
        let reason = reason
            .or_else(|| self.case.withdrawal.as_ref().map(|w| w.reason.clone()))
            .unwrap_or_else(|| "部门撤回".to_string());
        self.set(item, Status::Withdrawn);
        self.case.items[item].withdrawing = false;
        if let Some(w) = self.case.withdrawal.as_mut() {
            w.withdrawn.push(item.to_string());
        }
        self.emit("item.withdrawn", Some(item), json!({ "reason": reason }));
        if self.case.withdrawal.is_none() {
            self.cascade(item);
        }
    }

    /// A prerequisite was approved: push what waited for it.
    fn release(&mut self, item: &str) {
        if self.case.withdrawal.is_some() {
            return;
        }
        for d in self.case.dependants(item) {
            if !self.case.missing_prerequisites(&d).is_empty() {
                continue;
            }
            let it = &self.case.items[&d];
            match (it.status, it.in_flight) {
                (Status::Waiting, None) => self.push(&d, Push::Submit),
                (Status::Prereview, None) => self.push(&d, Push::Complete),
                _ => {}
            }
        }
    }

    /// A prerequisite ended without approval: its open dependants are cancelled (and withdrawn at
    /// a department that holds them).
    fn cascade(&mut self, item: &str) {
        for d in self.case.dependants(item) {
            if self.status(&d).is_final() || self.case.items[&d].withdrawing {
                continue;
            }
            let held = self.held(&d);
            self.set(&d, Status::Cancelled);
            self.emit("item.cancelled", Some(&d), json!({ "because": item }));
            if held {
                self.fx.push(Effect::Withdraw { item: d.clone() });
            }
            self.cascade(&d);
        }
    }

    fn withdraw(&mut self, reason: String) {
        if self.case.withdrawal.is_some() {
            return;
        }
        self.case.withdrawal = Some(super::Withdrawal {
            reason: reason.clone(),
            withdrawn: Vec::new(),
            announced: false,
        });
        let items: Vec<String> = self.case.items.keys().cloned().collect();
        for item in items {
            if self.status(&item).is_final() {
                continue;
            }
            if self.held(&item) {
                self.case.items[&item].withdrawing = true;
                if self.case.items[&item].in_flight.is_none() {
                    self.fx.push(Effect::Withdraw { item: item.clone() });
                }
            } else {
                self.withdrawn(&item, Some(reason.clone()));
            }
        }
    }

    fn overdue(&mut self, item: &str, limit: Limit, due_at: DateTime<FixedOffset>) {
        let Some(it) = self.case.items.get(item) else {
            return;
        };
        let waiting = match limit {
            Limit::Accept => it.status == Status::Dispatched,
            Limit::Complete => it.status == Status::Accepted,
        };
        if waiting {
            self.emit(
                "item.overdue",
                Some(item),
                json!({ "limit": limit.as_str(), "due_at": rfc3339(due_at) }),
            );
        }
    }

    fn withdraw_answered(&mut self, item: &str, answer: WithdrawAnswer) {
        if !self.case.items.contains_key(item) || self.status(item).is_final() {
            return;
        }
        match answer {
            WithdrawAnswer::Done | WithdrawAnswer::NotFound => self.withdrawn(item, None),
            WithdrawAnswer::Finished => self.fx.push(Effect::Query {
                item: item.to_string(),
            }),
        }
    }

    fn finish(&mut self) {
        let announce = match &self.case.withdrawal {
            Some(w) => {
                !w.announced
                    && !self
                        .case
                        .items
                        .values()
                        .any(|i| i.withdrawing && !i.status.is_final())
            }
            None => false,
        };
        if announce {
            let w = self.case.withdrawal.as_mut().expect("withdrawal");
            w.announced = true;
            let detail = json!({ "reason": w.reason, "items": w.withdrawn });
            self.emit("case.withdrawn", None, detail);
        }
        if !self.case.completed && self.case.items.values().all(|i| i.status.is_final()) {
            self.case.completed = true;
            let items: serde_json::Map<String, Value> = self
                .case
                .items
                .iter()
                .map(|(k, i)| (k.clone(), json!(i.status.as_str())))
                .collect();
            let delivery = self.case.delivery.clone();
            self.emit(
                "case.completed",
                None,
                json!({ "items": items, "delivery": delivery }),
            );
        }
    }
}
