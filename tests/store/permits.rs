//! Department limits shared by instances: permits (held by one request at a time, freed when
//! given back or when their hold ends) and pacing (starts spaced across every caller).

use onething::store::Store;

pub async fn permits_are_held_once_and_free_when_given_back_or_expired(store: &Store) {
    store.set_permits("police", 2).await.unwrap();
    let a = store
        .take_permit("police", "a:1", 1000, 5000)
        .await
        .unwrap();
    let b = store
        .take_permit("police", "b:1", 1000, 5000)
        .await
        .unwrap();
    assert_eq!((a, b), (Some(0), Some(1)));
    assert_eq!(
        store
            .take_permit("police", "c:1", 1000, 5000)
            .await
            .unwrap(),
        None,
        "both held"
    );
    // Given back by someone else: nothing; by its holder: free again.
    store.give_permit("police", 0, "b:1").await.unwrap();
    assert_eq!(
        store
            .take_permit("police", "c:1", 1000, 5000)
            .await
            .unwrap(),
        None
    );
    store.give_permit("police", 0, "a:1").await.unwrap();
    assert_eq!(
        store
            .take_permit("police", "c:1", 1000, 5000)
            .await
            .unwrap(),
        Some(0)
    );
    // A holder that died: its permit frees itself when its hold ends.
    assert_eq!(
        store
            .take_permit("police", "d:1", 6000, 9000)
            .await
            .unwrap(),
        Some(0)
    );
    // Other departments have permits of their own; fewer permits remove the free surplus.
    store.set_permits("health", 1).await.unwrap();
    assert_eq!(
        store
            .take_permit("health", "a:2", 6000, 9000)
            .await
            .unwrap(),
        Some(0)
    );
    store.give_permit("police", 1, "b:1").await.unwrap();
    store.set_permits("police", 1).await.unwrap();
    assert_eq!(
        store
            .take_permit("police", "e:1", 6000, 9000)
            .await
            .unwrap(),
        None
    );
}

pub async fn pacing_spaces_starts_across_callers(store: &Store) {
    // 20 a second: one start per 50 ms, whoever asks.
    let starts: Vec<i64> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(store.pace("police", "send", 50, 1000).await.unwrap());
        }
        v
    };
    assert_eq!(starts, [1000, 1050, 1100, 1150]);
    // Classes are paced apart; a quiet spell does not bank starts for later.
    assert_eq!(store.pace("police", "ask", 1000, 1000).await.unwrap(), 1000);
    assert_eq!(store.pace("police", "send", 50, 5000).await.unwrap(), 5000);
    assert_eq!(store.pace("police", "send", 50, 5000).await.unwrap(), 5050);
}
