//! Legal time limits under a drill clock: a department that never accepts (`搁置`) gets an
//! accept-limit `item.overdue`, one that never decides (`缓办`) a complete-limit one, a normal case
//! none; each exactly once, also across a restart.

mod stack;
mod support;

use serde_json::Value;
use stack::Stack;
use support::fixture;

/// Fast enough that a limit of one working day (up to four calendar days over a weekend or
/// holiday) passes in well under a minute.
const WARP: f64 = 20_000.0;

fn case(name: &str, id: &str) -> Value {
    let mut s = fixture("newborn.json");
    s["form"]["child"]["name"] = name.into();
    s["case_id"] = id.into();
    s
}

fn overdue(ev: &[Value], item: &str) -> Vec<Value> {
    ev.iter()
        .filter(|e| e["type"] == "item.overdue" && e["item"] == item)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overdue_events_follow_the_limits_once() {
    let mut stack = Stack::start_warped("deadlines", WARP).await;
    stack
        .submit(&case("王搁置:health", "410225-dl-shelve"))
        .await;
    stack
        .submit(&case("王缓办:health", "410225-dl-delay"))
        .await;
    stack.submit(&case("王子涵", "410225-dl-normal")).await;

    let ev = stack
        .events_until("410225-dl-shelve", 90, |ev| {
            !overdue(ev, "birth-cert").is_empty()
        })
        .await;
    let o = &overdue(&ev, "birth-cert")[0];
    assert_eq!(o["detail"]["limit"], "accept");
    let due = o["detail"]["due_at"].as_str().unwrap();
    assert!(due.ends_with("T23:59:59+08:00"), "{due}");
    assert_eq!(o["status"], "dispatched");

    let ev = stack
        .events_until("410225-dl-delay", 90, |ev| {
            !overdue(ev, "birth-cert").is_empty()
        })
        .await;
    let o = &overdue(&ev, "birth-cert")[0];
    assert_eq!(o["detail"]["limit"], "complete");
    let accepted = ev
        .iter()
        .find(|e| e["type"] == "item.accepted" && e["item"] == "birth-cert")
        .unwrap();
    assert_eq!(
        accepted["detail"]["due_at"], o["detail"]["due_at"],
        "item.accepted announced the same limit"
    );

    let normal = stack.completed("410225-dl-normal").await;
    assert!(
        normal.iter().all(|e| e["type"] != "item.overdue"),
        "a case decided in time is never overdue"
    );

    // Counted for the operations' dashboards, and shown by `onething case`.
    let metrics = reqwest::get(format!("http://{}/metrics", stack.daemon().addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("onething_overdue_total{department=\"health\",limit=\"accept\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("onething_overdue_total{department=\"health\",limit=\"complete\"} 1"),
        "{metrics}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onething"))
        .args(["case", "410225-dl-shelve"])
        .env("ONETHING_DATABASE_URL", &stack.config.database_url)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("birth-cert") && l.contains("OVERDUE")),
        "{text}"
    );

    // Exactly once, across a restart: the deadline's timer went with its event.
    let store = onething::store::Store::open(&stack.config.database_url)
        .await
        .unwrap();
    for id in ["410225-dl-shelve", "410225-dl-delay"] {
        let timers = store.timers_of(id).await.unwrap();
        assert!(
            !timers
                .iter()
                .any(|(item, kind, _)| item == "birth-cert" && kind.starts_with("deadline")),
            "{id}: {timers:?}"
        );
    }
    // A restart finds no deadline left to fire for them.
    stack.daemon.take().unwrap().stop().await;
    let again = onething::runtime::start(stack.config.clone())
        .await
        .unwrap();
    stack::wait_ready(again.addr).await;
    stack.daemon = Some(again);
    let events = store.case_events("410225-dl-shelve").await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.routing_key == "item.overdue")
            .count(),
        1
    );
    stack.stop().await;
}
