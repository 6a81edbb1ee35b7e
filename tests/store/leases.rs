//! Leases shared by instances: the relay's per-case claims, renewal, deferral, takeover.

use std::time::Duration;

use onething::store::{Admit, Release, Store, Timer, TimerClock, Update};
use serde_json::json;

use super::{case, event, timer};

const LEASE: Duration = Duration::from_secs(30);

async fn with_events(store: &Store, id: &str, seqs: &[i64]) {
    let first = Update {
        case_id: id.into(),
        events: seqs.iter().map(|s| event(id, *s)).collect(),
        now: 1,
        ..Default::default()
    };
    store.insert_case(&case(id), "{}", first).await.unwrap();
}

fn ids(events: &[onething::store::OutboxEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_id.as_str()).collect()
}

pub async fn the_relay_claims_a_case_through_its_first_pending_event(store: &Store) {
    with_events(store, "A", &[1, 2]).await;
    with_events(store, "B", &[1]).await;
    let (a, got) = store.claim_events("a", 1000, LEASE, 10).await.unwrap();
    assert_eq!(
        ids(&got),
        ["A-1", "A-2", "B-1"],
        "every pending event of the cases, in seq order"
    );
    let (_, none) = store.claim_events("b", 1000, LEASE, 10).await.unwrap();
    assert!(none.is_empty(), "both cases are held by a");

    // A later event of a held case is not anyone else's to publish before the earlier ones.
    let stored = store.load("A").await.unwrap().unwrap();
    let later = Update {
        case_id: "A".into(),
        version: stored.version,
        state: Some(stored.state),
        events: vec![event("A", 3)],
        now: 2,
        ..Default::default()
    };
    assert!(store.save(later).await.unwrap());
    let (_, none) = store.claim_events("b", 1000, LEASE, 10).await.unwrap();
    assert!(none.is_empty(), "A-3 waits behind A-1, which a holds");

    // Once a's events are confirmed, A-3 is the first pending one: anyone may take it.
    store
        .mark_published_all(&["A-1".into(), "A-2".into(), "B-1".into()], 3)
        .await
        .unwrap();
    let (b, got) = store.claim_events("b", 1000, LEASE, 10).await.unwrap();
    assert_eq!(ids(&got), ["A-3"]);

    // Given back after a broker failure, it is claimable at once; after a lease, by anyone.
    store.release_events(&b).await.unwrap();
    let (_, got) = store.claim_events("a", 1000, LEASE, 10).await.unwrap();
    assert_eq!(ids(&got), ["A-3"]);
    let (_, none) = store.claim_events("b", 20_000, LEASE, 10).await.unwrap();
    assert!(none.is_empty());
    let (_, got) = store.claim_events("b", 40_000, LEASE, 10).await.unwrap();
    assert_eq!(ids(&got), ["A-3"], "a's lease ran out");
    assert_ne!(a, b);
}

pub async fn leases_are_renewed_deferred_and_taken_over(store: &Store) {
    let first = Update {
        case_id: "L".into(),
        timers: vec![
            timer("L", "push", TimerClock::Real, 100),
            timer("L", "poll", TimerClock::Real, 100),
        ],
        now: 1,
        ..Default::default()
    };
    store.insert_case(&case("L"), "{}", first).await.unwrap();
    let mine = store
        .claim_due((1000, 1000), "a", LEASE, 10, Admit::all())
        .await
        .unwrap();
    assert_eq!(mine.len(), 2);

    // a's heartbeat keeps both beyond the first lease.
    assert_eq!(store.renew_leases("a", 100_000).await.unwrap(), 2);
    assert!(
        store
            .claim_due((1000, 40_000), "b", LEASE, 10, Admit::all())
            .await
            .unwrap()
            .is_empty()
    );

    // A failed timer is given up: a's heartbeat no longer extends it, b takes it after the delay.
    let push = mine.iter().find(|t| t.kind == "push").unwrap();
    assert!(store.defer(push.id, &push.token, 50_000).await.unwrap());
    assert_eq!(store.renew_leases("a", 200_000).await.unwrap(), 1);
    assert!(
        store
            .claim_due((1000, 45_000), "b", LEASE, 10, Admit::all())
            .await
            .unwrap()
            .is_empty()
    );
    let taken = store
        .claim_due((1000, 60_000), "b", LEASE, 10, Admit::all())
        .await
        .unwrap();
    assert_eq!(
        taken.iter().map(|t| t.kind.as_str()).collect::<Vec<_>>(),
        ["push"]
    );
    assert!(
        !store.defer(push.id, &push.token, 0).await.unwrap(),
        "a's claim is gone"
    );

    assert_eq!(store.renew_leases("b", 1_000_000).await.unwrap(), 1);

    // a dies: without renewal, b takes the poll once a's last lease ran out.
    assert!(
        store
            .claim_due((1000, 150_000), "b", LEASE, 10, Admit::all())
            .await
            .unwrap()
            .is_empty()
    );
    let taken = store
        .claim_due((1000, 250_000), "b", LEASE, 10, Admit::all())
        .await
        .unwrap();
    assert_eq!(
        taken.iter().map(|t| t.kind.as_str()).collect::<Vec<_>>(),
        ["poll"]
    );

    // b restarts under its own name: its claims are free again at once.
    assert_eq!(store.release_owner("b").await.unwrap(), 2);
    assert_eq!(
        store
            .claim_due((1000, 250_000), "a", LEASE, 10, Admit::all())
            .await
            .unwrap()
            .len(),
        2
    );
}

/// Instances claiming at the same moment from their own connections take disjoint work.
pub async fn concurrent_claims_never_overlap(url: &str) {
    let first = Store::open(url).await.unwrap();
    let second = Store::open(url).await.unwrap();
    let timers = (0..60)
        .map(|i| {
            let mut t = timer("K", "poll", TimerClock::Real, 100);
            t.item = format!("item-{i}");
            t
        })
        .collect();
    let events = (1..=40).map(|s| event("K", s)).collect();
    let upd = Update {
        case_id: "K".into(),
        timers,
        events,
        now: 1,
        ..Default::default()
    };
    first.insert_case(&case("K"), "{}", upd).await.unwrap();
    let mut a = Vec::new();
    let mut b = Vec::new();
    // Rounds until nothing is left (on SQLite a round may go all to one side: both read the
    // same candidates, the first update takes them, the second finds them taken).
    for _ in 0..60 {
        let (x, y) = tokio::join!(
            first.claim_due((1000, 1000), "a", LEASE, 7, Admit::all()),
            second.claim_due((1000, 1000), "b", LEASE, 7, Admit::all())
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        if x.is_empty() && y.is_empty() {
            break;
        }
        a.extend(x.into_iter().map(|t| t.id));
        b.extend(y.into_iter().map(|t| t.id));
    }
    assert!(
        a.iter().all(|id| !b.contains(id)),
        "a {a:?} and b {b:?} overlap"
    );
    assert_eq!(a.len() + b.len(), 60, "everything due was claimed once");
    let (x, y) = tokio::join!(
        first.claim_events("a", 1000, LEASE, 10),
        second.claim_events("b", 1000, LEASE, 10)
    );
    let (x, y) = (x.unwrap().1, y.unwrap().1);
    assert_eq!(
        x.len() + y.len(),
        40,
        "one of them holds the case's events, all of them"
    );
    assert!(x.is_empty() || y.is_empty());
    first.close().await;
    second.close().await;
}

/// A claim takes a department's timers only while its room for their class has space; timers of
/// kinds not counted (deadlines) are always taken, and `next_due` ignores what may not be taken.
pub async fn claims_take_no_more_than_a_department_has_room_for(store: &Store) {
    let timer = |item: String, kind: &str, department: &str| onething::store::NewTimer {
        case_id: "R".into(),
        item,
        kind: kind.into(),
        department: department.into(),
        clock: TimerClock::Real,
        due_at: 100,
        payload: serde_json::json!({}),
    };
    let mut timers = Vec::new();
    for i in 0..10 {
        timers.push(timer(format!("p{i}"), "push", "police"));
        timers.push(timer(format!("p{i}"), "deadline-accept", "police"));
    }
    for i in 0..3 {
        timers.push(timer(format!("q{i}"), "poll", "police"));
        timers.push(timer(format!("h{i}"), "push", "health"));
    }
    let first = Update {
        case_id: "R".into(),
        timers,
        now: 1,
        ..Default::default()
    };
    store.insert_case(&case("R"), "{}", first).await.unwrap();
    let classes = [("push", "send"), ("poll", "ask")];
    let room = |police_send, police_ask, health_send| {
        std::collections::HashMap::from([
            (("police".to_string(), "send".to_string()), police_send),
            (("police".to_string(), "ask".to_string()), police_ask),
            (("health".to_string(), "send".to_string()), health_send),
        ])
    };
    let count = |got: &[onething::store::Timer], department: &str, kind: &str| {
        got.iter()
            .filter(|t| t.department == department && t.kind == kind)
            .count()
    };
    let rooms = room(4, 1, 0);
    let admit = Admit {
        classes: &classes,
        room: &rooms,
    };
    let got = store
        .claim_due((1000, 1000), "a", LEASE, 100, admit)
        .await
        .unwrap();
    assert_eq!(count(&got, "police", "push"), 4);
    assert_eq!(count(&got, "police", "poll"), 1);
    assert_eq!(count(&got, "health", "push"), 0, "no room");
    assert_eq!(count(&got, "police", "deadline-accept"), 10, "not counted");
    assert_eq!(got.len(), 15);
    // Health has no room: its due pushes are not what the scheduler should wake for. Police's
    // remaining pushes are, while it has room.
    assert_eq!(store.next_due(admit).await.unwrap(), (None, Some(100)));
    let rooms = room(0, 0, 0);
    let full = Admit {
        classes: &classes,
        room: &rooms,
    };
    assert_eq!(store.next_due(full).await.unwrap(), (None, None));
    assert!(
        store
            .claim_due((1000, 1000), "a", LEASE, 100, full)
            .await
            .unwrap()
            .is_empty()
    );
    // Room again: the rest, up to it.
    let rooms = room(100, 100, 2);
    let more = store
        .claim_due(
            (1000, 1000),
            "a",
            LEASE,
            100,
            Admit {
                classes: &classes,
                room: &rooms,
            },
        )
        .await
        .unwrap();
    assert_eq!(count(&more, "police", "push"), 6);
    assert_eq!(count(&more, "police", "poll"), 2);
    assert_eq!(count(&more, "health", "push"), 2);
}

/// Touches and releases made at once (on SQLite, one transaction of the group writer): each
/// written while its claim holds, and only then.
pub async fn touches_and_releases_write_only_while_the_claim_holds(store: &Store) {
    let first = Update {
        case_id: "W".into(),
        timers: ["push", "query", "withdraw"]
            .into_iter()
            .map(|k| timer("W", k, TimerClock::Real, 100))
            .collect(),
        now: 1,
        ..Default::default()
    };
    store.insert_case(&case("W"), "{}", first).await.unwrap();
    let claimed = store
        .claim_due((1000, 1000), "a", LEASE, 10, Admit::all())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    let of = |timers: &[Timer], kind: &str| timers.iter().find(|t| t.kind == kind).unwrap().clone();
    let (p, q) = (of(&claimed, "push"), of(&claimed, "query"));
    let (sent, unsent, stale) = (
        json!({"sent": true}),
        json!({"sent": false}),
        json!({"x": 1}),
    );
    let (a, b, stale) = tokio::join!(
        store.touch(p.id, &p.token, &sent, 50_000),
        store.touch(q.id, &q.token, &unsent, 50_000),
        store.touch(q.id, "not-the-claim", &stale, 50_000),
    );
    assert_eq!(
        (a.unwrap(), b.unwrap(), stale.unwrap()),
        (true, true, false)
    );
    // Once the touched leases ran out, another instance finds the new payloads.
    let again = store
        .claim_due((1000, 60_000), "b", LEASE, 10, Admit::all())
        .await
        .unwrap();
    assert_eq!(of(&again, "push").payload, json!({"sent": true}));
    assert_eq!(of(&again, "query").payload, json!({"sent": false}));
    let (p, q, w) = (
        of(&again, "push"),
        of(&again, "query"),
        of(&again, "withdraw"),
    );
    let reschedule = |t: &Timer, token: &str, due_at: i64| Release::Reschedule {
        id: t.id,
        token: token.into(),
        due_at,
        payload: json!({"due": due_at}),
    };
    let moves = [
        reschedule(&p, &p.token, 7000),
        reschedule(&q, &q.token, 8000),
        reschedule(&w, "not-the-claim", 9000),
    ];
    let delete = [Release::Delete {
        id: w.id,
        token: w.token.clone(),
    }];
    let (one, two) = tokio::join!(store.release(&moves), store.release(&delete));
    one.unwrap();
    two.unwrap();
    let left: Vec<(String, i64)> = store
        .timers_of("W")
        .await
        .unwrap()
        .into_iter()
        .map(|(_, kind, due)| (kind, due))
        .collect();
    assert_eq!(left, [("push".into(), 7000), ("query".into(), 8000)]);
    // Rescheduled timers are nobody's: due again at their new time.
    let due = store
        .claim_due((1000, 8000), "c", LEASE, 10, Admit::all())
        .await
        .unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(of(&due, "query").payload, json!({"due": 8000}));
}

/// SQLite: once the outbox has nothing unpublished, the relay goes live and each commit hands
/// its events over in commit order; a failure ends that, and the outbox is read again.
pub async fn committed_events_are_handed_to_a_live_relay(store: &Store) {
    use onething::store::Handed;
    let h = store.handoff().expect("SQLite hands events over");
    with_events(store, "H", &[1]).await;
    assert!(
        matches!(h.take(10).await, Handed::ReadOutbox),
        "not live: the relay reads the outbox"
    );
    assert!(!h.go_live(store).await.unwrap(), "H-1 is unpublished");
    let (_, got) = store.claim_events("a", 1000, LEASE, 10).await.unwrap();
    assert_eq!(ids(&got), ["H-1"]);
    store.mark_published_all(&["H-1".into()], 2).await.unwrap();
    assert!(h.go_live(store).await.unwrap(), "nothing left unpublished");
    assert!(matches!(h.take(10).await, Handed::Nothing));

    with_events(store, "I", &[1, 2]).await;
    with_events(store, "J", &[1]).await;
    match h.take(10).await {
        Handed::Events(got) => assert_eq!(ids(&got), ["I-1", "I-2", "J-1"], "commit order"),
        _ => panic!("the commits' events are handed over"),
    }

    // A publish failed: the relay falls back, and what was handed over is in the outbox still.
    with_events(store, "K", &[1]).await;
    h.fall_back().await;
    assert!(matches!(h.take(10).await, Handed::ReadOutbox));
    with_events(store, "L", &[1]).await;
    let (_, got) = store.claim_events("a", 1000, LEASE, 10).await.unwrap();
    assert_eq!(ids(&got), ["I-1", "I-2", "J-1", "K-1", "L-1"]);
}
