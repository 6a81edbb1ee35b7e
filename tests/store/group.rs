//! Changes saved at once: each written with all its rows (on SQLite, many in one transaction),
//! and of two changes computed from one version of a case, exactly one.

use onething::store::{AuditRecord, Store, Update};

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
        state: Some(case(id)),
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
        tasks.spawn(async move { (i, store.save(&u).await.unwrap()) });
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
