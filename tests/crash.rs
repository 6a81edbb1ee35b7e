//! Crash safety: the daemon is killed with SIGKILL while cases are in flight and started again;
//! every case completes, no event is lost (each case's events, deduplicated by `event_id`, run
//! 1, 2, 3… without a gap), and no department received a second application.

mod stack;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use onething::sim::behaviour::Timing;
use serde_json::Value;
use stack::Stack;
use support::fixture;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_in_flight_then_restart_loses_and_repeats_nothing() {
    // Departments take a little while, so that work is in flight when the daemon dies.
    let timing = Timing {
        accept_after: Duration::from_millis(300),
        decide_after: Duration::from_millis(300),
    };
    let stack = Stack::without_daemon("crash", timing).await;
    let mut daemon = stack.spawn_daemon().await;
    let mut cases = Vec::new();
    for n in 0..12 {
        for f in ["newborn.json", "restaurant.json", "house-transfer.json"] {
            let mut s = fixture(f);
            let id = format!("410225-crash-{n}-{}", &f[..3]);
            s["case_id"] = id.clone().into();
            stack.submit(&s).await;
            cases.push(id);
        }
    }
    // Kill it once some pushes have happened and many are still to come.
    stack
        .events_until(&cases[0], 60, |ev| {
            ev.iter().any(|e| e["type"] == "item.dispatched")
        })
        .await;
    daemon.sigkill();
    let mut daemon = stack.spawn_daemon().await;
    for id in &cases {
        let ev = stack.completed(id).await;
        let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
        for e in ev {
            let id = e["event_id"].as_str().unwrap().to_string();
            if let Some(prev) = by_id.get(&id) {
                assert_eq!(prev, &e, "a re-published event is the same event");
            }
            by_id.insert(id, e);
        }
        let finals = by_id
            .values()
            .find(|e| e["type"] == "case.completed")
            .unwrap()["detail"]["items"]
            .clone();
        assert!(
            finals
                .as_object()
                .unwrap()
                .values()
                .all(|s| s == "approved"),
            "{id}: {finals} {:#?}",
            by_id
                .values()
                .map(|e| format!("{} {} {}", e["type"], e["item"], e["detail"]))
                .collect::<Vec<_>>()
        );
        let mut seqs: Vec<u64> = by_id.values().map(|e| e["seq"].as_u64().unwrap()).collect();
        seqs.sort();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{id}: no event lost"
        );
    }
    // Every item applied for exactly once at its department.
    let stats = stack.sim_stats().await;
    let expect = [
        ("health", 12),
        ("police", 24),
        ("medicare", 12),
        ("hrss", 12),
        ("amr", 24),
        ("tax", 12),
        ("nr", 12),
        ("water", 12),
        ("power", 12),
        ("gas", 12),
    ];
    for (dept, n) in expect {
        assert_eq!(stats[dept]["submits"], n, "{dept}: {}", stats[dept]);
        if dept != "nr" {
            assert_eq!(
                stats[dept]["duplicates"].as_u64().unwrap_or(0),
                0,
                "{dept}: a second application"
            );
        }
    }
    assert_eq!(daemon.sigterm(), Some(0), "a clean stop after SIGTERM");
    stack.cleanup().await;
}
