//! Changes and new cases saved at once: each written with all its rows (on SQLite, many in one
//! transaction); of two changes computed from one version of a case exactly one, and of two new
//! cases with one id exactly one.

use onething::store::{AuditRecord, Inserted, Store, Update};

use super::{case, event};

pub async fn changes_saved_at_once_are_each_written_whole_and_one_per_version(store: &Store) {
    for i in 0..20 {
        let id = format!("G{i}");
        let first = Update {
            case_id: id.clone(),
            now: 1,
            ..Default::default()
        };
        store.insert_case(&case(&id), "{}", first).await.unwrap();
    }
    let change = |id: &str, seq: i64, summary: &str| Update {
        case_id: id.into(),
        version: 1,
        state: Some(case(id).into()),
        events: vec![event(id, seq)],
        audit: vec![AuditRecord::new(id, None, None, 2, "note", summary, None)],
        now: 2,
        ..Default::default()
    };
    let changes: Vec<Update> = (0..20)
        .map(|i| change(&format!("G{i}"), 1, "one"))
        .chain([change("G0", 2, "rival")])
        .collect();
    // All at once, as the case writer's tasks would.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, u) in changes.into_iter().enumerate() {
        let store = store.clone();
        tasks.spawn(async move { (i, store.save(u).await.unwrap()) });
    }
    let mut written = vec![false; 21];
    while let Some(r) = tasks.join_next().await {
        let (i, w) = r.unwrap();
        written[i] = w;
    }
    assert!(written[1..20].iter().all(|w| *w), "{written:?}");
    assert!(
        written[0] ^ written[20],
        "exactly one of two changes of one version: {written:?}"
    );
    // The loser left nothing behind: one event and one record for G0, whichever won.
    assert_eq!(store.case_events("G0").await.unwrap().len(), 1);
    assert_eq!(store.case_audit("G0").await.unwrap().len(), 1);
    for i in 1..20 {
        let id = format!("G{i}");
        assert_eq!(store.load(&id).await.unwrap().unwrap().version, 2);
        assert_eq!(store.case_events(&id).await.unwrap().len(), 1);
    }
    let verified = store.verify_audit(None).await.unwrap();
    assert_eq!(verified.problems, Vec::<String>::new());
    assert_eq!(verified.records, 20);
}

/// New cases arriving at once (on SQLite, inserted together with changes of other cases): each
/// stored whole, and of two with one id exactly one, the other told what is stored.
pub async fn new_cases_saved_at_once_are_each_stored_whole_and_once(store: &Store) {
    store
        .insert_case(
            &case("N-old"),
            "{\"old\":1}",
            Update {
                case_id: "N-old".into(),
                now: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let first = |id: &str| Update {
        case_id: id.into(),
        now: 2,
        events: vec![event(id, 1)],
        audit: vec![AuditRecord::new(id, None, None, 2, "inbound", "new", None)],
        ..Default::default()
    };
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (store, id) = (store.clone(), format!("N{i}"));
        tasks.spawn(async move {
            let r = store.insert_case(&case(&id), "{}", first(&id)).await;
            (id, r.unwrap())
        });
    }
    for (id, body) in [("N-twin", "{\"twin\":1}"), ("N-twin", "{\"twin\":2}")] {
        let store = store.clone();
        tasks.spawn(async move {
            let r = store.insert_case(&case(id), body, first(id)).await;
            (format!("{id} {body}"), r.unwrap())
        });
    }
    let old = store.clone();
    tasks.spawn(async move {
        let r = old
            .insert_case(&case("N-old"), "{\"old\":2}", first("N-old"))
            .await;
        ("N-old".to_string(), r.unwrap())
    });
    let mut twins = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (id, inserted) = r.unwrap();
        match id.as_str() {
            "N-old" => assert_eq!(
                inserted,
                Inserted::Existing {
                    submission: "{\"old\":1}".into()
                }
            ),
            twin if twin.starts_with("N-twin") => twins.push((twin.to_string(), inserted)),
            _ => assert_eq!(inserted, Inserted::New, "{id}"),
        }
    }
    let stored = store.load("N-twin").await.unwrap().unwrap().submission;
    let winners: Vec<_> = twins.iter().filter(|(_, i)| *i == Inserted::New).collect();
    assert_eq!(winners.len(), 1, "exactly one twin stored: {twins:?}");
    assert!(winners[0].0.ends_with(&*stored), "{twins:?} vs {stored}");
    let loser = twins.iter().find(|(_, i)| *i != Inserted::New).unwrap();
    assert_eq!(
        loser.1,
        Inserted::Existing {
            submission: stored.to_string()
        }
    );
    for i in 0..20 {
        let id = format!("N{i}");
        assert_eq!(store.load(&id).await.unwrap().unwrap().version, 1);
        assert_eq!(store.case_events(&id).await.unwrap().len(), 1);
        assert_eq!(store.case_audit(&id).await.unwrap().len(), 1);
    }
    // Neither the duplicate of a stored case nor the losing twin left anything behind.
    assert_eq!(store.case_events("N-old").await.unwrap().len(), 0);
    assert_eq!(store.case_events("N-twin").await.unwrap().len(), 1);
    let verified = store.verify_audit(None).await.unwrap();
    assert_eq!(verified.problems, Vec::<String>::new());
}
