//! The state machine against amqp.md, without I/O.

use chrono::{DateTime, FixedOffset};
use indexmap::IndexMap;
use serde_json::json;

use super::*;

struct Days;
impl Deadlines for Days {
    fn deadline(&self, from: DateTime<FixedOffset>, days: u32) -> DateTime<FixedOffset> {
        from + chrono::Duration::days(days as i64)
    }
}

fn now() -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339("2026-03-16T09:15:00+08:00").unwrap()
}

fn item(dept: &str, pre: &[&str], prereview: bool) -> Item {
    Item {
        department: dept.into(),
        prerequisites: pre.iter().map(|s| s.to_string()).collect(),
        prereview_allowed: prereview,
        complete_days: 3,
        status: Status::Pending,
        in_flight: None,
        department_ref: None,
        accepted_at: None,
        dispatched_at: None,
        accept_due: None,
        complete_due: None,
        results: IndexMap::new(),
        stage: None,
        withdrawing: false,
    }
}

fn newborn() -> Case {
    let mut items = IndexMap::new();
    items.insert("birth-cert".to_string(), item("health", &[], false));
    items.insert("hukou".to_string(), item("police", &["birth-cert"], false));
    items.insert(
        "medicare-enrol".to_string(),
        item("medicare", &["hukou"], true),
    );
    items.insert("social-card".to_string(), item("hrss", &["hukou"], false));
    Case::new("C1", "newborn", items, IndexMap::new(), json!(null))
}

fn step(c: &mut Case, input: Input) -> Vec<Effect> {
    apply(c, input, now(), &Days)
}

fn events(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Emit(ev) => Some(match &ev.item {
                Some(i) => format!("{} {i}", ev.kind),
                None => ev.kind.to_string(),
            }),
            _ => None,
        })
        .collect()
}

fn pushes(fx: &[Effect]) -> Vec<(String, Push)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Push { item, push } => Some((item.clone(), *push)),
            _ => None,
        })
        .collect()
}

fn taken(item: &str, push: Push) -> Input {
    Input::PushTaken {
        item: item.into(),
        push,
        reference: Some(format!("R-{item}")),
    }
}

fn report(item: &str, change: Change) -> Input {
    Input::Report {
        item: item.into(),
        reference: None,
        change,
    }
}

fn approved(keys: &[(&str, &str)]) -> Change {
    Change::Approved {
        results: keys
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        accepted_at: None,
    }
}

#[test]
fn newborn_runs_in_prerequisite_order_with_pre_review() {
    let mut c = newborn();
    let fx = step(&mut c, Input::Received);
    assert_eq!(
        events(&fx),
        [
            "case.received",
            "item.waiting hukou",
            "item.waiting social-card"
        ]
    );
    assert_eq!(
        pushes(&fx),
        [
            ("birth-cert".into(), Push::Submit),
            ("medicare-enrol".into(), Push::Prereview)
        ]
    );

    assert_eq!(
        events(&step(&mut c, taken("birth-cert", Push::Submit))),
        ["item.dispatched birth-cert"]
    );
    assert_eq!(
        events(&step(&mut c, taken("medicare-enrol", Push::Prereview))),
        ["item.prereview medicare-enrol"]
    );
    // A pre-reviewed item is not accepted before its follow-up.
    assert!(
        events(&step(
            &mut c,
            report("medicare-enrol", Change::Accepted { at: None })
        ))
        .is_empty()
    );

    let fx = step(
        &mut c,
        report(
            "birth-cert",
            approved(&[("licence_no", "Q1"), ("issued_at", "t")]),
        ),
    );
    assert_eq!(
        events(&fx),
        ["item.accepted birth-cert", "item.approved birth-cert"],
        "accepted comes first"
    );
    assert_eq!(pushes(&fx), [("hukou".into(), Push::Submit)]);

    step(&mut c, taken("hukou", Push::Submit));
    step(&mut c, report("hukou", Change::Accepted { at: None }));
    let fx = step(
        &mut c,
        report(
            "hukou",
            approved(&[("citizen_id", "4102"), ("hukou_no", "H")]),
        ),
    );
    assert_eq!(
        pushes(&fx),
        [
            ("medicare-enrol".into(), Push::Complete),
            ("social-card".into(), Push::Submit)
        ]
    );
    assert_eq!(c.results()["hukou"]["citizen_id"], "4102");

    assert_eq!(
        events(&step(&mut c, taken("medicare-enrol", Push::Complete))),
        ["item.dispatched medicare-enrol"]
    );
    step(&mut c, taken("social-card", Push::Submit));
    step(
        &mut c,
        report("medicare-enrol", approved(&[("insured_no", "Y")])),
    );
    let fx = step(&mut c, report("social-card", approved(&[("card_no", "K")])));
    assert_eq!(
        events(&fx),
        [
            "item.accepted social-card",
            "item.approved social-card",
            "case.completed"
        ]
    );
    assert!(c.completed);
    // seq runs 1.. with no gap.
    assert_eq!(c.seq, 17);
}

#[test]
fn events_carry_gapless_seq_and_the_status_after_them() {
    let mut c = newborn();
    let fx = step(&mut c, Input::Received);
    let seqs: Vec<u64> = fx
        .iter()
        .filter_map(|e| {
            if let Effect::Emit(ev) = e {
                Some(ev.seq)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    let waiting: Vec<&Event> = fx
        .iter()
        .filter_map(|e| {
            if let Effect::Emit(ev) = e {
                Some(ev)
            } else {
                None
            }
        })
        .collect();
    let ev = waiting[1];
    assert_eq!(ev.kind, "item.waiting");
    assert_eq!(ev.status, Some(Status::Waiting));
    assert_eq!(ev.department.as_deref(), Some("police"));
    assert_eq!(ev.detail, json!({"prerequisites": ["birth-cert"]}));
}

#[test]
fn repeated_backward_and_late_reports_emit_nothing() {
    let mut c = newborn();
    step(&mut c, Input::Received);
    step(&mut c, taken("birth-cert", Push::Submit));
    assert_eq!(
        events(&step(
            &mut c,
            report("birth-cert", Change::Accepted { at: None })
        ))
        .len(),
        1
    );
    assert!(
        events(&step(
            &mut c,
            report("birth-cert", Change::Accepted { at: None })
        ))
        .is_empty(),
        "repeat"
    );
    assert!(
        events(&step(&mut c, report("birth-cert", Change::Dispatched))).is_empty(),
        "backwards"
    );
    step(
        &mut c,
        report("birth-cert", Change::Rejected { reason: "x".into() }),
    );
    assert!(
        events(&step(&mut c, report("birth-cert", approved(&[])))).is_empty(),
        "after final"
    );
    let p = Change::Progress {
        stage: "s".into(),
        note: None,
    };
    let mut c = newborn();
    step(&mut c, Input::Received);
    step(&mut c, taken("birth-cert", Push::Submit));
    assert_eq!(
        events(&step(&mut c, report("birth-cert", p.clone()))).len(),
        1
    );
    assert!(
        events(&step(&mut c, report("birth-cert", p))).is_empty(),
        "same stage again"
    );
}

#[test]
fn a_rejected_prerequisite_cancels_its_dependants_and_withdraws_the_pre_review() {
    let mut c = newborn();
    step(&mut c, Input::Received);
    step(&mut c, taken("birth-cert", Push::Submit));
    step(&mut c, taken("medicare-enrol", Push::Prereview));
    let fx = step(
        &mut c,
        report(
            "birth-cert",
            Change::Rejected {
                reason: "材料不符合要求".into(),
            },
        ),
    );
    assert_eq!(
        events(&fx),
        [
            "item.rejected birth-cert",
            "item.cancelled hukou",
            "item.cancelled medicare-enrol",
            "item.cancelled social-card",
            "case.completed"
        ]
    );
    assert!(
        fx.contains(&Effect::Withdraw {
            item: "medicare-enrol".into()
        }),
        "the department holds the pre-review"
    );
    assert!(!fx.contains(&Effect::Withdraw {
        item: "hukou".into()
    }));
    let Some(Effect::Emit(ev)) = fx.iter().find(|e| matches!(e, Effect::Emit(ev) if ev.kind == "item.cancelled" && ev.item.as_deref() == Some("medicare-enrol"))) else { panic!() };
    assert_eq!(ev.detail, json!({"because": "hukou"}));
}

#[test]
fn a_failed_push_fails_the_item_and_cancels_dependants() {
    let mut c = newborn();
    step(&mut c, Input::Received);
    let fx = step(
        &mut c,
        Input::PushFailed {
            item: "birth-cert".into(),
            error: "503".into(),
            attempts: 8,
        },
    );
    assert_eq!(events(&fx)[0], "item.failed birth-cert");
    assert_eq!(c.items["hukou"].status, Status::Cancelled);
}

#[test]
fn withdrawal_midway_withdraws_held_items_at_the_department_and_the_rest_at_once() {
    let mut c = newborn();
    step(&mut c, Input::Received);
    step(&mut c, taken("birth-cert", Push::Submit));
    step(&mut c, taken("medicare-enrol", Push::Prereview));
    let fx = step(
        &mut c,
        Input::Withdraw {
            reason: "申请人主动撤回".into(),
        },
    );
    assert_eq!(
        events(&fx),
        ["item.withdrawn hukou", "item.withdrawn social-card"]
    );
    assert!(fx.contains(&Effect::Withdraw {
        item: "birth-cert".into()
    }));
    assert!(fx.contains(&Effect::Withdraw {
        item: "medicare-enrol".into()
    }));
    assert!(
        events(&step(
            &mut c,
            Input::Withdraw {
                reason: "again".into()
            }
        ))
        .is_empty(),
        "second withdrawal ignored"
    );
    let fx = step(
        &mut c,
        Input::WithdrawAnswered {
            item: "birth-cert".into(),
            answer: WithdrawAnswer::Done,
        },
    );
    assert_eq!(events(&fx), ["item.withdrawn birth-cert"]);
    // The department had already finished the pre-review: its real outcome is asked for.
    let fx = step(
        &mut c,
        Input::WithdrawAnswered {
            item: "medicare-enrol".into(),
            answer: WithdrawAnswer::Finished,
        },
    );
    assert_eq!(
        fx,
        vec![Effect::Query {
            item: "medicare-enrol".into()
        }]
    );
    let fx = step(
        &mut c,
        report(
            "medicare-enrol",
            Change::Rejected {
                reason: "预审未通过".into(),
            },
        ),
    );
    assert_eq!(
        events(&fx),
        [
            "item.rejected medicare-enrol",
            "case.withdrawn",
            "case.completed"
        ]
    );
    let Some(Effect::Emit(ev)) = fx
        .iter()
        .find(|e| matches!(e, Effect::Emit(ev) if ev.kind == "case.withdrawn"))
    else {
        panic!()
    };
    assert_eq!(
        ev.detail,
        json!({"reason": "申请人主动撤回", "items": ["hukou", "social-card", "birth-cert"]})
    );
}

#[test]
fn a_push_taken_after_withdrawal_is_withdrawn_there() {
    let mut c = newborn();
    step(&mut c, Input::Received);
    // birth-cert's push is in flight when the withdrawal arrives.
    let fx = step(&mut c, Input::Withdraw { reason: "r".into() });
    assert!(
        !fx.contains(&Effect::Withdraw {
            item: "birth-cert".into()
        }),
        "nothing to withdraw yet"
    );
    let fx = step(&mut c, taken("birth-cert", Push::Submit));
    assert!(fx.contains(&Effect::Withdraw {
        item: "birth-cert".into()
    }));
    let fx = step(&mut c, taken("medicare-enrol", Push::Prereview));
    assert!(fx.contains(&Effect::Withdraw {
        item: "medicare-enrol".into()
    }));
    assert!(pushes(&fx).is_empty(), "no follow-up for a withdrawn case");
    let fx = step(
        &mut c,
        Input::WithdrawAnswered {
            item: "birth-cert".into(),
            answer: WithdrawAnswer::Done,
        },
    );
    assert!(
        !events(&fx).contains(&"case.withdrawn".to_string()),
        "medicare-enrol is still being withdrawn"
    );
    let fx = step(
        &mut c,
        Input::WithdrawAnswered {
            item: "medicare-enrol".into(),
            answer: WithdrawAnswer::NotFound,
        },
    );
    assert_eq!(
        events(&fx),
        [
            "item.withdrawn medicare-enrol",
            "case.withdrawn",
            "case.completed"
        ]
    );
}

#[test]
fn prior_results_count_as_approved_prerequisites() {
    let mut items = IndexMap::new();
    items.insert("hukou".to_string(), item("police", &["birth-cert"], false));
    let prior = IndexMap::from([(
        "birth-cert".to_string(),
        IndexMap::from([("licence_no".to_string(), "Q".to_string())]),
    )]);
    let mut c = Case::new("C2", "newborn", items, prior, json!(null));
    let fx = step(&mut c, Input::Received);
    assert_eq!(pushes(&fx), [("hukou".into(), Push::Submit)]);
    assert_eq!(c.results()["birth-cert"]["licence_no"], "Q");
}

#[test]
fn accepted_carries_the_complete_deadline_and_starts_clocks() {
    let mut c = newborn();
    step(&mut c, Input::Received);
    let fx = step(&mut c, taken("birth-cert", Push::Submit));
    assert!(fx.contains(&Effect::AcceptClock {
        item: "birth-cert".into(),
        from: now()
    }));
    let at = DateTime::parse_from_rfc3339("2026-03-16T09:20:11+08:00").unwrap();
    let fx = step(
        &mut c,
        report("birth-cert", Change::Accepted { at: Some(at) }),
    );
    let Effect::Emit(ev) = &fx[0] else { panic!() };
    assert_eq!(
        ev.detail,
        json!({"accepted_at": "2026-03-16T09:20:11+08:00", "due_at": "2026-03-19T09:20:11+08:00"})
    );
    assert!(fx.contains(&Effect::CompleteClock {
        item: "birth-cert".into(),
        from: at,
        days: 3
    }));
    let fx = step(&mut c, report("birth-cert", approved(&[])));
    assert!(fx.contains(&Effect::StopClocks {
        item: "birth-cert".into()
    }));
}

#[test]
fn overdue_only_while_the_decision_is_awaited() {
    let mut c = newborn();
    step(&mut c, Input::Received);
    step(&mut c, taken("birth-cert", Push::Submit));
    let due = now();
    let od = |l| Input::Overdue {
        item: "birth-cert".into(),
        limit: l,
        due_at: due,
    };
    assert!(
        events(&step(&mut c, od(Limit::Complete))).is_empty(),
        "not accepted yet: no complete limit"
    );
    let fx = step(&mut c, od(Limit::Accept));
    assert_eq!(events(&fx), ["item.overdue birth-cert"]);
    let Effect::Emit(ev) = &fx[0] else { panic!() };
    assert_eq!(
        ev.detail,
        json!({"limit": "accept", "due_at": "2026-03-16T09:15:00+08:00"})
    );
    step(&mut c, report("birth-cert", Change::Accepted { at: None }));
    assert!(
        events(&step(&mut c, od(Limit::Accept))).is_empty(),
        "accepted in the meantime"
    );
    assert_eq!(
        events(&step(&mut c, od(Limit::Complete))),
        ["item.overdue birth-cert"]
    );
}

#[test]
fn a_report_that_overtakes_the_push_answer_implies_the_push_was_taken() {
    let mut c = newborn();
    step(&mut c, Input::Received);
    // The pre-check passed before the pre-review push's answer was processed.
    let fx = step(
        &mut c,
        report(
            "medicare-enrol",
            Change::Progress {
                stage: "prereview-passed".into(),
                note: None,
            },
        ),
    );
    assert_eq!(
        events(&fx),
        [
            "item.prereview medicare-enrol",
            "item.progress medicare-enrol"
        ]
    );
    assert!(
        events(&step(&mut c, taken("medicare-enrol", Push::Prereview))).is_empty(),
        "the late answer changes nothing"
    );
    // Accepted before the follow-up's answer: dispatched first.
    step(&mut c, taken("birth-cert", Push::Submit));
    step(&mut c, report("birth-cert", approved(&[])));
    step(&mut c, taken("hukou", Push::Submit));
    let fx = step(
        &mut c,
        report("hukou", approved(&[("citizen_id", "x"), ("hukou_no", "y")])),
    );
    assert!(pushes(&fx).contains(&("medicare-enrol".into(), Push::Complete)));
    let fx = step(
        &mut c,
        report("medicare-enrol", Change::Accepted { at: None }),
    );
    assert_eq!(
        events(&fx),
        [
            "item.dispatched medicare-enrol",
            "item.accepted medicare-enrol"
        ]
    );
}
