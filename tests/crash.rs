//! Crash safety: the daemon is killed with SIGKILL while cases are in flight and started again;
//! every case completes, no event is lost (each case's events, deduplicated by `event_id`, run
//! 1, 2, 3… without a gap, in that order), and no department received a second application.

mod stack;
mod support;

use std::time::Duration;

use onething::sim::behaviour::Timing;
use stack::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_in_flight_then_restart_loses_and_repeats_nothing() {
    // Departments take a little while, so that work is in flight when the daemon dies.
    let timing = Timing {
        accept_after: Duration::from_millis(300),
        decide_after: Duration::from_millis(300),
    };
    let stack = Stack::without_daemon("crash", timing).await;
    let mut daemon = stack.spawn_daemon().await;
    let cases = stack::submit_rounds(&stack, "crash", 12).await;
    // Kill it once some pushes have happened and many are still to come.
    stack
        .events_until(&cases[0], 60, |ev| {
            ev.iter().any(|e| e["type"] == "item.dispatched")
        })
        .await;
    daemon.sigkill();
    let mut daemon = stack.spawn_daemon().await;
    stack.assert_approved_in_order(&cases).await;
    stack.assert_applied_once(12).await;
    assert_eq!(daemon.sigterm(), Some(0), "a clean stop after SIGTERM");
    stack.cleanup().await;
}
