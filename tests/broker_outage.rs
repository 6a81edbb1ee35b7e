//! Broker outage: RabbitMQ's application is stopped and started again while cases are in flight.
//! The gateway carries on with the departments, resumes consuming and publishing by itself, and no
//! event is lost. (This test stops the machine's shared broker for a few seconds: it is the only
//! test in its binary, and Cargo runs test binaries one after another.)

mod stack;
mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use onething::sim::behaviour::Timing;
use serde_json::Value;
use stack::{AMQP, Stack};
use support::fixture;

fn rabbitmqctl(verb: &str) {
    let ok = std::process::Command::new("rabbitmqctl")
        .arg(verb)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "rabbitmqctl {verb} failed");
}

/// Starts the broker's application again however the test ends.
struct Restart;
impl Drop for Restart {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .arg("start_app")
            .output();
    }
}

/// `/readyz`'s body; its status must agree with it (200 when both are up, else 503).
async fn readyz(addr: std::net::SocketAddr) -> Value {
    let r = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    let status = r.status().as_u16();
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let up = v["broker"] == "up" && v["store"] == "up";
    assert_eq!(status, if up { 200 } else { 503 }, "readyz said {v}");
    v
}

async fn wait_broker(addr: std::net::SocketAddr, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while readyz(addr).await["broker"] != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "broker never {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_rides_out_a_broker_restart() {
    let _restart = Restart;
    let timing = Timing {
        accept_after: Duration::from_millis(400),
        decide_after: Duration::from_millis(400),
    };
    let stack = Stack::start_with("outage", timing).await;
    // The platform's durable events queue survives the restart.
    let events_q = format!("outage-events-{}", std::process::id());
    {
        let conn = Connection::connect(AMQP, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.queue_declare(
            events_q.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            events_q.as_str().into(),
            stack.topology.events_exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let _ = conn.close(0, "done".into()).await;
    }
    let mut cases = Vec::new();
    for n in 0..5 {
        for f in ["newborn.json", "restaurant.json", "house-transfer.json"] {
            let mut s = fixture(f);
            let id = format!("410225-outage-{n}-{}", &f[..3]);
            s["case_id"] = id.clone().into();
            stack.submit(&s).await;
            cases.push(id);
        }
    }
    // Work is under way when the broker goes.
    stack
        .events_until(&cases[0], 60, |ev| {
            ev.iter().any(|e| e["type"] == "item.dispatched")
        })
        .await;
    rabbitmqctl("stop_app");
    wait_broker(stack.daemon().addr, "down").await;
    // Departments keep being served meanwhile; the events wait in the outbox.
    let store = onething::store::Store::open(&stack.config.database_url)
        .await
        .unwrap();
    let before = store.counts().await.unwrap();
    rabbitmqctl("start_app");
    wait_broker(stack.daemon().addr, "up").await;
    // New cases are taken again after the restart.
    let mut late = fixture("newborn.json");
    late["case_id"] = "410225-outage-late".into();
    let conn = Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.basic_publish(
        stack.topology.intake_exchange.as_str().into(),
        "submission".into(),
        BasicPublishOptions::default(),
        late.to_string().as_bytes(),
        lapin::BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    cases.push("410225-outage-late".into());
    // Every case completes, and the durable queue holds every event of each, seq 1.. without gaps.
    let mut events: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    let mut done: HashSet<String> = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while done.len() < cases.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {} cases completed",
            done.len(),
            cases.len()
        );
        match ch
            .basic_get(events_q.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            Some(m) => {
                let v: Value = serde_json::from_slice(&m.delivery.data).unwrap();
                let case = v["case_id"].as_str().unwrap().to_string();
                if v["type"] == "case.completed" {
                    done.insert(case.clone());
                }
                events
                    .entry(case)
                    .or_default()
                    .insert(v["event_id"].as_str().unwrap().to_string(), v);
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    for id in &cases {
        let mut seqs: Vec<u64> = events[id]
            .values()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        seqs.sort();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{id}: an event was lost"
        );
    }
    assert!(before.cases >= 15);
    let _ = ch
        .queue_delete(events_q.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = conn.close(0, "done".into()).await;
    stack.stop().await;
}
