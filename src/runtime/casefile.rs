//! `onething case CASE_ID`: a case's items, states, references and deadlines, then its audit
//! trail as a timeline — what the hotline and supervisors ask about.

use std::fmt::Write as _;

use super::apply::kind;
use crate::model::time::{rfc3339, rfc3339_ms};
use crate::store::{Store, StoreError};

/// The readable case file, or `None` for an unknown case.
pub async fn render(store: &Store, case_id: &str) -> Result<Option<String>, StoreError> {
    let Some(stored) = store.load(case_id).await? else {
        return Ok(None);
    };
    let case = &stored.state;
    let personal = serde_json::from_str(&stored.submission)
        .map(|v| crate::model::mask::Personal::of(&v))
        .unwrap_or_default();
    let timers = store.timers_of(case_id).await?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "case {}  ({})  {}",
        case.case_id,
        case.onething,
        if case.completed { "completed" } else { "open" }
    );
    if let Some(w) = &case.withdrawal {
        let _ = writeln!(s, "withdrawn by the platform: {}", w.reason);
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<18} {:<10} {:<11} {:<22} {:<26} {:<26}",
        "item", "department", "status", "department ref", "accept limit", "complete limit"
    );
    for (code, it) in &case.items {
        // The limit as the state machine set it; an overdue one is marked.
        let limit = |k: &str, due: Option<chrono::DateTime<chrono::FixedOffset>>| {
            let pending = timers.iter().any(|(i, kk, _)| i == code && kk == k);
            match due {
                Some(d) if !pending && !it.status.is_final() => format!("{} OVERDUE", rfc3339(d)),
                Some(d) => rfc3339(d),
                None => "-".into(),
            }
        };
        let _ = writeln!(
            s,
            "{:<18} {:<10} {:<11} {:<22} {:<26} {:<26}",
            code,
            it.department,
            it.status.as_str(),
            it.department_ref.as_deref().unwrap_or("-"),
            limit(
                kind::ACCEPT,
                it.accept_due
                    .filter(|_| it.status == crate::engine::Status::Dispatched
                        || it.accepted_at.is_none())
            ),
            limit(kind::COMPLETE, it.complete_due)
        );
    }
    let _ = writeln!(s, "\naudit trail");
    for a in store.case_audit(case_id).await? {
        let r = &a.record;
        let _ = writeln!(
            s,
            "{}  {:<8} {:<18} {:<10} {}{}",
            rfc3339_ms(r.at),
            r.kind,
            r.item.as_deref().unwrap_or("-"),
            r.department.as_deref().unwrap_or("-"),
            personal.mask(&r.summary),
            r.body_sha256
                .as_deref()
                .map(|h| format!("  sha256:{}", &h[..12]))
                .unwrap_or_default()
        );
    }
    Ok(Some(s))
}
