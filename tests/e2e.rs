//! End to end through the broker: the daemon takes the platform's cases to the simulated
//! departments and back, with the events of amqp.md in order.

mod stack;
mod support;

use serde_json::Value;
use stack::{Stack, kinds};
use support::fixture;

fn seqs_are_gapless(events: &[Value]) {
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let want: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, want, "seq 1, 2, 3… in order, no gap");
}

fn position(events: &[String], what: &str) -> usize {
    events
        .iter()
        .position(|e| e == what)
        .unwrap_or_else(|| panic!("no `{what}` in {events:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_three_examples_complete_with_their_events_in_order() {
    let stack = Stack::start("examples").await;
    for f in ["newborn.json", "restaurant.json", "house-transfer.json"] {
        stack.submit(&fixture(f)).await;
    }
    // newborn: birth-cert → hukou → (medicare pre-review completed, social-card).
    let ev = stack.completed("410225-20260316-000123").await;
    seqs_are_gapless(&ev);
    let k = kinds(&ev);
    assert_eq!(k[0], "case.received");
    assert!(position(&k, "item.approved birth-cert") < position(&k, "item.dispatched hukou"));
    assert!(
        position(&k, "item.prereview medicare-enrol")
            < position(&k, "item.dispatched medicare-enrol")
    );
    assert!(position(&k, "item.approved hukou") < position(&k, "item.dispatched medicare-enrol"));
    for item in ["birth-cert", "hukou", "medicare-enrol", "social-card"] {
        assert!(
            position(&k, &format!("item.accepted {item}"))
                < position(&k, &format!("item.approved {item}"))
        );
    }
    let done = ev.last().unwrap();
    assert_eq!(done["type"], "case.completed");
    assert_eq!(done["detail"]["items"]["social-card"], "approved");
    let hukou = ev
        .iter()
        .find(|e| e["type"] == "item.approved" && e["item"] == "hukou")
        .unwrap();
    assert!(onething::validate::gb11643_valid(
        hukou["detail"]["results"]["citizen_id"].as_str().unwrap()
    ));

    let ev = stack.completed("410225-20260317-000045").await;
    seqs_are_gapless(&ev);
    let k = kinds(&ev);
    assert!(position(&k, "item.approved business-licence") < position(&k, "item.dispatched seal"));
    assert!(
        position(&k, "item.approved business-licence")
            < position(&k, "item.dispatched tax-registration")
    );
    // The pre-review push goes out at once; its follow-up only after the licence is approved.
    assert!(
        position(&k, "item.prereview food-permit") < position(&k, "item.dispatched food-permit")
    );
    assert!(
        position(&k, "item.approved business-licence")
            < position(&k, "item.dispatched food-permit")
    );
    assert_eq!(
        ev.last().unwrap()["detail"]["items"]["food-permit"],
        "approved"
    );

    let ev = stack.completed("410225-20260318-000007").await;
    seqs_are_gapless(&ev);
    let k = kinds(&ev);
    assert!(
        position(&k, "item.waiting gas-transfer") < position(&k, "item.approved property-transfer")
    );
    assert_eq!(
        ev.last().unwrap()["detail"]["items"]["gas-transfer"],
        "approved"
    );
    for e in &ev {
        assert_eq!(e["schema"], "onething.event/v1");
        assert!(e["at"].as_str().unwrap().ends_with("+08:00"));
    }
    // `onething case`: items, states, references and the audit trail, personal data masked.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onething"))
        .args(["case", "410225-20260316-000123"])
        .env("ONETHING_DATABASE_URL", &stack.config.database_url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("case 410225-20260316-000123  (newborn)  completed"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("hukou") && l.contains("police") && l.contains("approved")),
        "{text}"
    );
    assert!(
        text.contains("audit trail") && text.contains("item.approved seq"),
        "{text}"
    );
    assert!(
        !text.contains("410225202603150"),
        "identity numbers are masked: {text}"
    );
    let unknown = std::process::Command::new(env!("CARGO_BIN_EXE_onething"))
        .args(["case", "no-such-case"])
        .env("ONETHING_DATABASE_URL", &stack.config.database_url)
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    stack.stop().await;
}
