//! `onething audit verify`: the audit trail's chains checked record by record (the daemon's
//! retention, which removes old trails, is `runtime/retention.rs`).

use crate::store::{Store, StoreError};

/// The report of `audit verify`: a summary line, then one line per problem.
pub async fn verify(store: &Store, case_id: Option<&str>) -> Result<(bool, String), StoreError> {
    let v = store.verify_audit(case_id).await?;
    let mut out = String::new();
    for p in &v.problems {
        out.push_str(p);
        out.push('\n');
    }
    if v.problems.is_empty() {
        out.push_str(&format!(
            "audit trail intact: {} record(s) in {} chain(s)\n",
            v.records, v.chains
        ));
    } else {
        out.push_str(&format!(
            "audit trail BROKEN: {} problem(s) in {} record(s), {} chain(s)\n",
            v.problems.len(),
            v.records,
            v.chains
        ));
    }
    Ok((v.problems.is_empty(), out))
}
