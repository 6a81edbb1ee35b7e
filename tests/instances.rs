//! Several `onething run` instances on one PostgreSQL database and one broker, behind a
//! round-robin balancer for the departments' callbacks: they share the intake queue, the timers,
//! the polls and the outbox; every item is applied for once, every case's events arrive in `seq`
//! order, and an instance killed midway has its claimed work taken over once its leases run out.
//! Also: the intake as a quorum queue.

mod stack;
mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use onething::broker::QueueType;
use onething::sim::behaviour::Timing;
use serde_json::Value;
use stack::balancer::Balancer;
use stack::{Options, Stack, free_addr, submit_rounds};

/// `instances` gateways share `rounds` × the three one-things; with `kill`, the last one is
/// killed (SIGKILL) once work is under way.
async fn share(name: &str, instances: usize, rounds: usize, kill: bool) {
    let url = support::fresh("pg", name).await;
    let opts = Options {
        // Departments take a little while, so that work is in flight when an instance dies.
        timing: Timing {
            accept_after: Duration::from_millis(200),
            decide_after: Duration::from_millis(200),
        },
        in_process: false,
        database_url: Some(url.clone()),
        lease: Duration::from_secs(5),
        ..Default::default()
    };
    // Under this load the folder's answers may take longer than the test mappings' 3 s to be read;
    // "not taken" is not what is tested here.
    let stack = Stack::build(name, opts, |dir| {
        let p = dir.join("departments/nr.toml");
        let s = std::fs::read_to_string(&p).unwrap();
        std::fs::write(
            &p,
            s.replace(r#"not_taken_after = "3s""#, r#"not_taken_after = "5m""#),
        )
        .unwrap();
    })
    .await;
    let addrs: Vec<_> = (0..instances).map(|_| free_addr()).collect();
    let balancer = Balancer::start(stack.config.http_addr, addrs.clone()).await;
    // Started together: they migrate the fresh database one after the other.
    let mut daemons: Vec<_> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| stack.launch(&format!("{name}-{i}"), *a))
        .collect();
    for a in &addrs {
        stack::wait_ready(*a).await;
    }
    let cases = submit_rounds(&stack, name, rounds).await;
    if kill {
        stack
            .events_until(&cases[cases.len() / 3], 60, |ev| {
                ev.iter().any(|e| e["type"] == "item.dispatched")
            })
            .await;
        daemons.last_mut().unwrap().sigkill();
    }
    stack.assert_approved_in_order(&cases).await;
    stack.assert_applied_once(rounds as u64).await;
    // The instances together kept police's documented limits (2 at a time, 20 a second): it
    // never had to refuse a request as busy.
    let busy: Vec<Value> = stack
        .sim_violations("police")
        .await
        .into_iter()
        .filter(|v| {
            let v = v.to_string();
            v.contains("at a time") || v.contains("a second")
        })
        .collect();
    assert!(busy.is_empty(), "police refused as busy: {busy:?}");
    // Tax is asked by batch query: far fewer status calls than items (item by item, its 30 calls
    // a minute would take longer than the cases may).
    let tax_calls = stack.sim_stats().await["tax"]["queries"].as_u64().unwrap();
    assert!(
        tax_calls < rounds as u64 / 2,
        "{tax_calls} status calls for {rounds} tax items"
    );
    // The callbacks were spread over the instances (each took some while it lived).
    let relayed: Vec<usize> = balancer
        .relayed
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .collect();
    assert!(
        relayed.iter().all(|n| *n > 0),
        "callbacks per instance: {relayed:?}"
    );
    let live = if kill { instances - 1 } else { instances };
    for d in daemons.iter_mut().take(live) {
        assert_eq!(d.sigterm(), Some(0), "a clean stop after SIGTERM");
    }
    drop(balancer);
    stack.cleanup().await;
    support::drop_pg(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_the_work() {
    share("two", 2, 40, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_lose_nothing_when_one_is_killed() {
    share("three", 3, 40, true).await;
}

/// With `ONETHING_AMQP_QUEUE_TYPE=quorum` the intake is a quorum queue; cases flow and bad input
/// is dead-lettered as with a classic one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quorum_intake_queue_works_like_a_classic_one() {
    let opts = Options {
        queue_type: QueueType::Quorum,
        ..Default::default()
    };
    let stack = Stack::build("quorum", opts, |_| {}).await;
    let cases = submit_rounds(&stack, "quorum", 1).await;
    stack.publish("submission", b"not json").await;
    stack.assert_approved_in_order(&cases).await;
    let dead = stack.dead_letters(1).await;
    assert_eq!(dead[0].0, b"not json");
    assert_eq!(
        dead[0].1.inner().get("x-onething-reason"),
        Some(&AMQPValue::LongString("not json".into()))
    );
    // The queue is a quorum queue: declaring it as a classic one is refused by the broker.
    let conn = lapin::Connection::connect(stack::AMQP, Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let refused = ch
        .queue_declare(stack.topology.intake_queue.as_str().into(), durable, args)
        .await;
    assert!(refused.is_err(), "the intake queue is not a quorum queue");
    let _ = conn.close(0, "done".into()).await;
    stack.stop().await;
}
