//! The store against both backends: the real SQLite file and the machine's PostgreSQL, each test
//! in its own database.

use std::time::Duration;

use indexmap::IndexMap;
use onething::engine::{Case, Item, Status};
use onething::store::{
    Admit, AuditRecord, Inserted, NewTimer, OutboxEvent, Release, Store, TimerClock, Update,
    chain_hash,
};

mod support;
use support::{drop_pg, fresh};

fn case(id: &str) -> Case {
    let mut items = IndexMap::new();
    items.insert(
        "birth-cert".to_string(),
        Item {
            department: "health".into(),
            prerequisites: vec![],
            prereview_allowed: false,
            complete_days: 1,
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
        },
    );
    Case::new(
        id,
        "newborn",
        items,
        IndexMap::new(),
        serde_json::Value::Null,
    )
}

fn event(case_id: &str, seq: i64) -> OutboxEvent {
    OutboxEvent {
        event_id: format!("{case_id}-{seq}"),
        case_id: case_id.into(),
        seq,
        routing_key: "item.dispatched".into(),
        body: format!("{{\"seq\":{seq}}}"),
    }
}

fn timer(case_id: &str, kind: &str, clock: TimerClock, due: i64) -> NewTimer {
    NewTimer {
        case_id: case_id.into(),
        item: "birth-cert".into(),
        kind: kind.into(),
        department: "health".into(),
        clock,
        due_at: due,
        payload: serde_json::json!({"push": "submit"}),
    }
}

async fn cases_events_and_versions(store: &Store) {
    let c = case("C1");
    let first = Update {
        case_id: "C1".into(),
        events: vec![event("C1", 1)],
        timers: vec![timer("C1", "push", TimerClock::Real, 100)],
        audit: vec![AuditRecord::new(
            "C1",
            None,
            None,
            1,
            "inbound",
            "submission",
            Some(b"{}"),
        )],
        now: 1,
        ..Default::default()
    };
    assert_eq!(
        store
            .insert_case(&c, "{\"a\":1}", first.clone())
            .await
            .unwrap(),
        Inserted::New
    );
    assert_eq!(
        store.insert_case(&c, "{\"a\":2}", first).await.unwrap(),
        Inserted::Existing {
            submission: "{\"a\":1}".into()
        },
        "the id is taken; nothing else written"
    );
    let stored = store.load("C1").await.unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(*stored.state, c);

    let mut next = c.clone();
    next.seq = 2;
    let upd = Update {
        case_id: "C1".into(),
        version: 1,
        state: Some(next.clone().into()),
        events: vec![event("C1", 2)],
        now: 2,
        ..Default::default()
    };
    assert!(store.save(upd.clone()).await.unwrap());
    assert!(
        !store.save(upd).await.unwrap(),
        "a stale version is refused, and writes nothing"
    );
    assert_eq!(store.load("C1").await.unwrap().unwrap().version, 2);
    let events = store.case_events("C1").await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);

    let pending = store.unpublished(10).await.unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
        ["C1-1", "C1-2"]
    );
    store.mark_published("C1-1", 3).await.unwrap();
    assert_eq!(store.unpublished(10).await.unwrap().len(), 1);
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.cases, counts.unpublished, counts.timers), (1, 1, 1));
}

async fn timers_are_claimed_once_and_released_by_their_claim(store: &Store) {
    let c = case("T1");
    let first = Update {
        case_id: "T1".into(),
        timers: vec![
            timer("T1", "push", TimerClock::Real, 100),
            timer("T1", "poll", TimerClock::Gateway, 5000),
        ],
        now: 1,
        ..Default::default()
    };
    store.insert_case(&c, "{}", first).await.unwrap();
    // Only the real-clock timer is due.
    let claimed = store
        .claim_due((1000, 1000), "a", Duration::from_secs(30), 10, Admit::all())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].kind, "push");
    assert!(
        store
            .claim_due((1000, 1000), "b", Duration::from_secs(30), 10, Admit::all())
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    // An expired lease lets another instance take it; the gateway clock has passed 5000 too.
    let again = store
        .claim_due(
            (6000, 40_000),
            "b",
            Duration::from_secs(30),
            10,
            Admit::all(),
        )
        .await
        .unwrap();
    assert_eq!(again.len(), 2);
    // Releasing with a stale claim does nothing; with the current one it deletes.
    let push = again.iter().find(|t| t.kind == "push").unwrap();
    store
        .release(&[Release::Delete {
            id: push.id,
            token: claimed[0].token.clone(),
        }])
        .await
        .unwrap();
    assert_eq!(store.counts().await.unwrap().timers, 2);
    store
        .release(&[Release::Delete {
            id: push.id,
            token: push.token.clone(),
        }])
        .await
        .unwrap();
    assert_eq!(store.counts().await.unwrap().timers, 1);
    // Upserting a timer of the same case, item and kind replaces it.
    let upd = Update {
        case_id: "T1".into(),
        timers: vec![timer("T1", "poll", TimerClock::Gateway, 9000)],
        now: 2,
        ..Default::default()
    };
    store.save(upd).await.unwrap();
    assert_eq!(
        store.timers_of("T1").await.unwrap(),
        vec![("birth-cert".to_string(), "poll".to_string(), 9000)]
    );
    // One update naming a key twice: the later timer wins, as two upserts in a row would.
    let upd = Update {
        case_id: "T1".into(),
        timers: vec![
            timer("T1", "query", TimerClock::Real, 1),
            timer("T1", "withdraw", TimerClock::Real, 2),
            timer("T1", "query", TimerClock::Real, 3),
        ],
        now: 3,
        ..Default::default()
    };
    store.save(upd).await.unwrap();
    let kinds = |t: Vec<(String, String, i64)>| -> Vec<(String, i64)> {
        t.into_iter().map(|(_, k, d)| (k, d)).collect()
    };
    assert_eq!(
        kinds(store.timers_of("T1").await.unwrap()),
        [
            ("poll".into(), 9000),
            ("query".into(), 3),
            ("withdraw".into(), 2)
        ]
    );
    // Dropping several (item, kind) pairs at once leaves the others.
    let upd = Update {
        case_id: "T1".into(),
        drop_timers: vec![
            ("birth-cert".into(), "query".into()),
            ("birth-cert".into(), "withdraw".into()),
        ],
        now: 4,
        ..Default::default()
    };
    store.save(upd).await.unwrap();
    assert_eq!(
        kinds(store.timers_of("T1").await.unwrap()),
        [("poll".into(), 9000)]
    );
}

async fn audit_is_chained_per_case(store: &Store) {
    let c = case("A1");
    let recs: Vec<AuditRecord> = (0..3)
        .map(|i| {
            AuditRecord::new(
                "A1",
                Some("birth-cert"),
                Some("health"),
                i,
                "push",
                format!("r{i}"),
                Some(b"x"),
            )
        })
        .collect();
    store
        .insert_case(
            &c,
            "{}",
            Update {
                case_id: "A1".into(),
                audit: recs,
                now: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // One append that interleaves two chains (the case's and the records of no case): each
    // continues from its own head, in the order given.
    let of_no_case = |i: i64| AuditRecord {
        case_id: None,
        ..AuditRecord::new("", None, None, i, "callback", format!("n{i}"), None)
    };
    let a1 = |i: i64| AuditRecord::new("A1", None, None, i, "note", format!("r{i}"), None);
    store
        .audit(&[a1(3), of_no_case(4), a1(5), of_no_case(6)])
        .await
        .unwrap();
    let stored = store.case_audit("A1").await.unwrap();
    let summaries: Vec<&str> = stored.iter().map(|s| s.record.summary.as_str()).collect();
    assert_eq!(summaries, ["r0", "r1", "r2", "r3", "r5"]);
    let mut prev: Option<String> = None;
    for s in &stored {
        assert_eq!(s.prev_hash, prev);
        assert_eq!(s.hash, chain_hash(prev.as_deref(), &s.record));
        prev = Some(s.hash.clone());
    }
    let verified = store.verify_audit(None).await.unwrap();
    assert_eq!(verified.problems, Vec::<String>::new());
    assert_eq!((verified.records, verified.chains), (7, 2));
}

/// Runs raw SQL on the store's database (the tests' stand-in for someone editing it by hand).
async fn tamper(store: &Store, sql: &str) {
    store.execute_raw(sql).await.unwrap();
}

async fn audit_verify_finds_alterations_and_survives_retention(store: &Store) {
    let mut done = case("V1");
    done.completed = true;
    for (id, c, now) in [("V1", done, 10), ("V2", case("V2"), 10)] {
        let recs = (0..3)
            .map(|i| AuditRecord::new(id, None, None, i, "push", format!("r{i}"), None))
            .collect();
        store
            .insert_case(
                &c,
                "{}",
                Update {
                    case_id: id.into(),
                    audit: recs,
                    now,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    for i in 0..3 {
        let mut r = AuditRecord::new("x", None, Some("health"), i, "callback", "refused", None);
        r.case_id = None;
        store.audit(&[r]).await.unwrap();
    }
    let v = store.verify_audit(None).await.unwrap();
    assert_eq!((v.records, v.chains), (9, 3));
    assert!(v.problems.is_empty(), "{:?}", v.problems);

    // Each case has a published and an unpublished event.
    for id in ["V1", "V2"] {
        let load = store.load(id).await.unwrap().unwrap();
        let u = Update {
            case_id: id.into(),
            version: load.version,
            state: Some(load.state),
            events: vec![event(id, 1), event(id, 2)],
            now: 10,
            ..Default::default()
        };
        assert!(store.save(u).await.unwrap());
        store.mark_published(&format!("{id}-1"), 10).await.unwrap();
    }

    // Retention: V1 (completed at 10) goes whole; the records of no case keep their newest.
    let pruned = store.prune_audit(100, 100).await.unwrap();
    assert_eq!(pruned.cases, 1);
    assert_eq!(pruned.records, 3 + 2);
    // V1's published event goes with its trail; what is still to publish, and V2's, stay.
    assert_eq!(pruned.events, 1);
    let left = |id: &'static str| async move {
        let events = store.case_events(id).await.unwrap();
        events.into_iter().map(|e| e.seq).collect::<Vec<_>>()
    };
    assert_eq!(left("V1").await, [2]);
    assert_eq!(left("V2").await, [1, 2]);
    assert!(store.case_audit("V1").await.unwrap().is_empty());
    assert_eq!(store.case_audit("V2").await.unwrap().len(), 3);
    let v = store.verify_audit(None).await.unwrap();
    assert!(v.problems.is_empty(), "after retention: {:?}", v.problems);
    // A new record of no case continues the anchored chain.
    let mut r = AuditRecord::new("x", None, None, 200, "callback", "late", None);
    r.case_id = None;
    store.audit(&[r]).await.unwrap();
    assert!(store.verify_audit(None).await.unwrap().problems.is_empty());

    // Altering one record is found: its own hash no longer matches.
    let second = store.case_audit("V2").await.unwrap()[1].id;
    tamper(
        store,
        &format!("UPDATE audit SET summary = 'r9' WHERE id = {second}"),
    )
    .await;
    let v = store.verify_audit(Some("V2")).await.unwrap();
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    assert!(v.problems[0].starts_with(&format!("audit record #{second} (case V2): altered")));
    // Removing one breaks the link of the next.
    let first = store.case_audit("V2").await.unwrap()[0].id;
    tamper(store, &format!("DELETE FROM audit WHERE id = {first}")).await;
    let v = store.verify_audit(None).await.unwrap();
    assert!(
        v.problems.iter().any(|p| p.contains("chain broken")),
        "{:?}",
        v.problems
    );
}

async fn dead_letters_keep_their_bytes_and_replay_once(store: &Store) {
    let bytes: &[u8] = b"\xff\xfe not json";
    let a = store
        .dead_letter(&onething::store::NewDeadLetter {
            at: 1,
            reason: "not json",
            errors: "[]",
            case_id: None,
            routing_key: "submission",
            body: bytes,
        })
        .await
        .unwrap();
    let b = store
        .dead_letter(&onething::store::NewDeadLetter {
            at: 2,
            reason: "unknown case",
            errors: "[]",
            case_id: Some("C9"),
            routing_key: "withdrawal",
            body: "{\"case_id\":\"C9\"}".as_bytes(),
        })
        .await
        .unwrap();
    let all = store.dead_letters(false).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].body, bytes);
    assert_eq!(all[1].routing_key.as_deref(), Some("withdrawal"));
    assert!(store.mark_replayed(b, 5).await.unwrap());
    assert!(!store.mark_replayed(b, 6).await.unwrap(), "replayed twice");
    let pending = store.dead_letters(true).await.unwrap();
    assert_eq!(pending.iter().map(|d| d.id).collect::<Vec<_>>(), vec![a]);
    assert_eq!(
        store
            .dead_letter_by_id(b)
            .await
            .unwrap()
            .unwrap()
            .replayed_at,
        Some(5)
    );
}

async fn items_are_counted_open_and_overdue(store: &Store) {
    let now = chrono::DateTime::parse_from_rfc3339("2026-03-16T12:00:00+08:00").unwrap();
    let mut c = case("I1");
    let it = c.items.get_mut("birth-cert").unwrap();
    it.status = Status::Dispatched;
    it.accept_due = Some(now - chrono::Duration::hours(1));
    store
        .insert_case(
            &c,
            "{}",
            Update {
                case_id: "I1".into(),
                now: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let counts = store.item_counts(now.timestamp_millis()).await.unwrap();
    assert_eq!(counts.open, vec![("health".into(), "dispatched".into(), 1)]);
    assert_eq!(counts.overdue, vec![("health".into(), 1)]);
    // Final: neither open nor overdue.
    let stored = store.load("I1").await.unwrap().unwrap();
    let mut c = std::sync::Arc::unwrap_or_clone(stored.state);
    c.items.get_mut("birth-cert").unwrap().status = Status::Approved;
    assert!(
        store
            .save(Update {
                case_id: "I1".into(),
                version: stored.version,
                state: Some(c.into()),
                now: 2,
                ..Default::default()
            })
            .await
            .unwrap()
    );
    let counts = store.item_counts(now.timestamp_millis()).await.unwrap();
    assert!(counts.open.is_empty() && counts.overdue.is_empty());
    assert!(store.open_item_kinds().await.unwrap().is_empty());
    // A change that names its altered rows writes those and no others.
    let stored = store.load("I1").await.unwrap().unwrap();
    let mut c = std::sync::Arc::unwrap_or_clone(stored.state);
    c.items.get_mut("birth-cert").unwrap().status = Status::Dispatched;
    let change = |version: i64, items: Vec<onething::store::ItemRow>| Update {
        case_id: "I1".into(),
        version,
        state: Some(c.clone().into()),
        now: 3,
        items: Some(items),
        ..Default::default()
    };
    assert!(store.save(change(stored.version, vec![])).await.unwrap());
    let counts = store.item_counts(now.timestamp_millis()).await.unwrap();
    assert!(counts.open.is_empty(), "no row named, none written");
    let rows = onething::store::item_rows(&c);
    assert!(store.save(change(stored.version + 1, rows)).await.unwrap());
    let counts = store.item_counts(now.timestamp_millis()).await.unwrap();
    assert_eq!(counts.open, vec![("health".into(), "dispatched".into(), 1)]);
}

macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let store =
                    onething::store::Store::open(&super::fresh("sqlite", stringify!($name)).await)
                        .await
                        .unwrap();
                super::$name(&store).await;
            }
            #[tokio::test]
            async fn postgres() {
                let url = super::fresh("pg", stringify!($name)).await;
                let store = onething::store::Store::open(&url).await.unwrap();
                super::$name(&store).await;
                store.close().await;
                super::drop_pg(&url).await;
            }
        }
    };
}

on_both!(cases_events_and_versions);
on_both!(timers_are_claimed_once_and_released_by_their_claim);
on_both!(audit_is_chained_per_case);
on_both!(audit_verify_finds_alterations_and_survives_retention);
on_both!(dead_letters_keep_their_bytes_and_replay_once);
on_both!(items_are_counted_open_and_overdue);

#[path = "store/leases.rs"]
mod leases;
use leases::{
    claims_take_no_more_than_a_department_has_room_for, leases_are_renewed_deferred_and_taken_over,
    the_relay_claims_a_case_through_its_first_pending_event,
    touches_and_releases_write_only_while_the_claim_holds,
};
on_both!(touches_and_releases_write_only_while_the_claim_holds);
on_both!(claims_take_no_more_than_a_department_has_room_for);

#[path = "store/permits.rs"]
mod permits;
use permits::{
    pacing_spaces_starts_across_callers, permits_are_held_once_and_free_when_given_back_or_expired,
};
on_both!(permits_are_held_once_and_free_when_given_back_or_expired);
on_both!(pacing_spaces_starts_across_callers);

#[path = "store/group.rs"]
mod group;
use group::{
    changes_saved_at_once_are_each_written_whole_and_one_per_version,
    new_cases_saved_at_once_are_each_stored_whole_and_once,
};
on_both!(changes_saved_at_once_are_each_written_whole_and_one_per_version);
on_both!(new_cases_saved_at_once_are_each_stored_whole_and_once);
on_both!(the_relay_claims_a_case_through_its_first_pending_event);
on_both!(leases_are_renewed_deferred_and_taken_over);

#[tokio::test]
async fn committed_events_are_handed_to_a_live_relay_on_sqlite() {
    let store = Store::open(&fresh("sqlite", "handoff").await)
        .await
        .unwrap();
    leases::committed_events_are_handed_to_a_live_relay(&store).await;
    let pg = fresh("pg", "handoff").await;
    let on_pg = Store::open(&pg).await.unwrap();
    assert!(
        on_pg.handoff().is_none(),
        "instances share PostgreSQL's outbox"
    );
    on_pg.close().await;
    drop_pg(&pg).await;
}

#[tokio::test]
async fn concurrent_claims_never_overlap_on_sqlite() {
    leases::concurrent_claims_never_overlap(&fresh("sqlite", "concurrent").await).await;
}

#[tokio::test]
async fn concurrent_claims_never_overlap_on_postgres() {
    let url = fresh("pg", "concurrent").await;
    leases::concurrent_claims_never_overlap(&url).await;
    drop_pg(&url).await;
}

#[tokio::test]
async fn reopening_keeps_everything_and_does_not_migrate_twice() {
    let url = fresh("sqlite", "reopen").await;
    {
        let s = Store::open(&url).await.unwrap();
        s.insert_case(
            &case("R1"),
            "{}",
            Update {
                case_id: "R1".into(),
                now: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let s = Store::open(&url).await.unwrap();
    assert!(s.load("R1").await.unwrap().is_some());
}
